"""SQL for listing memories and their namespaces (keyset pages, shared filters)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import sql
from psycopg.rows import class_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server.memories.filters import filter_condition
from memoryd_server.memories.models import LIVE_STATUSES, Memory, MemoryFilter, ns_path
from memoryd_server.memories.store import SELECT_COLUMNS
from memoryd_server.reads import read


async def list_memories(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    filter: MemoryFilter,
    limit: int,
    before_id: uuid.UUID | None,
) -> list[Memory]:
    """Up to ``limit`` memories matching ``filter``, newest (highest UUIDv7) first."""
    params: dict[str, Any] = {"limit": limit, "before": before_id}
    where = filter_condition(tenant_id, filter, params)
    query = sql.SQL(
        "SELECT {} FROM memories WHERE {} AND (%(before)s::uuid IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s"
    ).format(SELECT_COLUMNS, where)
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=class_row(Memory))
    return rows


async def list_namespaces(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    prefix: list[str],
    max_depth: int,
    limit: int,
    after: list[str] | None,
) -> list[list[str]]:
    """Distinct namespaces (truncated to ``max_depth``) of live memories under ``prefix``."""
    params: dict[str, Any] = {"limit": limit, "statuses": list(LIVE_STATUSES)}
    where = filter_condition(
        tenant_id, MemoryFilter(namespace_prefix=prefix, statuses=[], include_expired=True),
        params,
    )  # fmt: skip
    depth = sql.SQL("namespace[1:%(depth)s]" if max_depth else "namespace")
    params["depth"] = max_depth
    params["after"] = ns_path(after) if after is not None else None
    query = sql.SQL(
        "SELECT ns FROM (SELECT DISTINCT {} AS ns FROM memories WHERE {}"
        " AND status = ANY(%(statuses)s)) AS d"
        " WHERE %(after)s::text IS NULL OR array_to_string(ns, E'\\x1f') COLLATE \"C\""
        ' > %(after)s::text COLLATE "C"'
        " ORDER BY array_to_string(ns, E'\\x1f') COLLATE \"C\" LIMIT %(limit)s"
    ).format(depth, where)
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=tuple_row)
    return [list(row[0]) for row in rows]
