"""Document protos to validated records and back; each failure names the field."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from memoryd.v1 import document_pb2 as pb
from memoryd_server.documents import chunking
from memoryd_server.documents.models import (
    MARKDOWN_SUFFIXES,
    MEDIA_TYPES,
    Chunk,
    Document,
    DocumentFilter,
    NewDocument,
)
from memoryd_server.errors import InvalidArgument
from memoryd_server.ids import parse_uuid
from memoryd_server.memories import convert as memory_convert
from memoryd_server.protoconv import dict_to_struct, struct_to_dict, time_range, timestamp
from memoryd_server.validation import check_chars, has_control_chars

MAX_PATH_CHARS = 1024
MAX_TITLE_CHARS = 1024
MAX_URI_CHARS = 2048
MAX_USER_CHARS = 256
# Metadata of a document: JSON of at most this many bytes.
MAX_METADATA_BYTES = 64 * 1024
MAX_CHUNKS = 10_000
MAX_HEADINGS = 16
MAX_HEADING_CHARS = 1024


def path(field: str, value: str, *, required: bool = True) -> str:
    """A document path: 1 to 1024 characters of one line."""
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return value
    if has_control_chars(value):
        raise InvalidArgument(field, "must not contain control characters")
    return check_chars(field, value, MAX_PATH_CHARS)


def media_type(field: str, value: str, doc_path: str) -> str:
    """A known media type; empty: by the path's suffix."""
    if not value:
        return "text/markdown" if doc_path.lower().endswith(MARKDOWN_SUFFIXES) else "text/plain"
    normal = value.split(";", 1)[0].strip().lower()
    if normal not in MEDIA_TYPES:
        raise InvalidArgument(
            field, f"{value[:100]!r} is not supported; use one of {', '.join(MEDIA_TYPES)}"
        )
    return normal


def content(field: str, value: str, max_bytes: int) -> tuple[str, bytes, int]:
    """The content, its SHA-256 and its UTF-8 size: non-empty, within ``max_bytes``, no NUL."""
    if not value.strip():
        raise InvalidArgument(field, "is required (a document with no text has no chunks)")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(field, "is not valid UTF-8") from None
    if len(data) > max_bytes:
        raise InvalidArgument(
            field,
            f"is {len(data)} bytes; documents hold at most {max_bytes} bytes"
            " (MEMORYD_MAX_DOCUMENT_BYTES)",
        )
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value, hashlib.sha256(data).digest(), len(data)


def chunking_options(field: str, options: pb.ChunkingOptions) -> tuple[int, int]:
    """(chunk_tokens, overlap_tokens) with defaults; INVALID_ARGUMENT out of range."""
    tokens = options.chunk_tokens or chunking.DEFAULT_CHUNK_TOKENS
    if not chunking.MIN_CHUNK_TOKENS <= tokens <= chunking.MAX_CHUNK_TOKENS:
        raise InvalidArgument(
            f"{field}.chunk_tokens",
            f"must be {chunking.MIN_CHUNK_TOKENS} to {chunking.MAX_CHUNK_TOKENS}",
        )
    overlap = chunking.default_overlap(tokens)
    if options.HasField("overlap_tokens"):
        overlap = options.overlap_tokens
        if not 0 <= overlap <= tokens // 2:
            raise InvalidArgument(f"{field}.overlap_tokens", f"must be 0 to {tokens // 2}")
    return tokens, overlap


def new_document(
    field: str, d: pb.Document, options: pb.ChunkingOptions, *, max_bytes: int
) -> NewDocument:
    """A validated document to put."""
    doc_id = parse_uuid(f"{field}.id", d.id) if d.id else None
    namespace = memory_convert.namespace(
        f"{field}.namespace", d.namespace, allow_empty=doc_id is not None
    )
    doc_path = path(f"{field}.path", d.path, required=doc_id is None)
    if doc_id is not None and bool(namespace) != bool(doc_path):
        raise InvalidArgument(f"{field}.path", "give both namespace and path, or neither, with id")
    memory_convert.check_index_bytes(f"{field}.namespace", namespace, doc_path)
    text, digest, size = content(f"{field}.content", d.content, max_bytes)
    kind = media_type(f"{field}.media_type", d.media_type, doc_path)
    title = check_chars(f"{field}.title", d.title, MAX_TITLE_CHARS)
    if not title:
        title = chunking.first_heading(text) if kind == "text/markdown" else ""
        title = title[:MAX_TITLE_CHARS] or doc_path.rsplit("/", 1)[-1]
    tokens, overlap = chunking_options("chunking", options)
    return NewDocument(
        namespace=namespace,
        path=doc_path,
        title=title,
        source_uri=check_chars(f"{field}.source_uri", d.source_uri, MAX_URI_CHARS),
        media_type=kind,
        user_id=check_chars(f"{field}.user_id", d.user_id, MAX_USER_CHARS),
        tags=memory_convert.tags(f"{field}.tags", d.tags),
        metadata=struct_to_dict(f"{field}.metadata", d.metadata, MAX_METADATA_BYTES),
        content=text,
        content_hash=digest,
        size_bytes=size,
        chunk_tokens=tokens,
        overlap_tokens=overlap,
        id=doc_id,
    )


def chunk_inputs(
    field: str, inputs: Sequence[pb.ChunkInput], length: int
) -> list[tuple[int, int, list[str], Sequence[float]]]:
    """The caller's chunks: ordered, non-empty spans within ``length`` code points."""
    if len(inputs) > MAX_CHUNKS:
        raise InvalidArgument(field, f"has {len(inputs)} chunks; at most {MAX_CHUNKS}")
    spans: list[tuple[int, int, list[str], Sequence[float]]] = []
    for i, c in enumerate(inputs):
        name = f"{field}[{i}]"
        if not 0 <= c.start_offset < c.end_offset <= length:
            raise InvalidArgument(
                f"{name}.end_offset",
                f"must be after start_offset ({c.start_offset}, at least 0) and at most the"
                f" content's length ({length} code points)",
            )
        if len(c.heading_path) > MAX_HEADINGS:
            raise InvalidArgument(f"{name}.heading_path", f"has over {MAX_HEADINGS} headings")
        for j, heading in enumerate(c.heading_path):
            check_chars(f"{name}.heading_path[{j}]", heading, MAX_HEADING_CHARS)
        spans.append((c.start_offset, c.end_offset, list(c.heading_path), c.embedding))
    return spans


def document_filter(field: str, f: pb.DocumentFilter) -> DocumentFilter:
    """A validated filter."""
    created = time_range(field, f, "create_time")
    updated = time_range(field, f, "update_time")
    return DocumentFilter(
        namespace_prefix=memory_convert.namespace(
            f"{field}.namespace_prefix", f.namespace_prefix, allow_empty=True
        ),
        path_prefix=check_chars(f"{field}.path_prefix", f.path_prefix, MAX_PATH_CHARS),
        tags_any=memory_convert.tags(f"{field}.tags_any", f.tags_any),
        tags_all=memory_convert.tags(f"{field}.tags_all", f.tags_all),
        user_id=check_chars(f"{field}.user_id", f.user_id, MAX_USER_CHARS),
        metadata=struct_to_dict(f"{field}.metadata", f.metadata, MAX_METADATA_BYTES),
        media_types=[
            media_type(f"{field}.media_types[{i}]", m or "?", "")
            for i, m in enumerate(f.media_types)
        ],
        create_time_start=created[0],
        create_time_end=created[1],
        update_time_start=updated[0],
        update_time_end=updated[1],
    )


def document_to_pb(d: Document) -> pb.Document:
    """The proto of ``d`` (content only when it was read)."""
    return pb.Document(
        id=str(d.id),
        namespace=d.namespace,
        path=d.path,
        title=d.title,
        source_uri=d.source_uri,
        media_type=d.media_type,
        user_id=d.user_id,
        tags=d.tags,
        metadata=dict_to_struct(d.metadata),
        content=d.content or "",
        content_hash=bytes(d.content_hash).hex(),
        size_bytes=d.size_bytes,
        chunk_count=d.chunk_count,
        chunking=pb.ChunkingOptions(chunk_tokens=d.chunk_tokens, overlap_tokens=d.overlap_tokens),
        embedding_model=d.embedding_model,
        version=d.version,
        create_time=timestamp(d.create_time),
        update_time=timestamp(d.update_time),
    )


def chunk_to_pb(c: Chunk) -> pb.Chunk:
    """The proto of ``c``."""
    return pb.Chunk(
        id=str(c.id),
        document_id=str(c.document_id),
        index=c.seq,
        content=c.content,
        heading_path=c.heading_path,
        start_offset=c.start_offset,
        end_offset=c.end_offset,
        token_count=c.token_count,
        document_version=c.document_version,
    )
