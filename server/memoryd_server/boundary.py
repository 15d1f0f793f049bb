"""The per-call boundary: memoryd's layers composed once per method, not once per call.

As a chain of grpc.aio interceptors, every layer (access log, drain,
admission, deadline, auth, errors) re-wrapped the method handler on every
call: Python CPU per call per layer, paid by refused calls too (issue 11).
``Boundary`` is the server's one interceptor: the first call of a method has
each layer wrap its handler, outermost last, and later calls get the cached
result, so a call costs one dictionary look-up before its handler runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import grpc
import grpc.aio

from memoryd_server.interceptors import Continuation


class _MethodOnly(NamedTuple):
    """The call details a layer is given while composing: the method, no metadata.

    A layer must read anything else about a call (its metadata, its peer)
    from the servicer context inside the handler it returns, since that
    handler serves every later call of the method.
    """

    method: str
    invocation_metadata: None = None


class Boundary(grpc.aio.ServerInterceptor):
    """Runs ``layers`` (outermost first) around each method handler, composed once per method.

    Each layer is an interceptor whose wrapping depends on the method alone;
    the composed handler is cached beside the handler it wraps, and rebuilt
    only if gRPC resolves the method to another handler.
    """

    def __init__(self, layers: Sequence[grpc.aio.ServerInterceptor]) -> None:
        self._layers = tuple(reversed(layers))  # innermost first: the order they wrap in
        self._composed: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._composed.get(method)
        if cached is not None and cached[0] is handler:
            composed: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return composed
        composed = await self._compose(method, handler)
        self._composed[method] = (handler, composed)
        return composed

    async def _compose(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        details: Any = _MethodOnly(method)
        for layer in self._layers:
            wrapped = await layer.intercept_service(_returning(handler), details)
            assert wrapped is not None, "a layer wraps a handler; it never drops one"
            handler = wrapped
        return handler


def _returning(handler: grpc.RpcMethodHandler[Any, Any]) -> Continuation:
    async def continuation(_: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return handler

    return continuation
