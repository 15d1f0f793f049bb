"""Per-RPC interceptors: the access log, deadlines, and the error boundary that parses requests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import structlog

from memoryd_server import metrics
from memoryd_server.database import redact
from memoryd_server.errors import (
    STATUS_DETAILS_KEY,
    DeadlineExceeded,
    InvalidArgument,
    MemorydError,
    Unavailable,
    to_status,
)
from memoryd_server.request_size import RequestSizes

log = structlog.get_logger("memoryd.rpc")

# A string: grpc's classes are generic only in the type stubs.
Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]
Behavior = Callable[..., Any]


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    wrap: Callable[[Behavior, bool], Behavior],
    *,
    raw_requests: bool = False,
) -> grpc.RpcMethodHandler[Any, Any]:
    """A copy of ``handler`` whose behaviour is ``wrap(behaviour, is_stream_response)``."""
    deserializer = None if raw_requests else handler.request_deserializer
    serializer = handler.response_serializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary, False), deserializer, serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, True), deserializer, serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, False), deserializer, serializer
        )
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(
        wrap(handler.stream_stream, True), deserializer, serializer
    )


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """Logs one ``rpc`` event per call: method, status code, duration, peer."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        # Bound once per method, with the logging configured by now: through
        # the module's lazy proxy, every line rebuilt its logger first.
        rpc_log = log.bind()

        def finish(
            context: grpc.aio.ServicerContext[Any, Any],
            start: float,
            peer: str,
            error: BaseException | None,
        ) -> None:
            code, seconds = outcome(context, error), time.perf_counter() - start
            rpc_log.info(
                "rpc", rpc=method, code=code, duration_ms=round(seconds * 1000, 3), peer=peer
            )
            tenant = structlog.contextvars.get_contextvars().get("tenant")  # bound by auth
            metrics.call_finished(method, tenant, code, seconds)

        def wrap(behavior: Behavior, streams: bool) -> Behavior:
            async def logged(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                start, peer = time.perf_counter(), context.peer()
                metrics.call_started(method)
                error: BaseException | None = None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, peer, error)

            async def logged_stream(
                request: Any,
                context: grpc.aio.ServicerContext[Any, Any],
            ) -> AsyncIterator[Any]:
                # Stream handlers are async generators or coroutines that call write().
                # The peer is read first: a stream closed by the client (a
                # reflection client going away) may end here after grpc freed
                # the call, and asking it for its peer then crashed the process.
                start, peer = time.perf_counter(), context.peer()
                metrics.call_started(method)
                error: BaseException | None = None
                try:
                    result = behavior(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:
                        await result
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    finish(context, start, peer, error)

            return logged_stream if streams else logged

        return rewrap(handler, wrap)


def log_unavailable(exc: Exception, method: str) -> None:
    """Log why a call is answered UNAVAILABLE: the client is told only to retry."""
    if not isinstance(exc, Unavailable):
        return
    cause = exc.__cause__
    text = str(cause).strip() if cause is not None else ""
    log.warning(
        "unavailable",
        rpc=method,
        cause=type(cause).__name__ if cause is not None else None,
        sqlstate=getattr(cause, "sqlstate", None),
        detail=redact(text.splitlines()[0])[:300] if text else None,
    )


def _deadline_passed(context: grpc.aio.ServicerContext[Any, Any]) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


def outcome(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    """The status the client saw, as a code name, once the handler has ended with ``error``.

    A handler cancelled by gRPC ended because its client went away: the
    deadline passed (DEADLINE_EXCEEDED) or the client cancelled (CANCELLED),
    including when ``server.stop`` cancels calls after the grace. An answer
    produced after the deadline never reached the client either.
    """
    if isinstance(error, asyncio.CancelledError):
        return "DEADLINE_EXCEEDED" if _deadline_passed(context) else "CANCELLED"
    code = context.code()
    if code is None:
        # An exception that nothing turned into a status: grpc answers UNKNOWN.
        code = grpc.StatusCode.UNKNOWN if error is not None else grpc.StatusCode.OK
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    if name == "OK" and _deadline_passed(context):
        return "DEADLINE_EXCEEDED"
    return name


# How long before gRPC's own deadline timer a call is ended with DEADLINE_EXCEEDED.
# At its deadline, gRPC resets the stream (RST_STREAM CANCEL), and a client
# whose own timer has not fired yet (a busy event loop, a cached clock) reports
# that as CANCELLED; trailers with DEADLINE_EXCEEDED sent first never are.
DEADLINE_MARGIN_SECONDS = 0.005


class DeadlineInterceptor(grpc.aio.ServerInterceptor):
    """Ends unary calls with DEADLINE_EXCEEDED just before their deadline.

    A call arriving with less than the margin left is refused before any
    work; a running one is cancelled (its SQL with it) and answered
    DEADLINE_EXCEEDED with the usual ``google.rpc`` details.
    """

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.unary_unary:
            return handler

        def wrap(behavior: Behavior, _: bool) -> Behavior:
            async def bounded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                remaining = context.time_remaining()
                if remaining is None:
                    return await behavior(request, context)
                budget = remaining - DEADLINE_MARGIN_SECONDS
                if budget > 0:
                    try:
                        async with asyncio.timeout(budget):
                            return await behavior(request, context)
                    except TimeoutError:
                        if context.code() is not None:  # the handler answered already
                            raise
                code, message, details = to_status(DeadlineExceeded("the call's deadline passed"))
                return await context.abort(
                    code, message, trailing_metadata=((STATUS_DETAILS_KEY, details),)
                )

            return bounded

        return rewrap(handler, wrap)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Turns domain errors into statuses with ``google.rpc`` details.

    It also parses unary requests itself, so bytes that are not a valid
    message get INVALID_ARGUMENT instead of grpc's UNKNOWN, and a request over
    its method's size limit is refused before it is parsed (``sizes``). Unexpected
    exceptions are logged with their traceback and returned as INTERNAL with
    a generic message.
    """

    def __init__(self, sizes: RequestSizes | None = None) -> None:
        self._sizes = sizes

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is not None and handler.stream_unary:
            return rewrap(handler, lambda behavior, _: _translating(behavior, method))
        if handler is None or not handler.unary_unary:
            return handler
        parse = handler.request_deserializer
        sizes = self._sizes

        def wrap(behavior: Behavior, _: bool) -> Behavior:
            async def guarded(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    with sizes.admit(method, len(raw)) if sizes else contextlib.nullcontext():
                        request = _parse(parse, raw, method)
                        return await behavior(request, context)
                except Exception as exc:
                    if context.code() is not None:  # already aborted by the handler
                        raise
                    if not isinstance(exc, MemorydError):
                        log.exception("unhandled_error", rpc=method)
                    log_unavailable(exc, method)
                    code, message, details = to_status(exc)
                    await context.abort(
                        code, message, trailing_metadata=((STATUS_DETAILS_KEY, details),)
                    )

            return guarded

        return rewrap(handler, wrap, raw_requests=True)


def _translating(behavior: Behavior, method: str) -> Behavior:
    """``behavior`` (a client-streaming handler) with its errors turned into statuses."""

    async def guarded(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(requests, context)
        except Exception as exc:
            if context.code() is not None:
                raise
            if not isinstance(exc, MemorydError):
                log.exception("unhandled_error", rpc=method)
            log_unavailable(exc, method)
            code, message, details = to_status(exc)
            await context.abort(code, message, trailing_metadata=((STATUS_DETAILS_KEY, details),))

    return guarded


def _parse(parse: Callable[[bytes], Any] | None, raw: bytes, method: str) -> Any:
    if parse is None:
        return raw
    try:
        return parse(raw)
    except Exception as exc:
        name = method.rsplit("/", 1)[-1] + "Request"
        raise InvalidArgument("request", f"the bytes are not a valid {name} message") from exc
