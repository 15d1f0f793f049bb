"""Conversation and message records as the store reads and writes them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["active", "idle", "closed"]
Role = Literal["user", "assistant", "system", "tool"]
Rating = Literal["positive", "negative"]

# Fields UpdateConversation may replace.
UPDATABLE_FIELDS = frozenset({"title", "status", "summary", "metadata", "state"})

# Roles whose tokens count as the model's output; all others are input.
OUTPUT_ROLES: frozenset[str] = frozenset({"assistant"})


@dataclass(frozen=True)
class Conversation:
    """A row of ``conversations``."""

    id: str
    user_id: str
    agent_id: str
    app_name: str
    title: str
    status: Status
    summary: str
    metadata: dict[str, Any]
    state: dict[str, Any]
    version: int
    message_count: int
    total_input_tokens: int
    total_output_tokens: int
    last_message_time: dt.datetime | None
    last_activity_time: dt.datetime
    create_time: dt.datetime
    update_time: dt.datetime
    # The API keys (id and name) that created it and last changed it; '' before
    # memoryd recorded them.
    created_by: str
    created_by_name: str
    updated_by: str
    updated_by_name: str


@dataclass(frozen=True)
class NewConversation:
    """The caller-supplied fields of a conversation to create."""

    id: str
    user_id: str = ""
    agent_id: str = ""
    app_name: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    """A tool invocation requested by the model."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class NewMessage:
    """A message to append; ids, seqs and times are assigned by the store."""

    role: Role
    content: str = ""
    name: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_call_id: str = ""
    token_count: int = 0
    model: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """A row of ``messages``."""

    id: uuid.UUID
    conversation_id: str
    seq: int
    role: Role
    content: str
    name: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str
    token_count: int
    model: str
    metadata: dict[str, Any]
    feedback_rating: Rating | None
    feedback_comment: str | None
    feedback_time: dt.datetime | None
    create_time: dt.datetime
    # The API key (id and name) that appended it.
    created_by: str
    created_by_name: str


@dataclass(frozen=True)
class ContextWindow:
    """The messages of a context window, oldest first, and what was left out."""

    messages: list[Message]
    summary: str
    total_tokens: int
    omitted_message_count: int


@dataclass(frozen=True)
class ConversationFilter:
    """ListConversations filters; empty values match everything."""

    user_id: str = ""
    agent_id: str = ""
    app_name: str = ""
    status: Status | None = None
