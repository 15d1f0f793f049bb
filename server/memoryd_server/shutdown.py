"""Graceful shutdown: calls already running finish, calls arriving meanwhile get UNAVAILABLE.

gRPC's own ``server.stop(grace)`` lets running handlers finish, but it also
kills every call that reached the server and was not yet handed to a handler
(under load, most of those in flight), and its clients see CANCELLED, which
they do not retry. So memoryd first drains: the server keeps taking calls and
answers each new one UNAVAILABLE at once (before any work; clients retry it
elsewhere) while the running ones finish; only then does gRPC stop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import structlog

from memoryd_server.errors import STATUS_DETAILS_KEY, Unavailable, to_status
from memoryd_server.interceptors import Behavior, Continuation, rewrap

# Once no call runs, how long no new call must arrive before gRPC stops (the
# calls queued in gRPC at the signal are handed out and refused meanwhile),
# and the longest that wait may take when clients keep retrying. After that,
# a shorter spell will do, for as long again: clients retrying in step leave
# one between their bursts, and a stop inside a burst cancels all of it.
QUIET_SECONDS = 0.05
SHORT_QUIET_SECONDS = 0.01
MAX_QUIET_WAIT_SECONDS = 1.0
# A worker that waited for the others to drain looks for quiet again, briefly
# (the workers' stops stay that close together).
RELEASED_PATIENCE_SECONDS = 0.1
# How often the quiet spell is checked, and how much later than asked a check
# may wake before the loop counts as stalled.
QUIET_POLL_SECONDS = SHORT_QUIET_SECONDS / 2
STALL_SECONDS = SHORT_QUIET_SECONDS

# Health checks answer NOT_SERVING while draining; reflection streams are long-lived.
UNCOUNTED_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


class Drain(grpc.aio.ServerInterceptor):
    """Counts running calls; once ``start()`` is called, refuses new ones with UNAVAILABLE."""

    def __init__(self) -> None:
        self.draining = False
        self.running = 0
        self._last_call = 0.0
        # How the last quiet wait went (logged on shutdown): whether it found a
        # quiet spell, and how often the loop stalled meanwhile.
        self.quiet = False
        self.stalls = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        """From now on every new call is refused."""
        self.draining = True

    async def wait_idle(self, seconds: float, *, patience: float = MAX_QUIET_WAIT_SECONDS) -> bool:
        """True once no call runs and none has arrived for a moment; False after ``seconds``.

        The quiet spell is sought for ``patience``, then a shorter one for as long.
        """
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        start = loop.time()
        quiet_until = min(until, start + 2 * patience)
        # Quiet is measured on a responsive loop only. Calls reach gRPC even
        # while this process gets no CPU (several workers share few cores); they
        # wait there unseen, and a stop then kills them (CANCELLED: issue 12).
        # So a stalled loop restarts the quiet spell, and the calls that queued
        # meanwhile are handed out (and refused) before gRPC stops.
        quiet_since = max(self._last_call, loop.time())
        self.quiet, self.stalls = False, 0
        while loop.time() < quiet_until:
            asked = loop.time()
            await asyncio.sleep(QUIET_POLL_SECONDS)
            now = loop.time()
            if now - asked > QUIET_POLL_SECONDS + STALL_SECONDS:
                self.stalls += 1
                quiet_since = now
            quiet_since = max(quiet_since, self._last_call)
            needed = QUIET_SECONDS if now < start + patience else SHORT_QUIET_SECONDS
            if now - quiet_since >= needed:
                self.quiet = True
                break
        return self.running == 0

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(UNCOUNTED_PREFIXES):
            return handler

        def wrap(behavior: Behavior, _: bool) -> Behavior:
            async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                self._last_call = asyncio.get_running_loop().time()
                if self.draining:
                    # Seen by the access log, which reports this call after it ends.
                    structlog.contextvars.bind_contextvars(unavailable="shutting_down")
                    error = Unavailable("the server is shutting down; retry")
                    code, message, details = to_status(error)
                    return await context.abort(
                        code, message, trailing_metadata=((STATUS_DETAILS_KEY, details),)
                    )
                self.running += 1
                self._idle.clear()
                try:
                    return await behavior(request, context)
                finally:
                    self.running -= 1
                    if self.running == 0:
                        self._idle.set()

            return counted

        return rewrap(handler, wrap)
