"""SearchMemories: vector (HNSW), full-text and hybrid candidates, and their ranking."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.memories.filters import filter_condition
from memoryd_server.memories.models import COLUMNS, Candidate, Embedding, Memory, MemoryFilter
from memoryd_server.memories.store import column_sql

MAX_TOP_K = 100
DEFAULT_TOP_K = 10
DEFAULT_HALF_LIFE = dt.timedelta(days=30)
# HNSW candidate list size. With iterative scans pgvector keeps walking the
# graph until enough rows pass the filter, so this trades latency for recall.
EF_SEARCH = 100

# Results carry no embedding: responses stay small and clients rarely want it.
_RESULT_COLUMNS = sql.SQL(", ").join(
    sql.SQL("NULL::vector AS embedding") if c == "embedding" else column_sql(c) for c in COLUMNS
)


@dataclass(frozen=True)
class Weights:
    """How much each part of the score counts (normalised by their sum)."""

    similarity: float = 0.0
    text: float = 0.0
    recency: float = 0.0
    importance: float = 0.0
    half_life: dt.timedelta = DEFAULT_HALF_LIFE

    def resolved(self, *, has_embedding: bool, has_text: bool) -> Weights:
        """These weights, or the defaults for the query's kind when all are zero."""
        if self.similarity or self.text or self.recency or self.importance:
            return self
        similarity = (0.7 if has_text else 1.0) if has_embedding else 0.0
        text = (0.3 if has_embedding else 1.0) if has_text else 0.0
        return Weights(similarity=similarity, text=text, half_life=self.half_life)


@dataclass(frozen=True)
class ScoredMemory:
    """A search result: the memory, its final score and the parts it came from."""

    memory: Memory
    score: float
    similarity: float
    text: float
    recency: float
    importance: float


def score_candidates(
    candidates: list[Candidate], weights: Weights, now: dt.datetime
) -> list[ScoredMemory]:
    """Score every candidate, best first (ties: newest first).

    Each part is in [0, 1]: similarity is (1 + cosine) / 2, text is PostgreSQL's
    normalised ts_rank_cd, recency halves every ``half_life`` since the last
    update, importance is importance / 10.
    """
    total = weights.similarity + weights.text + weights.recency + weights.importance
    half_life = weights.half_life.total_seconds()
    scored = []
    for c in candidates:
        similarity = 0.0 if c.distance is None else min(max(1.0 - c.distance / 2.0, 0.0), 1.0)
        age = max((now - c.memory.update_time).total_seconds(), 0.0)
        recency = math.pow(0.5, age / half_life)
        importance = c.memory.importance / 10.0
        parts = (
            weights.similarity * similarity
            + weights.text * c.text_rank
            + weights.recency * recency
            + weights.importance * importance
        )
        scored.append(ScoredMemory(c.memory, parts / total if total else 0.0, similarity,
                                   c.text_rank, recency, importance))  # fmt: skip
    scored.sort(key=lambda s: (s.score, s.memory.id), reverse=True)
    return scored


def _candidates(rows: list[dict[str, Any]]) -> list[Candidate]:
    return [
        Candidate(
            memory=Memory(**{c: row[c] for c in COLUMNS}),
            distance=row["distance"],
            text_rank=float(row["text_rank"] or 0.0),
            query_time=row["query_time"],
        )
        for row in rows
    ]


async def _query(
    conn: AsyncConnection[Any], query: sql.Composed, params: dict[str, Any]
) -> list[Candidate]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return _candidates(await cur.fetchall())


async def search_memories(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    filter: MemoryFilter,
    query_embedding: Embedding | None,
    query_text: str,
    top_k: int,
    weights: Weights,
    min_score: float,
) -> list[ScoredMemory]:
    """The ``top_k`` best memories for the query among those ``filter`` admits.

    Vector candidates come from the HNSW index with iterative scans (so a
    filter that keeps few rows still yields enough), text candidates from the
    GIN index; the union is scored and re-ranked here.
    """
    has_embedding = query_embedding is not None
    weights = weights.resolved(has_embedding=has_embedding, has_text=bool(query_text))
    # Ranking by anything but the index's own order needs a deeper pool to pick from.
    only_one_signal = (weights.similarity > 0) + (weights.text > 0) == 1 and not (
        weights.recency or weights.importance)  # fmt: skip
    pool_size = max(2 * top_k, 20) if only_one_signal else min(4 * top_k, 400)
    params: dict[str, Any] = {"q": query_embedding, "text": query_text, "k": pool_size}
    where = filter_condition(tenant_id, filter, params)
    distance = sql.SQL("embedding <=> %(q)s" if has_embedding else "NULL::float8")
    text_rank = sql.SQL(
        "ts_rank_cd(search_text, websearch_to_tsquery('english', %(text)s), 32)"
        if query_text else "0::float4"
    )  # fmt: skip
    found: dict[Any, Candidate] = {}
    # Iterative scans keep walking the graph until enough rows pass the filter.
    hnsw = {
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.ef_search": str(max(EF_SEARCH, pool_size)),
    }
    async with transaction(pool, tenant_id, hnsw if has_embedding else None) as conn:
        if has_embedding:
            vector = sql.SQL(
                "SELECT {}, {} AS distance, {} AS text_rank, now() AS query_time FROM memories"
                " WHERE {} AND embedding IS NOT NULL ORDER BY embedding <=> %(q)s LIMIT %(k)s"
            ).format(_RESULT_COLUMNS, distance, text_rank, where)
            for c in await _query(conn, vector, params):
                found[c.memory.id] = c
        if query_text:
            text = sql.SQL(
                "SELECT {}, {} AS distance, {} AS text_rank, now() AS query_time FROM memories"
                " WHERE {} AND search_text @@ websearch_to_tsquery('english', %(text)s)"
                " ORDER BY text_rank DESC LIMIT %(k)s"
            ).format(_RESULT_COLUMNS, distance, text_rank, where)
            for c in await _query(conn, text, params):
                found.setdefault(c.memory.id, c)
    if not found:
        return []
    now = next(iter(found.values())).query_time
    ranked = score_candidates(list(found.values()), weights, now)
    return [s for s in ranked if s.score >= min_score][:top_k]
