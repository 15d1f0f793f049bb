"""Deadlines and cancellation: the status the client sees, and the one the access log records."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_status import rpc_status

import memoryd
from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from tests.conftest import ServerThread

from .logs import LogTail

APPEND = "/memoryd.v1.ConversationService/AppendMessages"


@pytest.fixture
def stub(memoryd_server: ServerThread) -> Iterator[pb_grpc.ConversationServiceStub]:
    with grpc.insecure_channel(memoryd_server.addr) as channel:
        yield pb_grpc.ConversationServiceStub(channel)


def _conversation(stub: pb_grpc.ConversationServiceStub, uid: str) -> str:
    created = stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid)), timeout=10
    )
    conversation_id: str = created.conversation.id
    return conversation_id


def _append(conversation_id: str) -> pb.AppendMessagesRequest:
    return pb.AppendMessagesRequest(
        conversation_id=conversation_id,
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="waits for a lock")],
    )


def _wait_for_lock_waiter(db: psycopg.Connection[Any]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None and row[0] > 0:
            return
        time.sleep(0.02)
    pytest.fail("the append never waited for the row lock")


def test_a_call_running_at_its_deadline_is_answered_and_logged_deadline_exceeded(
    stub: pb_grpc.ConversationServiceStub, pg_uri: str, server_log: Path, uid: str
) -> None:
    """The server ends the call itself, with details, before gRPC resets the stream."""
    conversation_id = _conversation(stub, uid)
    tail = LogTail(server_log)
    with psycopg.connect(pg_uri) as blocker:
        blocker.execute("SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (conversation_id,))
        with pytest.raises(grpc.RpcError) as info:
            stub.AppendMessages(_append(conversation_id), timeout=0.5)
        blocker.rollback()
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    (event,) = tail.wait_for("rpc", rpc=APPEND)
    assert event["code"] == "DEADLINE_EXCEEDED"
    assert 450 <= event["duration_ms"] < 1000
    # The blocked statement was cancelled with the call: the append did not happen later.
    time.sleep(0.2)
    got = stub.GetConversation(pb.GetConversationRequest(conversation_id=conversation_id))
    assert got.conversation.message_count == 0


def test_a_call_the_client_cancels_is_logged_cancelled(
    stub: pb_grpc.ConversationServiceStub, pg_uri: str, server_log: Path, uid: str
) -> None:
    conversation_id = _conversation(stub, uid)
    tail = LogTail(server_log)
    with psycopg.connect(pg_uri) as blocker, psycopg.connect(pg_uri, autocommit=True) as db:
        blocker.execute("SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (conversation_id,))
        future = stub.AppendMessages.future(_append(conversation_id), timeout=30)
        _wait_for_lock_waiter(db)
        future.cancel()
        deadline = time.monotonic() + 10
        while not tail.events("rpc", rpc=APPEND) and time.monotonic() < deadline:
            time.sleep(0.05)
        blocker.rollback()
    (event,) = tail.events("rpc", rpc=APPEND)
    assert event["code"] == "CANCELLED"


def test_a_call_arriving_without_time_left_is_refused_before_any_work(
    stub: pb_grpc.ConversationServiceStub, server_log: Path, uid: str
) -> None:
    conversation_id = _conversation(stub, uid)
    tail = LogTail(server_log)
    codes = collections.Counter()
    for _ in range(50):
        try:
            stub.AppendMessages(_append(conversation_id), timeout=0.002)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                status = rpc_status.from_call(exc)  # type: ignore[arg-type]
                codes["with details"] += status is not None
    logged = collections.Counter(e["code"] for e in tail.events("rpc", rpc=APPEND))
    print(f"\n2 ms deadlines, 50 appends: client {dict(codes)}, access log {dict(logged)}")
    assert codes["CANCELLED"] == 0
    assert logged["OK"] == codes["OK"]
    got = stub.GetConversation(pb.GetConversationRequest(conversation_id=conversation_id))
    assert got.conversation.message_count == codes["OK"]


async def _flood(addr: str, conversation_id: str, seconds: float, calls: int) -> dict[str, int]:
    """``calls`` appends and context windows, 64 at a time, through the typed client."""
    codes: collections.Counter[str] = collections.Counter()
    async with memoryd.AsyncClient(addr, max_attempts=1) as client:
        room = asyncio.Semaphore(64)
        message = memoryd.NewMessage("user", "x")

        async def one(i: int) -> None:
            async with room:
                try:
                    if i % 2:
                        await client.conversations.append(
                            conversation_id, [message], timeout=seconds
                        )
                    else:
                        await client.conversations.context_window(conversation_id, timeout=seconds)
                    codes["OK"] += 1
                except memoryd.MemorydError as exc:
                    codes[exc.code.name] += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
    return dict(codes)


@pytest.mark.parametrize("timeout", [0.001, 0.005])
def test_expired_deadlines_are_deadline_exceeded_never_cancelled(
    memoryd_server: ServerThread, stub: pb_grpc.ConversationServiceStub, uid: str, timeout: float
) -> None:
    """Issue 12's load: 2,000 calls with 1 ms (and 5 ms) deadlines, 64 at a time."""
    conversation_id = _conversation(stub, uid)
    codes = asyncio.run(_flood(memoryd_server.addr, conversation_id, timeout, 2000))
    print(f"\n{timeout * 1000:g} ms deadlines: {codes}")
    assert set(codes) <= {"OK", "DEADLINE_EXCEEDED"}, codes
