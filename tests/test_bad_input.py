"""Malformed, unknown and conflicting requests get the documented status and field.

Every rejection is checked for its gRPC code and, for INVALID_ARGUMENT, for the
``google.rpc.BadRequest`` field violation naming the offending field; failing
writes are checked behind the API (through ``db``) to have written nothing.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from memoryd.v1 import conversation_pb2 as pb
from tests.conftest import assert_status, rpc_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

BAD_IDS = [
    "has space",
    "a/b",
    "semi;colon",
    "quote'd",
    "-leading-dash",
    ".leading-dot",
    "trailing-newline\n",
    "caf\u00e9",
    "emoji\U0001f600",
    "a" * 129,
]


# -- helpers ----------------------------------------------------------------


def create(stub: Any, uid: str, **fields: Any) -> pb.Conversation:
    request = pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid, **fields))
    return stub.CreateConversation(request).conversation


def user(text: str = "hello", **fields: Any) -> pb.Message:
    return pb.Message(role=pb.MESSAGE_ROLE_USER, content=text, **fields)


def append(stub: Any, conversation_id: str, *messages: pb.Message) -> pb.AppendMessagesResponse:
    request = pb.AppendMessagesRequest(
        conversation_id=conversation_id, messages=messages, return_messages=True
    )
    return stub.AppendMessages(request)


def struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def message_rows(db: Any, conversation_id: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)
    ).fetchone()
    return int(row[0])


def conversation_rows(db: Any, conversation_id: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM conversations WHERE id = %s", (conversation_id,)
    ).fetchone()
    return int(row[0])


def calls_by_conversation_id(stub: Any, conversation_id: str) -> dict[str, Callable[[], Any]]:
    """Every RPC that takes a conversation id, called with ``conversation_id``."""
    return {
        "GetConversation": lambda: stub.GetConversation(
            pb.GetConversationRequest(conversation_id=conversation_id)
        ),
        "DeleteConversation": lambda: stub.DeleteConversation(
            pb.DeleteConversationRequest(conversation_id=conversation_id)
        ),
        "AppendMessages": lambda: append(stub, conversation_id, user()),
        "ListMessages": lambda: stub.ListMessages(
            pb.ListMessagesRequest(conversation_id=conversation_id)
        ),
        "GetContextWindow": lambda: stub.GetContextWindow(
            pb.GetContextWindowRequest(conversation_id=conversation_id)
        ),
        "SetMessageFeedback": lambda: stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conversation_id,
                message_id=str(uuid.uuid4()),
                rating=pb.FEEDBACK_RATING_POSITIVE,
            )
        ),
    }


def update_title(stub: Any, conversation_id: str, **kwargs: Any) -> Any:
    return stub.UpdateConversation(
        pb.UpdateConversationRequest(
            conversation=pb.Conversation(id=conversation_id, title="t"),
            update_mask=mask("title"),
            **kwargs,
        )
    )


def assert_no_sql(err: grpc.RpcError) -> None:
    details = err.details() or ""
    for leak in ("SELECT", "INSERT", "UPDATE ", "DELETE FROM", "postgresql://", "psycopg"):
        assert leak not in details, details


# -- ids --------------------------------------------------------------------


def test_empty_conversation_id_is_required_everywhere(grpc_stub):
    for name, call in calls_by_conversation_id(grpc_stub, "").items():
        err = assert_status(call, INVALID, field="conversation_id", message="is required")
        assert err.code() == INVALID, name
    assert_status(
        lambda: update_title(grpc_stub, ""), INVALID, field="conversation.id", message="required"
    )


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_malformed_conversation_ids_are_invalid_everywhere(grpc_stub, bad_id):
    for call in calls_by_conversation_id(grpc_stub, bad_id).values():
        assert_status(call, INVALID, field="conversation_id")
    assert_status(lambda: update_title(grpc_stub, bad_id), INVALID, field="conversation.id")
    assert_status(
        lambda: grpc_stub.CreateConversation(pb.CreateConversationRequest(conversation_id=bad_id)),
        INVALID,
        field="conversation_id",
    )


def test_longest_allowed_caller_id_works(grpc_stub, uid):
    long_id = (uid + "x" * 128)[:128]
    created = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation_id=long_id)
    ).conversation
    assert created.id == long_id
    assert_status(
        lambda: grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=long_id + "y")),
        INVALID,
        field="conversation_id",
    )


@pytest.mark.parametrize(
    "message_id",
    ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "x" * 5000, "\u00e9"],
)
def test_message_id_must_be_a_uuid(grpc_stub, uid, message_id):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conv.id, message_id=message_id, rating=pb.FEEDBACK_RATING_POSITIVE
            )
        ),
        INVALID,
        field="message_id",
        message="not a valid UUID",
    )


def test_empty_message_id_is_required(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conv.id, rating=pb.FEEDBACK_RATING_POSITIVE
            )
        ),
        INVALID,
        field="message_id",
        message="is required",
    )


def test_unknown_conversation_is_not_found_everywhere(grpc_stub, uid):
    missing = f"missing-{uid}"
    for call in calls_by_conversation_id(grpc_stub, missing).values():
        err = assert_status(call, NOT_FOUND)
        assert missing in (err.details() or "")
        assert_no_sql(err)
    assert_status(lambda: update_title(grpc_stub, missing), NOT_FOUND)
    assert_status(lambda: update_title(grpc_stub, missing, expected_version=1), NOT_FOUND)
    # A server-style UUID that was never issued is just as unknown.
    for call in calls_by_conversation_id(grpc_stub, str(uuid.uuid4())).values():
        assert_status(call, NOT_FOUND)


def test_deleted_conversation_is_not_found(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    append(grpc_stub, conv.id, user())
    grpc_stub.DeleteConversation(pb.DeleteConversationRequest(conversation_id=conv.id))
    for call in calls_by_conversation_id(grpc_stub, conv.id).values():
        assert_status(call, NOT_FOUND)


def test_feedback_on_unknown_message_is_not_found(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    append(grpc_stub, conv.id, user())
    other = create(grpc_stub, uid)
    foreign = append(grpc_stub, other.id, user()).messages[0]

    def feedback(conversation_id: str, message_id: str) -> Callable[[], Any]:
        return lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conversation_id,
                message_id=message_id,
                rating=pb.FEEDBACK_RATING_NEGATIVE,
            )
        )

    assert_status(feedback(conv.id, str(uuid.uuid4())), NOT_FOUND)
    # A real message of another conversation is not in this one.
    assert_status(feedback(conv.id, foreign.id), NOT_FOUND)
    unchanged = grpc_stub.ListMessages(pb.ListMessagesRequest(conversation_id=other.id))
    assert not unchanged.messages[0].HasField("feedback")


# -- messages ---------------------------------------------------------------


def test_message_without_content_or_tool_calls_is_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, pb.Message(role=pb.MESSAGE_ROLE_USER)),
        INVALID,
        field="messages[0].content",
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, user(), user("two"), pb.Message(role=2)),
        INVALID,
        field="messages[2].content",
    )
    # Content may be empty when the message carries tool calls.
    ok = append(
        grpc_stub,
        conv.id,
        pb.Message(role=pb.MESSAGE_ROLE_ASSISTANT, tool_calls=[pb.ToolCall(id="1", name="f")]),
    )
    assert ok.messages[0].seq == 1


def test_empty_message_list_is_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(lambda: append(grpc_stub, conv.id), INVALID, field="messages")


def test_more_than_1000_messages_is_invalid(grpc_stub, db, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, *[user(f"m{i}") for i in range(1001)]),
        INVALID,
        field="messages",
        message="1000",
    )
    assert message_rows(db, conv.id) == 0
    # Exactly 1000 is allowed.
    done = append(grpc_stub, conv.id, *[user(f"m{i}") for i in range(1000)])
    assert done.conversation.message_count == 1000


def test_negative_token_count_is_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, user(), user(token_count=-1)),
        INVALID,
        field="messages[1].token_count",
    )


def test_tool_call_without_name_is_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    message = pb.Message(
        role=pb.MESSAGE_ROLE_ASSISTANT,
        tool_calls=[pb.ToolCall(id="a", name="ok"), pb.ToolCall(id="b")],
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, message),
        INVALID,
        field="messages[0].tool_calls[1].name",
    )


@pytest.mark.parametrize("role", [99, -1, 5, 2**31 - 1])
def test_unknown_role_is_invalid(grpc_stub, uid, role):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, user(), pb.Message(role=role, content="x")),
        INVALID,
        field="messages[1].role",
    )


def test_unspecified_role_is_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, pb.Message(content="x")),
        INVALID,
        field="messages[0].role",
        message="required",
    )


def test_unknown_status_filter_is_invalid(grpc_stub):
    assert_status(
        lambda: grpc_stub.ListConversations(pb.ListConversationsRequest(status=42)),
        INVALID,
        field="status",
    )


def test_unknown_and_unspecified_status_in_update_are_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    for status in (42, -3, pb.CONVERSATION_STATUS_UNSPECIFIED):
        assert_status(
            lambda status=status: grpc_stub.UpdateConversation(
                pb.UpdateConversationRequest(
                    conversation=pb.Conversation(id=conv.id, status=status),
                    update_mask=mask("status"),
                )
            ),
            INVALID,
            field="conversation.status",
        )
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert got.conversation.status == pb.CONVERSATION_STATUS_ACTIVE
    assert got.conversation.version == 1


@pytest.mark.parametrize("rating", [7, -1, pb.FEEDBACK_RATING_UNSPECIFIED])
def test_unknown_or_unspecified_rating_is_invalid(grpc_stub, uid, rating):
    conv = create(grpc_stub, uid)
    message = append(grpc_stub, conv.id, user()).messages[0]
    assert_status(
        lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conv.id, message_id=message.id, rating=rating
            )
        ),
        INVALID,
        field="rating",
    )


# -- limits on sizes --------------------------------------------------------


def test_content_over_the_limit_is_invalid(grpc_stub, memoryd_server, db, uid):
    limit = memoryd_server.settings.max_content_bytes
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, user(), user("x" * (limit + 1))),
        INVALID,
        field="messages[1].content",
        message=str(limit),
    )
    # The limit counts UTF-8 bytes, not characters.
    two_byte = "\u00e9" * (limit // 2 + 1)
    assert len(two_byte) <= limit
    assert_status(
        lambda: append(grpc_stub, conv.id, user(two_byte)),
        INVALID,
        field="messages[0].content",
    )
    assert message_rows(db, conv.id) == 0
    # Exactly the limit is fine.
    done = append(grpc_stub, conv.id, user("y" * limit))
    assert len(done.messages[0].content) == limit


def test_nul_characters_are_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, user("a\x00b")),
        INVALID,
        field="messages[0].content",
        message="NUL",
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, user(name="n\x00")),
        INVALID,
        field="messages[0].name",
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, user(metadata=struct(k="v\x00"))),
        INVALID,
        field="messages[0].metadata",
    )
    assert_status(
        lambda: grpc_stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(title="t\x00"))
        ),
        INVALID,
        field="conversation.title",
    )
    assert_status(
        lambda: grpc_stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, summary="s\x00"),
                update_mask=mask("summary"),
            )
        ),
        INVALID,
        field="conversation.summary",
    )
    message = append(grpc_stub, conv.id, user()).messages[0]
    assert_status(
        lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conv.id,
                message_id=message.id,
                rating=pb.FEEDBACK_RATING_POSITIVE,
                comment="\x00",
            )
        ),
        INVALID,
        field="comment",
    )


def test_metadata_over_the_limit_is_invalid(grpc_stub, memoryd_server, db, uid):
    limit = memoryd_server.settings.max_content_bytes
    big = struct(blob="z" * limit)
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, user(metadata=big)),
        INVALID,
        field="messages[0].metadata",
    )
    tool = pb.Message(
        role=pb.MESSAGE_ROLE_ASSISTANT, tool_calls=[pb.ToolCall(name="f", arguments=big)]
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, tool),
        INVALID,
        field="messages[0].tool_calls[0].arguments",
    )
    assert_status(
        lambda: grpc_stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid, metadata=big))
        ),
        INVALID,
        field="conversation.metadata",
    )
    assert_status(
        lambda: grpc_stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, state=big), update_mask=mask("state")
            )
        ),
        INVALID,
        field="conversation.state",
    )
    assert message_rows(db, conv.id) == 0
    count = db.execute("SELECT count(*) FROM conversations WHERE user_id = %s", (uid,)).fetchone()[
        0
    ]
    assert count == 1


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_in_structs_are_invalid(grpc_stub, db, uid, number):
    """JSON has no NaN or Infinity: a Struct holding one is the caller's mistake."""
    conv = create(grpc_stub, uid)
    bad = struct(x=number)
    assert_status(
        lambda: append(grpc_stub, conv.id, user(metadata=bad)),
        INVALID,
        field="messages[0].metadata",
    )
    tool = pb.Message(
        role=pb.MESSAGE_ROLE_ASSISTANT, tool_calls=[pb.ToolCall(name="f", arguments=bad)]
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, tool),
        INVALID,
        field="messages[0].tool_calls[0].arguments",
    )
    assert_status(
        lambda: grpc_stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid, state=bad))
        ),
        INVALID,
        field="conversation.state",
    )
    assert_status(
        lambda: grpc_stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, metadata=bad),
                update_mask=mask("metadata"),
            )
        ),
        INVALID,
        field="conversation.metadata",
    )
    assert message_rows(db, conv.id) == 0


def test_text_that_merely_looks_like_an_escaped_nul_is_accepted(grpc_stub, uid):
    """A backslash followed by ``u0000`` is ordinary text, not a NUL character."""
    conv = create(grpc_stub, uid)
    text = "C:\\u0000\\dir"
    assert "\x00" not in text
    done = append(grpc_stub, conv.id, user(text, metadata=struct(pattern=text)))
    assert done.messages[0].content == text
    assert done.messages[0].metadata["pattern"] == text
    updated = grpc_stub.UpdateConversation(
        pb.UpdateConversationRequest(
            conversation=pb.Conversation(id=conv.id, state=struct(path=text)),
            update_mask=mask("state"),
        )
    ).conversation
    assert updated.state["path"] == text


def test_over_long_short_fields_are_invalid(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: grpc_stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id="u" * 257))
        ),
        INVALID,
        field="conversation.user_id",
    )
    assert_status(
        lambda: grpc_stub.CreateConversation(pb.CreateConversationRequest(request_id="r" * 129)),
        INVALID,
        field="request_id",
    )
    assert_status(
        lambda: grpc_stub.ListConversations(pb.ListConversationsRequest(agent_id="a" * 257)),
        INVALID,
        field="agent_id",
    )
    assert_status(
        lambda: append(grpc_stub, conv.id, user(model="m" * 257)),
        INVALID,
        field="messages[0].model",
    )
    message = append(grpc_stub, conv.id, user()).messages[0]
    assert_status(
        lambda: grpc_stub.SetMessageFeedback(
            pb.SetMessageFeedbackRequest(
                conversation_id=conv.id,
                message_id=message.id,
                rating=pb.FEEDBACK_RATING_POSITIVE,
                comment="c" * 4097,
            )
        ),
        INVALID,
        field="comment",
    )


# -- page sizes and tokens --------------------------------------------------


@pytest.mark.parametrize("size", [1001, 2**31 - 1, -1, -(2**31)])
def test_page_size_out_of_range_is_invalid(grpc_stub, uid, size):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: grpc_stub.ListConversations(pb.ListConversationsRequest(page_size=size)),
        INVALID,
        field="page_size",
    )
    assert_status(
        lambda: grpc_stub.ListMessages(
            pb.ListMessagesRequest(conversation_id=conv.id, page_size=size)
        ),
        INVALID,
        field="page_size",
    )


def test_page_size_1000_is_allowed(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    listed = grpc_stub.ListConversations(pb.ListConversationsRequest(page_size=1000, user_id=uid))
    assert [c.id for c in listed.conversations] == [conv.id]
    messages = grpc_stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=conv.id, page_size=1000)
    )
    assert list(messages.messages) == []


def test_context_window_limits_are_checked(grpc_stub, uid):
    conv = create(grpc_stub, uid)

    def window(**kwargs: Any) -> Callable[[], Any]:
        return lambda: grpc_stub.GetContextWindow(
            pb.GetContextWindowRequest(conversation_id=conv.id, **kwargs)
        )

    assert_status(window(max_messages=1001), INVALID, field="max_messages")
    assert_status(window(max_messages=-1), INVALID, field="max_messages")
    assert_status(window(max_tokens=-1), INVALID, field="max_tokens")
    assert_status(
        lambda: grpc_stub.ListMessages(
            pb.ListMessagesRequest(conversation_id=conv.id, start_seq=-1)
        ),
        INVALID,
        field="start_seq",
    )
    assert window(max_messages=1000)().omitted_message_count == 0


def _flip(token: str, index: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    old = token[index]
    new = alphabet[(alphabet.index(old) + 1) % len(alphabet)]
    return token[:index] + new + token[index + 1 :]


@pytest.fixture
def listed(grpc_stub, uid):
    """Three conversations of user ``uid`` (one with 3 messages) and first-page tokens."""
    convs = [create(grpc_stub, uid, agent_id="agent") for _ in range(3)]
    append(grpc_stub, convs[0].id, user("1"), user("2"), user("3"))
    conv_page = grpc_stub.ListConversations(pb.ListConversationsRequest(page_size=1, user_id=uid))
    msg_page = grpc_stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=convs[0].id, page_size=1)
    )
    assert conv_page.next_page_token
    assert msg_page.next_page_token
    return convs, conv_page.next_page_token, msg_page.next_page_token


def test_real_tokens_work(grpc_stub, uid, listed):
    convs, conv_token, msg_token = listed
    page = grpc_stub.ListConversations(
        pb.ListConversationsRequest(page_size=1, user_id=uid, page_token=conv_token)
    )
    assert len(page.conversations) == 1
    messages = grpc_stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=convs[0].id, page_size=1, page_token=msg_token)
    )
    assert [m.seq for m in messages.messages] == [2]


def test_tampered_page_tokens_are_invalid(grpc_stub, uid, listed):
    convs, conv_token, msg_token = listed
    body, _, mac = conv_token.partition(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    forged_body = base64.urlsafe_b64encode(payload.replace(b'"p":[', b'"p":[1,')).rstrip(b"=")
    tampered = [
        _flip(conv_token, 3),
        _flip(conv_token, len(body) // 2),
        _flip(conv_token, len(conv_token) - 2),
        conv_token[:-1],
        conv_token + "A",
        body,
        "." + mac,
        conv_token.replace(".", ""),
        forged_body.decode() + "." + mac,
        "garbage",
        "a.b",
        "!!!.???",
        "\u00e9\u00e9.\u00e9",
        "\x00.\x00",
        "A" * 5000 + "." + mac,
        conv_token * 2,
    ]
    for token in tampered:
        err = assert_status(
            lambda token=token: grpc_stub.ListConversations(
                pb.ListConversationsRequest(page_size=1, user_id=uid, page_token=token)
            ),
            INVALID,
            field="page_token",
        )
        assert_no_sql(err)
    for token in (_flip(msg_token, 2), _flip(msg_token, len(msg_token) - 3), "garbage"):
        assert_status(
            lambda token=token: grpc_stub.ListMessages(
                pb.ListMessagesRequest(conversation_id=convs[0].id, page_size=1, page_token=token)
            ),
            INVALID,
            field="page_token",
        )


def test_page_tokens_are_bound_to_their_list_and_filters(grpc_stub, uid, listed):
    convs, conv_token, msg_token = listed

    def conversations(token: str, **filters: Any) -> Callable[[], Any]:
        return lambda: grpc_stub.ListConversations(
            pb.ListConversationsRequest(page_size=1, page_token=token, **filters)
        )

    def messages(token: str, **params: Any) -> Callable[[], Any]:
        return lambda: grpc_stub.ListMessages(
            pb.ListMessagesRequest(page_size=1, page_token=token, **params)
        )

    # A ListMessages token is not a ListConversations token, and the other way round.
    assert_status(conversations(msg_token, user_id=uid), INVALID, field="page_token")
    assert_status(messages(conv_token, conversation_id=convs[0].id), INVALID, field="page_token")
    # Same list, different filters.
    assert_status(conversations(conv_token), INVALID, field="page_token")
    assert_status(conversations(conv_token, user_id=uid + "x"), INVALID, field="page_token")
    assert_status(
        conversations(conv_token, user_id=uid, agent_id="agent"), INVALID, field="page_token"
    )
    assert_status(
        conversations(conv_token, user_id=uid, status=pb.CONVERSATION_STATUS_ACTIVE),
        INVALID,
        field="page_token",
    )
    assert_status(messages(msg_token, conversation_id=convs[1].id), INVALID, field="page_token")
    assert_status(
        messages(msg_token, conversation_id=convs[0].id, newest_first=True),
        INVALID,
        field="page_token",
    )
    assert_status(
        messages(msg_token, conversation_id=convs[0].id, start_seq=1), INVALID, field="page_token"
    )
    # The page size may change between pages.
    page = grpc_stub.ListConversations(
        pb.ListConversationsRequest(page_size=5, user_id=uid, page_token=conv_token)
    )
    assert len(page.conversations) == 2


# -- updates and conflicts --------------------------------------------------


def test_update_mask_must_name_updatable_fields(grpc_stub, uid):
    conv = create(grpc_stub, uid)

    def update(*paths: str) -> Callable[[], Any]:
        return lambda: grpc_stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, title="new"), update_mask=mask(*paths)
            )
        )

    assert_status(update(), INVALID, field="update_mask")
    for path in (
        "nope",
        "message_count",
        "id",
        "version",
        "create_time",
        "user_id",
        "total_input_tokens",
        "Title",
        "metadata.key",
        "*",
        "",
    ):
        assert_status(update(path), INVALID, field="update_mask")
        assert_status(update("title", path), INVALID, field="update_mask")
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert got.conversation.title == ""
    assert got.conversation.version == 1


def test_stale_expected_version_is_aborted(grpc_stub, uid):
    conv = create(grpc_stub, uid)
    first = update_title(grpc_stub, conv.id, expected_version=1).conversation
    assert first.version == 2
    err = assert_status(
        lambda: update_title(grpc_stub, conv.id, expected_version=1), grpc.StatusCode.ABORTED
    )
    assert_no_sql(err)
    for stale in (0, -1, 3, 2**63 - 1):
        assert_status(
            lambda stale=stale: update_title(grpc_stub, conv.id, expected_version=stale),
            grpc.StatusCode.ABORTED,
        )
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert got.conversation.version == 2


def test_append_to_closed_conversation_fails_precondition(grpc_stub, db, uid):
    conv = create(grpc_stub, uid)
    append(grpc_stub, conv.id, user())
    grpc_stub.UpdateConversation(
        pb.UpdateConversationRequest(
            conversation=pb.Conversation(id=conv.id, status=pb.CONVERSATION_STATUS_CLOSED),
            update_mask=mask("status"),
        )
    )
    assert_status(lambda: append(grpc_stub, conv.id, user()), grpc.StatusCode.FAILED_PRECONDITION)
    # create_if_missing does not bypass the check.
    assert_status(
        lambda: grpc_stub.AppendMessages(
            pb.AppendMessagesRequest(
                conversation_id=conv.id, messages=[user()], create_if_missing=True
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert message_rows(db, conv.id) == 1
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert got.conversation.message_count == 1


def test_create_with_taken_id_already_exists(grpc_stub, uid):
    conv_id = f"taken-{uid}"
    first = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(
            conversation_id=conv_id, conversation=pb.Conversation(title="a")
        )
    ).conversation
    err = assert_status(
        lambda: grpc_stub.CreateConversation(
            pb.CreateConversationRequest(
                conversation_id=conv_id, conversation=pb.Conversation(title="b")
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert_no_sql(err)
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv_id))
    assert got.conversation == first


def test_request_id_reused_for_a_different_request_already_exists(grpc_stub, db, uid):
    conv = create(grpc_stub, uid)
    key = f"req-{uid}"
    first = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(conversation_id=conv.id, messages=[user("a")], request_id=key)
    )
    assert_status(
        lambda: grpc_stub.AppendMessages(
            pb.AppendMessagesRequest(conversation_id=conv.id, messages=[user("b")], request_id=key)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        message="request_id",
    )
    # An append's key belongs to its conversation: another may use it, and so
    # may another method (its keys are per tenant).
    other = create(grpc_stub, uid)
    grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(conversation_id=other.id, messages=[user("a")], request_id=key)
    )
    grpc_stub.CreateConversation(pb.CreateConversationRequest(request_id=key))
    # The identical retry still replays the first result.
    again = grpc_stub.AppendMessages(
        pb.AppendMessagesRequest(conversation_id=conv.id, messages=[user("a")], request_id=key)
    )
    assert [m.id for m in again.messages] == [m.id for m in first.messages]
    assert message_rows(db, conv.id) == 1
    assert message_rows(db, other.id) == 1

    create_key = f"create-{uid}"
    grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(title="x"), request_id=create_key)
    )
    assert_status(
        lambda: grpc_stub.CreateConversation(
            pb.CreateConversationRequest(
                conversation=pb.Conversation(title="y"), request_id=create_key
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


# -- a failing batch writes nothing -----------------------------------------


def test_failing_batch_appends_nothing(grpc_stub, db, uid):
    conv = create(grpc_stub, uid)
    append(grpc_stub, conv.id, user("before"))
    before = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    for bad, field in (
        (pb.Message(role=pb.MESSAGE_ROLE_USER), "messages[2].content"),
        (pb.Message(role=99, content="x"), "messages[2].role"),
        (user(token_count=-5), "messages[2].token_count"),
        (user("\x00"), "messages[2].content"),
    ):
        assert_status(
            lambda bad=bad: append(
                grpc_stub, conv.id, user("one", token_count=3), user("two", token_count=4), bad
            ),
            INVALID,
            field=field,
        )
    after = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert after.conversation == before.conversation
    assert after.conversation.message_count == 1
    assert after.conversation.total_input_tokens == 0
    assert message_rows(db, conv.id) == 1
    # The next good append continues the sequence without a gap.
    nxt = append(grpc_stub, conv.id, user("after"))
    assert nxt.messages[0].seq == 2


def test_failing_batch_with_third_message_invalid_names_it(grpc_stub, db, uid):
    conv = create(grpc_stub, uid)
    assert_status(
        lambda: append(grpc_stub, conv.id, user("a"), user("b"), pb.Message(role=1)),
        INVALID,
        field="messages[2].content",
    )
    assert message_rows(db, conv.id) == 0
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv.id))
    assert got.conversation.message_count == 0
    assert not got.conversation.HasField("last_message_time")


def test_failing_batch_with_create_if_missing_creates_nothing(grpc_stub, db, uid):
    conv_id = f"lazy-{uid}"
    bad_requests = [
        pb.AppendMessagesRequest(
            conversation_id=conv_id,
            messages=[user("a"), user("b"), pb.Message(role=1)],
            create_if_missing=True,
        ),
        pb.AppendMessagesRequest(
            conversation_id=conv_id,
            messages=[user("a")],
            create_if_missing=True,
            conversation=pb.Conversation(title="t" * 1025),
        ),
        pb.AppendMessagesRequest(
            conversation_id=conv_id,
            messages=[user("a")],
            create_if_missing=True,
            request_id="r" * 129,
        ),
    ]
    fields = ["messages[2].content", "conversation.title", "request_id"]
    for request, field in zip(bad_requests, fields, strict=True):
        assert_status(
            lambda request=request: grpc_stub.AppendMessages(request), INVALID, field=field
        )
    assert_status(
        lambda: grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=conv_id)),
        NOT_FOUND,
    )
    assert conversation_rows(db, conv_id) == 0
    assert message_rows(db, conv_id) == 0
    key_rows = db.execute(
        "SELECT count(*) FROM idempotency_keys WHERE resource_id = %s", (conv_id,)
    ).fetchone()[0]
    assert key_rows == 0


# -- no leaks ---------------------------------------------------------------


def test_errors_do_not_leak_sql_or_connection_strings(grpc_stub, uid, listed):
    convs, _, msg_token = listed
    errors = [
        rpc_error(
            lambda: grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id="x y"))
        ),
        rpc_error(
            lambda: grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=f"n-{uid}"))
        ),
        rpc_error(
            lambda: grpc_stub.CreateConversation(
                pb.CreateConversationRequest(conversation_id=convs[0].id)
            )
        ),
        rpc_error(
            lambda: grpc_stub.ListConversations(pb.ListConversationsRequest(page_token=msg_token))
        ),
        rpc_error(lambda: update_title(grpc_stub, convs[0].id, expected_version=99)),
        rpc_error(lambda: append(grpc_stub, convs[0].id, pb.Message(role=1, token_count=-1))),
        rpc_error(
            lambda: grpc_stub.SetMessageFeedback(
                pb.SetMessageFeedbackRequest(
                    conversation_id=convs[0].id,
                    message_id=str(uuid.uuid4()),
                    rating=pb.FEEDBACK_RATING_POSITIVE,
                )
            )
        ),
    ]
    codes = {err.code() for err in errors}
    assert grpc.StatusCode.UNKNOWN not in codes
    assert grpc.StatusCode.INTERNAL not in codes
    for err in errors:
        assert_no_sql(err)
