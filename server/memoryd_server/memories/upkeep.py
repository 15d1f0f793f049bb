"""Background upkeep of memories: expiry, and the access counts searches produce."""

from __future__ import annotations

import uuid

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.memories import history
from memoryd_server.memories.store import NEXT_UPDATE_TIME, SELECT_COLUMNS, fetch

# Memories expired per transaction: short locks, no long stall of other writers.
EXPIRY_BATCH = 500
# The actor (id, name) of expiry's history events: no API key asked for them.
EXPIRY_ACTOR = "system:expiry"
EXPIRY_ACTOR_NAME = "expiry"


async def expire_memories(
    pool: AsyncConnectionPool, *, purge: bool, batch: int = EXPIRY_BATCH
) -> int:
    """Archive (or purge) up to ``batch`` unpinned live memories past expire_time."""
    query = sql.SQL(
        "SELECT tenant_id, id FROM memories WHERE expire_time <= now() AND NOT pinned"
        " AND status IN ('active', 'disputed') ORDER BY expire_time LIMIT %s"
        " FOR UPDATE SKIP LOCKED"
    )
    async with transaction(pool, None) as conn:
        cur = await conn.execute(query, (batch,))
        # Chosen by expiry, changed in tenant order: each purge updates its
        # tenant's usage counter (migration 0008), and two replicas taking two
        # tenants' counters in opposite orders would deadlock.
        due = sorted(await cur.fetchall())
        for tenant_id, memory_id in due:
            if purge:
                cur = await conn.execute(
                    "DELETE FROM memories WHERE tenant_id = %s AND id = %s RETURNING version",
                    (tenant_id, memory_id),
                )
                row = await cur.fetchone()
                assert row is not None
                await history.purge(
                    conn, tenant_id, memory_id, int(row[0]), actor=EXPIRY_ACTOR,
                    actor_name=EXPIRY_ACTOR_NAME,
                )  # fmt: skip
                continue
            archived = await fetch(
                conn,
                sql.SQL(
                    "UPDATE memories SET status = 'archived', version = version + 1,"
                    " update_time = {next_time} WHERE tenant_id = %s AND id = %s RETURNING {}"
                ).format(SELECT_COLUMNS, next_time=NEXT_UPDATE_TIME),
                (tenant_id, memory_id),
            )
            await history.record(
                conn, tenant_id, archived[0], "archived", actor=EXPIRY_ACTOR,
                actor_name=EXPIRY_ACTOR_NAME, reason="expired",
            )  # fmt: skip
        return len(due)


async def record_access(
    pool: AsyncConnectionPool, *, tenant_id: str, hits: dict[uuid.UUID, int]
) -> None:
    """Add each memory's hits to its access count (not a change: no version, no history).

    The counts live in the narrow memory_access table, so counting never
    rewrites a memories row or its index entries.
    """
    ids = sorted(hits)  # one lock order for every flush
    async with transaction(pool, tenant_id) as conn:
        await conn.execute(
            "INSERT INTO memory_access (tenant_id, memory_id, access_count, last_access_time)"
            " SELECT %s, h.id, h.n, now() FROM unnest(%s::uuid[], %s::bigint[]) AS h(id, n)"
            " WHERE EXISTS (SELECT FROM memories m WHERE m.tenant_id = %s AND m.id = h.id)"
            " ON CONFLICT (tenant_id, memory_id) DO UPDATE SET"
            " access_count = memory_access.access_count + EXCLUDED.access_count,"
            " last_access_time = EXCLUDED.last_access_time",
            (tenant_id, ids, [hits[i] for i in ids], tenant_id),
        )
