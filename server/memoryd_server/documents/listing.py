"""SQL reads of documents: one by id or path, a filtered page, a document's chunks."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg import sql
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.documents.filters import filter_condition
from memoryd_server.documents.models import Chunk, Document, DocumentFilter
from memoryd_server.documents.store import CHUNK_SELECT, columns, fetch, key_condition, not_found
from memoryd_server.errors import NotFound
from memoryd_server.memories.models import ns_path


async def get_document(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    document_id: uuid.UUID | None = None,
    namespace: list[str] | None = None,
    path: str = "",
    content: bool = True,
) -> Document:
    """The document by id or by (namespace, path), or NOT_FOUND."""
    params = {"tenant": tenant_id, "id": document_id, "ns": ns_path(namespace or []), "path": path}
    query = sql.SQL("SELECT {} FROM documents WHERE tenant_id = %(tenant)s AND {}").format(
        columns(content=content), key_condition(document_id)
    )
    async with transaction(pool, tenant_id) as conn:
        found = await fetch(conn, query, params)
    if not found:
        where = "/".join(namespace or [])
        raise not_found(repr(str(document_id)) if document_id else f"{path!r} in {where!r}")
    return found[0]


async def get_version(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    document_id: uuid.UUID,
    version: int,
    content: bool = True,
) -> Document:
    """The document as it was at ``version`` (from its history), or NOT_FOUND."""
    async with transaction(pool, tenant_id) as conn:
        cur = await conn.execute(
            "SELECT state, CASE WHEN %s THEN content END FROM document_versions"
            " WHERE tenant_id = %s AND document_id = %s AND version = %s",
            (content, tenant_id, document_id, version),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"document {str(document_id)!r} has no version {version}")
    state, text = row
    values = dict(state) | {"content": text}
    values["id"] = uuid.UUID(values["id"])
    values["content_hash"] = bytes.fromhex(values["content_hash"])
    for name in ("create_time", "update_time"):
        values[name] = dt.datetime.fromisoformat(values[name])
    return Document(**values)


async def list_documents(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    filter: DocumentFilter,
    limit: int,
    after: tuple[str, str] | None,
) -> list[Document]:
    """Up to ``limit`` documents in (namespace, path) order, after the position ``after``."""
    params: dict[str, Any] = {"limit": limit}
    where = filter_condition(tenant_id, filter, params)
    if after is not None:
        params["after_ns"], params["after_path"] = after
        where = sql.SQL("{} AND (ns_path, path) > (%(after_ns)s, %(after_path)s)").format(where)
    query = sql.SQL(
        "SELECT {} FROM documents WHERE {} ORDER BY ns_path, path LIMIT %(limit)s"
    ).format(columns(content=False), where)
    async with transaction(pool, tenant_id) as conn:
        return await fetch(conn, query, params)


async def list_chunks(
    pool: AsyncConnectionPool, *, tenant_id: str, document_id: uuid.UUID, after_seq: int, limit: int
) -> list[Chunk]:
    """Up to ``limit`` chunks after ``after_seq``; NOT_FOUND without the document."""
    async with transaction(pool, tenant_id) as conn:
        cur = await conn.execute(
            "SELECT FROM documents WHERE tenant_id = %s AND id = %s", (tenant_id, document_id)
        )
        if await cur.fetchone() is None:
            raise not_found(repr(str(document_id)))
        async with conn.cursor(row_factory=class_row(Chunk)) as chunks:
            await chunks.execute(
                sql.SQL(
                    "SELECT {} FROM document_chunks WHERE tenant_id = %s AND document_id = %s"
                    " AND seq > %s ORDER BY seq LIMIT %s"
                ).format(CHUNK_SELECT),
                (tenant_id, document_id, after_seq, limit),
            )
            return await chunks.fetchall()
