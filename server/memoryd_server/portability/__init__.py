"""Export a tenant to JSON lines and import it into another: ``memoryd export|import``.

The file format (version 1): a header line
``{"type": "memoryd-export", "version": 1, "tenant": ..., "time": ...}``, one
``{"kind": ..., "data": {...}}`` line per row in a fixed order (see ``KINDS``),
and an end line ``{"type": "memoryd-export-end", "records": N}`` so that a file
cut at a line boundary is still recognised as truncated.
"""

from __future__ import annotations

from dataclasses import dataclass

FORMAT = "memoryd-export"
END = "memoryd-export-end"
VERSION = 1


class PortabilityError(RuntimeError):
    """An export or import failed; the message is safe to print (no password)."""


@dataclass(frozen=True)
class Kind:
    """One exported table: its record kind, its columns (without tenant_id) and order."""

    name: str
    table: str
    columns: tuple[str, ...]
    order_by: str


# In file order: rows a later kind refers to (messages -> conversations) come first.
KINDS: tuple[Kind, ...] = (
    Kind(
        "conversation",
        "conversations",
        (
            "id", "user_id", "agent_id", "app_name", "title", "status", "summary", "metadata",
            "state", "version", "message_count", "total_input_tokens", "total_output_tokens",
            "last_message_time", "last_activity_time", "create_time", "update_time",
        ),
        'id COLLATE "C"',
    ),
    Kind(
        "message",
        "messages",
        (
            "conversation_id", "seq", "id", "role", "content", "name", "tool_calls",
            "tool_call_id", "token_count", "model", "metadata", "feedback_rating",
            "feedback_comment", "feedback_time", "create_time",
        ),
        'conversation_id COLLATE "C", seq',
    ),
    Kind(
        "memory",
        "memories",
        (
            "id", "namespace", "ns_path", "key", "memory_type", "content", "subject",
            "embedding", "embedding_model", "importance", "confidence", "pinned", "tier",
            "status", "source_kind", "source_conversation_id", "source_message_ids",
            "extraction_model", "user_id", "agent_id", "tags", "metadata", "related_to",
            "contradicts", "version", "superseded_by", "expire_time", "create_time",
            "update_time",
        ),
        "id",
    ),
    Kind(
        "memory_access",
        "memory_access",
        ("memory_id", "access_count", "last_access_time"),
        "memory_id",
    ),
    Kind(
        "memory_event",
        "memory_events",
        ("memory_id", "version", "event_type", "actor", "event_time"),
        "memory_id, version",
    ),
    Kind(
        "memory_snapshot",
        "memory_snapshots",
        ("memory_id", "version", "state", "reason"),
        "memory_id, version",
    ),
)  # fmt: skip

KINDS_BY_NAME = {kind.name: kind for kind in KINDS}

__all__ = ["END", "FORMAT", "KINDS", "KINDS_BY_NAME", "VERSION", "Kind", "PortabilityError"]
