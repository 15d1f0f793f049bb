"""Idempotency keys: a retried mutation returns the first call's result.

A key is claimed in the transaction of the write it guards, so it exists
exactly when the write committed; a concurrent call with the same key waits on
the claim until the first commits, then replays its result. A key is unique
within its scope: the tenant ('') for most methods, the conversation for
AppendMessages, so each conversation may have its own "turn-1".
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.errors import Aborted, AlreadyExists

T = TypeVar("T")

# Keys are kept this long; a retry after that is a new request.
RETENTION = dt.timedelta(hours=24)


async def claim_or_replay(
    conn: AsyncConnection[Any],
    *,
    tenant_id: str,
    request_id: str,
    method: str,
    request_hash: bytes,
    resource_id: str,
    replay: Callable[[str, list[uuid.UUID]], Awaitable[T]],
    scope: str = "",
) -> T | None:
    """Claim ``request_id``, or return ``replay(resource_id, item_ids)`` of its first call.

    None means the key is newly claimed: the caller does the work (and may
    ``record_items``). The same key with another method or request body is
    ALREADY_EXISTS.
    """
    claimed = await conn.execute(
        "INSERT INTO idempotency_keys"
        " (tenant_id, scope, request_id, method, request_hash, resource_id)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (tenant_id, scope, request_id, method, request_hash, resource_id),
    )
    if await claimed.fetchone() is not None:
        return None
    cur = await conn.execute(
        "SELECT method, request_hash, resource_id, item_ids FROM idempotency_keys"
        " WHERE tenant_id = %s AND scope = %s AND request_id = %s",
        (tenant_id, scope, request_id),
    )
    row = await cur.fetchone()
    if row is None:  # claimed and released by a rollback in between: rare, retryable
        raise Aborted("a concurrent call with the same request_id is in progress; retry")
    stored_method, stored_hash, stored_resource, item_ids = row
    if stored_method != method or bytes(stored_hash) != request_hash:
        raise AlreadyExists(f"request_id {request_id!r} was already used for a different request")
    return await replay(stored_resource, list(item_ids))


async def record_items(
    conn: AsyncConnection[Any],
    *,
    tenant_id: str,
    request_id: str,
    item_ids: list[uuid.UUID],
    resource_id: str | None = None,
    scope: str = "",
) -> None:
    """Remember what the claimed call created, for its replays."""
    await conn.execute(
        "UPDATE idempotency_keys SET item_ids = %s, resource_id = coalesce(%s, resource_id)"
        " WHERE tenant_id = %s AND scope = %s AND request_id = %s",
        (item_ids, resource_id, tenant_id, scope, request_id),
    )


async def forget_resource(conn: AsyncConnection[Any], *, tenant_id: str, resource_id: str) -> None:
    """Drop the keys of a deleted resource, so a retry cannot replay it."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE tenant_id = %s AND resource_id = %s",
        (tenant_id, resource_id),
    )


async def delete_expired(pool: AsyncConnectionPool, *, batch: int = 1000) -> int:
    """Forget up to ``batch`` keys older than RETENTION; returns how many went."""
    async with transaction(pool, None) as conn:
        cur = await conn.execute(
            "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(SELECT ctid FROM"
            " idempotency_keys WHERE create_time < now() - %s LIMIT %s))",
            (RETENTION, batch),
        )
        return cur.rowcount
