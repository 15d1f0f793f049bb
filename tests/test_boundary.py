"""The boundary composes its layers once per method handler, outermost first, over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from memoryd_server.boundary import Boundary
from memoryd_server.interceptors import Behavior, Continuation, rewrap

ECHO = "/test.Echo/Say"
OTHER = "/test.Echo/Shout"
# Raw bytes both ways: no serializers, so the layers see exactly what was sent.
Stub = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


class Tagging(grpc.aio.ServerInterceptor):
    """Appends its name to the response, and counts how often it wrapped a handler."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.wraps: list[str] = []

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        assert handler is not None
        self.wraps.append(handler_call_details.method)

        def wrap(behavior: Behavior, _: bool) -> Behavior:
            async def tagged(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
                response: bytes = await behavior(request + b">" + self.name.encode(), context)
                return response + b"<" + self.name.encode()

            return tagged

        return rewrap(handler, wrap)


async def _echo(request: bytes, _: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b"[" + request + b"]"


def _serve_and_call(layers: list[Tagging], calls: Callable[[grpc.aio.Channel], Any]) -> list[bytes]:
    async def run() -> list[bytes]:
        handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
            "Say": grpc.unary_unary_rpc_method_handler(_echo),
            "Shout": grpc.unary_unary_rpc_method_handler(_echo),
        }
        server = grpc.aio.server(interceptors=[Boundary(layers)])
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Echo", handlers),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                results: list[bytes] = await calls(channel)
                return results
        finally:
            await server.stop(None)

    return asyncio.run(run())


def test_layers_wrap_once_per_method_outermost_first() -> None:
    outer, inner = Tagging("outer"), Tagging("inner")

    async def calls(channel: grpc.aio.Channel) -> list[bytes]:
        say: Stub = channel.unary_unary(ECHO)
        shout: Stub = channel.unary_unary(OTHER)
        answers = [await say("é".encode() * 3) for _ in range(5)]
        answers += await asyncio.gather(*(shout(b"x") for _ in range(3)))
        return answers

    answers = _serve_and_call([outer, inner], calls)
    # The outer layer sees the request first and the response last.
    expected_say = b"[" + "ééé".encode() + b">outer>inner]<inner<outer"
    assert answers[:5] == [expected_say] * 5
    assert answers[5:] == [b"[x>outer>inner]<inner<outer"] * 3
    # Eight calls, two methods: each layer wrapped each method's handler once
    # (concurrent first calls may compose twice; the answers are the same).
    assert outer.wraps.count(ECHO) == 1
    assert inner.wraps.count(ECHO) == 1
    assert 1 <= outer.wraps.count(OTHER) <= 3
    assert outer.wraps == inner.wraps


def test_unknown_methods_are_left_to_grpc() -> None:
    layer = Tagging("only")

    async def calls(channel: grpc.aio.Channel) -> list[bytes]:
        try:
            missing: Stub = channel.unary_unary("/test.Echo/Missing")
            await missing(b"")
        except grpc.aio.AioRpcError as err:
            return [err.code().name.encode()]
        return [b"answered"]

    assert _serve_and_call([layer], calls) == [b"UNIMPLEMENTED"]
    assert layer.wraps == []
