"""SearchMessages: past turns found by meaning, words or both, across conversations."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd.v1 import search_pb2 as spb
from tests.conftest import ServerThread, TenantKeys, assert_status, create_tenant_keys
from tests.embedding_servers import LOCAL_MODEL
from tests.test_server_embeddings import embed_server  # noqa: F401 - the shared fixture

USER, ASSISTANT = pb.MESSAGE_ROLE_USER, pb.MESSAGE_ROLE_ASSISTANT


@pytest.fixture
def keys(pg_uri: str, embed_server: ServerThread) -> TenantKeys:  # noqa: F811
    del embed_server
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"m-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def stub(embed_server: ServerThread) -> Iterator[conversation_pb2_grpc.ConversationServiceStub]:  # noqa: F811
    with grpc.insecure_channel(embed_server.addr) as channel:
        yield conversation_pb2_grpc.ConversationServiceStub(channel)


class Chats:
    def __init__(self, stub: conversation_pb2_grpc.ConversationServiceStub, keys: TenantKeys):
        self.stub = stub
        self.metadata = keys.metadata()

    def append(
        self, conversation: str, *turns: tuple[int, str], user: str = "u1", app: str = "travel"
    ) -> list[pb.Message]:
        request = pb.AppendMessagesRequest(
            conversation_id=conversation,
            create_if_missing=True,
            conversation=pb.Conversation(user_id=user, app_name=app),
            messages=[pb.Message(role=role, content=text) for role, text in turns],
        )
        return list(self.stub.AppendMessages(request, metadata=self.metadata).messages)

    def search(self, **fields: Any) -> pb.SearchMessagesResponse:
        request = pb.SearchMessagesRequest(**fields)
        return self.stub.SearchMessages(request, metadata=self.metadata)

    def wait_embedded(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` messages are found by vector (the embedder runs after appends)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.search(query_text="anything", mode=spb.SEARCH_MODE_VECTOR, top_k=100)
            if len(found.results) >= count:
                return
            time.sleep(0.1)
        pytest.fail(f"fewer than {count} messages embedded after {timeout} s")


@pytest.fixture
def chats(stub: conversation_pb2_grpc.ConversationServiceStub, keys: TenantKeys) -> Chats:
    return Chats(stub, keys)


def test_messages_are_embedded_soon_after_the_append_and_found_by_meaning(chats: Chats) -> None:
    started = time.monotonic()
    chats.append(
        "trip-1",
        (USER, "My dog Rex loves running on the beach"),
        (ASSISTANT, "Then a seaside hotel that accepts animals it is"),
    )
    chats.append("work-1", (USER, "Draft the quarterly budget memo"), user="u2", app="office")
    chats.wait_embedded(3)
    lag = time.monotonic() - started
    assert lag < 5, lag
    found = chats.search(query_text="which pet does the user have?", top_k=1)
    assert found.mode == spb.SEARCH_MODE_HYBRID
    assert found.embedding_model == LOCAL_MODEL
    assert found.results[0].message.content == "My dog Rex loves running on the beach"
    assert found.results[0].message.conversation_id == "trip-1"
    assert found.results[0].message.seq == 1


def test_filters_by_conversation_user_app_role_and_time(chats: Chats) -> None:
    first = chats.append("c-a", (USER, "book a table for two at the ramen place"))
    chats.append(
        "c-b",
        (USER, "book a table at the sushi bar"),
        (ASSISTANT, "booked the table"),
        user="u2",
        app="dining",
    )
    chats.wait_embedded(3)

    def contents(**filter_fields: Any) -> set[str]:
        found = chats.search(query_text="book a table", filter=pb.MessageFilter(**filter_fields))
        return {r.message.content for r in found.results}

    assert contents() == {
        "book a table for two at the ramen place",
        "book a table at the sushi bar",
        "booked the table",
    }
    assert contents(conversation_ids=["c-a"]) == {"book a table for two at the ramen place"}
    assert contents(user_id="u2") == {"book a table at the sushi bar", "booked the table"}
    assert contents(app_name="dining", roles=[ASSISTANT]) == {"booked the table"}
    assert contents(create_time_end=first[0].create_time) == set()
    assert contents(create_time_start=first[0].create_time) != set()


def test_text_mode_finds_messages_not_yet_embedded_and_websearch_is_strict(chats: Chats) -> None:
    chats.append("c-t", (USER, "Remind me to renew the passport in March"))
    found = chats.search(query_text="When should I renew my passport?", mode=spb.SEARCH_MODE_TEXT)
    assert [r.message.content for r in found.results] == [
        "Remind me to renew the passport in March"
    ]
    assert found.results[0].text_rank == 1
    strict = chats.search(
        query_text="renew my passport soon",
        mode=spb.SEARCH_MODE_TEXT,
        text_match=spb.TEXT_MATCH_WEBSEARCH,
    )
    assert list(strict.results) == []


def test_bad_requests(chats: Chats) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert_status(chats.search, invalid, field="query_embedding")
    assert_status(lambda: chats.search(query_text="x", top_k=101), invalid, field="top_k")
    assert_status(
        lambda: chats.search(query_text="x", filter=pb.MessageFilter(roles=[0])),
        invalid,
        field="filter.roles[0]",
    )
    many = [f"c{i}" for i in range(101)]
    assert_status(
        lambda: chats.search(query_text="x", filter=pb.MessageFilter(conversation_ids=many)),
        invalid,
        field="filter.conversation_ids",
    )
    assert_status(
        lambda: chats.search(
            query_text="x", filter=pb.MessageFilter(conversation_ids=["bad id\x00"])
        ),
        invalid,
        field="filter.conversation_ids[0]",
    )
    assert_status(
        lambda: chats.search(query_text="x", filter=pb.MessageFilter(user_id="ü" * 257)),
        invalid,
        field="filter.user_id",
    )
    assert_status(
        lambda: chats.search(query_embedding=[1.0, 2.0]), invalid, field="query_embedding"
    )


def test_tenants_never_see_each_others_messages(
    chats: Chats, stub: conversation_pb2_grpc.ConversationServiceStub, pg_uri: str
) -> None:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        other = Chats(stub, create_tenant_keys(conn, f"y-{uuid.uuid4().hex[:12]}"))
    chats.append("secret", (USER, "the vault code is under the blue lamp"))
    chats.wait_embedded(1)
    for mode in (spb.SEARCH_MODE_VECTOR, spb.SEARCH_MODE_TEXT, spb.SEARCH_MODE_HYBRID):
        assert list(other.search(query_text="vault code blue lamp", mode=mode).results) == []
        assert len(chats.search(query_text="vault code blue lamp", mode=mode).results) == 1
