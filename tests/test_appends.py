"""AppendMessages: gapless seqs under concurrency, idempotent retries, create_if_missing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from memoryd.v1 import conversation_pb2 as pb
from tests.conftest import assert_status


def _user(content: str, tokens: int = 1) -> pb.Message:
    return pb.Message(role=pb.MESSAGE_ROLE_USER, content=content, token_count=tokens)


def _new(stub, uid: str) -> str:
    request = pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
    return stub.CreateConversation(request).conversation.id


def test_seqs_are_returned_in_order(grpc_stub, uid):
    """A batch gets consecutive seqs in request order; the next batch continues them."""
    conv = _new(grpc_stub, uid)
    first = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=conv, messages=[_user("a"), _user("b")], return_messages=True
        )
    )
    second = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(conversation_id=conv, messages=[_user("c")], return_messages=True)
    )
    assert [(m.seq, m.content) for m in first.messages] == [(1, "a"), (2, "b")]
    assert [(m.seq, m.content) for m in second.messages] == [(3, "c")]
    assert second.conversation.message_count == 3


def test_twenty_concurrent_appenders_get_gapless_unique_seqs(grpc_stub, db, uid):
    """20 writers x 10 batches on one conversation: seqs are exactly 1..N, each once."""
    conv = _new(grpc_stub, uid)
    writers, rounds, per_batch = 20, 10, 3

    def writer(w: int) -> list[tuple[int, str]]:
        seen = []
        for r in range(rounds):
            batch = [_user(f"{w}:{r}:{i}") for i in range(per_batch)]
            response = grpc_stub.AppendMessages(
                pb.AppendMessagesRequest(
                    conversation_id=conv, messages=batch, return_messages=True
                ),
                timeout=30,
            )
            seqs = [m.seq for m in response.messages]
            assert seqs == list(range(seqs[0], seqs[0] + per_batch))  # a batch stays contiguous
            seen.extend((m.seq, m.content) for m in response.messages)
        return seen

    with ThreadPoolExecutor(max_workers=writers) as pool:
        results = [item for part in pool.map(writer, range(writers)) for item in part]
    total = writers * rounds * per_batch
    assert sorted(seq for seq, _ in results) == list(range(1, total + 1))
    stored = db.execute(
        "SELECT seq, content FROM messages WHERE conversation_id = %s ORDER BY seq", (conv,)
    ).fetchall()
    assert sorted(results) == stored
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv))
    assert got.conversation.message_count == total
    assert got.conversation.total_input_tokens == total


def test_retry_with_same_request_id_appends_once(grpc_stub, db, uid):
    """A retried append returns the first result (same ids and seqs) and writes nothing."""
    conv = _new(grpc_stub, uid)
    request = pb.AppendMessagesRequest(
        conversation_id=conv, messages=[_user("once"), _user("twice")], request_id=f"turn-{uid}"
    )
    first = grpc_stub.AppendMessages(request)
    grpc_stub.AppendMessages(pb.AppendMessagesRequest(conversation_id=conv, messages=[_user("x")]))
    retry = grpc_stub.AppendMessages(request)
    assert list(retry.messages) == list(first.messages)
    count = db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conv,))
    assert count.fetchone() == (3,)


def test_concurrent_retries_with_same_request_id_append_once(grpc_stub, db, uid):
    """Ten simultaneous copies of one request: one append, ten identical answers."""
    conv = _new(grpc_stub, uid)
    request = pb.AppendMessagesRequest(
        conversation_id=conv, messages=[_user("hello")], request_id=f"dup-{uid}"
    )
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: grpc_stub.AppendMessages(request, timeout=30), range(10)))
    assert len({a.messages[0].id for a in answers}) == 1
    assert {a.messages[0].seq for a in answers} == {1}
    count = db.execute("SELECT count(*) FROM messages WHERE conversation_id = %s", (conv,))
    assert count.fetchone() == (1,)


def test_request_id_reused_for_another_request_is_rejected(grpc_stub, uid):
    """The same request_id with different content is ALREADY_EXISTS, not a silent replay."""
    conv = _new(grpc_stub, uid)
    key = f"k-{uid}"
    grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(conversation_id=conv, messages=[_user("a")], request_id=key)
    )
    assert_status(
        lambda: grpc_stub.AppendMessages(
            pb.AppendMessagesRequest(conversation_id=conv, messages=[_user("b")], request_id=key)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        message="request_id",
    )


def test_create_if_missing_creates_in_the_same_call(grpc_stub, uid):
    """The first turn of a new session is one call; the creation fields are used."""
    session = f"sess-{uid}"
    response = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=session,
            create_if_missing=True,
            conversation=pb.Conversation(user_id=uid, app_name="adk", title="first"),
            messages=[_user("hi", 4)],
        )
    )
    assert response.messages[0].seq == 1
    conv = response.conversation
    assert (conv.id, conv.user_id, conv.app_name, conv.title) == (session, uid, "adk", "first")
    assert conv.message_count == 1
    again = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=session,
            create_if_missing=True,
            conversation=pb.Conversation(title="ignored"),
            messages=[_user("again")],
        )
    )
    assert again.messages[0].seq == 2
    assert again.conversation.title == "first"


def test_concurrent_create_if_missing_makes_one_conversation(grpc_stub, uid):
    """Racing first turns on a new id create it once and keep every message."""
    session = f"race-{uid}"

    def first_turn(i: int) -> int:
        response = grpc_stub.AppendMessages(
            pb.AppendMessagesRequest(
                conversation_id=session, create_if_missing=True, messages=[_user(str(i))]
            ),
            timeout=30,
        )
        return response.messages[0].seq

    with ThreadPoolExecutor(max_workers=8) as pool:
        seqs = sorted(pool.map(first_turn, range(8)))
    assert seqs == list(range(1, 9))


def test_append_without_create_if_missing_is_not_found(grpc_stub, uid):
    """Appending to an id that does not exist is NOT_FOUND and creates nothing."""
    missing = f"missing-{uid}"
    assert_status(
        lambda: grpc_stub.AppendMessages(
            pb.AppendMessagesRequest(conversation_id=missing, messages=[_user("x")])
        ),
        grpc.StatusCode.NOT_FOUND,
        message=missing,
    )
    assert_status(
        lambda: grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=missing)),
        grpc.StatusCode.NOT_FOUND,
    )
