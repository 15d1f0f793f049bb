"""Bad input is never UNAVAILABLE (issue 12 item 7): SQLSTATE classes, byte limits, text index."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import conversation_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as pb
from memoryd_server.errors import InvalidArgument, Unavailable, map_pg_errors
from tests.conftest import ServerThread, assert_status

from .logs import LogTail


@pytest.fixture
def channel(memoryd_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(memoryd_server.addr) as channel:
        yield channel


def _distinct_words(size: int) -> str:
    """``size`` bytes of words that are all different: the worst case for a tsvector."""
    words, total, i = [], 0, 0
    while total < size:
        word = format(i, "x")
        words.append(word)
        total += len(word) + 1
        i += 1
    return " ".join(words)[:size]


def test_a_namespace_too_long_in_bytes_to_index_is_invalid_argument(
    channel: grpc.Channel, uid: str
) -> None:
    """Issue 12's case: 16 segments of 128 CJK characters (6 KB; an index row holds 2.7 KB)."""
    stub = memory_pb2_grpc.MemoryServiceStub(channel)
    namespace = [uid] + ["記憶" * 64] * 15
    assert_status(
        lambda: stub.CreateMemory(
            pb.CreateMemoryRequest(memory=pb.Memory(namespace=namespace, content="x", key="k")),
            timeout=10,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="memory.namespace",
    )
    # The longest ASCII namespace and key the character limits allow still fit.
    longest = [uid + "n" * (128 - len(uid))] + ["n" * 128] * 15
    stub.CreateMemory(
        pb.CreateMemoryRequest(memory=pb.Memory(namespace=longest, content="x", key="k" * 256)),
        timeout=10,
    )


def test_a_megabyte_of_distinct_words_stores_and_its_start_is_searchable(
    channel: grpc.Channel, uid: str
) -> None:
    stub = memory_pb2_grpc.MemoryServiceStub(channel)
    content = f"zq{uid} " + _distinct_words(1_000_000)
    created = stub.CreateMemory(
        pb.CreateMemoryRequest(memory=pb.Memory(namespace=[uid], content=content)), timeout=30
    ).memory
    assert len(created.content) == len(content)
    found = stub.SearchMemories(
        pb.SearchMemoriesRequest(
            query_text=f"zq{uid}", filter=pb.MemoryFilter(namespace_prefix=[uid])
        ),
        timeout=30,
    )
    assert [r.memory.id for r in found.results] == [created.id]


def test_database_errors_map_by_sqlstate_class(pg_uri: str) -> None:
    """Real errors from PostgreSQL: data exceptions and program limits are the caller's."""
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        for query, expected in [
            ("SELECT 1 / 0", InvalidArgument),  # 22012
            ("SELECT 'abc'::int", InvalidArgument),  # 22P02
            ("SELECT to_tsvector('english', %s)", InvalidArgument),  # 54000
        ]:
            params = (_distinct_words(1_500_000),) if "%s" in query else None
            with pytest.raises(expected) as info, map_pg_errors():
                conn.execute(query, params)
            assert "SELECT" not in info.value.message
        with pytest.raises(psycopg.errors.SyntaxError), map_pg_errors():  # a bug: left as is
            conn.execute("SELEC 1")
    with psycopg.connect(pg_uri, autocommit=True) as conn, psycopg.connect(pg_uri) as killer:
        pid = conn.info.backend_pid
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(Unavailable), map_pg_errors():
            conn.execute("SELECT 1")


def test_every_unavailable_is_logged_with_its_cause(
    channel: grpc.Channel, pg_uri: str, server_log: Path, uid: str
) -> None:
    """A connection killed under a waiting append: UNAVAILABLE, and the log says why."""
    stub = conversation_pb2_grpc.ConversationServiceStub(channel)
    created = stub.CreateConversation(
        cpb.CreateConversationRequest(conversation=cpb.Conversation(user_id=uid)), timeout=10
    ).conversation
    tail = LogTail(server_log)
    outcome: dict[str, Any] = {}

    def append() -> None:
        try:
            stub.AppendMessages(
                cpb.AppendMessagesRequest(
                    conversation_id=created.id,
                    messages=[cpb.Message(role=cpb.MESSAGE_ROLE_USER, content="x")],
                ),
                timeout=30,
            )
            outcome["code"] = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            outcome["code"] = exc.code()

    with psycopg.connect(pg_uri) as blocker, psycopg.connect(pg_uri, autocommit=True) as db:
        blocker.execute("SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (created.id,))
        thread = threading.Thread(target=append)
        thread.start()
        waiter = None
        deadline = time.monotonic() + 10
        while waiter is None and time.monotonic() < deadline:
            row = db.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND pid <> pg_backend_pid()"
            ).fetchone()
            waiter = row[0] if row else None
            time.sleep(0.02)
        assert waiter is not None, "the append never waited"
        db.execute("SELECT pg_terminate_backend(%s)", (waiter,))
        thread.join(30)
        blocker.rollback()
    assert outcome["code"] == grpc.StatusCode.UNAVAILABLE
    (event,) = tail.events("unavailable")
    assert event["rpc"].endswith("/AppendMessages")
    assert event["sqlstate"] == "57P01"  # admin_shutdown: the connection was terminated
    assert event["cause"]
    assert event["detail"]
    (access,) = tail.wait_for("rpc", rpc="/memoryd.v1.ConversationService/AppendMessages")
    assert access["code"] == "UNAVAILABLE"
