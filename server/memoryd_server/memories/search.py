"""SearchMemories: vector (HNSW), full-text and hybrid candidates, and their ranking."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server import ranking
from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.memories.filters import filter_condition
from memoryd_server.memories.models import COLUMNS, Memory, MemoryFilter
from memoryd_server.memories.store import column_sql
from memoryd_server.ranking import Query, Weights
from memoryd_server.reads import read, vector_literal

MAX_TOP_K = 100
DEFAULT_TOP_K = 10
DEFAULT_HALF_LIFE = ranking.DEFAULT_HALF_LIFE
# HNSW candidate list size. With iterative scans pgvector keeps walking the
# graph until enough rows pass the filter, so this trades latency for recall.
EF_SEARCH = 100
# A filtered vector search sorts the matching rows exactly when the planner
# expects at most this many to pass (bench/memory_search.py: an exact search
# of 1,000 rows took 0.1-0.2x the iterative index scan that found 20 of them,
# and about as long as an unfiltered index search).
EXACT_MAX_ROWS = 1500

# Results carry no embedding: responses stay small and clients rarely want it.
# Rendered once: composing its twenty-odd parts again cost every search.
_RESULT_COLUMNS = sql.SQL(
    sql.SQL(", ")
    .join(
        sql.SQL("NULL::vector AS embedding") if c == "embedding" else column_sql(c) for c in COLUMNS
    )
    .as_string()
)

__all__ = ["DEFAULT_HALF_LIFE", "MAX_TOP_K", "ScoredMemory", "Weights", "search_memories"]


@dataclass(frozen=True)
class ScoredMemory:
    """A search result: the memory, its final score and the parts it came from."""

    memory: Memory
    score: ranking.Score
    vector_rank: int
    text_rank: int


def search_settings(depth: int) -> dict[str, str]:
    """Transaction settings of a vector search for ``depth`` candidates."""
    return {
        # Iterative scans keep walking the graph until enough rows pass the filter.
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.ef_search": str(max(EF_SEARCH, depth)),
        # With statistics, the planner prices an exact sort of every row a 1-10%
        # filter keeps below the index scan (a distance costs it one operator)
        # and took 15x longer at 100k rows. The ORDER BY of a vector search has
        # one other path, the index; a text search has none, so it still sorts.
        "enable_sort": "off",
    }


def vector_distance(space: ModelSpace) -> sql.Composed:
    """Cosine distance to ``%(q)s`` in ``space``: the expression of its partial index."""
    dim = sql.Literal(space.dimension)
    return sql.SQL("(embedding::vector({0}) <=> %(q)s::vector({0}))").format(dim)


def vector_condition(space: ModelSpace) -> sql.Composed:
    """Rows of ``space``, spelled as its partial index's predicate (a literal, not a
    parameter, so even a generic plan can use the index)."""
    return sql.SQL("embedding_model = {} AND embedding IS NOT NULL").format(sql.Literal(space.name))


Statement = tuple[sql.Composed, dict[str, Any]]


def _narrowed(f: MemoryFilter) -> bool:
    """Whether ``f`` may keep few rows: anything beyond the default status and expiry."""
    return bool(
        f.namespace_prefix or f.memory_types or f.tags_any or f.tags_all or f.tiers
        or f.user_id or f.agent_id or f.metadata or f.create_time_start or f.create_time_end
        or f.occur_time_start or f.occur_time_end or f.statuses != ["active"]
    )  # fmt: skip


def _plan_rows(plan: Any) -> float:
    """The row estimate at the top of an EXPLAIN (FORMAT JSON) result."""
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


async def _vector_statement(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    select: sql.Composed,
    where: sql.Composable,
    space: ModelSpace,
    filter: MemoryFilter,
    params: dict[str, Any],
    settings: dict[str, str] | None,
) -> tuple[sql.Composed, bool]:
    """The nearest rows' query, and whether it is the exact one.

    Exact when few rows pass the filter, else by the HNSW index: an iterative
    index scan under a 1% filter walks far through the graph (measured 4.5x an
    unfiltered search at 100k rows) where sorting the few matching rows exactly
    is cheaper and exact; for a narrowed filter the planner's estimate of the
    rows it keeps decides (a round trip of its own).
    """
    exact = sql.SQL("{} AND {} ORDER BY {} + 0 LIMIT %(k)s").format(
        select, vector_condition(space), vector_distance(space)
    )
    if _narrowed(filter):
        # The planner's estimate (statistics, no execution): counting the rows
        # cost a 10% filter as much as the search itself.
        estimate = sql.SQL("EXPLAIN (FORMAT JSON) SELECT FROM memories WHERE {} AND {}").format(
            where, vector_condition(space)
        )
        [plan] = await read(
            pool, tenant_id, [(estimate, params)], row_factory=tuple_row, settings=settings
        )
        if plan and _plan_rows(plan[0][0]) <= EXACT_MAX_ROWS:
            return exact, True
    nearest = sql.SQL("{} AND {} ORDER BY {} LIMIT %(k)s").format(
        select, vector_condition(space), vector_distance(space)
    )
    return nearest, False


def _sort_key(f: ranking.Fused) -> tuple[float, float, str, str]:
    # Deterministic for the same data: score, then the newest event, content, id.
    row = f.row
    return (-f.score.score, -row["occur_time"].timestamp(), row["content"], str(row["id"]))


async def search_memories(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    filter: MemoryFilter,
    query: Query,
    top_k: int,
    weights: Weights,
    min_score: float,
) -> list[ScoredMemory]:
    """The ``top_k`` best memories for ``query`` among those ``filter`` admits.

    Vector candidates come from the model's HNSW index with iterative scans (so
    a filter that keeps few rows still yields enough), text candidates from the
    GIN index; the two rankings are fused here.
    """
    weights = weights.resolved(query.mode, query.fusion)
    single = query.mode != "hybrid" and not (weights.recency or weights.importance)
    # Ranking by anything but one index's own order needs a deeper pool to pick from.
    depth = max(2 * top_k, 20) if single else min(max(4 * top_k, 40), 400)
    q = None if query.vector is None else vector_literal(query.vector)
    params: dict[str, Any] = {"q": q, "text": query.text, "k": depth}
    where = filter_condition(tenant_id, filter, params)
    text_rank = ranking.text_rank(query.text_match) if query.text else sql.SQL("0::float4")
    distance: sql.Composable = sql.SQL("NULL::float8")
    settings = None
    if query.space is not None and query.vector is not None:
        distance = vector_distance(query.space)
        settings = search_settings(depth)
    select = sql.SQL(
        "SELECT {}, {} AS distance, {} AS text_rank, now() AS query_time FROM memories WHERE {}"
    ).format(_RESULT_COLUMNS, distance, text_rank, where)
    statements: list[Statement] = []
    vector, exact = query.mode != "text" and query.space is not None, True
    if vector:
        assert query.space is not None
        nearest, exact = await _vector_statement(
            pool, tenant_id=tenant_id, select=select, where=where, space=query.space,
            filter=filter, params=params, settings=settings,
        )  # fmt: skip
        statements.append((nearest, params))
    if query.mode != "vector":
        text_query = sql.SQL(
            "{} AND search_text @@ {} ORDER BY text_rank DESC, occur_time DESC, id LIMIT %(k)s"
        ).format(select, ranking.tsquery(query.text_match))
        statements.append((text_query, params))
    # Vector and text candidates together: one round trip.
    found = await read(pool, tenant_id, statements, row_factory=dict_row, settings=settings)
    by_vector = found.pop(0) if vector else []
    by_text = found.pop(0) if found else []
    if vector and not exact and len(by_vector) < depth:
        # The iterative scan gave up (hnsw.max_scan_tuples) before finding
        # enough: an exact search finds every row that passes.
        assert query.space is not None
        exact_query = sql.SQL("{} AND {} ORDER BY {} + 0 LIMIT %(k)s").format(
            select, vector_condition(query.space), vector_distance(query.space)
        )
        [by_vector] = await read(
            pool, tenant_id, [(exact_query, params)], row_factory=dict_row, settings=settings
        )
    # relaxed_order may return a few rows out of order.
    by_vector.sort(key=lambda r: (r["distance"], str(r["id"])))
    fused = ranking.fuse(
        by_vector, by_text, weights=weights, fusion=query.fusion, mode=query.mode,
        occur_time=lambda row: row["occur_time"],
        importance=lambda row: row["importance"] / 10.0,
    )  # fmt: skip
    # Memories are made for the winners only, not for every candidate.
    winners = sorted((f for f in fused if f.score.score >= min_score), key=_sort_key)[:top_k]
    return [
        ScoredMemory(Memory(**{c: f.row[c] for c in COLUMNS}), f.score, f.vector_rank, f.text_rank)
        for f in winners
    ]
