"""One unary call with deadline, credentials and retries, on a sync or asyncio channel."""

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline of the call, not an asyncio timeout.

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message as ProtoMessage

from memoryd._client.errors import DeadlineExceeded, MemorydError, from_grpc_error
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


def _serialize(message: ProtoMessage) -> bytes:
    return message.SerializeToString()


def _give_up(error: MemorydError, attempt: int, cause: BaseException) -> MemorydError:
    error.attempts = attempt
    error.__cause__ = cause
    return error


class SyncTransport:
    """Runs calls on a ``grpc.Channel``, retrying those marked safe."""

    def __init__(
        self,
        channel: grpc.Channel,
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

    def call(
        self,
        path: str,
        request: ProtoMessage,
        response_type: type[R],
        *,
        retryable: bool,
        timeout: float | None,
    ) -> R:
        """Call ``path`` until it succeeds, fails for good, or the deadline passes."""
        fn = self._callables.get(path)
        if fn is None:
            fn = self._channel.unary_unary(
                path,
                request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )
            self._callables[path] = fn
        deadline = time.monotonic() + (self._default_timeout if timeout is None else timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded("the deadline passed before the call was sent")
                return cast(R, fn(request, timeout=remaining, metadata=self._metadata))
            except grpc.RpcError as exc:
                error = from_grpc_error(exc)
                delay = self._policy.delay(error, attempt) if retryable else None
                if delay is None or time.monotonic() + delay >= deadline:
                    raise _give_up(error, attempt, exc) from exc
            time.sleep(delay)


class AsyncTransport:
    """Runs calls on a ``grpc.aio.Channel``, retrying those marked safe."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
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

    async def call(
        self,
        path: str,
        request: ProtoMessage,
        response_type: type[R],
        *,
        retryable: bool,
        timeout: float | None,
    ) -> R:
        """Call ``path`` until it succeeds, fails for good, or the deadline passes."""
        fn = self._callables.get(path)
        if fn is None:
            fn = self._channel.unary_unary(
                path,
                request_serializer=_serialize,
                response_deserializer=response_type.FromString,
            )
            self._callables[path] = fn
        deadline = time.monotonic() + (self._default_timeout if timeout is None else timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded("the deadline passed before the call was sent")
                return cast(R, await fn(request, timeout=remaining, metadata=self._metadata))
            except grpc.RpcError as exc:
                error = from_grpc_error(exc)
                delay = self._policy.delay(error, attempt) if retryable else None
                if delay is None or time.monotonic() + delay >= deadline:
                    raise _give_up(error, attempt, exc) from exc
            await asyncio.sleep(delay)
