"""Memory records as the store reads and writes them, and their domain rules."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

# float32 arrays from requests; rows read back hold pgvector's Vector instead.
Embedding = npt.NDArray[np.float32]

# U+001F joins namespace segments in ns_path; segments may not contain it.
NAMESPACE_SEPARATOR = "\x1f"

# Statuses whose (namespace, key) must be unique, and which expiry acts on.
LIVE_STATUSES = ("active", "disputed")

# Fields UpdateMemory may replace.
UPDATABLE_FIELDS = frozenset({
    "content", "subject", "embedding", "embedding_model", "memory_type", "importance",
    "confidence", "pinned", "tier", "status", "tags", "metadata", "related_to", "contradicts",
    "expire_time", "occur_time",
})  # fmt: skip


def ns_path(namespace: list[str]) -> str:
    """The namespace as one sortable string (see NAMESPACE_SEPARATOR)."""
    return NAMESPACE_SEPARATOR.join(namespace)


@dataclass(frozen=True)
class NewMemory:
    """The caller-supplied fields of a memory to create."""

    namespace: list[str]
    content: str
    key: str | None = None
    memory_type: str = "semantic"
    subject: str = ""
    embedding: Embedding | None = None
    embedding_model: str = ""
    importance: int = 5
    confidence: float = 1.0
    pinned: bool = False
    tier: str = "hot"
    status: str = "active"
    source_kind: str = "explicit"
    source_conversation_id: str = ""
    source_message_ids: list[str] = field(default_factory=list)
    extraction_model: str = ""
    user_id: str = ""
    agent_id: str = ""
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    related_to: list[uuid.UUID] = field(default_factory=list)
    contradicts: list[uuid.UUID] = field(default_factory=list)
    expire_time: dt.datetime | None = None
    # None: when it is created (a trigger of migration 0010 fills it in).
    occur_time: dt.datetime | None = None


@dataclass(frozen=True)
class Memory:
    """A row of ``memories`` (or a state rebuilt from its history)."""

    id: uuid.UUID
    namespace: list[str]
    key: str | None
    memory_type: str
    content: str
    subject: str
    embedding: Any
    embedding_model: str
    importance: int
    confidence: float
    pinned: bool
    tier: str
    status: str
    source_kind: str
    source_conversation_id: str
    source_message_ids: list[str]
    extraction_model: str
    user_id: str
    agent_id: str
    tags: list[str]
    metadata: dict[str, Any]
    related_to: list[uuid.UUID]
    contradicts: list[uuid.UUID]
    version: int
    superseded_by: uuid.UUID | None
    access_count: int
    last_access_time: dt.datetime | None
    expire_time: dt.datetime | None
    create_time: dt.datetime
    update_time: dt.datetime
    occur_time: dt.datetime


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Memory))
# Kept in memory_access (0005), not in memories: reads fetch them by subquery.
ACCESS_COLUMNS = frozenset({"access_count", "last_access_time"})
NEW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(NewMemory))

_UUIDS = ("id", "superseded_by")
_UUID_LISTS = ("related_to", "contradicts")
_TIMES = ("last_access_time", "expire_time", "create_time", "update_time", "occur_time")


def to_state(memory: Memory) -> dict[str, Any]:
    """A JSON-ready snapshot of ``memory`` for the history (without its embedding)."""
    state: dict[str, Any] = {}
    for name in COLUMNS:
        value = getattr(memory, name)
        if name == "embedding":
            continue
        if name in _UUIDS:
            value = None if value is None else str(value)
        elif name in _UUID_LISTS:
            value = [str(v) for v in value]
        elif name in _TIMES:
            value = None if value is None else value.isoformat()
        state[name] = value
    return state


def from_state(state: dict[str, Any]) -> Memory:
    """The memory a history snapshot describes (its embedding is None)."""
    values = dict(state, embedding=None)
    # Snapshots taken before occur_time existed: it was the creation time then.
    values.setdefault("occur_time", values["create_time"])
    for name in _UUIDS:
        values[name] = None if values[name] is None else uuid.UUID(values[name])
    for name in _UUID_LISTS:
        values[name] = [uuid.UUID(v) for v in values[name]]
    for name in _TIMES:
        values[name] = None if values[name] is None else dt.datetime.fromisoformat(values[name])
    return Memory(**{name: values[name] for name in COLUMNS})


@dataclass(frozen=True)
class MemoryFilter:
    """Which memories a List or Search considers; empty values match everything."""

    namespace_prefix: list[str] = field(default_factory=list)
    memory_types: list[str] = field(default_factory=list)
    tags_any: list[str] = field(default_factory=list)
    tags_all: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=lambda: ["active"])
    tiers: list[str] = field(default_factory=list)
    user_id: str = ""
    agent_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    create_time_start: dt.datetime | None = None
    create_time_end: dt.datetime | None = None
    occur_time_start: dt.datetime | None = None
    occur_time_end: dt.datetime | None = None
    include_expired: bool = False


@dataclass(frozen=True)
class MemoryEvent:
    """A history event with the states around it (None where purged or absent)."""

    memory_id: uuid.UUID
    version: int
    event_type: str
    actor: str
    actor_name: str
    reason: str
    event_time: dt.datetime
    before: Memory | None
    after: Memory | None
