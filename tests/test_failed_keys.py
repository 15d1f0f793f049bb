"""Unknown keys per client address: a flood of wrong keys cannot keep the database busy."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.auth import keys
from memoryd_server.config import Settings
from memoryd_server.errors import ResourceExhausted
from memoryd_server.ratelimit import FailedKeyLimiter

from .conftest import ServerThread, TenantKeys, assert_status


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_address_gets_ten_seconds_of_failures_then_waits() -> None:
    clock = Clock()
    limiter = FailedKeyLimiter(2.0, clock=clock)
    for _ in range(20):  # burst: ten times the rate
        limiter.check("ipv4:10.0.0.7")
        limiter.failed("ipv4:10.0.0.7")
    with pytest.raises(ResourceExhausted) as info:
        limiter.check("ipv4:10.0.0.7")
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.check("ipv4:10.0.0.8")  # another address has its own
    clock.now += 0.5
    limiter.check("ipv4:10.0.0.7")


@pytest.fixture(scope="module")
def strict_server(test_settings: Settings, auth_server: ServerThread) -> Iterator[ServerThread]:
    """A server with auth on that allows one unknown key per second (ten at once)."""
    del auth_server  # its migrations made the tables
    server = ServerThread(test_settings.replace(auth="on", auth_failures_per_second=1.0))
    yield server
    server.stop()


def _get(stub: conversation_pb2_grpc.ConversationServiceStub, secret: str) -> None:
    stub.ListConversations(
        pb.ListConversationsRequest(), metadata=(("authorization", f"Bearer {secret}"),)
    )


def test_wrong_keys_from_one_address_are_refused_without_a_lookup(
    strict_server: ServerThread, tenant: TenantKeys
) -> None:
    with grpc.insecure_channel(strict_server.addr) as channel:
        stub = conversation_pb2_grpc.ConversationServiceStub(channel)
        _get(stub, tenant.member)  # verified before the flood: cached
        for _ in range(10):
            assert_status(lambda: _get(stub, keys.new_secret()), grpc.StatusCode.UNAUTHENTICATED)
        err = assert_status(
            lambda: _get(stub, keys.new_secret()),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            message="too many unknown API keys from this address",
        )
        assert "retry in" in (err.details() or "")
        _get(stub, tenant.member)  # a cached key still works
        # A valid key not yet cached waits with the rest of this address...
        assert_status(lambda: _get(stub, tenant.viewer), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # ...for about a second.
        codes = []
        for _ in range(30):
            time.sleep(0.1)
            try:
                _get(stub, tenant.viewer)
            except grpc.RpcError as exc:
                codes.append(exc.code())
            else:
                break
        else:
            pytest.fail("the address never got another lookup")
        assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
