"""One unary call with deadline, credentials and retries, on a sync or asyncio channel."""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline of the call, not an asyncio timeout.

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message as ProtoMessage

from memoryd._client.errors import (
    Cancelled,
    DeadlineExceeded,
    ResourceExhausted,
    from_grpc_error,
)
from memoryd._client.retry import RetryPolicy

R = TypeVar("R", bound=ProtoMessage)
Metadata = tuple[tuple[str, str], ...]


def call_metadata(api_key: str | None) -> Metadata:
    """The metadata sent with every call: the API key as a bearer token."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def channel_credentials(tls: bool | grpc.ChannelCredentials) -> grpc.ChannelCredentials | None:
    """Credentials for ``tls``: None for plaintext, the system roots for True."""
    if tls is True:
        return grpc.ssl_channel_credentials()
    if tls is False:
        return None
    return tls


# The largest message sent or received: memoryd's MEMORYD_MAX_RECEIVE_BYTES
# default, so any request the server accepts can be sent, and any answer it
# gives (a page of large messages, a big conversation) is received, instead of
# gRPC's 4 MiB default refusing it after the server did the work.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def channel_limits(options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``options`` with the message size limits added, unless the caller set them."""
    given = {name for name, _ in options}
    limits = [
        (name, MAX_MESSAGE_BYTES)
        for name in ("grpc.max_receive_message_length", "grpc.max_send_message_length")
        if name not in given
    ]
    return [*options, *limits]


def _serialize(message: ProtoMessage) -> bytes:
    return message.SerializeToString()


class _Transport:
    """What both transports share: the stubs, the deadline, the retry decision."""

    def __init__(
        self,
        channel: Any,
        *,
        metadata: Metadata,
        default_timeout: float,
        policy: RetryPolicy,
    ) -> None:
        self._channel = channel
        self._metadata = metadata
        self._default_timeout = default_timeout
        self._policy = policy
        self._callables: dict[str, Callable[..., Any]] = {}

    def _callable(
        self, path: str, response_type: type[ProtoMessage], *, stream: bool = False
    ) -> Callable[..., Any]:
        fn = self._callables.get(path)
        if fn is None:
            kind = self._channel.stream_unary if stream else self._channel.unary_unary
            fn = kind(
                path, request_serializer=_serialize, response_deserializer=response_type.FromString
            )
            self._callables[path] = fn
        return fn

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self._default_timeout if timeout is None else timeout)

    @staticmethod
    def _remaining(deadline: float) -> float:
        """Seconds left before ``deadline``; DEADLINE_EXCEEDED when none are."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceeded("the deadline passed before the call was sent")
        return remaining

    def _retry_delay(
        self, exc: grpc.RpcError, attempt: int, deadline: float, *, retryable: bool
    ) -> float:
        """How long to wait before the next attempt, or the typed error to raise."""
        error = from_grpc_error(exc)
        if isinstance(error, Cancelled):
            # This client never cancels a call, and memoryd answers CANCELLED
            # only past a shutdown's grace: it is gRPC's name for a stream reset at
            # the call's deadline, reported when that reset arrives before
            # this process's own timer fires (gRPC's clock here runs behind
            # when busy, by milliseconds). Either way the call ran out of time.
            error = DeadlineExceeded(f"the call ran out of time ({error.message})")
        # memoryd sends RetryInfo only with a rate-limit or overload refusal
        # (ErrorInfo reason Overloaded), both made before the handler runs:
        # safe to retry even for a write.
        rate_limited = isinstance(error, ResourceExhausted) and error.retry_delay is not None
        delay = self._policy.delay(error, attempt) if retryable or rate_limited else None
        if delay is None or time.monotonic() + delay >= deadline:
            error.attempts = attempt
            raise error from exc
        return delay


class SyncTransport(_Transport):
    """Runs calls on a ``grpc.Channel``, retrying those marked safe."""

    def call(
        self,
        path: str,
        request: ProtoMessage | Sequence[ProtoMessage],
        response_type: type[R],
        *,
        retryable: bool,
        timeout: float | None,
        stream: bool = False,
    ) -> R:
        """Call ``path`` until it succeeds, fails for good, or the deadline passes.

        With ``stream``, ``request`` is a client stream's messages (sent anew on a retry).
        """
        fn = self._callable(path, response_type, stream=stream)
        deadline = self._deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                remaining = self._remaining(deadline)
                sent = iter(request) if stream else request  # type: ignore[arg-type]
                return cast(R, fn(sent, timeout=remaining, metadata=self._metadata))
            except grpc.RpcError as exc:
                delay = self._retry_delay(exc, attempt, deadline, retryable=retryable)
            time.sleep(delay)


class AsyncTransport(_Transport):
    """Runs calls on a ``grpc.aio.Channel``, retrying those marked safe."""

    async def call(
        self,
        path: str,
        request: ProtoMessage | Sequence[ProtoMessage],
        response_type: type[R],
        *,
        retryable: bool,
        timeout: float | None,
        stream: bool = False,
    ) -> R:
        """Call ``path`` until it succeeds, fails for good, or the deadline passes.

        With ``stream``, ``request`` is a client stream's messages (sent anew on a retry).
        """
        fn = self._callable(path, response_type, stream=stream)
        deadline = self._deadline(timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                remaining = self._remaining(deadline)
                sent = iter(request) if stream else request  # type: ignore[arg-type]
                return cast(R, await fn(sent, timeout=remaining, metadata=self._metadata))
            except grpc.RpcError as exc:
                delay = self._retry_delay(exc, attempt, deadline, retryable=retryable)
            await asyncio.sleep(delay)
