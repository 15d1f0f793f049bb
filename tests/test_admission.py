"""Admission gates on their own: slots, the queue, refusals, and callers that go away."""

from __future__ import annotations

import asyncio
import time

import pytest

from memoryd_server.admission import Gate, LoopLag, method_class
from memoryd_server.errors import DeadlineExceeded, Overloaded


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("/memoryd.v1.ConversationService/AppendMessages", "write"),
        ("/memoryd.v1.ConversationService/GetContextWindow", "read"),
        ("/memoryd.v1.ConversationService/ListMessages", "read"),
        ("/memoryd.v1.ConversationService/SearchMessages", "search"),
        ("/memoryd.v1.MemoryService/SearchMemories", "search"),
        ("/memoryd.v1.MemoryService/BatchCreateMemories", "batch"),
        ("/memoryd.v1.MemoryService/UpdateMemory", "write"),
        ("/memoryd.v1.AdminService/ListTenants", "admin"),
    ],
)
def test_method_class(method: str, expected: str) -> None:
    assert method_class(method) == expected


def test_slots_then_queue_then_refusal_with_a_retry_delay() -> None:
    async def run() -> None:
        gate = Gate(limit=2, queue=1, max_wait=10.0)
        await gate.enter(None, 0.1)
        await gate.enter(None, 0.1)
        queued = asyncio.create_task(gate.enter(None, 0.1))
        await asyncio.sleep(0)
        assert (gate.running, gate.queued) == (2, 1)
        with pytest.raises(Overloaded) as info:
            await gate.enter(None, 0.1)
        assert info.value.retry_after is not None
        assert info.value.retry_after > 0
        gate.leave()  # the slot passes to the queued call
        await queued
        assert (gate.running, gate.queued) == (2, 0)
        gate.leave()
        gate.leave()
        assert gate.running == 0

    asyncio.run(run())


def test_a_call_waits_in_the_queue_at_most_max_wait() -> None:
    async def run() -> float:
        gate = Gate(limit=1, queue=5, max_wait=0.05)
        await gate.enter(None, None)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Overloaded, match="no slot freed in time"):
            await gate.enter(None, None)
        assert gate.queued == 0  # the refused call left the queue
        return loop.time() - start

    assert 0.04 <= asyncio.run(run()) < 1.0


def test_a_deadline_shorter_than_the_running_time_is_deadline_exceeded() -> None:
    async def run() -> None:
        gate = Gate(limit=1, queue=5, max_wait=10.0)
        with pytest.raises(DeadlineExceeded, match="recent running time"):
            await gate.enter(0.05, 0.2)
        assert gate.running == 0
        await gate.enter(0.5, 0.2)  # enough time
        # It could run in time, but not after the call ahead: it queues only
        # while it still has its method's time left, then is worth retrying later.
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(Overloaded, match="no slot freed in time"):
            await gate.enter(0.3, 0.2)
        assert loop.time() - start < 0.2

    asyncio.run(run())


def test_a_cancelled_waiter_gives_up_its_place_and_a_handed_slot() -> None:
    """A caller that goes away while queued, even just as a slot reaches it, loses no slot."""

    async def run() -> None:
        gate = Gate(limit=1, queue=5, max_wait=10.0)
        await gate.enter(None, None)
        first = asyncio.create_task(gate.enter(None, None))
        second = asyncio.create_task(gate.enter(None, None))
        await asyncio.sleep(0)
        gate.leave()  # hands the slot to first...
        first.cancel()  # ...which goes away before it runs: the slot passes on to second
        await second
        assert first.cancelled()
        assert (gate.running, gate.queued) == (1, 0)
        gate.leave()
        assert gate.running == 0

    asyncio.run(run())


def test_a_lagging_loop_stops_queueing() -> None:
    async def run() -> None:
        lag = LoopLag(max_lag=0.02)
        gate = Gate(limit=2, queue=5, max_wait=10.0, lag=lag)
        lag.lag = 0.05  # as after some ticks 50 ms late
        await gate.enter(None, 0.01)
        await gate.enter(None, 0.01)  # the limit still holds
        with pytest.raises(Overloaded, match="behind"):
            await gate.enter(None, 0.01)
        assert gate.queued == 0

    asyncio.run(run())


def test_loop_lag_measures_a_blocked_loop() -> None:
    """A loop blocked for 100 ms at a time is behind a 20 ms limit; it catches up after."""

    async def run() -> tuple[bool, bool]:
        lag = LoopLag(max_lag=0.02)
        task = asyncio.create_task(lag.run())
        await asyncio.sleep(0.05)
        for _ in range(5):
            time.sleep(0.1)  # noqa: ASYNC251 - blocking the loop is the point
            await asyncio.sleep(0)
        await asyncio.sleep(0.02)
        behind = lag.behind
        await asyncio.sleep(1.0)
        task.cancel()
        return behind, lag.behind

    behind, later = asyncio.run(run())
    assert behind
    assert not later
