"""The typed client's ``admin`` namespace (sync and async) against the server with auth on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

import memoryd

from .conftest import ADMIN_SECRET, ServerThread, TenantKeys


def test_operator_manages_a_tenant(auth_server: ServerThread, uid: str) -> None:
    with memoryd.Client(auth_server.addr, api_key=ADMIN_SECRET) as ops:
        assert ops.admin.whoami() == memoryd.Caller(
            "admin-key", "MEMORYD_ADMIN_KEY", "operator", ""
        )
        tid = f"c-{uid}"
        created = ops.admin.create_tenant(
            tid, display_name="Client", quotas=memoryd.Quotas(max_memories=10, burst=0)
        )
        assert created.state == "active"
        assert created.quotas == memoryd.Quotas(max_memories=10, burst=0)
        assert created.effective_quotas.max_conversations == (
            auth_server.settings.quota_max_conversations
        )
        with pytest.raises(memoryd.AlreadyExists):
            ops.admin.create_tenant(tid)
        with pytest.raises(memoryd.InvalidArgument) as info:
            ops.admin.create_tenant(f"x-{uid}", quotas=memoryd.Quotas(max_conversations=-1))
        assert info.value.field_violations[0].field == "tenant.quotas.max_conversations"

        updated = ops.admin.update_tenant(
            tid, quotas=memoryd.Quotas(max_conversations=4), reset_quotas=["burst"]
        )
        assert updated.quotas == memoryd.Quotas(max_memories=10, max_conversations=4)
        assert ops.admin.update_tenant(tid, display_name="Renamed").display_name == "Renamed"
        assert ops.admin.disable_tenant(tid).state == "disabled"
        assert ops.admin.enable_tenant(tid).disable_time is None
        assert tid in [t.tenant_id for t in ops.admin.iter_tenants(page_size=5)]

        made = ops.admin.create_key(
            tenant_id=tid,
            name="bot",
            role="member",
            expire_time=datetime.now(UTC) + timedelta(days=1),
        )
        assert made.secret not in repr(made)
        assert made.api_key.role == "member"
        assert made.api_key.expire_time is not None
        details = ops.admin.get_tenant(tid)
        assert details.usage == memoryd.TenantUsage(memories=0, conversations=0)

        with memoryd.Client(auth_server.addr, api_key=made.secret) as bot:
            bot.conversations.create(user_id="someone")
            with pytest.raises(memoryd.PermissionDenied):
                bot.admin.get_tenant()
        assert ops.admin.get_tenant(tid).usage.conversations == 1
        receipt = ops.admin.erase_user("someone", tenant_id=tid)
        assert (receipt.conversations, receipt.erased_by) == (1, "admin-key")

        keys = list(ops.admin.iter_keys(tenant_id=tid, page_size=1))
        assert [k.key_id for k in keys] == [made.api_key.key_id]
        assert keys[0].last_used_time is not None
        revoked = ops.admin.revoke_key(made.api_key.key_id)
        assert revoked.revoke_time is not None
        assert ops.admin.list_keys(tenant_id=tid).items == ()
        assert ops.admin.list_keys(tenant_id=tid, include_revoked=True).items == (revoked,)


def test_async_tenant_admin(
    auth_server: ServerThread, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    async def admin() -> None:
        async with memoryd.AsyncClient(auth_server.addr, api_key=tenant.admin) as client:
            me = await client.admin.whoami()
            assert (me.role, me.tenant_id) == ("admin", tenant.tenant_id)
            details = await client.admin.get_tenant()
            assert details.tenant.tenant_id == tenant.tenant_id
            with pytest.raises(memoryd.NotFound):
                await client.admin.get_tenant(other_tenant.tenant_id)
            with pytest.raises(memoryd.PermissionDenied):
                await client.admin.create_key(name="ops", role="operator")
            with pytest.raises(memoryd.PermissionDenied):
                await client.admin.list_tenants()
            made = await client.admin.create_key(name="async", role="viewer")
            names = [k.name async for k in client.admin.iter_keys(page_size=2)]
            assert names[0] == "async"
            assert len(names) == 4
            revoked = await client.admin.revoke_key(made.api_key.key_id)
            assert revoked.key_id == made.api_key.key_id
            receipt = await client.admin.erase_user("nobody")
            assert receipt.memories == 0

    asyncio.run(admin())


def test_unknown_role_is_refused_before_the_call(auth_server: ServerThread) -> None:
    with memoryd.Client(auth_server.addr, api_key=ADMIN_SECRET) as ops:
        with pytest.raises(memoryd.InvalidArgument) as info:
            ops.admin.create_key(name="x", role="owner")  # type: ignore[arg-type]
        assert info.value.field_violations[0].field == "role"


def test_a_quota_both_set_and_reset_is_refused_before_the_call(
    auth_server: ServerThread, uid: str
) -> None:
    tid = f"c-{uid}"
    with memoryd.Client(auth_server.addr, api_key=ADMIN_SECRET) as ops:
        ops.admin.create_tenant(tid, quotas=memoryd.Quotas(burst=7))
        with pytest.raises(ValueError, match=r"^burst is both set and reset$"):
            ops.admin.update_tenant(tid, quotas=memoryd.Quotas(burst=5), reset_quotas=["burst"])
        assert ops.admin.get_tenant(tid).tenant.quotas.burst == 7

    async def both() -> None:
        async with memoryd.AsyncClient(auth_server.addr, api_key=ADMIN_SECRET) as client:
            with pytest.raises(ValueError, match="max_memories is both set and reset"):
                await client.admin.update_tenant(
                    tid,
                    quotas=memoryd.Quotas(burst=1, max_memories=5),
                    reset_quotas=["max_memories"],
                )

    asyncio.run(both())
