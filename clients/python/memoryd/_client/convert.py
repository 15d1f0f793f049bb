"""Conversions between protobuf messages and the client's plain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2

from memoryd._client import types as t
from memoryd._client.errors import FieldViolation, InvalidArgument
from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import memory_pb2 as mpb

# Each enum's prefix: "MESSAGE_ROLE_USER" <-> "user".
_PREFIXES: dict[str, str] = {
    "MessageRole": "MESSAGE_ROLE_",
    "ConversationStatus": "CONVERSATION_STATUS_",
    "FeedbackRating": "FEEDBACK_RATING_",
    "MemoryType": "MEMORY_TYPE_",
    "MemoryTier": "MEMORY_TIER_",
    "MemoryStatus": "MEMORY_STATUS_",
    "MemorySourceKind": "MEMORY_SOURCE_KIND_",
    "MemoryEventType": "MEMORY_EVENT_TYPE_",
    "Role": "ROLE_",
    "TenantState": "TENANT_STATE_",
    "SearchMode": "SEARCH_MODE_",
    "TextMatch": "TEXT_MATCH_",
    "Fusion": "FUSION_",
}


def enum_name(enum: Any, value: int) -> str:
    """``"user"`` for MESSAGE_ROLE_USER; ``"unknown_7"`` for a value newer than this client."""
    prefix = _PREFIXES[enum.DESCRIPTOR.name]
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return f"unknown_{value}"


def enum_value(enum: Any, name: str | int | None, field: str) -> Any:
    # Any: mypy-protobuf types each enum's numbers as its own NewType.
    """The number of ``name`` (short or full, any case, or the number itself); 0 for None."""
    if name is None:
        return 0
    if isinstance(name, int):
        return name
    prefix = _PREFIXES[enum.DESCRIPTOR.name]
    full = name.upper()
    if not full.startswith(prefix):
        full = prefix + full
    try:
        return enum.Value(full)
    except ValueError:
        raise InvalidArgument(
            f"{field}: unknown value {name!r}",
            field_violations=(FieldViolation(field, f"unknown value {name!r}"),),
        ) from None


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    """A Struct holding ``value``; None stays None."""
    if value is None:
        return None
    result = struct_pb2.Struct()
    result.update(dict(value))
    return result


def from_struct(value: struct_pb2.Struct) -> dict[str, Any]:
    """The dict a Struct holds (numbers come back as floats, as JSON has them)."""
    return json_format.MessageToDict(value)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp for ``value``; naive datetimes are taken as UTC."""
    if value is None:
        return None
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(aware(value))
    return result


def aware(value: datetime) -> datetime:
    """``value`` with a time zone; naive datetimes are taken as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def from_timestamp(message: Any, name: str) -> datetime | None:
    """The aware UTC datetime in field ``name`` of ``message``; None when unset."""
    if not message.HasField(name):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, name)
    return value.ToDatetime(tzinfo=UTC)


def duration(value: timedelta | None) -> duration_pb2.Duration | None:
    """A Duration for ``value``; None stays None."""
    if value is None:
        return None
    result = duration_pb2.Duration()
    result.FromTimedelta(value)
    return result


def floats(value: t.Embedding | None) -> list[float]:
    """A list of floats from a sequence or an array with ``tolist()``."""
    if value is None:
        return []
    if isinstance(value, Sequence):
        return [float(x) for x in value]
    return [float(x) for x in value.tolist()]


# --- conversations -----------------------------------------------------------


def tool_call_pb(call: t.ToolCall) -> cpb.ToolCall:
    return cpb.ToolCall(id=call.id, name=call.name, arguments=struct(call.arguments))


def new_message_pb(message: t.NewMessage | Mapping[str, Any], index: int) -> cpb.Message:
    """The proto of a message to append; dicts take NewMessage's field names."""
    if not isinstance(message, t.NewMessage):
        message = t.NewMessage(**message)
    return cpb.Message(
        role=enum_value(cpb.MessageRole, message.role, f"messages[{index}].role"),
        content=message.content,
        name=message.name,
        tool_calls=[tool_call_pb(c) for c in message.tool_calls],
        tool_call_id=message.tool_call_id,
        token_count=message.token_count,
        model=message.model,
        metadata=struct(message.metadata),
    )


def message(pb: cpb.Message) -> t.Message:
    feedback = None
    if pb.HasField("feedback"):
        feedback = t.Feedback(
            rating=enum_name(cpb.FeedbackRating, pb.feedback.rating),
            comment=pb.feedback.comment,
            update_time=from_timestamp(pb.feedback, "update_time"),
        )
    return t.Message(
        id=pb.id,
        conversation_id=pb.conversation_id,
        seq=pb.seq,
        role=enum_name(cpb.MessageRole, pb.role),
        content=pb.content,
        name=pb.name,
        tool_calls=tuple(
            t.ToolCall(id=c.id, name=c.name, arguments=from_struct(c.arguments))
            for c in pb.tool_calls
        ),
        tool_call_id=pb.tool_call_id,
        token_count=pb.token_count,
        model=pb.model,
        metadata=from_struct(pb.metadata),
        feedback=feedback,
        create_time=from_timestamp(pb, "create_time"),
        created_by=pb.created_by,
        created_by_name=pb.created_by_name,
    )


def conversation(pb: cpb.Conversation) -> t.Conversation:
    return t.Conversation(
        id=pb.id,
        user_id=pb.user_id,
        agent_id=pb.agent_id,
        app_name=pb.app_name,
        title=pb.title,
        status=enum_name(cpb.ConversationStatus, pb.status),
        summary=pb.summary,
        metadata=from_struct(pb.metadata),
        state=from_struct(pb.state),
        version=pb.version,
        message_count=pb.message_count,
        total_input_tokens=pb.total_input_tokens,
        total_output_tokens=pb.total_output_tokens,
        last_message_time=from_timestamp(pb, "last_message_time"),
        create_time=from_timestamp(pb, "create_time"),
        update_time=from_timestamp(pb, "update_time"),
        created_by=pb.created_by,
        created_by_name=pb.created_by_name,
        updated_by=pb.updated_by,
        updated_by_name=pb.updated_by_name,
    )


# --- memories ----------------------------------------------------------------


def memory_pb(memory: t.NewMemory, field: str = "memory") -> mpb.Memory:
    """The proto of a memory to create or to supersede with."""
    pb = mpb.Memory(
        namespace=list(memory.namespace),
        key=memory.key,
        memory_type=enum_value(mpb.MemoryType, memory.memory_type, f"{field}.memory_type"),
        content=memory.content,
        subject=memory.subject,
        embedding=floats(memory.embedding),
        embedding_model=memory.embedding_model,
        importance=memory.importance,
        pinned=memory.pinned,
        tier=enum_value(mpb.MemoryTier, memory.tier, f"{field}.tier"),
        user_id=memory.user_id,
        agent_id=memory.agent_id,
        tags=list(memory.tags),
        metadata=struct(memory.metadata),
        related_to=list(memory.related_to),
        contradicts=list(memory.contradicts),
        expire_time=timestamp(memory.expire_time),
        occur_time=timestamp(memory.occur_time),
    )
    if memory.confidence is not None:
        pb.confidence = memory.confidence
    if memory.source is not None:
        src = memory.source
        pb.source.CopyFrom(
            mpb.MemorySource(
                kind=enum_value(mpb.MemorySourceKind, src.kind, f"{field}.source.kind"),
                conversation_id=src.conversation_id,
                message_ids=list(src.message_ids),
                extraction_model=src.extraction_model,
            )
        )
    return pb


def memory(pb: mpb.Memory) -> t.Memory:
    source = None
    if pb.HasField("source"):
        source = t.MemorySource(
            kind=enum_name(mpb.MemorySourceKind, pb.source.kind),
            conversation_id=pb.source.conversation_id,
            message_ids=tuple(pb.source.message_ids),
            extraction_model=pb.source.extraction_model,
        )
    return t.Memory(
        id=pb.id,
        namespace=tuple(pb.namespace),
        key=pb.key,
        memory_type=enum_name(mpb.MemoryType, pb.memory_type),
        content=pb.content,
        subject=pb.subject,
        embedding=tuple(pb.embedding),
        embedding_model=pb.embedding_model,
        importance=pb.importance,
        confidence=pb.confidence if pb.HasField("confidence") else None,
        pinned=pb.pinned,
        tier=enum_name(mpb.MemoryTier, pb.tier),
        status=enum_name(mpb.MemoryStatus, pb.status),
        source=source,
        user_id=pb.user_id,
        agent_id=pb.agent_id,
        tags=tuple(pb.tags),
        metadata=from_struct(pb.metadata),
        related_to=tuple(pb.related_to),
        contradicts=tuple(pb.contradicts),
        version=pb.version,
        superseded_by=pb.superseded_by,
        access_count=pb.access_count,
        last_access_time=from_timestamp(pb, "last_access_time"),
        expire_time=from_timestamp(pb, "expire_time"),
        create_time=from_timestamp(pb, "create_time"),
        update_time=from_timestamp(pb, "update_time"),
        occur_time=from_timestamp(pb, "occur_time"),
    )


def optional_memory(parent: Any, name: str) -> t.Memory | None:
    return memory(getattr(parent, name)) if parent.HasField(name) else None


def memory_filter_pb(f: t.MemoryFilter | None) -> mpb.MemoryFilter | None:
    if f is None:
        return None
    return mpb.MemoryFilter(
        namespace_prefix=list(f.namespace_prefix),
        memory_types=[enum_value(mpb.MemoryType, v, "filter.memory_types") for v in f.memory_types],
        tags_any=list(f.tags_any),
        tags_all=list(f.tags_all),
        statuses=[enum_value(mpb.MemoryStatus, v, "filter.statuses") for v in f.statuses],
        tiers=[enum_value(mpb.MemoryTier, v, "filter.tiers") for v in f.tiers],
        user_id=f.user_id,
        agent_id=f.agent_id,
        metadata=struct(f.metadata),
        create_time_start=timestamp(f.create_time_start),
        create_time_end=timestamp(f.create_time_end),
        include_expired=f.include_expired,
        occur_time_start=timestamp(f.occur_time_start),
        occur_time_end=timestamp(f.occur_time_end),
    )


def weights_pb(w: t.RankingWeights | None) -> mpb.RankingWeights | None:
    if w is None:
        return None
    return mpb.RankingWeights(
        similarity=w.similarity,
        text=w.text,
        recency=w.recency,
        importance=w.importance,
        recency_half_life=duration(w.recency_half_life),
    )


def search_result(pb: mpb.SearchResult) -> t.SearchResult:
    return t.SearchResult(
        memory=memory(pb.memory),
        score=pb.score,
        similarity_score=pb.similarity_score,
        text_score=pb.text_score,
        recency_score=pb.recency_score,
        importance_score=pb.importance_score,
        fusion_score=pb.fusion_score,
        vector_rank=pb.vector_rank,
        text_rank=pb.text_rank,
    )


def memory_event(pb: mpb.MemoryEvent) -> t.MemoryEvent:
    return t.MemoryEvent(
        seq=pb.seq,
        memory_id=pb.memory_id,
        event_type=enum_name(mpb.MemoryEventType, pb.event_type),
        actor=pb.actor,
        actor_name=pb.actor_name,
        reason=pb.reason,
        event_time=from_timestamp(pb, "event_time"),
        before=optional_memory(pb, "before"),
        after=optional_memory(pb, "after"),
    )


def strings(value: Sequence[str]) -> list[str]:
    """A list copy, refusing a bare string where a path of segments is expected."""
    if isinstance(value, str):
        raise TypeError("expected a sequence of strings, not a string")
    return list(value)
