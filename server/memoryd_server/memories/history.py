"""The append-only history: one event per version, with a snapshot of the state.

Events never change (the database refuses UPDATE, DELETE and TRUNCATE on
them). Snapshots hold the content and may only be deleted, by a purge, which
leaves the events and a PURGED tombstone that carries no content at all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.memories.models import Memory, MemoryEvent, from_state, to_state
from memoryd_server.reads import read

Conn = AsyncConnection[Any]


async def record(
    conn: Conn,
    tenant_id: str,
    memory: Memory,
    event_type: str,
    *,
    actor: str,
    actor_name: str,
    reason: str = "",
) -> None:
    """Append the event that produced ``memory``'s current version, with its snapshot.

    ``actor`` is the caller's key id and ``actor_name`` that key's name.
    """
    await record_many(
        conn, tenant_id, [memory], event_type, actor=actor, actor_name=actor_name, reason=reason
    )


async def record_many(
    conn: Conn,
    tenant_id: str,
    memories: list[Memory],
    event_type: str,
    *,
    actor: str,
    actor_name: str,
    reason: str = "",
) -> None:
    """``record`` for many memories in two statements."""
    if not memories:
        return
    ids = [m.id for m in memories]
    versions = [m.version for m in memories]
    await conn.execute(
        "INSERT INTO memory_events (tenant_id, memory_id, version, event_type, actor, actor_name,"
        " event_time) SELECT %s, * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::text[],"
        " %s::text[], %s::timestamptz[])",
        (tenant_id, ids, versions, [event_type] * len(ids), [actor] * len(ids),
         [actor_name] * len(ids), [m.update_time for m in memories]),
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO memory_snapshots (tenant_id, memory_id, version, state, reason)"
        " SELECT %s, * FROM unnest(%s::uuid[], %s::bigint[], %s::jsonb[], %s::text[])",
        (tenant_id, ids, versions, [Jsonb(to_state(m)) for m in memories],
         [reason] * len(ids)),
    )  # fmt: skip


async def purge(
    conn: Conn,
    tenant_id: str,
    memory_id: uuid.UUID,
    last_version: int,
    *,
    actor: str,
    actor_name: str,
) -> None:
    """Delete every snapshot of a memory and append the tombstone."""
    await conn.execute(
        "DELETE FROM memory_snapshots WHERE tenant_id = %s AND memory_id = %s",
        (tenant_id, memory_id),
    )
    await conn.execute(
        "INSERT INTO memory_events (tenant_id, memory_id, version, event_type, actor, actor_name,"
        " event_time) SELECT %s, %s, %s, 'purged', %s, %s, greatest(clock_timestamp(),"
        " max(event_time) + interval '1 microsecond') FROM memory_events"
        " WHERE tenant_id = %s AND memory_id = %s",
        (tenant_id, memory_id, last_version + 1, actor, actor_name, tenant_id, memory_id),
    )


async def list_events(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    memory_id: uuid.UUID,
    after_version: int,
    limit: int,
) -> list[MemoryEvent]:
    """Events after ``after_version``, oldest first, with the states around each."""
    query = sql.SQL(
        "SELECT e.version, e.event_type, e.actor, e.actor_name, e.event_time, s.state,"
        " s.reason, p.state FROM memory_events e"
        " LEFT JOIN memory_snapshots s ON s.tenant_id = e.tenant_id"
        "  AND s.memory_id = e.memory_id AND s.version = e.version"
        " LEFT JOIN memory_snapshots p ON p.tenant_id = e.tenant_id"
        "  AND p.memory_id = e.memory_id AND p.version = e.version - 1"
        " WHERE e.tenant_id = %(tenant)s AND e.memory_id = %(memory)s"
        " AND e.version > %(after)s ORDER BY e.version LIMIT %(limit)s"
    )
    params = {"tenant": tenant_id, "memory": memory_id, "after": after_version, "limit": limit}
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=tuple_row)
    return [
        MemoryEvent(
            memory_id=memory_id, version=version, event_type=event_type, actor=actor,
            actor_name=actor_name, reason=reason or "", event_time=event_time,
            before=from_state(before) if before is not None else None,
            after=from_state(after) if after is not None else None,
        )
        for version, event_type, actor, actor_name, event_time, after, reason, before in rows
    ]  # fmt: skip


async def state_at(
    pool: AsyncConnectionPool, *, tenant_id: str, memory_id: uuid.UUID, at: dt.datetime
) -> tuple[str | None, Memory | None]:
    """The last event type at or before ``at`` and the state it left (None if purged)."""
    query = sql.SQL(
        "SELECT e.event_type, s.state FROM memory_events e"
        " LEFT JOIN memory_snapshots s ON s.tenant_id = e.tenant_id"
        "  AND s.memory_id = e.memory_id AND s.version = e.version"
        " WHERE e.tenant_id = %(tenant)s AND e.memory_id = %(memory)s"
        " AND e.event_time <= %(at)s ORDER BY e.version DESC LIMIT 1"
    )
    params = {"tenant": tenant_id, "memory": memory_id, "at": at}
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=tuple_row)
    row = rows[0] if rows else None
    if row is None:
        return None, None
    event_type, state = row
    return event_type, (from_state(state) if state is not None else None)


async def has_events(pool: AsyncConnectionPool, *, tenant_id: str, memory_id: uuid.UUID) -> bool:
    """Whether the memory ever existed in this tenant."""
    async with transaction(pool, tenant_id) as conn:
        cur = await conn.execute(
            "SELECT 1 FROM memory_events WHERE tenant_id = %s AND memory_id = %s LIMIT 1",
            (tenant_id, memory_id),
        )
        return await cur.fetchone() is not None
