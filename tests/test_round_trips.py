"""Database round trips per read RPC, counted by a proxy on the database's socket."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from psycopg import sql
from psycopg.rows import tuple_row

from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import conversation_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import search_pb2 as spb
from memoryd_server import database, reads
from memoryd_server.config import Settings
from tests.conftest import ServerThread
from tests.roundtrips import RoundTripProxy

# Searches note their hits for a flush about once a second, which makes round
# trips of its own; one call of CALLS may share its window with one.
CALLS = 10


@pytest.fixture(scope="module")
def counted(pg_uri: str, test_settings: Settings, server_log: Path) -> Iterator[
    tuple[RoundTripProxy, grpc.Channel]
]:  # fmt: skip
    """A memoryd whose every database byte passes the proxy, and a channel to it."""
    del server_log
    # A short directory: a Unix socket's path is limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="rt-", dir="/tmp") as tmp:
        # The maintenance pool's background work (message embedding, expiry) is
        # not any call's: its connections are relayed uncounted.
        proxy = RoundTripProxy(
            pg_uri, Path(tmp), ignore_application=f"memoryd-{database.MAINTENANCE_ROLE}"
        )
        # No health rounds or expiry sweeps during the count.
        settings = test_settings.replace(
            database_url=proxy.uri, health_interval_seconds=600, expiry_interval_seconds=600
        )
        server = ServerThread(settings)
        try:
            # The pool's own start-up round trips are over before anything is counted.
            _wait_until_quiet(proxy)
            with grpc.insecure_channel(server.addr) as channel:
                yield proxy, channel
        finally:
            server.stop()
            proxy.close()


def _wait_until_quiet(proxy: RoundTripProxy, quiet: float = 1.0, limit: float = 30.0) -> None:
    """Return once no round trip passed the proxy for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last, since = proxy.count(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the server never went quiet"
        time.sleep(0.05)
        if proxy.count() != last:
            last, since = proxy.count(), time.monotonic()


def per_call(proxy: RoundTripProxy, call: Callable[[], Any]) -> list[int]:
    """Round trips of each of CALLS calls (after one to warm the pool up)."""
    call()
    counts = []
    for _ in range(CALLS):
        before = proxy.count()
        call()
        counts.append(proxy.count() - before)
    return counts


def test_read_rpcs_take_one_round_trip(counted, uid):
    """Get*, List* and SearchMemories each send one message and wait once."""
    proxy, channel = counted
    conversations = conversation_pb2_grpc.ConversationServiceStub(channel)
    memories = memory_pb2_grpc.MemoryServiceStub(channel)
    conv = f"rt-{uid}"
    conversations.AppendMessages(
        cpb.AppendMessagesRequest(
            conversation_id=conv,
            create_if_missing=True,
            messages=[
                cpb.Message(role=cpb.MESSAGE_ROLE_SYSTEM, content="rules", token_count=5),
                cpb.Message(role=cpb.MESSAGE_ROLE_USER, content="héllo", token_count=2),
            ],
        )
    )
    vector = [1.0] + [0.0] * 383
    # More memories than the search's candidate depth (20), or it falls back to
    # an exact search in a second round trip, as it should when the index
    # yields too few.
    created = memories.BatchCreateMemories(
        pb.BatchCreateMemoriesRequest(
            memories=[
                pb.Memory(
                    namespace=["rt", uid],
                    key="k" if i == 0 else "",
                    content="round trip" if i == 0 else f"other {i}",
                    embedding=[1.0, i / 10] + [0.0] * 382,
                )
                for i in range(30)
            ]
        )
    )
    first = created.memory_ids[0]
    now = int(time.time()) + 60
    window = cpb.GetContextWindowRequest(
        conversation_id=conv, include_system_messages=True, max_tokens=100
    )
    search = pb.SearchMemoriesRequest(query_embedding=vector, top_k=3)
    counts = {
        "GetConversation": per_call(
            proxy,
            lambda: conversations.GetConversation(cpb.GetConversationRequest(conversation_id=conv)),
        ),
        "GetContextWindow": per_call(proxy, lambda: conversations.GetContextWindow(window)),
        "SearchMemories": per_call(proxy, lambda: memories.SearchMemories(search)),
        "GetMemory": per_call(
            proxy, lambda: memories.GetMemory(pb.GetMemoryRequest(memory_id=first))
        ),
        "GetMemory by key": per_call(
            proxy,
            lambda: memories.GetMemory(pb.GetMemoryRequest(namespace=["rt", uid], key="k")),
        ),
        "GetMemoryHistory": per_call(
            proxy, lambda: memories.GetMemoryHistory(pb.GetMemoryHistoryRequest(memory_id=first))
        ),
        "GetMemoryAt": per_call(
            proxy,
            lambda: memories.GetMemoryAt(
                pb.GetMemoryAtRequest(memory_id=first, time=timestamp_pb2.Timestamp(seconds=now))
            ),
        ),
        "ListMemories": per_call(
            proxy,
            lambda: memories.ListMemories(
                pb.ListMemoriesRequest(filter=pb.MemoryFilter(namespace_prefix=["rt", uid]))
            ),
        ),
        "ListNamespaces": per_call(
            proxy, lambda: memories.ListNamespaces(pb.ListNamespacesRequest(prefix=["rt"]))
        ),
        "ListConversations": per_call(
            proxy,
            lambda: conversations.ListConversations(cpb.ListConversationsRequest(page_size=5)),
        ),
        "SearchMessages": per_call(
            proxy,
            lambda: conversations.SearchMessages(
                cpb.SearchMessagesRequest(
                    query_text="héllo",
                    mode=spb.SEARCH_MODE_TEXT,
                    filter=cpb.MessageFilter(conversation_ids=[conv]),
                )
            ),
        ),
        "ListMessages": per_call(
            proxy,
            lambda: conversations.ListMessages(cpb.ListMessagesRequest(conversation_id=conv)),
        ),
    }
    assert conversations.GetContextWindow(window).total_tokens == 7
    assert memories.SearchMemories(search).results[0].memory.content == "round trip"
    found = conversations.SearchMessages(
        cpb.SearchMessagesRequest(query_text="héllo", mode=spb.SEARCH_MODE_TEXT)
    )
    assert [r.message.content for r in found.results] == ["héllo"]
    assert {name: c.count(1) >= CALLS - 1 for name, c in counts.items()} == dict.fromkeys(
        counts, True
    ), counts
    assert {name: min(c) for name, c in counts.items()} == dict.fromkeys(counts, 1), counts


def test_a_write_sends_begin_with_its_settings(counted):
    """A write transaction's BEGIN travels with the tenant's settings; statements and COMMIT
    count apart (the counter itself is tested here too: more than one wait per call).

    CreateConversation: BEGIN + settings, the check that its id is free, the insert,
    COMMIT. It took five before BEGIN stopped going alone.
    """
    proxy, channel = counted
    conversations = conversation_pb2_grpc.ConversationServiceStub(channel)
    counts = per_call(
        proxy,
        lambda: conversations.CreateConversation(
            cpb.CreateConversationRequest(conversation=cpb.Conversation(title="ünïcode"))
        ),
    )
    assert min(counts) == 4, counts


def test_reads_survive_psycopg_deallocating_prepared_statements(
    test_settings: Settings, server_log: Path, uid: str
) -> None:
    """A read's prepared statements are made again after psycopg's DEALLOCATE ALL.

    psycopg clears its own prepared statements (DEALLOCATE ALL) after a
    ROLLBACK on a connection where it has some; with a pool of one connection
    the writes below make it do so between two reads on the same connection.
    """
    del server_log
    server = ServerThread(test_settings.replace(pool_min_size=1, pool_max_size=1))
    try:
        with grpc.insecure_channel(server.addr) as channel:
            stub = conversation_pb2_grpc.ConversationServiceStub(channel)
            conv = stub.CreateConversation(
                cpb.CreateConversationRequest(conversation=cpb.Conversation(title=f"d-{uid}"))
            ).conversation
            get = cpb.GetConversationRequest(conversation_id=conv.id)
            assert stub.GetConversation(get).conversation.title == f"d-{uid}"
            # Enough of one write for psycopg to prepare its statements, then
            # one that fails inside its transaction (NOT_FOUND) and so rolls back.
            for i in range(6):
                stub.CreateConversation(
                    cpb.CreateConversationRequest(conversation=cpb.Conversation(title=f"{i}"))
                )
            with pytest.raises(grpc.RpcError) as err:
                stub.DeleteConversation(
                    cpb.DeleteConversationRequest(conversation_id=f"missing-{uid}")
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert stub.GetConversation(get).conversation.title == f"d-{uid}"
            window = stub.GetContextWindow(cpb.GetContextWindowRequest(conversation_id=conv.id))
            assert list(window.messages) == []
    finally:
        server.stop()


def test_a_read_whose_statement_was_prepared_unrecorded_prepares_nothing_twice(
    pg_uri: str,
) -> None:
    """A read cancelled after PostgreSQL ran its PREPARE leaves the statement unrecorded.

    Under overload, reads cancelled at their deadline did, and the next read
    on that connection failed with DuplicatePreparedStatement (INTERNAL).
    """
    query = sql.SQL("SELECT %(a)s::int + 1 AS b")

    async def twice() -> None:
        async with await psycopg.AsyncConnection.connect(pg_uri) as conn:
            assert await reads._read_on(conn, {}, [(query, {"a": 1})], tuple_row) == [[(2,)]]
            reads._prepared[conn].clear()  # as after the cancelled read
            assert await reads._read_on(conn, {}, [(query, {"a": 2})], tuple_row) == [[(3,)]]
            assert reads._prepared[conn], "the statements found prepared are known again"

    asyncio.run(twice())
