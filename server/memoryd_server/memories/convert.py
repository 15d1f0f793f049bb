"""Memory protos to validated records and back; each failure names the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from memoryd.v1 import memory_pb2 as pb
from memoryd_server.config import MAX_EMBEDDING_DIM
from memoryd_server.errors import InvalidArgument
from memoryd_server.ids import check_resource_id, parse_uuid
from memoryd_server.memories.models import Embedding, Memory, MemoryFilter, NewMemory
from memoryd_server.protoconv import (
    dict_to_struct,
    struct_to_dict,
    time_range,
    timestamp,
    to_datetime,
)
from memoryd_server.validation import check_chars, check_enum, check_text

MAX_NAMESPACE_DEPTH = 16
MAX_SEGMENT_CHARS = 128
# UTF-8 bytes of a namespace (segments and separators) and key together. They
# share btree index rows, which PostgreSQL caps at 2,704 bytes: 16 segments of
# 128 CJK characters passed the character limits and failed in the database.
# Every ASCII namespace and key within the character limits fits.
MAX_NAMESPACE_KEY_BYTES = 2400
MAX_TAGS = 32
MAX_TAG_CHARS = 128
MAX_LINKS = 100

TYPES = {
    pb.MEMORY_TYPE_SEMANTIC: "semantic", pb.MEMORY_TYPE_EPISODIC: "episodic",
    pb.MEMORY_TYPE_PROCEDURAL: "procedural", pb.MEMORY_TYPE_AGENT_PRIVATE: "agent_private",
    pb.MEMORY_TYPE_SHARED: "shared", pb.MEMORY_TYPE_IDENTITY: "identity",
    pb.MEMORY_TYPE_USER_PROFILE: "user_profile",
}  # fmt: skip
TIERS = {pb.MEMORY_TIER_HOT: "hot", pb.MEMORY_TIER_WARM: "warm", pb.MEMORY_TIER_COLD: "cold"}
STATUSES = {
    pb.MEMORY_STATUS_ACTIVE: "active", pb.MEMORY_STATUS_SUPERSEDED: "superseded",
    pb.MEMORY_STATUS_ARCHIVED: "archived", pb.MEMORY_STATUS_DISPUTED: "disputed",
}  # fmt: skip
SOURCES = {
    pb.MEMORY_SOURCE_KIND_EXPLICIT: "explicit", pb.MEMORY_SOURCE_KIND_EXTRACTION: "extraction",
    pb.MEMORY_SOURCE_KIND_SYSTEM: "system", pb.MEMORY_SOURCE_KIND_FEEDBACK: "feedback",
    pb.MEMORY_SOURCE_KIND_CONSOLIDATION: "consolidation",
    pb.MEMORY_SOURCE_KIND_COMPACTION: "compaction",
}  # fmt: skip
EVENTS = {
    "created": pb.MEMORY_EVENT_TYPE_CREATED, "updated": pb.MEMORY_EVENT_TYPE_UPDATED,
    "superseded": pb.MEMORY_EVENT_TYPE_SUPERSEDED, "archived": pb.MEMORY_EVENT_TYPE_ARCHIVED,
    "purged": pb.MEMORY_EVENT_TYPE_PURGED,
}  # fmt: skip


def _reverse(mapping: dict[Any, str]) -> dict[str, Any]:
    return {v: k for k, v in mapping.items()}


_TYPES_PB, _TIERS_PB = _reverse(TYPES), _reverse(TIERS)
_STATUSES_PB, _SOURCES_PB = _reverse(STATUSES), _reverse(SOURCES)


def enum_value(
    field: str, value: int, mapping: dict[Any, str], descriptor: Any, default: str | None
) -> str:
    """The stored name of an enum value; UNSPECIFIED is ``default`` (or rejected)."""
    check_enum(field, value, descriptor)
    if value == 0:
        if default is None:
            raise InvalidArgument(field, "must not be UNSPECIFIED")
        return default
    return mapping[value]


def namespace(field: str, segments: Sequence[str], *, allow_empty: bool = False) -> list[str]:
    """A validated namespace path."""
    if not segments and not allow_empty:
        raise InvalidArgument(field, "is required (1 or more segments)")
    if len(segments) > MAX_NAMESPACE_DEPTH:
        raise InvalidArgument(field, f"has {len(segments)} segments; at most {MAX_NAMESPACE_DEPTH}")
    for i, segment in enumerate(segments):
        if not segment:
            raise InvalidArgument(f"{field}[{i}]", "is empty")
        if len(segment) > MAX_SEGMENT_CHARS:
            raise InvalidArgument(f"{field}[{i}]", f"is over {MAX_SEGMENT_CHARS} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in segment):
            raise InvalidArgument(f"{field}[{i}]", "must not contain control characters")
    return list(segments)


def check_index_bytes(field: str, segments: Sequence[str], key: str | None) -> None:
    """INVALID_ARGUMENT when a namespace and key are too long in bytes to index together."""
    size = sum(len(x.encode("utf-8", "surrogatepass")) + 1 for x in segments) + len(
        (key or "").encode("utf-8", "surrogatepass")
    )
    if size > MAX_NAMESPACE_KEY_BYTES:
        raise InvalidArgument(
            field,
            f"takes {size} UTF-8 bytes with the key; namespace and key take at most"
            f" {MAX_NAMESPACE_KEY_BYTES}",
        )


def embedding(field: str, values: Sequence[float], dim: int | None) -> Embedding | None:
    """The embedding as float32, or None when empty; INVALID_ARGUMENT if unusable.

    ``dim`` None: any length up to pgvector's index limit (the model's own
    dimension is checked once the model is known).
    """
    if not values:
        return None
    if dim is not None and len(values) != dim:
        raise InvalidArgument(field, f"has {len(values)} dimensions; the model makes {dim}")
    if len(values) > MAX_EMBEDDING_DIM:
        raise InvalidArgument(field, f"has {len(values)} dimensions; at most {MAX_EMBEDDING_DIM}")
    vector = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(vector)):
        raise InvalidArgument(field, "must hold finite numbers (no NaN or Infinity)")
    if not np.any(vector):
        raise InvalidArgument(field, "must not be all zeros (cosine distance is undefined)")
    return vector


def tags(field: str, values: Sequence[str]) -> list[str]:
    """Validated tags, duplicates removed, order kept."""
    if len(values) > MAX_TAGS:
        raise InvalidArgument(field, f"has {len(values)} tags; at most {MAX_TAGS}")
    for i, tag in enumerate(values):
        if not tag:
            raise InvalidArgument(f"{field}[{i}]", "is empty")
        check_chars(f"{field}[{i}]", tag, MAX_TAG_CHARS)
    return list(dict.fromkeys(values))


def links(field: str, values: Sequence[str]) -> list[Any]:
    """Validated memory ids."""
    if len(values) > MAX_LINKS:
        raise InvalidArgument(field, f"has {len(values)} ids; at most {MAX_LINKS}")
    return [parse_uuid(f"{field}[{i}]", v) for i, v in enumerate(values)]


def importance(field: str, value: int, *, default: int | None) -> int:
    """1..10; 0 is ``default`` where there is one."""
    if value == 0 and default is not None:
        return default
    if not 1 <= value <= 10:
        raise InvalidArgument(field, f"must be 1 to 10, got {value}")
    return value


def confidence(field: str, value: float) -> float:
    """0..1."""
    if not (np.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidArgument(field, f"must be 0 to 1, got {value}")
    return float(value)


def content(field: str, value: str, max_bytes: int) -> str:
    """Required text within the server's content limit."""
    if not value.strip():
        raise InvalidArgument(field, "is required")
    return check_text(field, value, max_bytes)


def new_memory(
    field: str,
    m: pb.Memory,
    *,
    max_bytes: int,
    ttl: dt.timedelta | None = None,
    namespace_default: bool = False,
) -> NewMemory:
    """A NewMemory from a request's Memory, every field checked."""
    expire_time = (
        to_datetime(f"{field}.expire_time", m.expire_time) if m.HasField("expire_time") else None
    )
    if ttl is not None:
        if expire_time is not None:
            raise InvalidArgument("ttl", "give ttl or memory.expire_time, not both")
        try:
            expire_time = dt.datetime.now(dt.UTC) + ttl
        except OverflowError:
            raise InvalidArgument("ttl", "ends after the year 9999") from None
    status = enum_value(f"{field}.status", m.status, STATUSES,
                        pb.MemoryStatus.DESCRIPTOR, "active")  # fmt: skip
    if status not in {"active", "disputed"}:
        raise InvalidArgument(f"{field}.status", "new memories are ACTIVE or DISPUTED")
    source = m.source
    ns = namespace(f"{field}.namespace", m.namespace, allow_empty=namespace_default)
    key = check_chars(f"{field}.key", m.key, 256) or None
    check_index_bytes(f"{field}.namespace", ns, key)
    return NewMemory(
        namespace=ns,
        content=content(f"{field}.content", m.content, max_bytes),
        key=key,
        memory_type=enum_value(f"{field}.memory_type", m.memory_type, TYPES,
                               pb.MemoryType.DESCRIPTOR, "semantic"),
        subject=check_chars(f"{field}.subject", m.subject, 1024),
        embedding=embedding(f"{field}.embedding", m.embedding, None),
        embedding_model=check_chars(f"{field}.embedding_model", m.embedding_model, 256),
        importance=importance(f"{field}.importance", m.importance, default=5),
        confidence=(confidence(f"{field}.confidence", m.confidence)
                    if m.HasField("confidence") else 1.0),
        pinned=m.pinned,
        tier=enum_value(f"{field}.tier", m.tier, TIERS, pb.MemoryTier.DESCRIPTOR, "hot"),
        status=status,
        source_kind=enum_value(f"{field}.source.kind", source.kind, SOURCES,
                               pb.MemorySourceKind.DESCRIPTOR, "explicit"),
        source_conversation_id=(
            check_resource_id(f"{field}.source.conversation_id", source.conversation_id)
            if source.conversation_id else ""),
        source_message_ids=[str(u) for u in links(f"{field}.source.message_ids",
                                                  source.message_ids)],
        extraction_model=check_chars(f"{field}.source.extraction_model",
                                    source.extraction_model, 256),
        user_id=check_chars(f"{field}.user_id", m.user_id, 256),
        agent_id=check_chars(f"{field}.agent_id", m.agent_id, 256),
        tags=tags(f"{field}.tags", m.tags),
        metadata=struct_to_dict(f"{field}.metadata", m.metadata, max_bytes),
        related_to=links(f"{field}.related_to", m.related_to),
        contradicts=links(f"{field}.contradicts", m.contradicts),
        expire_time=expire_time,
        occur_time=(to_datetime(f"{field}.occur_time", m.occur_time)
                    if m.HasField("occur_time") else None),
    )  # fmt: skip


def memory_filter(field: str, f: pb.MemoryFilter, *, max_bytes: int) -> MemoryFilter:
    """A validated MemoryFilter (ACTIVE only when no status is named)."""

    def names(sub: str, values: Sequence[int], mapping: dict[Any, str], desc: Any) -> list[str]:
        return [enum_value(f"{field}.{sub}[{i}]", v, mapping, desc, None)
                for i, v in enumerate(values)]  # fmt: skip

    start, end = time_range(field, f, "create_time")
    occur_start, occur_end = time_range(field, f, "occur_time")
    return MemoryFilter(
        namespace_prefix=namespace(f"{field}.namespace_prefix", f.namespace_prefix,
                                   allow_empty=True),
        memory_types=names("memory_types", f.memory_types, TYPES, pb.MemoryType.DESCRIPTOR),
        tags_any=tags(f"{field}.tags_any", f.tags_any),
        tags_all=tags(f"{field}.tags_all", f.tags_all),
        statuses=names("statuses", f.statuses, STATUSES, pb.MemoryStatus.DESCRIPTOR)
        or ["active"],
        tiers=names("tiers", f.tiers, TIERS, pb.MemoryTier.DESCRIPTOR),
        user_id=check_chars(f"{field}.user_id", f.user_id, 256),
        agent_id=check_chars(f"{field}.agent_id", f.agent_id, 256),
        metadata=struct_to_dict(f"{field}.metadata", f.metadata, max_bytes),
        create_time_start=start,
        create_time_end=end,
        occur_time_start=occur_start,
        occur_time_end=occur_end,
        include_expired=f.include_expired,
    )  # fmt: skip


def _floats(value: Any) -> list[float]:
    """An embedding as floats: numpy arrays from requests, pgvector Vectors from rows."""
    if value is None:
        return []
    if hasattr(value, "to_list"):
        return list(value.to_list())
    return list(value.tolist())


def memory_to_pb(m: Memory) -> pb.Memory:
    """The proto of a memory (with its embedding when it was read)."""
    return pb.Memory(
        id=str(m.id), namespace=m.namespace, key=m.key or "",
        memory_type=_TYPES_PB[m.memory_type], content=m.content, subject=m.subject,
        embedding=_floats(m.embedding),
        embedding_model=m.embedding_model, importance=m.importance,
        confidence=m.confidence, pinned=m.pinned, tier=_TIERS_PB[m.tier],
        status=_STATUSES_PB[m.status],
        source=pb.MemorySource(
            kind=_SOURCES_PB[m.source_kind], conversation_id=m.source_conversation_id,
            message_ids=m.source_message_ids, extraction_model=m.extraction_model),
        user_id=m.user_id, agent_id=m.agent_id, tags=m.tags,
        metadata=dict_to_struct(m.metadata), related_to=[str(u) for u in m.related_to],
        contradicts=[str(u) for u in m.contradicts], version=m.version,
        superseded_by=str(m.superseded_by) if m.superseded_by else "",
        access_count=m.access_count, last_access_time=timestamp(m.last_access_time),
        expire_time=timestamp(m.expire_time), create_time=timestamp(m.create_time),
        update_time=timestamp(m.update_time), occur_time=timestamp(m.occur_time),
    )  # fmt: skip
