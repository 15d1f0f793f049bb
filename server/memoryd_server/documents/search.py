"""SearchDocuments: vector (HNSW), full-text and hybrid search over chunks, with neighbours.

The same query resolution, candidate depths and fusion as SearchMemories
(search_query.py, ranking.py); every statement of one search runs in one
REPEATABLE READ snapshot, so a document replaced meanwhile is seen at one
version only, its hits and their neighbours alike.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server import ranking
from memoryd_server.database import transaction
from memoryd_server.documents.filters import filter_condition
from memoryd_server.documents.models import (
    CHUNK_COLUMNS,
    DOCUMENT_COLUMNS,
    Chunk,
    Document,
    DocumentFilter,
)
from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.memories.search import EXACT_MAX_ROWS, search_settings
from memoryd_server.ranking import Query, Weights

MAX_TOP_K = 100
DEFAULT_TOP_K = 10
MAX_NEIGHBORS = 5
# group_by_document keeps one chunk per document, so it looks deeper: a long
# document may hold many of the nearest chunks.
GROUPED_DEPTH = 1000

CHUNK_SELECT = sql.SQL(", ").join(sql.Identifier("c", c) for c in CHUNK_COLUMNS)
DOCUMENT_SELECT = sql.SQL(", ").join(
    sql.SQL("{} AS {}").format(
        sql.SQL("NULL::text") if c == "content" else sql.Identifier("d", c),
        sql.Identifier(f"d_{c}"),
    )
    for c in DOCUMENT_COLUMNS
)


@dataclass(frozen=True)
class DocumentHit:
    """A result: the chunk, its document, neighbours, and the score's parts."""

    chunk: Chunk
    document: Document
    score: ranking.Score
    vector_rank: int
    text_rank: int
    before: list[Chunk]
    after: list[Chunk]


def chunk_distance(space: ModelSpace) -> sql.Composed:
    dim = sql.Literal(space.dimension)
    return sql.SQL("(c.embedding::vector({0}) <=> %(q)s::vector({0}))").format(dim)


def of_model(space: ModelSpace) -> sql.Composed:
    """The partial index's predicate, as a literal so any plan can use it."""
    return sql.SQL("c.embedding_model = {} AND c.embedding IS NOT NULL").format(
        sql.Literal(space.name)
    )


async def _rows(
    conn: AsyncConnection[Any], query: sql.Composed, params: dict[str, Any]
) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def _vector_candidates(
    conn: AsyncConnection[Any],
    *,
    select: sql.Composable,
    where: sql.Composable,
    space: ModelSpace,
    narrowed: bool,
    params: dict[str, Any],
) -> list[dict[str, Any]]:
    """Nearest chunks: exact when the filter keeps few, else the HNSW index (as memories)."""
    exact = sql.SQL("{} AND {} ORDER BY {} + 0 LIMIT %(k)s").format(
        select, of_model(space), chunk_distance(space)
    )
    if narrowed:
        estimate = sql.SQL(
            "EXPLAIN (FORMAT JSON) SELECT FROM document_chunks c WHERE {} AND {}"
        ).format(where, of_model(space))
        cur = await conn.execute(estimate, params)
        row = await cur.fetchone()
        if row is not None:
            plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
            if float(plan[0]["Plan"]["Plan Rows"]) <= EXACT_MAX_ROWS:
                return await _rows(conn, exact, params)
    nearest = sql.SQL("{} AND {} ORDER BY {} LIMIT %(k)s").format(
        select, of_model(space), chunk_distance(space)
    )
    found = await _rows(conn, nearest, params)
    if len(found) < params["k"]:
        found = await _rows(conn, exact, params)
    return found


def _chunk(row: dict[str, Any], prefix: str = "") -> Chunk:
    return Chunk(**{c: row[prefix + c] for c in CHUNK_COLUMNS})


async def _neighbours(
    conn: AsyncConnection[Any], tenant_id: str, hits: list[Chunk], n: int
) -> dict[tuple[uuid.UUID, int], Chunk]:
    """The chunks within ``n`` places of each hit, by (document, seq)."""
    query = sql.SQL(
        "SELECT {} FROM document_chunks c JOIN unnest(%(docs)s::uuid[], %(seqs)s::int[])"
        " AS h(document_id, seq) ON c.document_id = h.document_id"
        " AND c.seq BETWEEN h.seq - %(n)s AND h.seq + %(n)s WHERE c.tenant_id = %(tenant)s"
    ).format(CHUNK_SELECT)
    params = {
        "docs": [h.document_id for h in hits],
        "seqs": [h.seq for h in hits],
        "n": n,
        "tenant": tenant_id,
    }
    return {(c.document_id, c.seq): c for c in map(_chunk, await _rows(conn, query, params))}


async def search_documents(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    filter: DocumentFilter,
    query: Query,
    top_k: int,
    weights: Weights,
    min_score: float,
    neighbors: int = 0,
    group_by_document: bool = False,
) -> list[DocumentHit]:
    """The ``top_k`` best chunks for ``query`` among the documents ``filter`` admits."""
    weights = weights.resolved(query.mode, query.fusion)
    single = query.mode != "hybrid" and not weights.recency
    depth = max(2 * top_k, 20) if single else min(max(4 * top_k, 40), 400)
    if group_by_document:
        depth = GROUPED_DEPTH
    params: dict[str, Any] = {"q": query.vector, "text": query.text, "k": depth}
    where: sql.Composable = sql.SQL("c.tenant_id = %(tenant)s")
    params["tenant"] = tenant_id
    if filter.narrowed():
        inner = filter_condition(tenant_id, filter, params)
        where = sql.SQL("{} AND c.document_id IN (SELECT id FROM documents WHERE {})").format(
            where, inner
        )
    text_rank: sql.Composable = sql.SQL("0::float4")
    if query.text:
        text_rank = ranking.text_rank(query.text_match, sql.Identifier("c", "search_text"))
    distance: sql.Composable = sql.SQL("NULL::float8")
    settings = None
    if query.space is not None and query.vector is not None:
        distance = chunk_distance(query.space)
        settings = search_settings(depth)
    select = sql.SQL(
        "SELECT {}, {}, {} AS distance, {} AS text_rank, now() AS query_time"
        " FROM document_chunks c JOIN documents d ON d.tenant_id = c.tenant_id"
        " AND d.id = c.document_id WHERE {}"
    ).format(CHUNK_SELECT, DOCUMENT_SELECT, distance, text_rank, where)
    by_vector: list[dict[str, Any]] = []
    by_text: list[dict[str, Any]] = []
    async with transaction(pool, tenant_id, settings, snapshot=True) as conn:
        if query.mode != "text" and query.space is not None:
            by_vector = await _vector_candidates(
                conn,
                select=select,
                where=where,
                space=query.space,
                narrowed=filter.narrowed(),
                params=params,
            )
            by_vector.sort(key=lambda r: (r["distance"], str(r["id"])))
        if query.mode != "vector":
            text_query = sql.SQL(
                "{} AND c.search_text @@ {} ORDER BY text_rank DESC, c.id LIMIT %(k)s"
            ).format(select, ranking.tsquery(query.text_match))
            by_text = await _rows(conn, text_query, params)
        fused = ranking.fuse(
            by_vector,
            by_text,
            weights=weights,
            fusion=query.fusion,
            mode=query.mode,
            occur_time=lambda row: row["d_update_time"],
        )
        fused.sort(key=lambda f: (-f.score.score, str(f.row["document_id"]), f.row["seq"]))
        if group_by_document:
            seen: set[uuid.UUID] = set()
            fused = [
                f
                for f in fused
                if f.row["document_id"] not in seen and not seen.add(f.row["document_id"])  # type: ignore[func-returns-value]
            ]
        fused = [f for f in fused if f.score.score >= min_score][:top_k]
        hits = [_chunk(f.row) for f in fused]
        around = await _neighbours(conn, tenant_id, hits, neighbors) if neighbors and hits else {}
    results = []
    for f, hit in zip(fused, hits, strict=True):
        document = Document(**{c: f.row[f"d_{c}"] for c in DOCUMENT_COLUMNS})
        before = [
            around[k]
            for i in range(neighbors, 0, -1)
            if (k := (hit.document_id, hit.seq - i)) in around
        ]
        after = [
            around[k]
            for i in range(1, neighbors + 1)
            if (k := (hit.document_id, hit.seq + i)) in around
        ]
        results.append(
            DocumentHit(hit, document, f.score, f.vector_rank, f.text_rank, before, after)
        )
    return results
