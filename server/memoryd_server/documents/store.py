"""SQL for documents: put (create, no-op, replace), get, list, delete, and their chunks."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from memoryd_server import idempotency, quotas
from memoryd_server.database import transaction
from memoryd_server.documents.models import (
    CHUNK_COLUMNS,
    DOCUMENT_COLUMNS,
    Document,
    NewChunk,
    NewDocument,
)
from memoryd_server.errors import Aborted, NotFound
from memoryd_server.ids import uuid7
from memoryd_server.memories.models import ns_path

Conn = AsyncConnection[Any]


def columns(*, content: bool, table: str | None = None) -> sql.Composable:
    """The Document columns of a ``documents`` row; content as NULL unless asked for."""
    parts: list[sql.Composable] = []
    for c in DOCUMENT_COLUMNS:
        ident = sql.Identifier(c) if table is None else sql.Identifier(table, c)
        if c == "content" and not content:
            parts.append(sql.SQL("NULL::text AS content"))
        else:
            parts.append(ident)
    return sql.SQL(", ").join(parts)


CHUNK_SELECT = sql.SQL(", ").join(sql.Identifier(c) for c in CHUNK_COLUMNS)
# The fields whose change alone (content kept) makes a new version.
_FIELDS = ("title", "source_uri", "user_id", "tags", "metadata")
_CHUNK_WRITE = (
    "tenant_id",
    "id",
    "document_id",
    "document_version",
    "seq",
    "content",
    "heading_path",
    "start_offset",
    "end_offset",
    "token_count",
    "embedding",
    "embedding_model",
)
_INSERT_CHUNK = sql.SQL("INSERT INTO document_chunks ({}) VALUES ({})").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in _CHUNK_WRITE),
    sql.SQL(", ").join(sql.Placeholder() for _ in _CHUNK_WRITE),
)


@dataclass(frozen=True)
class StoredState:
    """What decides whether a put needs new chunks."""

    content_hash: bytes
    media_type: str
    chunk_tokens: int
    overlap_tokens: int


class NeedChunks(Exception):
    """The put must come with chunks: raised inside the transaction so it rolls back."""


@dataclass(frozen=True)
class PutResult:
    """A put's outcome."""

    document: Document
    changed: bool
    created: bool


def not_found(what: str) -> NotFound:
    return NotFound(f"document {what} does not exist")


def key_condition(new_id: uuid.UUID | None) -> sql.Composable:
    return sql.SQL("id = %(id)s" if new_id is not None else "ns_path = %(ns)s AND path = %(path)s")


def _key_params(tenant_id: str, new: NewDocument) -> dict[str, Any]:
    return {"tenant": tenant_id, "id": new.id, "ns": ns_path(new.namespace), "path": new.path}


async def stored_state(
    pool: AsyncConnectionPool, *, tenant_id: str, new: NewDocument
) -> StoredState | None:
    """The stored document's content hash and chunking, if there is one."""
    query = sql.SQL(
        "SELECT content_hash, media_type, chunk_tokens, overlap_tokens FROM documents"
        " WHERE tenant_id = %(tenant)s AND {}"
    ).format(key_condition(new.id))
    async with transaction(pool, tenant_id) as conn:
        cur = await conn.execute(query, _key_params(tenant_id, new))
        row = await cur.fetchone()
    return None if row is None else StoredState(bytes(row[0]), row[1], row[2], row[3])


async def fetch(conn: Conn, query: sql.Composed, params: Any) -> list[Document]:
    async with conn.cursor(row_factory=class_row(Document)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def _record(conn: Conn, tenant_id: str, doc: Document, content: str, actor: str) -> None:
    """Append the version's row to the document's history."""
    state = {c: getattr(doc, c) for c in DOCUMENT_COLUMNS if c != "content"}
    state["content_hash"] = bytes(doc.content_hash).hex()
    await conn.execute(
        "INSERT INTO document_versions (tenant_id, document_id, version, actor, event_time,"
        " state, content) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            tenant_id,
            doc.id,
            doc.version,
            actor,
            doc.update_time,
            Jsonb(json.loads(json.dumps(state, default=str))),
            content,
        ),
    )


async def _write_chunks(
    conn: Conn, tenant_id: str, doc_id: uuid.UUID, version: int, chunks: list[NewChunk]
) -> None:
    rows = [
        (
            tenant_id,
            uuid7(),
            doc_id,
            version,
            c.seq,
            c.content,
            c.heading_path,
            c.start_offset,
            c.end_offset,
            c.token_count,
            c.embedding,
            c.embedding_model,
        )
        for c in chunks
    ]
    async with conn.cursor() as cur:
        await cur.executemany(_INSERT_CHUNK, rows)


async def _check_quota(
    conn: Conn, tenant_id: str, *, documents: int, added_bytes: int, limits: quotas.Limits
) -> None:
    await quotas.check_room(
        conn, tenant_id=tenant_id, kind="documents", adding=documents, limit=limits.max_documents
    )
    await quotas.check_room(
        conn,
        tenant_id=tenant_id,
        kind="document_bytes",
        adding=max(added_bytes, 0),
        limit=limits.max_document_bytes,
    )


async def put_document(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    new: NewDocument,
    chunks: list[NewChunk] | None,
    embedding_model: str,
    request_id: str = "",
    request_hash: bytes = b"",
    expected_version: int | None = None,
    limits: quotas.Limits = quotas.UNLIMITED,
) -> PutResult:
    """Create, replace or leave the document; NeedChunks when it needs ``chunks`` (the
    stored content differs from what the caller assumed, or there is none), rolled back.

    ``chunks`` None asks to keep the stored chunks; given, they replace them
    unless the stored content, media type and chunking are the same.
    """
    new_id = uuid7()
    async with transaction(pool, tenant_id) as conn:
        if request_id:

            async def replay(stored_id: str, items: list[uuid.UUID]) -> PutResult:
                found = await fetch(
                    conn,
                    sql.SQL("SELECT {} FROM documents WHERE tenant_id = %s AND id = %s").format(
                        columns(content=False)
                    ),
                    (tenant_id, uuid.UUID(stored_id)),
                )
                if not found:
                    raise not_found(repr(stored_id))
                return PutResult(found[0], changed=bool(items), created=len(items) == 2)

            replayed = await idempotency.claim_or_replay(
                conn,
                tenant_id=tenant_id,
                request_id=request_id,
                method="PutDocument",
                request_hash=request_hash,
                resource_id=str(new_id),
                replay=replay,
            )
            if replayed is not None:
                return replayed
        result = await _put(
            conn,
            tenant_id,
            new_id=new_id,
            actor=actor,
            new=new,
            chunks=chunks,
            embedding_model=embedding_model,
            expected_version=expected_version,
            limits=limits,
        )
        if request_id:
            # What the first call did, for its replays: no item (nothing changed),
            # the document once (changed) or twice (created).
            doc_id = result.document.id
            items = [doc_id] * (2 if result.created else 1 if result.changed else 0)
            await idempotency.record_items(
                conn,
                tenant_id=tenant_id,
                request_id=request_id,
                item_ids=items,
                resource_id=str(doc_id),
            )
        return result


async def _put(
    conn: Conn,
    tenant_id: str,
    *,
    new_id: uuid.UUID,
    actor: str,
    new: NewDocument,
    chunks: list[NewChunk] | None,
    embedding_model: str,
    expected_version: int | None,
    limits: quotas.Limits,
) -> PutResult:
    """put_document's work in its transaction (after the idempotency key)."""
    query = sql.SQL(
        "SELECT {} FROM documents WHERE tenant_id = %(tenant)s AND {} FOR UPDATE"
    ).format(columns(content=False), key_condition(new.id))
    found = await fetch(conn, query, _key_params(tenant_id, new))
    old = found[0] if found else None
    if old is None and new.id is not None:
        raise not_found(repr(str(new.id)))
    if expected_version is not None and (old.version if old else 0) != expected_version:
        raise Aborted(
            f"the document is at version {old.version if old else 0}, not {expected_version}"
        )
    if (
        old is not None
        and new.id is not None
        and new.namespace
        and (old.namespace != new.namespace or old.path != new.path)
    ):
        raise NotFound(f"document {str(new.id)!r} has another namespace and path")
    if old is None:
        if chunks is None:
            raise NeedChunks
        await _check_quota(conn, tenant_id, documents=1, added_bytes=new.size_bytes, limits=limits)
        doc = await _insert(
            conn, tenant_id, doc_id=new_id, new=new, chunks=chunks, embedding_model=embedding_model
        )
        await _record(conn, tenant_id, doc, new.content, actor)
        return PutResult(doc, changed=True, created=True)
    same_content = (
        bytes(old.content_hash),
        old.media_type,
        old.chunk_tokens,
        old.overlap_tokens,
    ) == (new.content_hash, new.media_type, new.chunk_tokens, new.overlap_tokens)
    if same_content and chunks is not None and embedding_model != old.embedding_model:
        same_content = False  # the caller's own chunks, of another model
    if same_content:
        if all(getattr(old, f) == getattr(new, f) for f in _FIELDS):
            return PutResult(old, changed=False, created=False)
        doc = await _update(
            conn, tenant_id, old=old, new=new, chunks=None, embedding_model=old.embedding_model
        )
    else:
        if chunks is None:
            raise NeedChunks
        await _check_quota(
            conn, tenant_id, documents=0, added_bytes=new.size_bytes - old.size_bytes, limits=limits
        )
        doc = await _update(
            conn, tenant_id, old=old, new=new, chunks=chunks, embedding_model=embedding_model
        )
    await _record(conn, tenant_id, doc, new.content, actor)
    return PutResult(doc, changed=True, created=False)


async def _insert(
    conn: Conn,
    tenant_id: str,
    *,
    doc_id: uuid.UUID,
    new: NewDocument,
    chunks: list[NewChunk],
    embedding_model: str,
) -> Document:
    values = {f.name: getattr(new, f.name) for f in dataclasses.fields(new) if f.name != "id"}
    values |= {
        "tenant_id": tenant_id,
        "id": doc_id,
        "ns_path": ns_path(new.namespace),
        "metadata": Jsonb(new.metadata),
        "chunk_count": len(chunks),
        "embedding_model": embedding_model,
    }
    query = sql.SQL("INSERT INTO documents ({}) VALUES ({}) RETURNING {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in values),
        sql.SQL(", ").join(sql.Placeholder(c) for c in values),
        columns(content=False),
    )
    (doc,) = await fetch(conn, query, values)
    await _write_chunks(conn, tenant_id, doc_id, 1, chunks)
    return doc


async def _update(
    conn: Conn,
    tenant_id: str,
    *,
    old: Document,
    new: NewDocument,
    chunks: list[NewChunk] | None,
    embedding_model: str,
) -> Document:
    """The next version: the fields, and with ``chunks`` the content and chunks too."""
    values: dict[str, Any] = {f: getattr(new, f) for f in _FIELDS}
    values["metadata"] = Jsonb(new.metadata)
    if chunks is not None:
        values |= {
            "content": new.content,
            "content_hash": new.content_hash,
            "size_bytes": new.size_bytes,
            "media_type": new.media_type,
            "chunk_tokens": new.chunk_tokens,
            "overlap_tokens": new.overlap_tokens,
            "chunk_count": len(chunks),
            "embedding_model": embedding_model,
        }
    query = sql.SQL(
        "UPDATE documents SET {}, version = version + 1,"
        " update_time = greatest(clock_timestamp(), update_time + interval '1 microsecond')"
        " WHERE tenant_id = %(tenant)s AND id = %(doc_id)s RETURNING {}"
    ).format(
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values
        ),
        columns(content=False),
    )
    (doc,) = await fetch(conn, query, {**values, "tenant": tenant_id, "doc_id": old.id})
    if chunks is not None:
        # One transaction: a search's snapshot holds the old chunks or the new ones.
        await conn.execute(
            "DELETE FROM document_chunks WHERE tenant_id = %s AND document_id = %s",
            (tenant_id, old.id),
        )
        await _write_chunks(conn, tenant_id, old.id, doc.version, chunks)
    return doc


async def delete_document(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    document_id: uuid.UUID,
    expected_version: int | None,
) -> Document:
    """Delete the document with its chunks and history; returns it (without content)."""
    async with transaction(pool, tenant_id) as conn:
        found = await fetch(
            conn,
            sql.SQL("SELECT {} FROM documents WHERE tenant_id = %s AND id = %s FOR UPDATE").format(
                columns(content=False)
            ),
            (tenant_id, document_id),
        )
        if not found:
            raise not_found(repr(str(document_id)))
        if expected_version is not None and found[0].version != expected_version:
            raise Aborted(f"the document is at version {found[0].version}, not {expected_version}")
        await conn.execute(
            "DELETE FROM documents WHERE tenant_id = %s AND id = %s", (tenant_id, document_id)
        )
        await idempotency.forget_resource(conn, tenant_id=tenant_id, resource_id=str(document_id))
    return found[0]
