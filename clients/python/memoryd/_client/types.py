"""The plain, frozen values the client takes and returns instead of protobuf messages.

Enums are short lowercase strings (``"user"``, ``"active"``, ``"semantic"``);
``"unspecified"`` is what an unset enum reads as. Structs are dicts, times are
timezone-aware ``datetime``s (None when unset), durations are ``timedelta``s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

T = TypeVar("T")

Role = Literal["user", "assistant", "system", "tool"]
ConversationStatus = Literal["active", "idle", "closed"]
FeedbackRating = Literal["positive", "negative"]
MemoryType = Literal[
    "semantic", "episodic", "procedural", "agent_private", "shared", "identity", "user_profile"
]
MemoryTier = Literal["hot", "warm", "cold"]
MemoryStatus = Literal["active", "superseded", "archived", "disputed"]
MemorySourceKind = Literal[
    "explicit", "extraction", "system", "feedback", "consolidation", "compaction"
]
MemoryEventType = Literal["created", "updated", "superseded", "archived", "purged"]
# What an API key may do (AdminService's Role).
KeyRole = Literal["viewer", "member", "admin", "operator"]
# How a search finds candidates, matches text, and fuses rankings (search.proto).
SearchMode = Literal["vector", "text", "hybrid"]
TextMatch = Literal["any", "websearch"]
Fusion = Literal["rrf", "weighted"]
TenantState = Literal["active", "disabled"]


class SupportsToList(Protocol):
    """An array such as ``numpy.ndarray``: anything with ``tolist()``."""

    def tolist(self) -> Any: ...


# An embedding: a sequence of floats or an array with ``tolist()``.
Embedding = Sequence[float] | SupportsToList


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a List call; pass ``next_page_token`` back for the next (empty: last)."""

    items: tuple[T, ...]
    next_page_token: str


@dataclass(frozen=True)
class ToolCall:
    """A tool invocation requested by the model; ``arguments`` is a JSON object."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    """Feedback on a message."""

    rating: str
    comment: str
    update_time: datetime | None


@dataclass(frozen=True)
class NewMessage:
    """A message to append; the server assigns its id, seq and create time."""

    role: Role
    content: str = ""
    name: str = ""
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str = ""
    token_count: int = 0
    model: str = ""
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Message:
    """A stored message of a conversation."""

    id: str
    conversation_id: str
    seq: int
    role: str
    content: str
    name: str
    tool_calls: tuple[ToolCall, ...]
    tool_call_id: str
    token_count: int
    model: str
    metadata: dict[str, Any]
    feedback: Feedback | None
    create_time: datetime | None
    # The id and name of the API key that appended it ("anonymous" with auth off).
    created_by: str = ""
    created_by_name: str = ""


@dataclass(frozen=True)
class Conversation:
    """A conversation (an agent session) with its state and totals."""

    id: str
    user_id: str
    agent_id: str
    app_name: str
    title: str
    status: str
    summary: str
    metadata: dict[str, Any]
    state: dict[str, Any]
    version: int
    message_count: int
    total_input_tokens: int
    total_output_tokens: int
    last_message_time: datetime | None
    create_time: datetime | None
    update_time: datetime | None
    # The ids and names of the API keys that created it and last changed it
    # (created, updated or appended to it); "anonymous" with auth off.
    created_by: str = ""
    created_by_name: str = ""
    updated_by: str = ""
    updated_by_name: str = ""


@dataclass(frozen=True)
class AppendResult:
    """The appended messages (with ids and seqs) and the conversation after the append."""

    messages: tuple[Message, ...]
    conversation: Conversation


@dataclass(frozen=True)
class ContextWindow:
    """The recent messages that fit a budget, oldest first, and the summary of the rest."""

    messages: tuple[Message, ...]
    summary: str
    total_tokens: int
    omitted_message_count: int


@dataclass(frozen=True)
class MemorySource:
    """Where a memory came from."""

    kind: str = "explicit"
    conversation_id: str = ""
    message_ids: Sequence[str] = ()
    extraction_model: str = ""


@dataclass(frozen=True)
class NewMemory:
    """A memory to create (``batch_create``, ``supersede``); output-only fields are absent."""

    content: str
    namespace: Sequence[str] = ()
    key: str = ""
    memory_type: MemoryType | None = None
    subject: str = ""
    embedding: Embedding | None = None
    embedding_model: str = ""
    importance: int = 0
    confidence: float | None = None
    pinned: bool = False
    tier: MemoryTier | None = None
    source: MemorySource | None = None
    user_id: str = ""
    agent_id: str = ""
    tags: Sequence[str] = ()
    metadata: Mapping[str, Any] | None = None
    related_to: Sequence[str] = ()
    contradicts: Sequence[str] = ()
    expire_time: datetime | None = None
    # When the thing happened (default: when it is created).
    occur_time: datetime | None = None


@dataclass(frozen=True)
class Memory:
    """A stored long-term memory. ``embedding`` is empty where the server leaves it out."""

    id: str
    namespace: tuple[str, ...]
    key: str
    memory_type: str
    content: str
    subject: str
    embedding: tuple[float, ...]
    embedding_model: str
    importance: int
    confidence: float | None
    pinned: bool
    tier: str
    status: str
    source: MemorySource | None
    user_id: str
    agent_id: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    related_to: tuple[str, ...]
    contradicts: tuple[str, ...]
    version: int
    superseded_by: str
    access_count: int
    last_access_time: datetime | None
    expire_time: datetime | None
    create_time: datetime | None
    update_time: datetime | None
    occur_time: datetime | None = None


@dataclass(frozen=True)
class CreateMemoryResult:
    """The created memory; ``updated`` is True when an upsert replaced an existing one."""

    memory: Memory
    updated: bool


@dataclass(frozen=True)
class SupersedeResult:
    """The old memory (now superseded) and its replacement."""

    superseded: Memory
    memory: Memory


@dataclass(frozen=True)
class MemoryFilter:
    """Which memories ``list`` and ``search`` consider; empty fields match everything."""

    namespace_prefix: Sequence[str] = ()
    memory_types: Sequence[MemoryType] = ()
    tags_any: Sequence[str] = ()
    tags_all: Sequence[str] = ()
    statuses: Sequence[MemoryStatus] = ()
    tiers: Sequence[MemoryTier] = ()
    user_id: str = ""
    agent_id: str = ""
    metadata: Mapping[str, Any] | None = None
    create_time_start: datetime | None = None
    create_time_end: datetime | None = None
    include_expired: bool = False
    occur_time_start: datetime | None = None
    occur_time_end: datetime | None = None


@dataclass(frozen=True)
class RankingWeights:
    """Weights of the parts of a search score (all zero: the server's defaults)."""

    similarity: float = 0.0
    text: float = 0.0
    recency: float = 0.0
    importance: float = 0.0
    recency_half_life: timedelta | None = None


@dataclass(frozen=True)
class SearchResult:
    """One search hit (its memory without embedding) and the parts of its score."""

    memory: Memory
    score: float
    similarity_score: float
    text_score: float
    recency_score: float
    importance_score: float
    # Hybrid with reciprocal-rank fusion: the fused rank score in (0, 1].
    fusion_score: float = 0.0
    # Places in the vector and text rankings (1 = best; 0 = not found by it).
    vector_rank: int = 0
    text_rank: int = 0


@dataclass(frozen=True)
class MessageFilter:
    """Which messages ``conversations.search`` considers; empty fields match everything."""

    conversation_ids: Sequence[str] = ()
    user_id: str = ""
    app_name: str = ""
    agent_id: str = ""
    roles: Sequence[Role] = ()
    create_time_start: datetime | None = None
    create_time_end: datetime | None = None


@dataclass(frozen=True)
class MessageSearchResult:
    """One message found by ``conversations.search`` and the parts of its score."""

    message: Message
    score: float
    similarity_score: float
    text_score: float
    vector_rank: int
    text_rank: int


@dataclass(frozen=True)
class MemoryEvent:
    """One entry of a memory's history; ``before``/``after`` lack embeddings."""

    seq: int
    memory_id: str
    event_type: str
    actor: str
    reason: str
    event_time: datetime | None
    before: Memory | None
    after: Memory | None
    # The name of the key whose id is ``actor``.
    actor_name: str = ""


# --- AdminService ---------------------------------------------------------------


@dataclass(frozen=True)
class Quotas:
    """A tenant's limits; None takes the server's default, 0 is unlimited."""

    requests_per_second: float | None = None
    burst: int | None = None
    max_memories: int | None = None
    max_conversations: int | None = None
    max_content_bytes: int | None = None
    max_documents: int | None = None
    max_document_bytes: int | None = None


@dataclass(frozen=True)
class Tenant:
    """A tenant: ``quotas`` as set for it, ``effective_quotas`` as in force."""

    tenant_id: str
    display_name: str
    state: str
    quotas: Quotas
    effective_quotas: Quotas
    create_time: datetime | None
    update_time: datetime | None
    disable_time: datetime | None


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant stores now."""

    memories: int
    conversations: int
    documents: int = 0
    document_bytes: int = 0


@dataclass(frozen=True)
class TenantDetails:
    """A tenant with its usage (``admin.get_tenant``)."""

    tenant: Tenant
    usage: TenantUsage


@dataclass(frozen=True)
class ApiKey:
    """An API key as listings show it: never its secret."""

    key_id: str
    tenant_id: str
    name: str
    role: str
    prefix: str
    created_by: str
    create_time: datetime | None
    last_used_time: datetime | None
    expire_time: datetime | None
    revoke_time: datetime | None


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key and its secret, which the server returns only this once."""

    api_key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Caller:
    """Who the client's key is (``admin.whoami``); ``tenant_id`` is empty for operators."""

    key_id: str
    key_name: str
    role: str
    tenant_id: str


@dataclass(frozen=True)
class ErasureReceipt:
    """What ``admin.erase_user`` removed, per kind."""

    tenant_id: str
    user_id: str
    conversations: int
    messages: int
    memories: int
    history_snapshots: int
    erase_time: datetime | None
    erased_by: str
    documents: int = 0
