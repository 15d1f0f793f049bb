"""ConversationService happy paths: create, get, list, update, delete, feedback."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2, struct_pb2

from memoryd.v1 import conversation_pb2 as pb
from tests.conftest import assert_status


def _struct(**values: object) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def _create(stub, **fields) -> pb.Conversation:
    conversation_id = fields.pop("conversation_id", "")
    return stub.CreateConversation(
        pb.CreateConversationRequest(
            conversation=pb.Conversation(**fields), conversation_id=conversation_id
        )
    ).conversation


def _user(content: str, tokens: int = 1) -> pb.Message:
    return pb.Message(role=pb.MESSAGE_ROLE_USER, content=content, token_count=tokens)


def test_create_assigns_uuid7_and_defaults(grpc_stub, uid):
    """A server-assigned id is a UUIDv7; status ACTIVE, version 1, zero totals."""
    conv = _create(
        grpc_stub,
        user_id=f"u-{uid}",
        agent_id="planner",
        app_name="app",
        title="Trip",
        metadata=_struct(channel="web"),
        state=_struct(step=1),
    )
    assert conv.id[14] == "7"
    assert conv.status == pb.CONVERSATION_STATUS_ACTIVE
    assert conv.version == 1
    assert conv.message_count == 0
    assert not conv.HasField("last_message_time")
    assert conv.metadata["channel"] == "web"
    assert conv.state["step"] == 1
    assert conv.create_time.seconds > 0
    assert conv.create_time == conv.update_time


def test_create_with_caller_chosen_id(grpc_stub, uid):
    """A caller-chosen id is kept; taking it twice is ALREADY_EXISTS."""
    session_id = f"adk:session.{uid}"
    conv = _create(grpc_stub, conversation_id=session_id, user_id="u")
    assert conv.id == session_id
    assert_status(
        lambda: _create(grpc_stub, conversation_id=session_id),
        grpc.StatusCode.ALREADY_EXISTS,
        message=session_id,
    )


def test_create_is_idempotent_with_request_id(grpc_stub, uid):
    """A retried create with the same request_id returns the first conversation."""
    request = pb.CreateConversationRequest(
        conversation=pb.Conversation(user_id=uid), request_id=f"req-{uid}"
    )
    first = grpc_stub.CreateConversation(request).conversation
    second = grpc_stub.CreateConversation(request).conversation
    assert first == second
    listed = grpc_stub.ListConversations(pb.ListConversationsRequest(user_id=uid))
    assert [c.id for c in listed.conversations] == [first.id]


def test_get_returns_totals_kept_by_appends(grpc_stub, uid):
    """Totals, status and last_message_time follow each append in the same transaction."""
    conv = _create(grpc_stub, user_id=uid)
    grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=conv.id,
            messages=[
                pb.Message(role=pb.MESSAGE_ROLE_SYSTEM, content="be brief", token_count=3),
                _user("hi", 2),
                pb.Message(role=pb.MESSAGE_ROLE_ASSISTANT, content="hello", token_count=5),
            ],
        )
    )
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    c = got.conversation
    assert (c.message_count, c.total_input_tokens, c.total_output_tokens) == (3, 5, 5)
    assert c.HasField("last_message_time")
    assert c.update_time.ToDatetime() >= c.create_time.ToDatetime()
    assert c.version == 1  # appends do not change the state version


def test_list_filters_and_orders_by_recent_activity(grpc_stub, uid):
    """Filters by user, agent, app and status; the conversation touched last comes first."""
    a = _create(grpc_stub, user_id=uid, agent_id="a1", app_name="x")
    b = _create(grpc_stub, user_id=uid, agent_id="a2", app_name="x")
    c = _create(grpc_stub, user_id=uid, agent_id="a1", app_name="y")
    _create(grpc_stub, user_id=f"other-{uid}", agent_id="a1", app_name="x")
    grpc_stub.AppendMessages(pb.AppendMessagesRequest(conversation_id=a.id, messages=[_user("x")]))

    def ids(**filters) -> list[str]:
        response = grpc_stub.ListConversations(pb.ListConversationsRequest(**filters))
        return [conv.id for conv in response.conversations]

    assert ids(user_id=uid) == [a.id, c.id, b.id]
    assert ids(user_id=uid, agent_id="a1") == [a.id, c.id]
    assert ids(user_id=uid, app_name="x") == [a.id, b.id]
    grpc_stub.UpdateConversation(
        pb.UpdateConversationRequest(
            conversation=pb.Conversation(id=b.id, status=pb.CONVERSATION_STATUS_CLOSED),
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        )
    )
    assert ids(user_id=uid, status=pb.CONVERSATION_STATUS_CLOSED) == [b.id]
    assert ids(user_id=uid, status=pb.CONVERSATION_STATUS_ACTIVE) == [a.id, c.id]


def test_update_replaces_masked_fields_and_bumps_version(grpc_stub, uid):
    """Only the masked fields change; each update increments version."""
    conv = _create(grpc_stub, user_id=uid, title="old", state=_struct(step=1))
    response = grpc_stub.UpdateConversation(
        pb.UpdateConversationRequest(
            conversation=pb.Conversation(
                id=conv.id,
                title="new",
                summary="talked about trains",
                state=_struct(step=2, cart=["a"]),
                user_id="ignored-not-in-mask",
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["title", "summary", "state"]),
            expected_version=1,
        )
    )
    updated = response.conversation
    assert (updated.title, updated.summary, updated.version) == ("new", "talked about trains", 2)
    assert updated.state["step"] == 2
    assert list(updated.state["cart"]) == ["a"]
    assert updated.user_id == uid
    assert updated.update_time.ToDatetime() > conv.update_time.ToDatetime()


def test_update_with_stale_version_is_aborted(grpc_stub, uid):
    """Two writers holding version 1: the second fails with ABORTED and changes nothing."""
    conv = _create(grpc_stub, user_id=uid)

    def update(value: int) -> pb.UpdateConversationResponse:
        return grpc_stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, state=_struct(v=value)),
                update_mask=field_mask_pb2.FieldMask(paths=["state"]),
                expected_version=1,
            )
        )

    assert update(1).conversation.version == 2
    assert_status(lambda: update(2), grpc.StatusCode.ABORTED, message="version 2")
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert got.conversation.state["v"] == 1


def test_closed_conversation_rejects_appends_until_reopened(grpc_stub, uid):
    """CLOSED refuses appends (FAILED_PRECONDITION); IDLE becomes ACTIVE on append."""
    conv = _create(grpc_stub, user_id=uid)

    def set_status(status: int) -> None:
        grpc_stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, status=status),
                update_mask=field_mask_pb2.FieldMask(paths=["status"]),
            )
        )

    def append() -> pb.AppendMessagesResponse:
        return grpc_stub.AppendMessages(
            pb.AppendMessagesRequest(conversation_id=conv.id, messages=[_user("x")])
        )

    set_status(pb.CONVERSATION_STATUS_CLOSED)
    assert_status(append, grpc.StatusCode.FAILED_PRECONDITION, message="CLOSED")
    set_status(pb.CONVERSATION_STATUS_IDLE)
    assert append().conversation.status == pb.CONVERSATION_STATUS_ACTIVE


def test_delete_removes_conversation_and_messages(grpc_stub, db, uid):
    """Delete reports the messages removed; nothing of the conversation is left."""
    conv = _create(grpc_stub, user_id=uid)
    grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=conv.id, messages=[_user("a"), _user("b")], request_id=f"r-{uid}"
        )
    )
    response = grpc_stub.DeleteConversation(pb.DeleteConversationRequest(conversation_id=conv.id))
    assert response.deleted_message_count == 2
    assert_status(
        lambda: grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    for table, column in (("messages", "conversation_id"), ("idempotency_keys", "resource_id")):
        count = db.execute(
            f"SELECT count(*) FROM {table} WHERE {column} = %s", (conv.id,)
        ).fetchone()
        assert count == (0,), table
    assert_status(
        lambda: grpc_stub.DeleteConversation(pb.DeleteConversationRequest(conversation_id=conv.id)),
        grpc.StatusCode.NOT_FOUND,
    )


def test_message_fields_round_trip(grpc_stub, uid):
    """Every message field the caller sets comes back from ListMessages."""
    conv = _create(grpc_stub, user_id=uid)
    call = pb.ToolCall(id="call_1", name="search", arguments=_struct(q="trains", limit=3))
    sent = [
        pb.Message(
            role=pb.MESSAGE_ROLE_ASSISTANT,
            tool_calls=[call],
            model="gpt-x",
            token_count=7,
            metadata=_struct(latency_ms=12),
        ),
        pb.Message(
            role=pb.MESSAGE_ROLE_TOOL,
            content='{"hits": 2}',
            name="search",
            tool_call_id="call_1",
        ),
    ]
    grpc_stub.AppendMessages(pb.AppendMessagesRequest(conversation_id=conv.id, messages=sent))
    got = grpc_stub.ListMessages(pb.ListMessagesRequest(conversation_id=conv.id)).messages
    assert [m.seq for m in got] == [1, 2]
    assert got[0].tool_calls[0] == call
    assert (got[0].model, got[0].token_count, got[0].metadata["latency_ms"]) == ("gpt-x", 7, 12)
    assert (got[1].role, got[1].name, got[1].tool_call_id) == (
        pb.MESSAGE_ROLE_TOOL,
        "search",
        "call_1",
    )
    assert got[1].content == '{"hits": 2}'
    assert all(m.conversation_id == conv.id and m.id for m in got)


def test_set_message_feedback(grpc_stub, uid):
    """Feedback is stored on the message and replaced by a later call."""
    conv = _create(grpc_stub, user_id=uid)
    appended = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(conversation_id=conv.id, messages=[_user("q")])
    )
    message_id = appended.messages[0].id
    first = grpc_stub.SetMessageFeedback(
        pb.SetMessageFeedbackRequest(
            conversation_id=conv.id,
            message_id=message_id,
            rating=pb.FEEDBACK_RATING_POSITIVE,
            comment="great",
        )
    ).message
    assert (first.feedback.rating, first.feedback.comment) == (pb.FEEDBACK_RATING_POSITIVE, "great")
    assert first.feedback.HasField("update_time")
    grpc_stub.SetMessageFeedback(
        pb.SetMessageFeedbackRequest(
            conversation_id=conv.id, message_id=message_id, rating=pb.FEEDBACK_RATING_NEGATIVE
        )
    )
    listed = grpc_stub.ListMessages(pb.ListMessagesRequest(conversation_id=conv.id)).messages
    assert listed[0].feedback.rating == pb.FEEDBACK_RATING_NEGATIVE
    assert listed[0].feedback.comment == ""
    other = _create(grpc_stub, user_id=uid)
    assert_status(
        lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=other.id, message_id=message_id, rating=pb.FEEDBACK_RATING_POSITIVE
            )
        ),
        grpc.StatusCode.NOT_FOUND,
    )
