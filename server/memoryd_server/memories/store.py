"""SQL for memories: create (one, upsert), read one, update, supersede, delete."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.errors import UniqueViolation
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from memoryd_server import idempotency, quotas
from memoryd_server.database import transaction
from memoryd_server.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
)
from memoryd_server.ids import uuid7
from memoryd_server.memories import history
from memoryd_server.memories.models import (
    ACCESS_COLUMNS,
    COLUMNS,
    LIVE_STATUSES,
    NEW_COLUMNS,
    Memory,
    NewMemory,
    ns_path,
)
from memoryd_server.reads import read

Conn = AsyncConnection[Any]


def column_sql(name: str) -> sql.Composable:
    """How a Memory field is read from a ``memories`` row (also in RETURNING)."""
    if name not in ACCESS_COLUMNS:
        return sql.Identifier(name)
    value = sql.SQL(
        "(SELECT a.{0} FROM memory_access a WHERE a.tenant_id = memories.tenant_id"
        " AND a.memory_id = memories.id)"
    ).format(sql.Identifier(name))
    if name == "access_count":
        value = sql.SQL("coalesce({}, 0)").format(value)
    return sql.SQL("{} AS {}").format(value, sql.Identifier(name))


SELECT_COLUMNS = sql.SQL(", ").join(column_sql(c) for c in COLUMNS)
# A change's time: when it took the row lock (not when its transaction began), and
# always after the previous change, so versions and their times keep one order.
NEXT_UPDATE_TIME = sql.SQL(
    "greatest(clock_timestamp(), memories.update_time + interval '1 microsecond')"
)
# The columns a create writes, in COPY and INSERT order.
WRITE_COLUMNS = ("tenant_id", "id", "ns_path", *NEW_COLUMNS)
# What an upsert replaces in the memory that holds the key.
_UPSERT_COLUMNS = tuple(c for c in NEW_COLUMNS if c not in {"namespace", "key", "status"})


def _not_found(memory_id: uuid.UUID) -> NotFound:
    return NotFound(f"memory {str(memory_id)!r} does not exist")


def _key_taken(new: NewMemory) -> AlreadyExists:
    return AlreadyExists(
        f"key {new.key!r} is already used in namespace {'/'.join(new.namespace)!r}"
    )


def write_values(tenant_id: str, memory_id: uuid.UUID, new: NewMemory) -> dict[str, Any]:
    values: dict[str, Any] = {"tenant_id": tenant_id, "id": memory_id,
                              "ns_path": ns_path(new.namespace)}  # fmt: skip
    for name in NEW_COLUMNS:
        value = getattr(new, name)
        values[name] = Jsonb(value) if name == "metadata" else value
    return values


async def fetch(conn: Conn, query: sql.Composed, params: Any) -> list[Memory]:
    async with conn.cursor(row_factory=class_row(Memory)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


_GET_MEMORY = sql.SQL(
    "SELECT {} FROM memories WHERE tenant_id = %(tenant)s AND id = %(id)s"
).format(SELECT_COLUMNS)
_GET_MEMORY_BY_KEY = sql.SQL(
    "SELECT {} FROM memories WHERE tenant_id = %(tenant)s AND ns_path = %(ns)s AND key = %(key)s"
    " AND status = ANY(%(statuses)s)"
).format(SELECT_COLUMNS)


async def _select(
    conn: Conn, tenant_id: str, memory_id: uuid.UUID, *, lock: bool = False
) -> Memory | None:
    query = sql.SQL("{} FOR UPDATE").format(_GET_MEMORY) if lock else _GET_MEMORY
    rows = await fetch(conn, query, {"tenant": tenant_id, "id": memory_id})
    return rows[0] if rows else None


async def _insert(
    conn: Conn, tenant_id: str, memory_id: uuid.UUID, new: NewMemory, *, upsert: bool = False
) -> Memory:
    """Insert ``new``; with ``upsert``, replace the live memory holding its key instead."""
    conflict: sql.Composable = sql.SQL("")
    if upsert:
        conflict = sql.SQL(
            " ON CONFLICT (tenant_id, ns_path, key) WHERE key IS NOT NULL"
            " AND status IN ('active', 'disputed') DO UPDATE SET {}, version = memories.version"
            " + 1, update_time = {next_time}"
        ).format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _UPSERT_COLUMNS
        ), next_time=NEXT_UPDATE_TIME)  # fmt: skip
    query = sql.SQL("INSERT INTO memories ({}) VALUES ({}){} RETURNING {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in WRITE_COLUMNS),
        sql.SQL(", ").join(sql.Placeholder(c) for c in WRITE_COLUMNS),
        conflict,
        SELECT_COLUMNS,
    )
    try:
        rows = await fetch(conn, query, write_values(tenant_id, memory_id, new))
    except UniqueViolation as exc:
        if exc.diag.constraint_name == "memories_key_idx":
            raise _key_taken(new) from exc
        raise
    return rows[0]


async def _holds_key(conn: Conn, tenant_id: str, new: NewMemory) -> bool:
    """Whether a live memory holds ``new``'s (namespace, key): an upsert replaces it."""
    cur = await conn.execute(
        "SELECT FROM memories WHERE tenant_id = %s AND ns_path = %s AND key = %s"
        " AND status IN ('active', 'disputed')",
        (tenant_id, ns_path(new.namespace), new.key),
    )
    return await cur.fetchone() is not None


async def create_memory(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    new: NewMemory,
    upsert: bool = False,
    request_id: str = "",
    request_hash: bytes = b"",
    max_memories: int = 0,
) -> tuple[Memory, bool]:
    """Create a memory (or upsert by key); returns it and whether it was an update.

    RESOURCE_EXHAUSTED when the tenant stores ``max_memories`` (0: no limit)
    and this would add one rather than replace the one holding the key.
    """
    memory_id = uuid7()
    async with transaction(pool, tenant_id) as conn:
        if request_id:

            async def replay(stored_id: str, _: list[uuid.UUID]) -> tuple[Memory, bool]:
                found = await _select(conn, tenant_id, uuid.UUID(stored_id))
                if found is None:
                    raise _not_found(uuid.UUID(stored_id))
                return found, found.version > 1

            replayed = await idempotency.claim_or_replay(
                conn, tenant_id=tenant_id, request_id=request_id, method="CreateMemory",
                request_hash=request_hash, resource_id=str(memory_id), replay=replay,
            )  # fmt: skip
            if replayed is not None:
                return replayed
        try:
            await quotas.check_room(
                conn, tenant_id=tenant_id, kind="memories", adding=1, limit=max_memories
            )
        except ResourceExhausted:
            if not (upsert and new.key and await _holds_key(conn, tenant_id, new)):
                raise
        memory = await _insert(conn, tenant_id, memory_id, new, upsert=upsert and bool(new.key))
        updated = memory.id != memory_id
        await history.record(
            conn, tenant_id, memory, "updated" if updated else "created", actor=actor,
            actor_name=actor_name,
        )  # fmt: skip
        if request_id and updated:
            await idempotency.record_items(
                conn, tenant_id=tenant_id, request_id=request_id, item_ids=[],
                resource_id=str(memory.id),
            )  # fmt: skip
        return memory, updated


async def get_memory(pool: AsyncConnectionPool, *, tenant_id: str, memory_id: uuid.UUID) -> Memory:
    """The memory, or NOT_FOUND. One round trip (reads.py)."""
    params = {"tenant": tenant_id, "id": memory_id}
    [rows] = await read(pool, tenant_id, [(_GET_MEMORY, params)], row_factory=class_row(Memory))
    if not rows:
        raise _not_found(memory_id)
    return rows[0]


async def get_memory_by_key(
    pool: AsyncConnectionPool, *, tenant_id: str, namespace: list[str], key: str
) -> Memory:
    """The live memory holding (namespace, key), or NOT_FOUND. One round trip."""
    params = {
        "tenant": tenant_id,
        "ns": ns_path(namespace),
        "key": key,
        "statuses": list(LIVE_STATUSES),
    }
    [rows] = await read(
        pool, tenant_id, [(_GET_MEMORY_BY_KEY, params)], row_factory=class_row(Memory)
    )
    if not rows:
        raise NotFound(f"no memory has key {key!r} in namespace {'/'.join(namespace)!r}")
    return rows[0]


async def _explain_miss(
    conn: Conn, tenant_id: str, memory_id: uuid.UUID, expected_version: int | None
) -> Exception:
    """Why a guarded UPDATE matched no row."""
    current = await _select(conn, tenant_id, memory_id)
    if current is None:
        return _not_found(memory_id)
    if current.status == "superseded":
        return FailedPrecondition(
            f"memory {str(memory_id)!r} is SUPERSEDED by {str(current.superseded_by)!r}"
        )
    return Aborted(
        f"memory {str(memory_id)!r} is at version {current.version}, not {expected_version};"
        " re-read it and retry"
    )


async def update_memory(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    memory_id: uuid.UUID,
    changes: dict[str, Any],
    expected_version: int | None,
    reason: str = "",
) -> Memory:
    """Replace the fields in ``changes`` and bump the version; one history event."""
    params: dict[str, Any] = {
        name: Jsonb(value) if name == "metadata" else value for name, value in changes.items()
    }
    params.update(tenant=tenant_id, id=memory_id, expected=expected_version)
    query = sql.SQL(
        "UPDATE memories SET {}, version = version + 1, update_time = {next_time}"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s AND status <> 'superseded'"
        " AND (%(expected)s::bigint IS NULL OR version = %(expected)s::bigint) RETURNING {}"
    ).format(
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder(n)) for n in changes
        ),
        SELECT_COLUMNS,
        next_time=NEXT_UPDATE_TIME,
    )
    async with transaction(pool, tenant_id) as conn:
        rows = await fetch(conn, query, params)
        if not rows:
            raise await _explain_miss(conn, tenant_id, memory_id, expected_version)
        memory = rows[0]
        event = "archived" if changes.get("status") == "archived" else "updated"
        await history.record(
            conn, tenant_id, memory, event, actor=actor, actor_name=actor_name, reason=reason
        )
        return memory


async def supersede_memory(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    memory_id: uuid.UUID,
    new: NewMemory,
    expected_version: int | None,
    reason: str = "",
    max_memories: int = 0,
) -> tuple[Memory, Memory]:
    """Mark ``memory_id`` SUPERSEDED by a new memory created from ``new``.

    The old memory stays stored: RESOURCE_EXHAUSTED when the tenant stores
    ``max_memories`` (0: no limit).
    """
    new_id = uuid7()
    query = sql.SQL(
        "UPDATE memories SET status = 'superseded', superseded_by = %(new)s,"
        " version = version + 1, update_time = {next_time}"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s AND status <> 'superseded'"
        " AND (%(expected)s::bigint IS NULL OR version = %(expected)s::bigint) RETURNING {}"
    ).format(SELECT_COLUMNS, next_time=NEXT_UPDATE_TIME)
    params = {"new": new_id, "tenant": tenant_id, "id": memory_id, "expected": expected_version}
    async with transaction(pool, tenant_id) as conn:
        # The old one first: it frees its key for a replacement that keeps it.
        rows = await fetch(conn, query, params)
        if not rows:
            raise await _explain_miss(conn, tenant_id, memory_id, expected_version)
        # After the old one is found: a missing or stale one is NOT_FOUND or
        # ABORTED whatever the usage; the transaction undoes the update if full.
        await quotas.check_room(
            conn, tenant_id=tenant_id, kind="memories", adding=1, limit=max_memories
        )
        old = rows[0]
        if not new.namespace:
            new = dataclasses.replace(new, namespace=old.namespace)
        created = await _insert(conn, tenant_id, new_id, new)
        by = {"actor": actor, "actor_name": actor_name, "reason": reason}
        await history.record(conn, tenant_id, created, "created", **by)
        await history.record(conn, tenant_id, old, "superseded", **by)
        return old, created


async def delete_memory(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    memory_id: uuid.UUID,
    purge: bool,
    reason: str = "",
) -> Memory | None:
    """Archive the memory (returned), or purge it and its history's content (None)."""
    async with transaction(pool, tenant_id) as conn:
        if purge:
            cur = await conn.execute(
                "DELETE FROM memories WHERE tenant_id = %s AND id = %s RETURNING version",
                (tenant_id, memory_id),
            )
            row = await cur.fetchone()
            if row is None:
                raise _not_found(memory_id)
            await history.purge(
                conn, tenant_id, memory_id, int(row[0]), actor=actor, actor_name=actor_name
            )
            return None
        query = sql.SQL(
            "UPDATE memories SET status = 'archived', version = version + 1,"
            " update_time = {next_time} WHERE tenant_id = %s AND id = %s AND status <> 'archived'"
            " RETURNING {}"
        ).format(SELECT_COLUMNS, next_time=NEXT_UPDATE_TIME)
        rows = await fetch(conn, query, (tenant_id, memory_id))
        if not rows:  # already archived: nothing changes, nothing to record
            current = await _select(conn, tenant_id, memory_id)
            if current is None:
                raise _not_found(memory_id)
            return current
        await history.record(
            conn, tenant_id, rows[0], "archived", actor=actor, actor_name=actor_name, reason=reason
        )
        return rows[0]
