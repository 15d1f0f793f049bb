"""SQL conditions for a MemoryFilter, shared by ListMemories and SearchMemories."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from memoryd_server.memories.models import NAMESPACE_SEPARATOR, MemoryFilter, ns_path

# The character right after the separator: "a\x1fb" < prefix-range < "a\x20".
_AFTER_SEPARATOR = chr(ord(NAMESPACE_SEPARATOR) + 1)


def namespace_condition(prefix: list[str], params: dict[str, Any]) -> sql.Composable:
    """Memories in ``prefix`` or under it: an index range on ns_path (collation C)."""
    if not prefix:
        return sql.SQL("TRUE")
    path = ns_path(prefix)
    params["ns_exact"] = path
    params["ns_low"] = path + NAMESPACE_SEPARATOR
    params["ns_high"] = path + _AFTER_SEPARATOR
    return sql.SQL("(ns_path = %(ns_exact)s OR (ns_path >= %(ns_low)s AND ns_path < %(ns_high)s))")


def filter_condition(  # noqa: PLR0912 - one branch per filter field
    tenant_id: str, f: MemoryFilter, params: dict[str, Any]
) -> sql.Composable:
    """The WHERE condition for ``f`` in ``tenant_id``; fills ``params``."""
    params["tenant"] = tenant_id
    parts: list[sql.Composable] = [
        sql.SQL("tenant_id = %(tenant)s"),
        namespace_condition(f.namespace_prefix, params),
    ]

    def add(condition: str, **values: Any) -> None:
        parts.append(sql.SQL(condition))  # type: ignore[arg-type,unused-ignore]
        params.update(values)

    if f.statuses:
        add("status = ANY(%(statuses)s)", statuses=f.statuses)
    if f.memory_types:
        add("memory_type = ANY(%(memory_types)s)", memory_types=f.memory_types)
    if f.tiers:
        add("tier = ANY(%(tiers)s)", tiers=f.tiers)
    if f.tags_any:
        add("tags && %(tags_any)s::text[]", tags_any=f.tags_any)
    if f.tags_all:
        add("tags @> %(tags_all)s::text[]", tags_all=f.tags_all)
    if f.user_id:
        add("user_id = %(user_id)s", user_id=f.user_id)
    if f.agent_id:
        add("agent_id = %(agent_id)s", agent_id=f.agent_id)
    if f.metadata:
        add("metadata @> %(metadata)s", metadata=Jsonb(f.metadata))
    if f.create_time_start is not None:
        add("create_time >= %(create_start)s", create_start=f.create_time_start)
    if f.create_time_end is not None:
        add("create_time < %(create_end)s", create_end=f.create_time_end)
    if f.occur_time_start is not None:
        add("occur_time >= %(occur_start)s", occur_start=f.occur_time_start)
    if f.occur_time_end is not None:
        add("occur_time < %(occur_end)s", occur_end=f.occur_time_end)
    if not f.include_expired:
        # Pinned memories never expire, whatever their expire_time says.
        add("(pinned OR expire_time IS NULL OR expire_time > now())")
    return sql.SQL(" AND ").join(parts)
