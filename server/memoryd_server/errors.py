"""Domain errors and the one place that maps them to gRPC status codes.

    MemorydError                      (base; never raised itself)
    ├── InvalidArgument               INVALID_ARGUMENT, with field violations
    ├── NotFound                      NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    ├── FailedPrecondition            FAILED_PRECONDITION
    ├── Aborted                       ABORTED (stale version)
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
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


class Unauthenticated(MemorydError, code=grpc.StatusCode.UNAUTHENTICATED):
    """No valid credential."""


class PermissionDenied(MemorydError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The credential does not allow the operation."""


class DeadlineExceeded(MemorydError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The operation ran out of time (statement timeout or client deadline)."""


class Unavailable(MemorydError, code=grpc.StatusCode.UNAVAILABLE):
    """The database cannot be reached; the call is safe to retry later."""


@contextmanager
def map_pg_errors() -> Iterator[None]:
    """Re-raise database errors as the most specific domain error.

    Messages never include SQL text or connection details: the original
    exception stays attached as ``__cause__`` for the server log.
    """
    try:
        yield
    except MemorydError:
        raise
    except psycopg.errors.UniqueViolation as exc:
        raise AlreadyExists("the resource already exists") from exc
    except psycopg.errors.ForeignKeyViolation as exc:
        raise FailedPrecondition("a referenced resource does not exist") from exc
    except psycopg.errors.CheckViolation as exc:
        raise InvalidArgument(_constraint_field(exc), "value is out of range") from exc
    except psycopg.errors.QueryCanceled as exc:
        raise DeadlineExceeded("the database query took too long") from exc
    except psycopg.errors.SerializationFailure as exc:
        raise Aborted("a concurrent transaction conflicted; retry") from exc
    except psycopg.errors.DeadlockDetected as exc:
        raise Aborted("a concurrent transaction conflicted; retry") from exc
    except psycopg.DataError as exc:
        raise InvalidArgument(_constraint_field(exc), "value is not valid") from exc
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise Unavailable("the database is unavailable; retry later") from exc


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
