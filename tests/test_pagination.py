"""ListConversations and ListMessages walk to the end with no duplicates or gaps."""

from __future__ import annotations

from memoryd.v1 import conversation_pb2 as pb


def _fill(stub, conversation_id: str, count: int) -> None:
    for start in range(0, count, 1000):
        batch = [
            pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"m{i}", token_count=1)
            for i in range(start, min(start + 1000, count))
        ]
        stub.AppendMessages(
            pb.AppendMessagesRequest(conversation_id=conversation_id, messages=batch)
        )


def _walk(call, request, items: str) -> tuple[list, int]:
    """All items of a paged list and the number of pages it took."""
    seen, pages = [], 0
    while True:
        response = call(request)
        pages += 1
        seen.extend(getattr(response, items))
        if not response.next_page_token:
            return seen, pages
        request.page_token = response.next_page_token


def test_list_messages_forward_and_backward(grpc_stub, uid):
    """Oldest-first and newest-first walks each return every seq exactly once."""
    conv = f"pages-{uid}"
    grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=conv,
            create_if_missing=True,
            messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="m0")],
        )
    )
    _fill(grpc_stub, conv, 249)
    forward, pages = _walk(
        grpc_stub.ListMessages,
        pb.ListMessagesRequest(conversation_id=conv, page_size=40),
        "messages",
    )
    assert [m.seq for m in forward] == list(range(1, 251))
    assert pages == 7
    backward, _ = _walk(
        grpc_stub.ListMessages,
        pb.ListMessagesRequest(conversation_id=conv, page_size=33, newest_first=True),
        "messages",
    )
    assert [m.seq for m in backward] == list(range(250, 0, -1))


def test_list_messages_from_a_seq(grpc_stub, uid):
    """start_seq is inclusive in either direction; an exact last page has no token."""
    conv = f"from-{uid}"
    grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=conv,
            create_if_missing=True,
            messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content=str(i)) for i in range(10)],
        )
    )
    up, _ = _walk(
        grpc_stub.ListMessages,
        pb.ListMessagesRequest(conversation_id=conv, start_seq=7, page_size=2),
        "messages",
    )
    assert [m.seq for m in up] == [7, 8, 9, 10]
    down = grpc_stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=conv, start_seq=3, newest_first=True, page_size=3)
    )
    assert [m.seq for m in down.messages] == [3, 2, 1]
    assert down.next_page_token == ""
    empty = grpc_stub.ListMessages(pb.ListMessagesRequest(conversation_id=conv, start_seq=11))
    assert list(empty.messages) == []


def test_list_conversations_to_the_end(grpc_stub, uid):
    """Paging through a user's 57 conversations yields each once, newest activity first."""
    created = [
        grpc_stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid, title=str(i)))
        ).conversation.id
        for i in range(57)
    ]
    listed, pages = _walk(
        grpc_stub.ListConversations,
        pb.ListConversationsRequest(user_id=uid, page_size=10),
        "conversations",
    )
    assert pages == 6
    assert [c.id for c in listed] == list(reversed(created))


def test_list_conversations_default_page_size(grpc_stub, uid):
    """Without page_size a page holds 50 conversations and offers a next page."""
    for _ in range(51):
        grpc_stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
        )
    first = grpc_stub.ListConversations(pb.ListConversationsRequest(user_id=uid))
    assert len(first.conversations) == 50
    assert first.next_page_token
    rest = grpc_stub.ListConversations(
        pb.ListConversationsRequest(user_id=uid, page_token=first.next_page_token)
    )
    assert len(rest.conversations) == 1
    assert rest.next_page_token == ""
