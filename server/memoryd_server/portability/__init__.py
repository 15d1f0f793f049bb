"""Export a tenant to JSON lines and import it into another: ``memoryd export|import``.

The file format (version 1): a header line
``{"type": "memoryd-export", "version": 1, "tenant": ..., "time": ...}``, one
``{"kind": ..., "data": {...}}`` line per row in a fixed order (see ``KINDS``),
and an end line ``{"type": "memoryd-export-end", "records": N}`` so that a file
cut at a line boundary is still recognised as truncated. Columns added since
(``Kind.added``) may be absent from a record written by an older memoryd.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    # Columns added to the format later, with the value a file written before
    # them implies: an import fills them in when a record lacks them.
    added: Mapping[str, object] = field(default_factory=dict, compare=False)


# The actor columns of migration 0007: empty means "not recorded".
_ACTORS = {"created_by": "", "created_by_name": ""}


# In file order: rows a later kind refers to (messages -> conversations) come first.
KINDS: tuple[Kind, ...] = (
    Kind(
        "conversation",
        "conversations",
        (
            "id", "user_id", "agent_id", "app_name", "title", "status", "summary", "metadata",
            "state", "version", "message_count", "total_input_tokens", "total_output_tokens",
            "last_message_time", "last_activity_time", "create_time", "update_time",
            "created_by", "created_by_name", "updated_by", "updated_by_name",
        ),
        'id COLLATE "C"',
        {**_ACTORS, "updated_by": "", "updated_by_name": ""},
    ),
    Kind(
        "message",
        "messages",
        (
            "conversation_id", "seq", "id", "role", "content", "name", "tool_calls",
            "tool_call_id", "token_count", "model", "metadata", "feedback_rating",
            "feedback_comment", "feedback_time", "create_time", "created_by", "created_by_name",
        ),
        'conversation_id COLLATE "C", seq',
        _ACTORS,
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
            "update_time", "occur_time",
        ),
        "id",
        # Migration 0010: null means "when it was created" (a trigger fills it in).
        {"occur_time": None},
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
        ("memory_id", "version", "event_type", "actor", "actor_name", "event_time"),
        "memory_id, version",
        {"actor_name": ""},
    ),
    Kind(
        "memory_snapshot",
        "memory_snapshots",
        ("memory_id", "version", "state", "reason"),
        "memory_id, version",
    ),
    Kind(
        "document",
        "documents",
        (
            "id", "namespace", "ns_path", "path", "title", "source_uri", "media_type",
            "user_id", "tags", "metadata", "content", "content_hash", "size_bytes",
            "chunk_tokens", "overlap_tokens", "chunk_count", "embedding_model", "version",
            "create_time", "update_time",
        ),
        'ns_path COLLATE "C", path COLLATE "C"',
    ),
    Kind(
        "document_chunk",
        "document_chunks",
        (
            "id", "document_id", "document_version", "seq", "content", "heading_path",
            "start_offset", "end_offset", "token_count", "embedding", "embedding_model",
        ),
        "document_id, seq",
    ),
    Kind(
        "document_version",
        "document_versions",
        ("document_id", "version", "actor", "event_time", "state", "content"),
        "document_id, version",
    ),
)  # fmt: skip

KINDS_BY_NAME = {kind.name: kind for kind in KINDS}

__all__ = ["END", "FORMAT", "KINDS", "KINDS_BY_NAME", "VERSION", "Kind", "PortabilityError"]
