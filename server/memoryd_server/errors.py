"""Domain errors and the one place that maps them to gRPC status codes.

    MemorydError                      (base; never raised itself)
    ├── InvalidArgument               INVALID_ARGUMENT, with field violations
    ├── NotFound                      NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    ├── FailedPrecondition            FAILED_PRECONDITION
    ├── Aborted                       ABORTED (stale version)
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
    │   └── Overloaded                (shed by admission control, before any work)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── PermissionDenied              PERMISSION_DENIED
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    └── Unavailable                   UNAVAILABLE (database down)

Stores raise these (often via ``map_pg_errors``); the error interceptor turns
them into statuses with ``google.rpc`` details. Anything else is a bug and is
returned as INTERNAL with a generic message.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import grpc
import psycopg
import psycopg.errors
import psycopg_pool
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

# The message of every unexpected error: the real one goes to the log only.
INTERNAL_MESSAGE = "internal error; the server log has the details"
# What a client is told when the database cannot answer; the cause is logged.
_UNAVAILABLE = "the database is unavailable; retry later"
# The trailer that carries a serialized google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


class MemorydError(Exception):
    """Base of all errors a client may see; subclasses declare their code."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    by_code: ClassVar[dict[grpc.StatusCode, type[MemorydError]]] = {}

    def __init_subclass__(cls, code: grpc.StatusCode | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            if code in MemorydError.by_code:
                raise TypeError(f"{code} is already mapped to {MemorydError.by_code[code]}")
            cls.code = code
            MemorydError.by_code[code] = cls

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MemorydError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """A request field is malformed; ``field`` names it (dotted path)."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class NotFound(MemorydError, code=grpc.StatusCode.NOT_FOUND):
    """The resource does not exist in the caller's tenant."""


class AlreadyExists(MemorydError, code=grpc.StatusCode.ALREADY_EXISTS):
    """A resource with that id (or an idempotency key) is already taken."""


class FailedPrecondition(MemorydError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The resource is not in a state that allows the operation."""


class Aborted(MemorydError, code=grpc.StatusCode.ABORTED):
    """A concurrent change won: re-read and retry."""


class ResourceExhausted(MemorydError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """A limit or quota was hit; ``retry_after`` (seconds) when waiting will help."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:  # a Duration holds it: finite, within a day
            retry_after = (
                min(max(retry_after, 0.0), 86_400.0) if math.isfinite(retry_after) else 1.0
            )
        self.retry_after = retry_after


class Overloaded(ResourceExhausted):
    """The server is at its concurrency limit and queue; the call did no work."""


class Unauthenticated(MemorydError, code=grpc.StatusCode.UNAUTHENTICATED):
    """No valid credential."""


class PermissionDenied(MemorydError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The credential does not allow the operation."""


class DeadlineExceeded(MemorydError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The operation ran out of time (statement timeout or client deadline)."""


class Unavailable(MemorydError, code=grpc.StatusCode.UNAVAILABLE):
    """The database cannot be reached; the call is safe to retry later."""


# SQLSTATEs with their own domain error; the rest go by class (the first two
# characters) below. By SQLSTATE, not by psycopg's superclasses: "index row
# size exceeds maximum" and "string is too long for tsvector" (54000) are
# OperationalErrors, like a lost connection, but retrying them cannot help.
_BY_SQLSTATE: dict[str, tuple[type[MemorydError], str]] = {
    "23505": (AlreadyExists, "the resource already exists"),
    "23503": (FailedPrecondition, "a referenced resource does not exist"),
    "23514": (InvalidArgument, "value is out of range"),
    "57014": (DeadlineExceeded, "the database query took too long"),
    "40001": (Aborted, "a concurrent transaction conflicted; retry"),
    "40P01": (Aborted, "a concurrent transaction conflicted; retry"),
}
_BY_CLASS: dict[str, tuple[type[MemorydError], str]] = {
    "22": (InvalidArgument, "value is not valid"),  # data exception
    "23": (InvalidArgument, "value is not allowed"),  # integrity constraint violation
    "54": (  # program limit exceeded: too large to store or index
        InvalidArgument,
        "value is too large for the database to store or index",
    ),
    "08": (Unavailable, _UNAVAILABLE),  # connection exception
    "53": (Unavailable, _UNAVAILABLE),  # insufficient resources (disk, memory, connections)
    "55": (Unavailable, _UNAVAILABLE),  # object not in prerequisite state (lock_timeout)
    "57": (Unavailable, _UNAVAILABLE),  # operator intervention (shutdown, recovery)
    "58": (Unavailable, _UNAVAILABLE),  # system error (I/O)
}


@contextmanager
def map_pg_errors() -> Iterator[None]:
    """Re-raise database errors as the most specific domain error.

    Messages never include SQL text or connection details: the original
    exception stays attached as ``__cause__`` for the server log. Errors of
    no known SQLSTATE class (42: a bug in our SQL; XX: internal) stay as
    they are, and the error interceptor logs them and answers INTERNAL.
    """
    try:
        yield
    except MemorydError:
        raise
    except psycopg_pool.PoolTimeout as exc:
        raise Unavailable(_UNAVAILABLE) from exc
    except psycopg.Error as exc:
        mapped = pg_error(exc)
        if mapped is None:
            raise
        raise mapped from exc


def pg_error(exc: psycopg.Error) -> MemorydError | None:
    """The domain error for a database error, or None when it is a bug."""
    state = exc.sqlstate
    if state is None:  # raised by the driver: no server answer
        if isinstance(exc, psycopg.OperationalError):  # the connection broke
            return Unavailable(_UNAVAILABLE)
        if isinstance(exc, psycopg.DataError):  # e.g. a NUL in a string
            return InvalidArgument(_constraint_field(exc), "value is not valid")
        return None
    known = _BY_SQLSTATE.get(state) or _BY_CLASS.get(state[:2])
    if known is None:
        return None
    cls, message = known
    if cls is InvalidArgument:
        return InvalidArgument(_constraint_field(exc), message)
    return cls(message)


def _constraint_field(exc: psycopg.Error) -> str:
    """Best-effort field name from a violated constraint or column."""
    diag = exc.diag
    return diag.column_name or diag.constraint_name or "request"


def to_status(exc: Exception) -> tuple[grpc.StatusCode, str, bytes]:
    """The code, message and serialized ``google.rpc.Status`` a client gets for ``exc``.

    Domain errors keep their code and message, with an ``ErrorInfo`` (and a
    ``BadRequest`` naming the field for InvalidArgument, a ``RetryInfo`` for
    ResourceExhausted with ``retry_after``); anything else is INTERNAL with a
    generic message.
    """
    if isinstance(exc, MemorydError):
        code, message, reason = exc.code, exc.message, type(exc).__name__
    else:
        code, message, reason = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "Internal"
    status = status_pb2.Status(code=code.value[0], message=message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="memoryd"))
    status.details.append(info)
    if isinstance(exc, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=exc.field, description=exc.description
        )
        bad = any_pb2.Any()
        bad.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status.details.append(bad)
    if isinstance(exc, ResourceExhausted) and exc.retry_after is not None:
        delay = duration_pb2.Duration()
        # Rounded up: a client waiting exactly this long finds room.
        delay.FromNanoseconds(max(1, math.ceil(exc.retry_after * 1e9)))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(retry)
    return code, message, status.SerializeToString()
