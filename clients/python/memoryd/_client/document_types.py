"""Typed records of DocumentService: documents, chunks, search results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memoryd._client.types import Embedding


@dataclass(frozen=True)
class Document:
    """A stored document; ``content`` is empty unless ``documents.get`` read it."""

    id: str
    namespace: tuple[str, ...]
    path: str
    title: str
    source_uri: str
    media_type: str
    user_id: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    content: str
    content_hash: str
    size_bytes: int
    chunk_count: int
    chunk_tokens: int
    overlap_tokens: int
    embedding_model: str
    version: int
    create_time: datetime | None
    update_time: datetime | None


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``content`` is the document's content[start_offset:end_offset]
    (offsets in Unicode code points, as Python indexes strings)."""

    id: str
    document_id: str
    index: int
    content: str
    heading_path: tuple[str, ...]
    start_offset: int
    end_offset: int
    token_count: int
    document_version: int


@dataclass(frozen=True)
class ChunkInput:
    """A chunk the caller made (and embedded) itself, by its offsets in the content."""

    start_offset: int
    end_offset: int
    heading_path: Sequence[str] = ()
    embedding: Embedding | None = None


@dataclass(frozen=True)
class PutDocumentResult:
    """The document after a put; ``changed`` False when it was stored exactly so already."""

    document: Document
    changed: bool
    created: bool


@dataclass(frozen=True)
class DocumentFilter:
    """Which documents a list or search considers; empty fields match everything."""

    namespace_prefix: Sequence[str] = ()
    path_prefix: str = ""
    tags_any: Sequence[str] = ()
    tags_all: Sequence[str] = ()
    user_id: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    media_types: Sequence[str] = ()
    create_time_start: datetime | None = None
    create_time_end: datetime | None = None
    update_time_start: datetime | None = None
    update_time_end: datetime | None = None


@dataclass(frozen=True)
class DocumentSearchResult:
    """A chunk found, its document (without content), neighbours, and the score's parts."""

    chunk: Chunk
    document: Document
    chunks_before: tuple[Chunk, ...]
    chunks_after: tuple[Chunk, ...]
    score: float
    similarity_score: float
    text_score: float
    recency_score: float
    fusion_score: float
    vector_rank: int
    text_rank: int
