"""BatchCreateMemories: thousands of memories in one transaction, by binary COPY."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from psycopg import sql
from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool

from memoryd_server import idempotency, quotas
from memoryd_server.database import transaction
from memoryd_server.errors import AlreadyExists
from memoryd_server.ids import uuid7
from memoryd_server.memories import history
from memoryd_server.memories.models import Memory, NewMemory
from memoryd_server.memories.store import WRITE_COLUMNS, write_values

# Statement timeout of a BatchCreateMemories transaction.
BATCH_STATEMENT_TIMEOUT = "15min"

# Binary COPY needs each column's type.
COPY_TYPES = {
    "tenant_id": "text", "id": "uuid", "ns_path": "text", "namespace": "text[]",
    "content": "text", "key": "text", "memory_type": "text", "subject": "text",
    "embedding": "vector", "embedding_model": "text", "importance": "int2",
    "confidence": "float4", "pinned": "bool", "tier": "text", "status": "text",
    "source_kind": "text", "source_conversation_id": "text", "source_message_ids": "text[]",
    "extraction_model": "text", "user_id": "text", "agent_id": "text", "tags": "text[]",
    "metadata": "jsonb", "related_to": "uuid[]", "contradicts": "uuid[]",
    "expire_time": "timestamptz", "occur_time": "timestamptz",
}  # fmt: skip


async def batch_create_memories(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    memories: list[NewMemory],
    request_id: str = "",
    request_hash: bytes = b"",
    max_memories: int = 0,
) -> list[uuid.UUID]:
    """Create all ``memories`` with one binary COPY, in one transaction.

    RESOURCE_EXHAUSTED, writing none, when they would take the tenant past
    ``max_memories`` (0: no limit).
    """
    ids = [uuid7() for _ in memories]
    # Each row goes through the HNSW index (a few hundred rows/s per core): a
    # full batch may outlast MEMORYD_STATEMENT_TIMEOUT_MS.
    timeout = {"statement_timeout": BATCH_STATEMENT_TIMEOUT}
    async with transaction(pool, tenant_id, timeout) as conn:
        if request_id:

            async def replay(_: str, stored: list[uuid.UUID]) -> list[uuid.UUID]:
                return stored

            replayed = await idempotency.claim_or_replay(
                conn, tenant_id=tenant_id, request_id=request_id,
                method="BatchCreateMemories", request_hash=request_hash, resource_id="",
                replay=replay,
            )  # fmt: skip
            if replayed is not None:
                return replayed
        await quotas.check_room(
            conn, tenant_id=tenant_id, kind="memories", adding=len(memories), limit=max_memories
        )
        # Row-level security forbids COPY into memories itself: COPY into a
        # private staging table, then one INSERT that the policy checks.
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in WRITE_COLUMNS)
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE memories_batch ON COMMIT DROP AS"
                " SELECT {} FROM memories WITH NO DATA"
            ).format(columns)
        )
        copy_sql = sql.SQL("COPY memories_batch ({}) FROM STDIN (FORMAT BINARY)").format(columns)
        async with conn.cursor() as cur:
            async with cur.copy(copy_sql) as copy:
                copy.set_types([COPY_TYPES[c] for c in WRITE_COLUMNS])
                for memory_id, new in zip(ids, memories, strict=True):
                    values = write_values(tenant_id, memory_id, new)
                    await copy.write_row([values[c] for c in WRITE_COLUMNS])
            try:
                await cur.execute(
                    sql.SQL("INSERT INTO memories ({0}) SELECT {0} FROM memories_batch").format(
                        columns
                    )
                )
            except UniqueViolation as exc:
                if exc.diag.constraint_name == "memories_key_idx":
                    raise AlreadyExists(
                        "a (namespace, key) of the batch is already used or repeated"
                    ) from exc
                raise
            await cur.execute("SELECT now()")
            row = await cur.fetchone()
            assert row is not None
        now: dt.datetime = row[0]
        created = [
            _as_created(memory_id, new, now) for memory_id, new in zip(ids, memories, strict=True)
        ]
        await history.record_many(
            conn, tenant_id, created, "created", actor=actor, actor_name=actor_name
        )
        if request_id:
            await idempotency.record_items(
                conn, tenant_id=tenant_id, request_id=request_id, item_ids=ids
            )
    return ids


def _as_created(memory_id: uuid.UUID, new: NewMemory, now: dt.datetime) -> Memory:
    """The row COPY wrote for ``new``, rebuilt without reading it back."""
    values = {f.name: getattr(new, f.name) for f in dataclasses.fields(NewMemory)}
    values["occur_time"] = new.occur_time or now
    return Memory(
        id=memory_id, version=1, superseded_by=None, access_count=0, last_access_time=None,
        create_time=now, update_time=now, **values,
    )  # fmt: skip
