"""Row-level security: the server's own connections see one tenant, even unfiltered."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from memoryd_server.auth import keys
from memoryd_server.database import APP_ROLE, MAINTENANCE_ROLE, OPERATOR_ROLE, transaction
from memoryd_server.errors import MemorydError
from memoryd_server.tenancy import DEFAULT_TENANT

OTHER = "other-tenant"


def _pool(memoryd_server: Any) -> Any:
    return memoryd_server.app._pool


def _query(memoryd_server: Any, tenant: str | None, query: str, params: tuple = ()) -> list:
    """Run ``query`` through the server's request pool as ``tenant``."""

    async def run() -> list:
        async with transaction(_pool(memoryd_server), tenant) as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description else []

    return memoryd_server.run(run())


@pytest.fixture
def other_tenant_rows(db, uid) -> dict[str, str]:
    """A conversation, a message and a memory of another tenant, written behind the API."""
    conv = f"rls-{uid}"
    memory = uuid.uuid4()
    db.execute(
        "INSERT INTO conversations (tenant_id, id, user_id) VALUES (%s, %s, 'secret-user')",
        (OTHER, conv),
    )
    db.execute(
        "INSERT INTO messages (tenant_id, conversation_id, seq, id, role, content)"
        " VALUES (%s, %s, 1, %s, 'user', 'secret')",
        (OTHER, conv, uuid.uuid4()),
    )
    db.execute(
        "INSERT INTO memories (tenant_id, id, namespace, ns_path, content)"
        " VALUES (%s, %s, '{rls}', 'rls', 'secret memory')",
        (OTHER, memory),
    )
    return {"conversation": conv, "memory": str(memory)}


def test_every_tenant_table_forces_row_level_security(db, memoryd_server):
    """Each table with a tenant_id column has RLS enabled and forced, with a policy."""
    assert memoryd_server.port  # its migrations have run
    tables = db.execute(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'"
        " WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"
    ).fetchall()
    names = {name for name, *_ in tables}
    assert {"conversations", "messages", "memories", "memory_events"} <= names
    for name, enabled, forced, policies in tables:
        assert enabled, name
        assert forced, name
        assert policies >= 1, name


def test_server_roles_cannot_bypass_row_level_security(db, memoryd_server):
    """The roles the server works as are not superusers, own no table, lack BYPASSRLS."""
    assert memoryd_server.port  # its migrations have run
    for role in (APP_ROLE, MAINTENANCE_ROLE, OPERATOR_ROLE):
        row = db.execute(
            "SELECT rolsuper, rolbypassrls, (SELECT count(*) FROM pg_class"
            " WHERE relowner = r.oid) FROM pg_roles r WHERE rolname = %s",
            (role,),
        ).fetchone()
        assert row == (False, False, 0), role


def test_request_connections_work_as_the_app_role(memoryd_server):
    """Every request transaction runs as memoryd_app, not the login user."""
    assert _query(memoryd_server, DEFAULT_TENANT, "SELECT current_user") == [(APP_ROLE,)]


def test_unfiltered_queries_see_only_their_tenant(memoryd_server, other_tenant_rows):
    """A query that forgets WHERE tenant_id still returns nothing of another tenant."""
    for table in ("conversations", "messages", "memories", "memory_events"):
        tenants = _query(memoryd_server, DEFAULT_TENANT, f"SELECT DISTINCT tenant_id FROM {table}")
        assert (OTHER,) not in tenants, table
    theirs = _query(memoryd_server, OTHER, "SELECT id FROM conversations")
    assert (other_tenant_rows["conversation"],) in theirs


def test_no_declared_tenant_sees_nothing(memoryd_server, other_tenant_rows):
    """A transaction that declared no tenant fails closed: it sees no rows at all."""
    assert other_tenant_rows
    for table in ("conversations", "messages", "memories"):
        assert _query(memoryd_server, None, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_writing_into_another_tenant_is_refused(memoryd_server, uid):
    """The policy's WITH CHECK refuses a row whose tenant is not the declared one."""
    with pytest.raises((psycopg.errors.InsufficientPrivilege, MemorydError)):
        _query(
            memoryd_server,
            DEFAULT_TENANT,
            "INSERT INTO conversations (tenant_id, id) VALUES (%s, %s)",
            (OTHER, f"sneaky-{uid}"),
        )


def test_another_tenants_rows_cannot_be_changed(memoryd_server, db, other_tenant_rows):
    """An unfiltered UPDATE or DELETE as one tenant leaves another tenant's rows alone."""
    _query(memoryd_server, DEFAULT_TENANT, "UPDATE memories SET content = 'overwritten'")
    _query(
        memoryd_server, DEFAULT_TENANT, "DELETE FROM conversations WHERE user_id = 'secret-user'"
    )
    content = db.execute(
        "SELECT content FROM memories WHERE id = %s", (other_tenant_rows["memory"],)
    ).fetchone()
    assert content == ("secret memory",)
    left = db.execute(
        "SELECT count(*) FROM conversations WHERE id = %s", (other_tenant_rows["conversation"],)
    ).fetchone()
    assert left == (1,)


def test_upkeep_role_reaches_memories_but_not_conversations(memoryd_server, other_tenant_rows):
    """The maintenance pool sees every tenant's memories and may not read conversations."""

    async def run(query: str) -> list:
        async with transaction(memoryd_server.app._upkeep_pool, None) as conn:
            cur = await conn.execute(query)
            return await cur.fetchall()

    seen = memoryd_server.run(run("SELECT id::text FROM memories WHERE tenant_id = 'other-tenant'"))
    assert (other_tenant_rows["memory"],) in seen
    with pytest.raises((psycopg.errors.InsufficientPrivilege, MemorydError)):
        memoryd_server.run(run("SELECT count(*) FROM conversations"))


def _as_key_holder(memoryd_server: Any, secret: str, query: str) -> list:
    """Run ``query`` as authentication does: no tenant, only a presented key's hash."""

    async def run() -> list:
        settings = {"memoryd.key_hash": keys.hash_secret(secret).hex()}
        async with transaction(_pool(memoryd_server), None, settings) as conn:
            cur = await conn.execute(query)
            return await cur.fetchall()

    return memoryd_server.run(run())


def test_a_presented_key_reveals_only_itself_and_its_tenant(memoryd_server, tenant, other_tenant):
    """Before its tenant is known, a request sees the one key it holds and that key's tenant."""
    seen = _as_key_holder(memoryd_server, tenant.member, "SELECT key_id::text FROM api_keys")
    assert seen == [(tenant.key_ids["member"],)]
    tenants = _as_key_holder(memoryd_server, tenant.member, "SELECT tenant_id FROM tenants")
    assert tenants == [(tenant.tenant_id,)]
    assert other_tenant.tenant_id not in str(tenants)
    for table in ("conversations", "memories"):  # a key hash opens no tenant data
        count = _as_key_holder(memoryd_server, tenant.member, f"SELECT count(*) FROM {table}")
        assert count == [(0,)], table


def test_an_unknown_key_or_none_sees_no_keys_or_tenants(memoryd_server, tenant):
    """Without a declared tenant, a wrong key hash or none at all sees no key and no tenant."""
    assert tenant.member
    assert _as_key_holder(memoryd_server, keys.new_secret(), "SELECT count(*) FROM api_keys") == [
        (0,)
    ]
    assert _query(memoryd_server, None, "SELECT count(*) FROM api_keys") == [(0,)]
    assert _query(memoryd_server, None, "SELECT count(*) FROM tenants") == [(0,)]


def test_a_tenant_sees_only_its_own_keys(memoryd_server, tenant, other_tenant):
    """An unfiltered read of api_keys as one tenant returns that tenant's keys only."""
    rows = _query(memoryd_server, tenant.tenant_id, "SELECT DISTINCT tenant_id FROM api_keys")
    assert rows == [(tenant.tenant_id,)]
    assert other_tenant.tenant_id


@pytest.mark.parametrize(
    "change", ["role = 'operator', tenant_id = NULL", "tenant_id = 'default'", "name = 'renamed'"]
)
def test_requests_cannot_rewrite_a_keys_role_or_tenant(memoryd_server, tenant, change):
    """The server's role may stamp last use and revocation, nothing else of a key."""
    statement = f"UPDATE api_keys SET {change} WHERE key_id = %s"
    with pytest.raises((psycopg.errors.InsufficientPrivilege, MemorydError)):
        _as_key_holder(memoryd_server, tenant.viewer, statement % f"'{tenant.key_ids['viewer']}'")
    with pytest.raises((psycopg.errors.InsufficientPrivilege, MemorydError)):
        _query(memoryd_server, tenant.tenant_id, statement, (tenant.key_ids["viewer"],))
    touched = _query(
        memoryd_server,
        tenant.tenant_id,
        "UPDATE api_keys SET revoke_time = now() WHERE key_id = %s RETURNING role",
        (tenant.key_ids["viewer"],),
    )
    assert touched == [("viewer",)]
