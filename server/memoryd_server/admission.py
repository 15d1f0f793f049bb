"""Admission control: bounded concurrency and queueing per method class; the excess is shed at once.

Without it, a server past its capacity takes every call: they queue for a
pooled connection, wait longer than their callers' deadlines, and the work
done for them is wasted (issue 12: goodput fell to 19-38% at 4x the
sustained rate, and health flipped as the pool's own checks timed out).

Each class of methods (reads, writes, searches, batches, admin) runs at most
``limit`` calls at once and queues at most ``queue`` more, first come first
served. A call that finds the queue full, or waits ``max_wait`` (or until
its deadline leaves only its method's running time) in vain, is answered
RESOURCE_EXHAUSTED with a ``google.rpc.RetryInfo`` and ``ErrorInfo`` reason
``Overloaded``: it did no work, so any call (a write too) may be retried
after the delay. While the event loop lags (``LoopLag``), nothing queues. A call whose remaining
deadline is shorter than its method's recent running time cannot succeed
and is answered DEADLINE_EXCEEDED before any SQL; one that could run in time
but not after the queue ahead of it is RESOURCE_EXHAUSTED, since trying
again later (or another replica) may help.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import Any

import grpc
import grpc.aio
import structlog

from memoryd_server.config import Settings
from memoryd_server.errors import (
    STATUS_DETAILS_KEY,
    DeadlineExceeded,
    MemorydError,
    Overloaded,
    to_status,
)
from memoryd_server.interceptors import Behavior, Continuation, rewrap

# Only memoryd's own services are gated: health checks must answer under any
# load (a load balancer that sees no answer takes the replica out), and
# reflection is an operator's tool.
GATED_PREFIX = "/memoryd.v1."
# Weight of the newest call in the running estimate of a method's call time:
# about the last twenty calls count.
EWMA_WEIGHT = 0.05
# The shortest retry delay sent: shorter ones make clients spin.
MIN_RETRY_SECONDS = 0.01
# How often the event loop's lag is measured, and the weight of the newest
# measure in the smoothed lag that is compared with MEMORYD_MAX_LAG_MS.
TICK_SECONDS = 0.01
LAG_WEIGHT = 0.2


class LoopLag:
    """How late the event loop runs a timer: whether the process's own CPU is the bottleneck.

    gRPC hands the event loop one new call per turn, so when turns get slow,
    calls wait inside gRPC before any interceptor sees them, and a limit on
    running calls never fills. While the loop is ``max_lag`` behind, calls
    are not queued: under overload a queued call only waits for a slot that
    the next arriving call would have filled as well, so queueing adds
    latency and no goodput. Cutting the limits instead was tried and made
    things worse: when refusals themselves keep the loop busy, fewer running
    calls does not shorten the lag, and goodput fell towards one call at a time.
    """

    def __init__(self, max_lag: float = 0.0) -> None:
        self.max_lag = max_lag  # 0: never behind
        self.lag = 0.0  # smoothed, seconds

    @property
    def behind(self) -> bool:
        return 0 < self.max_lag < self.lag

    async def run(self) -> None:
        """Measure until cancelled."""
        if self.max_lag <= 0:
            return
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(TICK_SECONDS)
            late = max(loop.time() - start - TICK_SECONDS, 0.0)
            self.lag += LAG_WEIGHT * (late - self.lag)


def method_class(method: str) -> str:
    """The class of a full method name, whose calls share one limit and queue.

    By service and verb: admin calls never wait behind agents' traffic,
    and a flood of searches (the costliest reads) does not starve appends.
    """
    service, _, name = method.rpartition("/")
    if service.endswith(".AdminService"):
        return "admin"
    if name.startswith("Search"):
        return "search"
    if name.startswith(("Batch", "Import", "Export")):
        return "batch"
    if name.startswith(("Get", "List")):
        return "read"
    return "write"


class Gate:
    """One class's slots and queue. Not thread-safe: the server's event loop owns it."""

    def __init__(
        self, *, limit: int, queue: int, max_wait: float, lag: LoopLag | None = None
    ) -> None:
        self.limit = limit
        self.lag = lag or LoopLag()
        self.queue = queue
        self.max_wait = max_wait
        self.running = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _shed(self, why: str, wait: float) -> Overloaded:
        # Jittered: clients told the same delay would come back together.
        delay = max(wait, MIN_RETRY_SECONDS) * random.uniform(1.0, 2.0)  # noqa: S311 - not crypto
        return Overloaded(
            f"the server is overloaded ({why}); retry after the delay in RetryInfo",
            retry_after=delay,
        )

    async def enter(self, remaining: float | None, expected: float | None) -> None:
        """Take a slot, waiting in the queue if allowed; raise if the call must be refused.

        ``remaining`` is the call's time left (None: no deadline), ``expected``
        its method's recent running time (None: not known yet).
        """
        budget = self._admit(remaining, expected)
        if budget is not None:
            await self._wait(budget)

    def _admit(self, remaining: float | None, expected: float | None) -> float | None:
        """None with a slot taken, or how long the call may queue; raises a refusal."""
        if remaining is not None and expected is not None and remaining < expected:
            raise DeadlineExceeded(
                f"the call's deadline ({remaining * 1000:.0f} ms left) is shorter than this"
                f" method's recent running time ({expected * 1000:.0f} ms)"
            )
        if self.running < self.limit and not self._waiters:
            self.running += 1
            return None
        # Until the calls ahead of it have run: a guess from the method's time,
        # for the retry delay only. Refusing on such a guess refused appends to
        # one busy conversation, whose time is mostly waiting for its row lock.
        wait = (expected or 0.0) * (len(self._waiters) + 1) / self.limit
        if self.lag.behind:  # queueing would only add to the wait inside gRPC
            raise self._shed(f"the server is behind by {self.lag.lag * 1000:.0f} ms", wait)
        if len(self._waiters) >= self.queue:
            raise self._shed(f"{self.running} calls running and {self.queued} queued", wait)
        budget = self.max_wait
        if remaining is not None:  # leave it the time it needs to run
            budget = min(budget, remaining - (expected or 0.0))
        return budget

    async def _wait(self, budget: float) -> None:
        """Queue for a slot for at most ``budget`` seconds."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(budget):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # handed a slot as the timer fired: keep it
            raise self._shed("no slot freed in time", budget) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot just as the call went away: pass it on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            # A timed-out or cancelled waiter is removed here, not skipped later:
            # otherwise a full queue of the dead refuses live calls.
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def leave(self) -> None:
        """Give the slot back, to the first live waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: running stays the same
                return
        self.running -= 1


def refuse(context: grpc.aio.ServicerContext[Any, Any], exc: MemorydError) -> None:
    """Answer ``exc``'s status by returning, not raising: a refusal must cost little.

    ``context.abort`` raises, and the tracing interceptor records every
    exception on its span with a formatted traceback: measured here, that
    made a refused call cost three quarters of a served one. gRPC sends the
    status set on the context and drops the (absent) response.
    """
    code, message, details = to_status(exc)
    context.set_code(code)
    context.set_details(message)
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, details),))


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Gates memoryd's unary calls by method class; see the module docstring.

    ``MEMORYD_MAX_CONCURRENT_CALLS=0`` turns it off (every call is let through).
    """

    def __init__(self, settings: Settings) -> None:
        self._limit = settings.concurrency_limit
        self.enabled = self._limit > 0
        self._queue = settings.max_queued_calls
        self._max_wait = settings.max_queue_ms / 1000
        self._gates: dict[str, Gate] = {}
        self.lag = LoopLag(settings.max_lag_ms / 1000)
        # Each method's recent running time (seconds) over the calls that succeeded:
        # calls that failed (a deadline, a lock wait cut short) say little about it.
        self.seconds: dict[str, float] = {}

    def gate(self, method: str) -> Gate:
        """The gate of ``method``'s class (made on first use)."""
        name = method_class(method)
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = Gate(
                limit=self._limit, queue=self._queue, max_wait=self._max_wait, lag=self.lag
            )
        return gate

    async def run(self) -> None:
        """Follow the event loop's lag until cancelled (the server's task list runs it)."""
        if self.enabled:
            await self.lag.run()  # returns at once if MEMORYD_MAX_LAG_MS is 0

    def _count(self, method: str, seconds: float) -> None:
        previous = self.seconds.get(method)
        self.seconds[method] = (
            seconds if previous is None else previous + EWMA_WEIGHT * (seconds - previous)
        )

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if (
            not self.enabled
            or handler is None
            or not handler.unary_unary
            or not method.startswith(GATED_PREFIX)
        ):
            return handler
        gate = self.gate(method)

        def wrap(behavior: Behavior, _: bool) -> Behavior:
            async def admitted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    await gate.enter(context.time_remaining(), self.seconds.get(method))
                except MemorydError as exc:
                    # Seen by the access log, which reports this call after it ends.
                    structlog.contextvars.bind_contextvars(shed=type(exc).__name__)
                    return refuse(context, exc)
                start = time.perf_counter()
                try:
                    response = await behavior(request, context)
                finally:
                    gate.leave()
                self._count(method, time.perf_counter() - start)
                return response

            return admitted

        return rewrap(handler, wrap)


def pending_call_limits(soft: int) -> list[tuple[str, int]]:
    """gRPC server options that make gRPC's core refuse calls the event loop cannot take up.

    The refusals above run in Python, and a Python refusal costs a third to
    two thirds of a served call's CPU (bench/overload.py): at 4x the
    sustained rate, refusing the excess alone takes more CPU than a process
    has, calls pile up inside gRPC before any of memoryd's code sees them,
    and goodput collapses. gRPC's core (C) keeps the calls that arrived but
    that the event loop has not asked for yet; past ``soft`` of them it
    refuses a new one with a probability that grows to certainty at four
    times ``soft`` (random early detection), at a cost of microseconds. Such
    a call did no work, like any other refusal, but the status gRPC's core
    sends is CANCELLED, not RESOURCE_EXHAUSTED, and it carries no RetryInfo.
    """
    if soft <= 0:
        return []
    return [
        ("grpc.server.max_pending_requests", soft),
        ("grpc.server.max_pending_requests_hard_limit", 4 * soft),
    ]
