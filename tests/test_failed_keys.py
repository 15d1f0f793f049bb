"""Unknown keys per client address: a flood of wrong keys neither keeps the database busy
nor locks out valid keys (issue 12 item 8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.auth import keys
from memoryd_server.config import Settings
from memoryd_server.ratelimit import FailedKeyLimiter

from .conftest import ServerThread, TenantKeys, assert_status


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_address_gets_ten_seconds_of_failures_then_queues() -> None:
    clock = Clock()
    limiter = FailedKeyLimiter(2.0, clock=clock)
    for _ in range(20):  # burst: ten times the rate
        assert not limiter.exhausted("ipv4:10.0.0.7")
        limiter.failed("ipv4:10.0.0.7")
    assert limiter.exhausted("ipv4:10.0.0.7")
    assert not limiter.exhausted("ipv4:10.0.0.8")  # another address has its own
    clock.now += 0.5
    assert not limiter.exhausted("ipv4:10.0.0.7")


def test_an_exhausted_address_gets_one_lookup_at_a_time() -> None:
    limiter = FailedKeyLimiter(1.0)
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    async def lookup(address: str) -> None:
        async with limiter.turn(address):
            running[address] = running.get(address, 0) + 1
            most[address] = max(most.get(address, 0), running[address])
            await asyncio.sleep(0.01)
            running[address] -= 1

    async def flood() -> None:
        await asyncio.gather(*(lookup(f"ipv4:10.0.0.{i % 2}") for i in range(20)))

    asyncio.run(flood())
    assert most == {"ipv4:10.0.0.0": 1, "ipv4:10.0.0.1": 1}
    assert not limiter._turns


@pytest.fixture(scope="module")
def strict_server(test_settings: Settings, auth_server: ServerThread) -> Iterator[ServerThread]:
    """Auth on, one unknown key per second (ten at once), keys cached for half a second."""
    del auth_server  # its migrations made the tables
    server = ServerThread(
        test_settings.replace(auth="on", auth_failures_per_second=1.0, auth_cache_seconds=0.5)
    )
    yield server
    server.stop()


def _get(stub: conversation_pb2_grpc.ConversationServiceStub, secret: str) -> None:
    stub.ListConversations(
        pb.ListConversationsRequest(),
        metadata=(("authorization", f"Bearer {secret}"),),
        timeout=10,
    )


def test_wrong_keys_from_one_address_never_lock_out_valid_keys(
    strict_server: ServerThread, tenant: TenantKeys
) -> None:
    """Issue 12's case: the valid key's cache entry expires while the address floods."""
    with grpc.insecure_channel(strict_server.addr) as channel:
        stub = conversation_pb2_grpc.ConversationServiceStub(channel)
        _get(stub, tenant.member)  # verified once
        started = time.monotonic()
        for _ in range(40):  # four times the address's burst
            assert_status(lambda: _get(stub, keys.new_secret()), grpc.StatusCode.UNAUTHENTICATED)
        time.sleep(0.6)  # the member key's cache entry has expired
        _get(stub, tenant.member)
        _get(stub, tenant.viewer)  # never seen by this replica: looked up, in turn
        assert_status(lambda: _get(stub, keys.new_secret()), grpc.StatusCode.UNAUTHENTICATED)
        took = time.monotonic() - started
        print(f"\n40 wrong keys, then 2 valid ones, from one address: {took:.2f} s")


def test_a_flood_of_wrong_keys_from_one_address_is_queued_not_refused(
    strict_server: ServerThread, tenant: TenantKeys
) -> None:
    """Past its burst, an address's unknown keys are looked up one at a time, none refused."""
    with grpc.insecure_channel(strict_server.addr) as channel:
        stub = conversation_pb2_grpc.ConversationServiceStub(channel)
        for _ in range(10):
            assert_status(lambda: _get(stub, keys.new_secret()), grpc.StatusCode.UNAUTHENTICATED)
        calls = [
            stub.ListConversations.future(
                pb.ListConversationsRequest(),
                metadata=(("authorization", f"Bearer {keys.new_secret()}"),),
                timeout=30,
            )
            for _ in range(50)
        ]
        valid = stub.ListConversations.future(
            pb.ListConversationsRequest(), metadata=tenant.metadata("admin"), timeout=30
        )
        codes = {call.exception().code() for call in calls}  # type: ignore[union-attr]
        assert codes == {grpc.StatusCode.UNAUTHENTICATED}
        valid.result()
