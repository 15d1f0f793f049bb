"""Document and chunk records as the store reads and writes them."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from memoryd_server.memories.models import Embedding

MEDIA_TYPES = ("text/markdown", "text/plain")
MARKDOWN_SUFFIXES = (".md", ".markdown")


@dataclass(frozen=True)
class NewDocument:
    """A validated PutDocument: the document's fields and how to chunk it."""

    namespace: list[str]
    path: str
    title: str
    source_uri: str
    media_type: str
    user_id: str
    tags: list[str]
    metadata: dict[str, Any]
    content: str
    content_hash: bytes
    size_bytes: int
    chunk_tokens: int
    overlap_tokens: int
    # Set: replace this document (NOT_FOUND if there is none).
    id: uuid.UUID | None = None


@dataclass(frozen=True)
class NewChunk:
    """A chunk to store with a document version."""

    seq: int
    content: str
    heading_path: list[str]
    start_offset: int
    end_offset: int
    token_count: int
    embedding: Embedding | None = None
    embedding_model: str = ""


@dataclass(frozen=True)
class Document:
    """A stored document; ``content`` is None where a query left it out."""

    id: uuid.UUID
    namespace: list[str]
    path: str
    title: str
    source_uri: str
    media_type: str
    user_id: str
    tags: list[str]
    metadata: dict[str, Any]
    content: str | None
    content_hash: bytes
    size_bytes: int
    chunk_tokens: int
    overlap_tokens: int
    chunk_count: int
    embedding_model: str
    version: int
    create_time: dt.datetime
    update_time: dt.datetime


DOCUMENT_COLUMNS = tuple(f.name for f in fields(Document))


@dataclass(frozen=True)
class Chunk:
    """A stored chunk (without its vector)."""

    id: uuid.UUID
    document_id: uuid.UUID
    document_version: int
    seq: int
    content: str
    heading_path: list[str]
    start_offset: int
    end_offset: int
    token_count: int


CHUNK_COLUMNS = tuple(f.name for f in fields(Chunk))


@dataclass(frozen=True)
class DocumentFilter:
    """Which documents a List or Search considers; empty values match everything."""

    namespace_prefix: list[str] = field(default_factory=list)
    path_prefix: str = ""
    tags_any: list[str] = field(default_factory=list)
    tags_all: list[str] = field(default_factory=list)
    user_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    media_types: list[str] = field(default_factory=list)
    create_time_start: dt.datetime | None = None
    create_time_end: dt.datetime | None = None
    update_time_start: dt.datetime | None = None
    update_time_end: dt.datetime | None = None

    def narrowed(self) -> bool:
        """Whether it may keep few documents (anything set at all)."""
        return any(getattr(self, f.name) for f in fields(self))
