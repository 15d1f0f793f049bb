"""Write answers the caller can receive (issue 12 item 1); request_id per conversation (11)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

import memoryd
from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from tests.conftest import ServerThread, assert_status

KIB = 1024
# Issue 12's case: 100 messages of 60 KiB, 6 MB in all, over gRPC's 4 MiB default.
BIG = [f"{i:04d}" + "x" * (60 * KIB - 4) for i in range(100)]


@pytest.fixture
def stub(memoryd_server: ServerThread) -> Iterator[pb_grpc.ConversationServiceStub]:
    # A client with gRPC's default limits (4 MiB received), allowed to send more.
    options = [("grpc.max_send_message_length", 32 * 1024 * KIB)]
    with grpc.insecure_channel(memoryd_server.addr, options) as channel:
        yield pb_grpc.ConversationServiceStub(channel)


def _request(conversation_id: str, **fields: object) -> pb.AppendMessagesRequest:
    return pb.AppendMessagesRequest(
        conversation_id=conversation_id,
        create_if_missing=True,
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content=c, token_count=1) for c in BIG],
        **fields,  # type: ignore[arg-type]
    )


def test_a_large_append_answers_ids_and_seqs_that_fit_a_default_client(
    stub: pb_grpc.ConversationServiceStub, uid: str
) -> None:
    response = stub.AppendMessages(_request(f"big-{uid}", request_id="r1"), timeout=30)
    size = response.ByteSize()
    print(f"\n100 x 60 KiB append: request {_request('x').ByteSize()} bytes, answer {size} bytes")
    assert size < 64 * KIB
    assert [m.seq for m in response.messages] == list(range(1, 101))
    assert all(m.id and not m.content for m in response.messages)
    assert response.conversation.message_count == 100
    # A retry replays the same small answer and appends nothing; so does one
    # asking for the echo, which it is refused before anything is written.
    again = stub.AppendMessages(_request(f"big-{uid}", request_id="r1"), timeout=30)
    assert [m.id for m in again.messages] == [m.id for m in response.messages]
    assert_status(
        lambda: stub.AppendMessages(
            _request(f"big-{uid}", request_id="r1", return_messages=True), timeout=30
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="return_messages",
    )
    got = stub.GetConversation(pb.GetConversationRequest(conversation_id=f"big-{uid}"))
    assert got.conversation.message_count == 100


def test_return_messages_echoes_small_appends_and_may_differ_on_retry(
    stub: pb_grpc.ConversationServiceStub, uid: str
) -> None:
    request = pb.AppendMessagesRequest(
        conversation_id=f"echo-{uid}",
        create_if_missing=True,
        request_id="turn-1",
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="hello", name="ann")],
    )
    slim = stub.AppendMessages(request, timeout=10)
    assert (slim.messages[0].seq, slim.messages[0].content) == (1, "")
    request.return_messages = True
    whole = stub.AppendMessages(request, timeout=10)  # the same request_id: a replay
    assert (whole.messages[0].id, whole.messages[0].content) == (slim.messages[0].id, "hello")
    assert whole.messages[0].name == "ann"
    assert whole.conversation.message_count == 1


def test_the_typed_client_appends_and_reads_back_large_messages(
    memoryd_server: ServerThread, uid: str
) -> None:
    """Its limits match the server's: 6 MB out, a 6 MB page back."""
    with memoryd.Client(memoryd_server.addr) as client:
        result = client.conversations.append(
            f"typed-{uid}", [memoryd.NewMessage("user", c) for c in BIG], create_if_missing=True
        )
        assert [m.content for m in result.messages] == BIG
        assert [m.seq for m in result.messages] == list(range(1, 101))
        assert all(m.id and m.create_time for m in result.messages)
        page = client.conversations.list_messages(f"typed-{uid}", page_size=100)
        assert [m.content for m in page.items] == BIG
        assert [m.id for m in page.items] == [m.id for m in result.messages]


def test_one_request_id_may_be_used_once_in_every_conversation(
    stub: pb_grpc.ConversationServiceStub, uid: str
) -> None:
    """As the README teaches: "turn-1" in two conversations is two appends."""
    for conversation in (f"a-{uid}", f"b-{uid}"):
        request = pb.AppendMessagesRequest(
            conversation_id=conversation,
            create_if_missing=True,
            request_id="turn-1",
            messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"hi {conversation}")],
        )
        first = stub.AppendMessages(request, timeout=10)
        assert first.conversation.message_count == 1
        again = stub.AppendMessages(request, timeout=10)
        assert again.messages[0].id == first.messages[0].id
        assert again.conversation.message_count == 1
        # Within the conversation, the key still guards against another request.
        request.messages[0].content = "something else"
        assert_status(
            lambda r=request: stub.AppendMessages(r, timeout=10),  # type: ignore[misc]
            grpc.StatusCode.ALREADY_EXISTS,
        )
