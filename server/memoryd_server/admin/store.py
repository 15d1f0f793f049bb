"""SQL for tenants and API keys, with their transaction boundaries."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server import quotas
from memoryd_server.admin.models import ApiKey, NewApiKey, Quotas, Scope, Tenant
from memoryd_server.database import OPERATOR_ROLE, transaction
from memoryd_server.errors import AlreadyExists, NotFound

Conn = AsyncConnection[Any]

# Transaction settings of server-wide administration: SET LOCAL ROLE memoryd_operator.
OPERATOR = {"role": OPERATOR_ROLE}

TENANT_COLUMNS = sql.SQL(
    "tenant_id, display_name, state, requests_per_second, burst, max_memories,"
    " max_conversations, max_content_bytes, max_documents, max_document_bytes, create_time,"
    " update_time, disable_time"
)
# Never the secret's hash: it does not leave the database.
KEY_COLUMNS = sql.SQL(
    "key_id::text AS key_id, tenant_id, name, role, prefix, created_by, create_time,"
    " last_used_time, expire_time, revoke_time"
)
INSERT_KEY = sql.SQL(
    "INSERT INTO api_keys"
    " (key_id, tenant_id, name, role, prefix, secret_hash, created_by, expire_time)"
    " VALUES (%(key_id)s, %(tenant_id)s, %(name)s, %(role)s, %(prefix)s, %(secret_hash)s,"
    " %(created_by)s, %(expire_time)s) RETURNING {cols}"
).format(cols=KEY_COLUMNS)


def tenant_not_found(tenant_id: str) -> NotFound:
    """The one answer for a tenant that does not exist or is not the caller's."""
    return NotFound(f"tenant {tenant_id} not found")


def key_not_found(key_id: str) -> NotFound:
    """The one answer for a key that does not exist or is another tenant's."""
    return NotFound(f"API key {key_id} not found")


@asynccontextmanager
async def _scoped(pool: AsyncConnectionPool, scope: Scope) -> AsyncIterator[Conn]:
    async with transaction(pool, scope.tenant_id, OPERATOR if scope.operator else None) as conn:
        yield conn


async def _select_tenant(conn: Conn, tenant_id: str) -> Tenant | None:
    query = sql.SQL("SELECT {cols} FROM tenants WHERE tenant_id = %(tenant)s").format(
        cols=TENANT_COLUMNS
    )
    async with conn.cursor(row_factory=class_row(Tenant)) as cur:
        await cur.execute(query, {"tenant": tenant_id})
        return await cur.fetchone()


async def _require_tenant(conn: Conn, tenant_id: str) -> Tenant:
    found = await _select_tenant(conn, tenant_id)
    if found is None:
        raise tenant_not_found(tenant_id)
    return found


# -- tenants -----------------------------------------------------------------


async def create_tenant(
    pool: AsyncConnectionPool, *, tenant_id: str, display_name: str, quotas: Quotas
) -> Tenant:
    """Insert a tenant (operator only); ALREADY_EXISTS when the id is taken."""
    query = sql.SQL(
        "INSERT INTO tenants (tenant_id, display_name, requests_per_second, burst,"
        " max_memories, max_conversations, max_content_bytes, max_documents, max_document_bytes)"
        " VALUES (%(tenant)s, %(display_name)s, %(requests_per_second)s, %(burst)s,"
        " %(max_memories)s, %(max_conversations)s, %(max_content_bytes)s, %(max_documents)s,"
        " %(max_document_bytes)s)"
        " ON CONFLICT (tenant_id) DO NOTHING RETURNING {cols}"
    ).format(cols=TENANT_COLUMNS)
    params = {"tenant": tenant_id, "display_name": display_name, **vars(quotas)}
    async with (
        transaction(pool, None, OPERATOR) as conn,
        conn.cursor(row_factory=class_row(Tenant)) as cur,
    ):
        await cur.execute(query, params)
        created = await cur.fetchone()
    if created is None:
        raise AlreadyExists(f"tenant {tenant_id} already exists")
    return created


async def get_tenant(pool: AsyncConnectionPool, *, tenant_id: str) -> tuple[Tenant, quotas.Usage]:
    """The tenant and what it stores, or NOT_FOUND.

    Operators too read as memoryd_app with the tenant declared: that role sees
    the tenant's own row and may count its rows, which memoryd_operator (no
    grant on tenant data) may not.
    """
    async with transaction(pool, tenant_id) as conn:
        found = await _require_tenant(conn, tenant_id)
        usage = await quotas.read_usage(conn, tenant_id)
    return found, usage


async def list_tenants(pool: AsyncConnectionPool, *, limit: int, after: str | None) -> list[Tenant]:
    """Up to ``limit`` tenants in id order, after the id ``after`` (operator only)."""
    query = sql.SQL(
        "SELECT {cols} FROM tenants WHERE (%(after)s::text IS NULL OR tenant_id > %(after)s)"
        " ORDER BY tenant_id LIMIT %(limit)s"
    ).format(cols=TENANT_COLUMNS)
    async with (
        transaction(pool, None, OPERATOR) as conn,
        conn.cursor(row_factory=class_row(Tenant)) as cur,
    ):
        await cur.execute(query, {"after": after, "limit": limit})
        return await cur.fetchall()


async def update_tenant(
    pool: AsyncConnectionPool, *, tenant_id: str, changes: dict[str, Any]
) -> Tenant:
    """Replace the columns in ``changes`` (operator only); NOT_FOUND if there is no tenant."""
    assignments = [
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
        for name in sorted(changes)
    ]
    query = sql.SQL(
        "UPDATE tenants SET {sets}, update_time = now() WHERE tenant_id = %(tenant)s"
        " RETURNING {cols}"
    ).format(sets=sql.SQL(", ").join(assignments), cols=TENANT_COLUMNS)
    return await _update_one(pool, query, {**changes, "tenant": tenant_id}, tenant_id)


async def set_tenant_state(pool: AsyncConnectionPool, *, tenant_id: str, disabled: bool) -> Tenant:
    """Disable or enable a tenant (operator only); a no-op if it already is."""
    query = sql.SQL(
        "UPDATE tenants SET state = %(state)s, update_time = now(),"
        " disable_time = CASE WHEN %(disabled)s THEN coalesce(disable_time, now()) END"
        " WHERE tenant_id = %(tenant)s RETURNING {cols}"
    ).format(cols=TENANT_COLUMNS)
    params = {
        "tenant": tenant_id,
        "state": "disabled" if disabled else "active",
        "disabled": disabled,
    }
    return await _update_one(pool, query, params, tenant_id)


async def _update_one(
    pool: AsyncConnectionPool, query: sql.Composed, params: dict[str, Any], tenant_id: str
) -> Tenant:
    async with (
        transaction(pool, None, OPERATOR) as conn,
        conn.cursor(row_factory=class_row(Tenant)) as cur,
    ):
        await cur.execute(query, params)
        updated = await cur.fetchone()
    if updated is None:
        raise tenant_not_found(tenant_id)
    return updated


async def require_tenant(pool: AsyncConnectionPool, *, scope: Scope) -> None:
    """NOT_FOUND unless the scope's tenant exists (and is visible to the caller)."""
    assert scope.tenant_id is not None
    async with _scoped(pool, scope) as conn:
        await _require_tenant(conn, scope.tenant_id)


# -- API keys ----------------------------------------------------------------


async def create_api_key(pool: AsyncConnectionPool, *, scope: Scope, new: NewApiKey) -> ApiKey:
    """Store a key's hash and details; NOT_FOUND if its tenant does not exist.

    A disabled tenant may still get keys: they work once it is enabled again.
    """
    params = vars(new)
    async with _scoped(pool, scope) as conn:
        if new.tenant_id is not None:
            await _require_tenant(conn, new.tenant_id)
        async with conn.cursor(row_factory=class_row(ApiKey)) as cur:
            await cur.execute(INSERT_KEY, params)
            created = await cur.fetchone()
    assert created is not None
    return created


async def list_api_keys(
    pool: AsyncConnectionPool,
    *,
    scope: Scope,
    include_revoked: bool,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> list[ApiKey]:
    """Up to ``limit`` keys of the scope's tenant (or operator keys), newest first."""
    conditions: list[sql.Composable] = [
        sql.SQL("tenant_id IS NULL" if scope.tenant_id is None else "tenant_id = %(tenant)s")
    ]
    params: dict[str, Any] = {"tenant": scope.tenant_id, "limit": limit}
    if not include_revoked:
        conditions.append(sql.SQL("revoke_time IS NULL"))
    if after is not None:
        conditions.append(sql.SQL("(create_time, key_id) < (%(after_time)s, %(after_id)s::uuid)"))
        params["after_time"], params["after_id"] = after
    query = sql.SQL(
        "SELECT {cols} FROM api_keys WHERE {where}"
        " ORDER BY create_time DESC, key_id DESC LIMIT %(limit)s"
    ).format(cols=KEY_COLUMNS, where=sql.SQL(" AND ").join(conditions))
    async with _scoped(pool, scope) as conn:
        if scope.tenant_id is not None:
            await _require_tenant(conn, scope.tenant_id)
        async with conn.cursor(row_factory=class_row(ApiKey)) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()


async def revoke_api_key(pool: AsyncConnectionPool, *, scope: Scope, key_id: str) -> ApiKey:
    """Revoke a key (keeping the first revoke_time); NOT_FOUND outside the scope.

    A tenant scope reaches only that tenant's keys (row-level security too);
    the operator scope (``tenant_id`` None) reaches every key.
    """
    query = sql.SQL(
        "UPDATE api_keys SET revoke_time = coalesce(revoke_time, now())"
        " WHERE key_id = %(key_id)s::uuid {tenant} RETURNING {cols}"
    ).format(
        tenant=sql.SQL("" if scope.tenant_id is None else "AND tenant_id = %(tenant)s"),
        cols=KEY_COLUMNS,
    )
    async with _scoped(pool, scope) as conn, conn.cursor(row_factory=class_row(ApiKey)) as cur:
        await cur.execute(query, {"key_id": key_id, "tenant": scope.tenant_id})
        revoked = await cur.fetchone()
    if revoked is None:
        raise key_not_found(key_id)
    return revoked
