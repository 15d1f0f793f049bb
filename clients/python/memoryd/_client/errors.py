"""Typed exceptions for gRPC statuses, and ``from_grpc_error`` that builds them.

    MemorydError                      (base; never raised itself)
    ├── Cancelled                     CANCELLED
    ├── Unknown                       UNKNOWN (also any code not listed here)
    ├── InvalidArgument               INVALID_ARGUMENT, with field_violations
    ├── DeadlineExceeded              DEADLINE_EXCEEDED
    ├── NotFound                      NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    ├── PermissionDenied              PERMISSION_DENIED
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
    ├── FailedPrecondition            FAILED_PRECONDITION
    ├── Aborted                       ABORTED (stale version: re-read and retry)
    ├── OutOfRange                    OUT_OF_RANGE
    ├── Unimplemented                 UNIMPLEMENTED
    ├── Internal                      INTERNAL
    ├── Unavailable                   UNAVAILABLE (retried for safe calls)
    ├── DataLoss                      DATA_LOSS
    └── Unauthenticated               UNAUTHENTICATED

The names match the server's own error classes, whose name it sends as
``google.rpc.ErrorInfo.reason``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2, status_pb2

# The trailer that carries a serialized google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field (``field`` is a dotted path such as ``messages[0].role``)."""

    field: str
    description: str


class MemorydError(Exception):
    """Base of every error the client raises; ``code`` is the gRPC status code.

    ``reason`` is the server's ``ErrorInfo.reason`` (its error class name) when
    it sent one; ``retry_delay`` is its ``RetryInfo`` hint, if any.
    """

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    by_code: ClassVar[dict[grpc.StatusCode, type[MemorydError]]] = {}

    def __init_subclass__(cls, code: grpc.StatusCode | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            if code in MemorydError.by_code:
                raise TypeError(f"{code} is already mapped to {MemorydError.by_code[code]}")
            cls.code = code
            MemorydError.by_code[code] = cls

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.field_violations = field_violations
        self.retry_delay = retry_delay
        # How many attempts the client made before raising this error.
        self.attempts = 1

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(MemorydError, code=grpc.StatusCode.CANCELLED):
    """The call was cancelled, usually by the caller."""


class Unknown(MemorydError, code=grpc.StatusCode.UNKNOWN):
    """An error without a more specific code."""


class InvalidArgument(MemorydError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """A request field is malformed; ``field_violations`` names it."""


class DeadlineExceeded(MemorydError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The call ran out of time; a write may or may not have happened."""


class NotFound(MemorydError, code=grpc.StatusCode.NOT_FOUND):
    """The resource does not exist (in the caller's tenant)."""


class AlreadyExists(MemorydError, code=grpc.StatusCode.ALREADY_EXISTS):
    """The id, (namespace, key) or request_id is already taken."""


class PermissionDenied(MemorydError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The credential does not allow the operation."""


class ResourceExhausted(MemorydError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """A limit or quota was hit."""


class FailedPrecondition(MemorydError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The resource is not in a state that allows the operation."""


class Aborted(MemorydError, code=grpc.StatusCode.ABORTED):
    """A concurrent change won (stale ``expected_version``): re-read and retry."""


class OutOfRange(MemorydError, code=grpc.StatusCode.OUT_OF_RANGE):
    """A value is past the valid range."""


class Unimplemented(MemorydError, code=grpc.StatusCode.UNIMPLEMENTED):
    """The server does not implement the method (an older server)."""


class Internal(MemorydError, code=grpc.StatusCode.INTERNAL):
    """A bug in the server; its log has the details."""


class Unavailable(MemorydError, code=grpc.StatusCode.UNAVAILABLE):
    """The server or its database cannot be reached; safe calls were retried."""


class DataLoss(MemorydError, code=grpc.StatusCode.DATA_LOSS):
    """Unrecoverable data loss or corruption."""


class Unauthenticated(MemorydError, code=grpc.StatusCode.UNAUTHENTICATED):
    """No valid credential."""


def from_grpc_error(err: grpc.RpcError) -> MemorydError:
    """The typed exception for a failed call; raise it ``from err``.

    Reads the code and message of ``err`` and the ``google.rpc.Status`` in its
    trailers (ErrorInfo, BadRequest, RetryInfo) when present. Objects that are
    not ``grpc.Call`` (no ``code()``) become Unknown.
    """
    code_fn = getattr(err, "code", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_fn = getattr(err, "details", None)
    message = (details_fn() if callable(details_fn) else None) or code.name
    status = _status_details(err)
    reason = ""
    violations: list[FieldViolation] = []
    retry_delay: timedelta | None = None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(info):
                reason = info.reason
            elif detail.Unpack(bad):
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
            elif detail.Unpack(retry):
                retry_delay = retry.retry_delay.ToTimedelta()
    cls = MemorydError.by_code.get(code, Unknown)
    return cls(message, reason=reason, field_violations=tuple(violations), retry_delay=retry_delay)


def _status_details(err: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status in the trailers of ``err``, if it carries a valid one."""
    trailers_fn = getattr(err, "trailing_metadata", None)
    trailers = trailers_fn() if callable(trailers_fn) else None
    for key, value in trailers or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # noqa: BLE001 - a garbled trailer must not hide the error
                return None
    return None
