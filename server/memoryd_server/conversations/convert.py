"""Conversation and message rows to protos, and the enums between the two."""

from __future__ import annotations

from memoryd.v1 import conversation_pb2 as pb
from memoryd_server.conversations import models
from memoryd_server.conversations.search import MessageFilter
from memoryd_server.errors import InvalidArgument
from memoryd_server.ids import check_resource_id
from memoryd_server.protoconv import dict_to_struct, time_range, timestamp
from memoryd_server.validation import check_chars, check_enum

# SearchMessages' filter names at most this many conversations.
MAX_SEARCH_CONVERSATIONS = 100

STATUS_TO_DB: dict[pb.ConversationStatus.ValueType, models.Status] = {
    pb.CONVERSATION_STATUS_ACTIVE: "active",
    pb.CONVERSATION_STATUS_IDLE: "idle",
    pb.CONVERSATION_STATUS_CLOSED: "closed",
}
STATUS_TO_PB = {v: k for k, v in STATUS_TO_DB.items()}
ROLE_TO_DB: dict[pb.MessageRole.ValueType, models.Role] = {
    pb.MESSAGE_ROLE_USER: "user",
    pb.MESSAGE_ROLE_ASSISTANT: "assistant",
    pb.MESSAGE_ROLE_SYSTEM: "system",
    pb.MESSAGE_ROLE_TOOL: "tool",
}
ROLE_TO_PB = {v: k for k, v in ROLE_TO_DB.items()}
RATING_TO_DB: dict[pb.FeedbackRating.ValueType, models.Rating] = {
    pb.FEEDBACK_RATING_POSITIVE: "positive",
    pb.FEEDBACK_RATING_NEGATIVE: "negative",
}
RATING_TO_PB = {v: k for k, v in RATING_TO_DB.items()}


def conversation_to_pb(c: models.Conversation) -> pb.Conversation:
    """The proto of a conversation row."""
    return pb.Conversation(
        id=c.id,
        user_id=c.user_id,
        agent_id=c.agent_id,
        app_name=c.app_name,
        title=c.title,
        status=STATUS_TO_PB[c.status],
        summary=c.summary,
        metadata=dict_to_struct(c.metadata),
        state=dict_to_struct(c.state),
        version=c.version,
        message_count=c.message_count,
        total_input_tokens=c.total_input_tokens,
        total_output_tokens=c.total_output_tokens,
        last_message_time=timestamp(c.last_message_time),
        create_time=timestamp(c.create_time),
        update_time=timestamp(c.update_time),
        created_by=c.created_by,
        created_by_name=c.created_by_name,
        updated_by=c.updated_by,
        updated_by_name=c.updated_by_name,
    )


def message_to_pb(m: models.Message) -> pb.Message:
    """The proto of a message row."""
    feedback = None
    if m.feedback_rating is not None:
        feedback = pb.Feedback(
            rating=RATING_TO_PB[m.feedback_rating],
            comment=m.feedback_comment or "",
            update_time=timestamp(m.feedback_time),
        )
    return pb.Message(
        id=str(m.id),
        conversation_id=m.conversation_id,
        seq=m.seq,
        role=ROLE_TO_PB[m.role],
        content=m.content,
        name=m.name,
        tool_calls=[
            pb.ToolCall(
                id=t.get("id", ""),
                name=t.get("name", ""),
                arguments=dict_to_struct(t.get("arguments")),
            )
            for t in m.tool_calls
        ],
        tool_call_id=m.tool_call_id,
        token_count=m.token_count,
        model=m.model,
        metadata=dict_to_struct(m.metadata),
        feedback=feedback,
        create_time=timestamp(m.create_time),
        created_by=m.created_by,
        created_by_name=m.created_by_name,
    )


def appended_to_pb(m: models.Message) -> pb.Message:
    """What AppendMessages returns by default: the fields the server chose, not the caller's text.

    The caller holds the content already; echoing it made the answer to a large
    append bigger than clients receive, after the append had committed.
    """
    return pb.Message(
        id=str(m.id),
        conversation_id=m.conversation_id,
        seq=m.seq,
        role=ROLE_TO_PB[m.role],
        token_count=m.token_count,
        create_time=timestamp(m.create_time),
        created_by=m.created_by,
        created_by_name=m.created_by_name,
    )


def message_filter(field: str, f: pb.MessageFilter) -> MessageFilter:
    """A validated SearchMessages filter; each failure names the field."""
    if len(f.conversation_ids) > MAX_SEARCH_CONVERSATIONS:
        raise InvalidArgument(
            f"{field}.conversation_ids", f"has more than {MAX_SEARCH_CONVERSATIONS} ids"
        )
    roles: list[str] = []
    for i, role in enumerate(f.roles):
        name = ROLE_TO_DB.get(check_enum(f"{field}.roles[{i}]", role, pb.MessageRole.DESCRIPTOR))
        if name is None:
            raise InvalidArgument(f"{field}.roles[{i}]", "must not be UNSPECIFIED")
        roles.append(name)
    start, end = time_range(field, f, "create_time")
    return MessageFilter(
        conversation_ids=[check_resource_id(f"{field}.conversation_ids[{i}]", c)
                          for i, c in enumerate(f.conversation_ids)],
        user_id=check_chars(f"{field}.user_id", f.user_id, 256),
        app_name=check_chars(f"{field}.app_name", f.app_name, 256),
        agent_id=check_chars(f"{field}.agent_id", f.agent_id, 256),
        roles=roles, create_time_start=start, create_time_end=end,
    )  # fmt: skip
