"""SQL conditions for a DocumentFilter, shared by ListDocuments and SearchDocuments."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from memoryd_server.documents.models import DocumentFilter
from memoryd_server.memories.filters import namespace_condition


def _prefix_high(prefix: str) -> str:
    """The least string above every string starting with ``prefix`` (collation C)."""
    return (
        prefix[:-1] + chr(ord(prefix[-1]) + 1) if ord(prefix[-1]) < 0x10FFFF else prefix + "\uffff"
    )


def filter_condition(tenant_id: str, f: DocumentFilter, params: dict[str, Any]) -> sql.Composable:
    """The WHERE condition on ``documents`` (unqualified columns) for ``f``; fills ``params``."""
    params["tenant"] = tenant_id
    parts: list[sql.Composable] = [
        sql.SQL("tenant_id = %(tenant)s"),
        namespace_condition(f.namespace_prefix, params),
    ]
    optional: dict[str, tuple[str, Any]] = {
        "path >= %(path_low)s AND path < %(path_high)s": ("path_low", f.path_prefix),
        "tags && %(tags_any)s::text[]": ("tags_any", f.tags_any),
        "tags @> %(tags_all)s::text[]": ("tags_all", f.tags_all),
        "user_id = %(user_id)s": ("user_id", f.user_id),
        "metadata @> %(metadata)s": ("metadata", Jsonb(f.metadata) if f.metadata else None),
        "media_type = ANY(%(media_types)s)": ("media_types", f.media_types),
        "create_time >= %(create_start)s": ("create_start", f.create_time_start),
        "create_time < %(create_end)s": ("create_end", f.create_time_end),
        "update_time >= %(update_start)s": ("update_start", f.update_time_start),
        "update_time < %(update_end)s": ("update_end", f.update_time_end),
    }
    for condition, (name, value) in optional.items():
        if value:
            parts.append(sql.SQL(condition))  # type: ignore[arg-type,unused-ignore]
            params[name] = value
    if f.path_prefix:
        params["path_high"] = _prefix_high(f.path_prefix)
    return sql.SQL(" AND ").join(parts)
