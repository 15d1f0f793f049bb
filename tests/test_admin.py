"""AdminService over a real channel: tenants, API keys, who may do what, and the key cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

from memoryd.v1 import admin_pb2 as pb
from memoryd.v1 import admin_pb2_grpc, conversation_pb2, conversation_pb2_grpc

from .conftest import ADMIN_SECRET, ServerThread, TenantKeys, assert_status

OPERATOR = (("authorization", f"Bearer {ADMIN_SECRET}"),)
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


@pytest.fixture
def channel(auth_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(auth_server.addr) as ch:
        yield ch


@pytest.fixture
def admin(channel: grpc.Channel) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(channel)


@pytest.fixture
def conversations(channel: grpc.Channel) -> conversation_pb2_grpc.ConversationServiceStub:
    return conversation_pb2_grpc.ConversationServiceStub(channel)


Admin = admin_pb2_grpc.AdminServiceStub
Conversations = conversation_pb2_grpc.ConversationServiceStub


def data_call(conversations: Conversations, metadata: Any) -> Any:
    """A data RPC any tenant key may make."""
    return conversations.ListConversations(
        conversation_pb2.ListConversationsRequest(), metadata=metadata
    )


def new_tenant(admin: Admin, uid: str, suffix: str = "", **fields: Any) -> pb.Tenant:
    response = admin.CreateTenant(
        pb.CreateTenantRequest(tenant=pb.Tenant(tenant_id=f"a-{uid}{suffix}", **fields)),
        metadata=OPERATOR,
    )
    return response.tenant


def create_key(admin: Admin, metadata: Any, **fields: Any) -> pb.CreateApiKeyResponse:
    fields.setdefault("name", "test key")
    fields.setdefault("role", pb.ROLE_MEMBER)
    return admin.CreateApiKey(pb.CreateApiKeyRequest(**fields), metadata=metadata)


def in_seconds(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return stamp


# -- WhoAmI ---------------------------------------------------------------------


def test_whoami_describes_each_caller(admin: Admin, tenant: TenantKeys) -> None:
    me = admin.WhoAmI(pb.WhoAmIRequest(), metadata=OPERATOR)
    assert (me.key_id, me.key_name, me.role, me.tenant_id) == (
        "admin-key",
        "MEMORYD_ADMIN_KEY",
        pb.ROLE_OPERATOR,
        "",
    )
    me = admin.WhoAmI(pb.WhoAmIRequest(), metadata=tenant.metadata("viewer"))
    assert me.key_id == tenant.key_ids["viewer"]
    assert me.role == pb.ROLE_VIEWER
    assert me.tenant_id == tenant.tenant_id
    assert me.key_name == f"viewer of {tenant.tenant_id}"
    assert_status(lambda: admin.WhoAmI(pb.WhoAmIRequest()), grpc.StatusCode.UNAUTHENTICATED)


def test_anonymous_caller_is_admin_of_default(memoryd_server: ServerThread) -> None:
    """With MEMORYD_AUTH=off the caller administers "default" and no other tenant."""
    with grpc.insecure_channel(memoryd_server.addr) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        me = stub.WhoAmI(pb.WhoAmIRequest())
        assert (me.key_id, me.role, me.tenant_id) == ("anonymous", pb.ROLE_ADMIN, "default")
        got = stub.GetTenant(pb.GetTenantRequest())
        assert got.tenant.tenant_id == "default"
        assert got.tenant.state == pb.TENANT_STATE_ACTIVE
        # Nothing is enforced with auth off but the server's content limit.
        limits = got.tenant.effective_quotas
        assert (limits.requests_per_second, limits.max_memories, limits.max_conversations) == (
            0,
            0,
            0,
        )
        assert limits.max_content_bytes == memoryd_server.settings.max_content_bytes
        stub.ListApiKeys(pb.ListApiKeysRequest())
        assert_status(
            lambda: stub.CreateTenant(pb.CreateTenantRequest(tenant=pb.Tenant(tenant_id="x"))),
            DENIED,
            message="MEMORYD_AUTH=on",
        )
        assert_status(
            lambda: stub.GetTenant(pb.GetTenantRequest(tenant_id="other")),
            NOT_FOUND,
            message="tenant other not found",
        )


# -- tenants --------------------------------------------------------------------


def test_create_tenant_with_quotas(admin: Admin, uid: str, auth_server: ServerThread) -> None:
    created = new_tenant(admin, uid, display_name="Acme", quotas=pb.Quotas(max_memories=5, burst=0))
    assert created.tenant_id == f"a-{uid}"
    assert created.display_name == "Acme"
    assert created.state == pb.TENANT_STATE_ACTIVE
    assert created.quotas.max_memories == 5
    assert created.quotas.HasField("burst")
    assert created.quotas.burst == 0
    assert not created.quotas.HasField("max_conversations")
    assert not created.quotas.HasField("requests_per_second")
    settings = auth_server.settings
    effective = created.effective_quotas
    assert effective.max_memories == 5
    assert effective.burst == 0
    assert effective.max_conversations == settings.quota_max_conversations
    assert effective.requests_per_second == settings.quota_requests_per_second
    assert effective.max_content_bytes == settings.max_content_bytes
    assert created.HasField("create_time")
    assert not created.HasField("disable_time")

    got = admin.GetTenant(pb.GetTenantRequest(tenant_id=created.tenant_id), metadata=OPERATOR)
    assert got.tenant == created
    assert (got.usage.memories, got.usage.conversations) == (0, 0)

    assert_status(
        lambda: new_tenant(admin, uid),
        grpc.StatusCode.ALREADY_EXISTS,
        message=f"tenant a-{uid} already exists",
    )


@pytest.mark.parametrize(
    ("tenant", "field"),
    [
        (pb.Tenant(), "tenant.tenant_id"),
        (pb.Tenant(tenant_id="Upper"), "tenant.tenant_id"),
        (pb.Tenant(tenant_id="-dash-first"), "tenant.tenant_id"),
        (pb.Tenant(tenant_id="x" * 65), "tenant.tenant_id"),
        (pb.Tenant(tenant_id="ok", display_name="n" * 201), "tenant.display_name"),
        (
            pb.Tenant(tenant_id="ok", quotas=pb.Quotas(max_memories=-1)),
            "tenant.quotas.max_memories",
        ),
        (
            pb.Tenant(tenant_id="ok", quotas=pb.Quotas(requests_per_second=float("nan"))),
            "tenant.quotas.requests_per_second",
        ),
        (pb.Tenant(tenant_id="ok", quotas=pb.Quotas(burst=-5)), "tenant.quotas.burst"),
    ],
)
def test_create_tenant_rejects_bad_fields(admin: Admin, tenant: pb.Tenant, field: str) -> None:
    assert_status(
        lambda: admin.CreateTenant(pb.CreateTenantRequest(tenant=tenant), metadata=OPERATOR),
        INVALID,
        field=field,
    )


def test_tenant_rpcs_are_for_operators_only(admin: Admin, tenant: TenantKeys, uid: str) -> None:
    calls = [
        lambda md: admin.CreateTenant(
            pb.CreateTenantRequest(tenant=pb.Tenant(tenant_id=f"x-{uid}")), metadata=md
        ),
        lambda md: admin.ListTenants(pb.ListTenantsRequest(), metadata=md),
        lambda md: admin.UpdateTenant(
            pb.UpdateTenantRequest(
                tenant=pb.Tenant(tenant_id=tenant.tenant_id, display_name="mine"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            ),
            metadata=md,
        ),
        lambda md: admin.DisableTenant(
            pb.DisableTenantRequest(tenant_id=tenant.tenant_id), metadata=md
        ),
        lambda md: admin.EnableTenant(
            pb.EnableTenantRequest(tenant_id=tenant.tenant_id), metadata=md
        ),
    ]
    for call in calls:
        for role in ("viewer", "member", "admin"):
            assert_status(lambda c=call, r=role: c(tenant.metadata(r)), DENIED)


def test_get_tenant_as_its_admin(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    conversations.CreateConversation(
        conversation_pb2.CreateConversationRequest(conversation=conversation_pb2.Conversation()),
        metadata=tenant.metadata("member"),
    )
    got = admin.GetTenant(pb.GetTenantRequest(), metadata=tenant.metadata("admin"))
    assert got.tenant.tenant_id == tenant.tenant_id
    assert (got.usage.conversations, got.usage.memories) == (1, 0)
    named = admin.GetTenant(
        pb.GetTenantRequest(tenant_id=tenant.tenant_id), metadata=tenant.metadata("admin")
    )
    assert named.tenant == got.tenant

    # Another tenant and a missing one look the same to a tenant admin.
    other = assert_status(
        lambda: admin.GetTenant(
            pb.GetTenantRequest(tenant_id=other_tenant.tenant_id), metadata=tenant.metadata("admin")
        ),
        NOT_FOUND,
    )
    missing = assert_status(
        lambda: admin.GetTenant(
            pb.GetTenantRequest(tenant_id="no-such-tenant"), metadata=tenant.metadata("admin")
        ),
        NOT_FOUND,
    )
    assert other.details() == f"tenant {other_tenant.tenant_id} not found"
    assert missing.details() == "tenant no-such-tenant not found"
    for role in ("viewer", "member"):
        assert_status(
            lambda r=role: admin.GetTenant(pb.GetTenantRequest(), metadata=tenant.metadata(r)),
            DENIED,
            message=f"a {role} key may not call GetTenant",
        )


def test_get_tenant_as_operator(admin: Admin, tenant: TenantKeys) -> None:
    got = admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.tenant_id), metadata=OPERATOR)
    assert got.tenant.tenant_id == tenant.tenant_id
    assert_status(
        lambda: admin.GetTenant(pb.GetTenantRequest(), metadata=OPERATOR),
        INVALID,
        field="tenant_id",
    )
    assert_status(
        lambda: admin.GetTenant(pb.GetTenantRequest(tenant_id="no-such-tenant"), metadata=OPERATOR),
        NOT_FOUND,
        message="tenant no-such-tenant not found",
    )


def test_list_tenants_pages_in_id_order(admin: Admin, uid: str) -> None:
    mine = {new_tenant(admin, uid, f"-{i}").tenant_id for i in range(3)}
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = admin.ListTenants(
            pb.ListTenantsRequest(page_size=2, page_token=token), metadata=OPERATOR
        )
        assert len(page.tenants) <= 2
        seen += [t.tenant_id for t in page.tenants]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages > 1
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert mine <= set(seen)
    assert "default" in seen

    first = admin.ListTenants(pb.ListTenantsRequest(page_size=1), metadata=OPERATOR)
    altered = first.next_page_token[:-2] + ("AA" if first.next_page_token[-2:] != "AA" else "BB")
    assert_status(
        lambda: admin.ListTenants(pb.ListTenantsRequest(page_token=altered), metadata=OPERATOR),
        INVALID,
        field="page_token",
    )
    assert_status(
        lambda: admin.ListTenants(pb.ListTenantsRequest(page_size=1001), metadata=OPERATOR),
        INVALID,
        field="page_size",
    )


def _update(admin: Admin, tenant: pb.Tenant, *paths: str) -> pb.Tenant:
    response = admin.UpdateTenant(
        pb.UpdateTenantRequest(tenant=tenant, update_mask=field_mask_pb2.FieldMask(paths=paths)),
        metadata=OPERATOR,
    )
    return response.tenant


def test_update_tenant_by_mask(admin: Admin, uid: str, auth_server: ServerThread) -> None:
    created = new_tenant(admin, uid, display_name="old", quotas=pb.Quotas(max_memories=3))
    tid = created.tenant_id
    renamed = _update(admin, pb.Tenant(tenant_id=tid, display_name="new"), "display_name")
    assert renamed.display_name == "new"
    assert renamed.quotas.max_memories == 3
    assert renamed.update_time.ToDatetime() >= created.update_time.ToDatetime()

    one = _update(
        admin, pb.Tenant(tenant_id=tid, quotas=pb.Quotas(burst=9)), "quotas.requests_per_second"
    )
    assert not one.quotas.HasField("requests_per_second")
    assert not one.quotas.HasField("burst")  # not in the mask
    one = _update(admin, pb.Tenant(tenant_id=tid, quotas=pb.Quotas(burst=9)), "quotas.burst")
    assert one.quotas.burst == 9
    assert one.effective_quotas.burst == 9
    assert one.quotas.max_memories == 3

    # "quotas" replaces them all: unset ones go back to the server's defaults.
    whole = _update(
        admin, pb.Tenant(tenant_id=tid, quotas=pb.Quotas(max_conversations=4)), "quotas"
    )
    assert not whole.quotas.HasField("max_memories")
    assert not whole.quotas.HasField("burst")
    assert whole.quotas.max_conversations == 4
    assert whole.effective_quotas.max_memories == auth_server.settings.quota_max_memories
    assert whole.display_name == "new"

    def update(tenant: pb.Tenant, *paths: str) -> Any:
        return lambda: _update(admin, tenant, *paths)

    assert_status(update(pb.Tenant(tenant_id=tid)), INVALID, field="update_mask")
    assert_status(
        update(pb.Tenant(tenant_id=tid), "state"),
        INVALID,
        field="update_mask",
        message="'state' is not an updatable field",
    )
    assert_status(
        update(pb.Tenant(tenant_id=tid, quotas=pb.Quotas(burst=-1)), "quotas.burst"),
        INVALID,
        field="tenant.quotas.burst",
    )
    assert_status(update(pb.Tenant(), "display_name"), INVALID, field="tenant.tenant_id")
    assert_status(
        update(pb.Tenant(tenant_id=f"nx-{uid}"), "display_name"),
        NOT_FOUND,
        message=f"tenant nx-{uid} not found",
    )


def test_disable_and_enable_apply_at_once(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, uid: str
) -> None:
    data_call(conversations, tenant.metadata("member"))  # cached as active
    disabled = admin.DisableTenant(
        pb.DisableTenantRequest(tenant_id=tenant.tenant_id), metadata=OPERATOR
    ).tenant
    assert disabled.state == pb.TENANT_STATE_DISABLED
    assert disabled.HasField("disable_time")
    for role in ("viewer", "member", "admin"):
        assert_status(
            lambda r=role: data_call(conversations, tenant.metadata(r)),
            DENIED,
            message=f"tenant {tenant.tenant_id} is disabled",
        )
    assert_status(
        lambda: admin.GetTenant(pb.GetTenantRequest(), metadata=tenant.metadata("admin")), DENIED
    )
    again = admin.DisableTenant(
        pb.DisableTenantRequest(tenant_id=tenant.tenant_id), metadata=OPERATOR
    ).tenant
    assert again.disable_time == disabled.disable_time

    enabled = admin.EnableTenant(
        pb.EnableTenantRequest(tenant_id=tenant.tenant_id), metadata=OPERATOR
    ).tenant
    assert enabled.state == pb.TENANT_STATE_ACTIVE
    assert not enabled.HasField("disable_time")
    data_call(conversations, tenant.metadata("member"))

    for call in (admin.DisableTenant, admin.EnableTenant):
        request_type = (
            pb.DisableTenantRequest if call is admin.DisableTenant else pb.EnableTenantRequest
        )
        assert_status(
            lambda c=call, r=request_type: c(r(tenant_id=f"nx-{uid}"), metadata=OPERATOR),
            NOT_FOUND,
            message=f"tenant nx-{uid} not found",
        )
        assert_status(
            lambda c=call, r=request_type: c(r(), metadata=OPERATOR),
            INVALID,
            field="tenant_id",
        )


# -- API keys -------------------------------------------------------------------


def test_created_key_works_at_once(
    admin: Admin, conversations: Conversations, tenant: TenantKeys
) -> None:
    made = create_key(admin, tenant.metadata("admin"), name="agent-7", role=pb.ROLE_MEMBER)
    key = made.api_key
    assert made.secret.startswith("mdk_")
    assert key.prefix == made.secret[:12]
    assert (key.tenant_id, key.name, key.role) == (tenant.tenant_id, "agent-7", pb.ROLE_MEMBER)
    assert key.created_by == tenant.key_ids["admin"]
    assert not key.HasField("expire_time")
    assert not key.HasField("revoke_time")
    assert not key.HasField("last_used_time")
    data_call(conversations, bearer(made.secret))
    me = admin.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(made.secret))
    assert (me.key_id, me.key_name, me.tenant_id) == (key.key_id, "agent-7", tenant.tenant_id)
    # A member key administers nothing.
    assert_status(lambda: create_key(admin, bearer(made.secret)), DENIED)


def test_create_api_key_errors(admin: Admin, tenant: TenantKeys, other_tenant: TenantKeys) -> None:
    md = tenant.metadata("admin")
    assert_status(lambda: create_key(admin, md, name=""), INVALID, field="name")
    assert_status(lambda: create_key(admin, md, name="n" * 201), INVALID, field="name")
    assert_status(lambda: create_key(admin, md, role=pb.ROLE_UNSPECIFIED), INVALID, field="role")
    assert_status(lambda: create_key(admin, md, role=42), INVALID, field="role")
    assert_status(
        lambda: create_key(admin, md, expire_time=in_seconds(-60)), INVALID, field="expire_time"
    )
    assert_status(
        lambda: create_key(admin, md, role=pb.ROLE_OPERATOR),
        DENIED,
        message="only operator keys may create operator keys",
    )
    other = assert_status(
        lambda: create_key(admin, md, tenant_id=other_tenant.tenant_id), NOT_FOUND
    )
    missing = assert_status(lambda: create_key(admin, md, tenant_id="no-such-tenant"), NOT_FOUND)
    assert other.details() == f"tenant {other_tenant.tenant_id} not found"
    assert missing.details() == "tenant no-such-tenant not found"
    for role in ("viewer", "member"):
        assert_status(lambda r=role: create_key(admin, tenant.metadata(r)), DENIED)
    assert_status(lambda: create_key(admin, OPERATOR), INVALID, field="tenant_id")
    assert_status(
        lambda: create_key(admin, OPERATOR, tenant_id="no-such-tenant"),
        NOT_FOUND,
        message="tenant no-such-tenant not found",
    )


@pytest.mark.parametrize(
    "name", ["a\nb", "a\r", "\tindented", "\x1b[2J", "del\x7f", "c1\x85", "csi\x9b1m", "nul\x00"]
)
def test_names_refuse_control_characters(
    admin: Admin, tenant: TenantKeys, uid: str, name: str
) -> None:
    """Listings print these names in table rows: a newline or ESC would forge or hide rows."""
    refused = "must not contain control characters"
    assert_status(
        lambda: create_key(admin, tenant.metadata("admin"), name=name),
        INVALID,
        field="name",
        message=refused,
    )
    assert_status(
        lambda: new_tenant(admin, uid, display_name=name), INVALID, field="tenant.display_name"
    )
    assert_status(
        lambda: _update(
            admin, pb.Tenant(tenant_id=tenant.tenant_id, display_name=name), "display_name"
        ),
        INVALID,
        field="tenant.display_name",
        message=refused,
    )


def test_names_keep_printable_unicode(admin: Admin, tenant: TenantKeys, uid: str) -> None:
    name = "Zoë's bot ☃ 机器人"
    assert create_key(admin, tenant.metadata("admin"), name=name).api_key.name == name
    assert new_tenant(admin, uid, display_name=name).display_name == name


def test_operator_creates_tenant_and_operator_keys(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, uid: str
) -> None:
    made = create_key(admin, OPERATOR, tenant_id=tenant.tenant_id, role=pb.ROLE_ADMIN)
    assert made.api_key.created_by == "admin-key"
    got = admin.GetTenant(pb.GetTenantRequest(), metadata=bearer(made.secret))
    assert got.tenant.tenant_id == tenant.tenant_id

    # tenant_id is ignored for operator keys.
    op = create_key(admin, OPERATOR, tenant_id=tenant.tenant_id, name=uid, role=pb.ROLE_OPERATOR)
    assert op.api_key.tenant_id == ""
    assert op.api_key.role == pb.ROLE_OPERATOR
    admin.ListTenants(pb.ListTenantsRequest(page_size=1), metadata=bearer(op.secret))
    assert_status(
        lambda: data_call(conversations, bearer(op.secret)), DENIED, message="operator keys"
    )
    listed = admin.ListApiKeys(
        pb.ListApiKeysRequest(operator_keys=True, page_size=1000), metadata=bearer(op.secret)
    )
    assert op.api_key.key_id in [k.key_id for k in listed.api_keys]
    assert all(k.tenant_id == "" for k in listed.api_keys)
    assert_status(
        lambda: admin.ListApiKeys(
            pb.ListApiKeysRequest(operator_keys=True), metadata=tenant.metadata("admin")
        ),
        DENIED,
        message="only operator keys may list operator keys",
    )
    # A tenant admin cannot see or revoke operator keys.
    assert_status(
        lambda: admin.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=op.api_key.key_id), metadata=tenant.metadata("admin")
        ),
        NOT_FOUND,
    )
    admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=op.api_key.key_id), metadata=OPERATOR)
    assert_status(
        lambda: admin.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(op.secret)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


def test_disabled_tenant_may_get_keys(admin: Admin, conversations: Conversations, uid: str) -> None:
    """Keys made while a tenant is disabled exist, and work once it is enabled."""
    tid = new_tenant(admin, uid).tenant_id
    admin.DisableTenant(pb.DisableTenantRequest(tenant_id=tid), metadata=OPERATOR)
    made = create_key(admin, OPERATOR, tenant_id=tid)
    assert_status(lambda: data_call(conversations, bearer(made.secret)), DENIED)
    admin.EnableTenant(pb.EnableTenantRequest(tenant_id=tid), metadata=OPERATOR)
    data_call(conversations, bearer(made.secret))


def test_expired_key_stops_working(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, auth_server: ServerThread
) -> None:
    made = create_key(admin, tenant.metadata("admin"), expire_time=in_seconds(1.0))
    assert made.api_key.HasField("expire_time")
    data_call(conversations, bearer(made.secret))
    time.sleep(1.2 + auth_server.settings.auth_cache_seconds)
    assert_status(
        lambda: data_call(conversations, bearer(made.secret)), grpc.StatusCode.UNAUTHENTICATED
    )


def test_list_api_keys_newest_first_without_secrets(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    md = tenant.metadata("admin")
    made = [create_key(admin, md, name=f"k{i}") for i in range(4)]
    data_call(conversations, bearer(made[0].secret))
    listed: list[pb.ApiKey] = []
    token = ""
    while True:
        page = admin.ListApiKeys(pb.ListApiKeysRequest(page_size=3, page_token=token), metadata=md)
        assert len(page.api_keys) <= 3
        listed += page.api_keys
        token = page.next_page_token
        if not token:
            break
    assert len(listed) == 7  # the fixture's three and four new ones
    assert [k.name for k in listed[:4]] == ["k3", "k2", "k1", "k0"]
    times = [(k.create_time.ToDatetime(), k.key_id) for k in listed]
    assert times == sorted(times, reverse=True)
    assert {k.key_id for k in listed} >= set(tenant.key_ids.values())
    secrets = [m.secret for m in made] + [tenant.viewer, tenant.member, tenant.admin]
    for key in listed:
        wire = key.SerializeToString()
        assert not any(s.encode() in wire for s in secrets)
        assert key.prefix in {s[:12] for s in secrets}
    by_id = {k.key_id: k for k in listed}
    assert by_id[made[0].api_key.key_id].HasField("last_used_time")
    assert not by_id[made[1].api_key.key_id].HasField("last_used_time")

    as_operator = admin.ListApiKeys(
        pb.ListApiKeysRequest(tenant_id=tenant.tenant_id, page_size=100), metadata=OPERATOR
    )
    assert [k.key_id for k in as_operator.api_keys] == [k.key_id for k in listed]

    first = admin.ListApiKeys(pb.ListApiKeysRequest(page_size=1), metadata=md)
    assert_status(
        lambda: admin.ListApiKeys(
            pb.ListApiKeysRequest(
                page_size=1, page_token=first.next_page_token, include_revoked=True
            ),
            metadata=md,
        ),
        INVALID,
        field="page_token",
    )
    assert_status(
        lambda: admin.ListApiKeys(pb.ListApiKeysRequest(page_size=1001), metadata=md),
        INVALID,
        field="page_size",
    )
    assert_status(
        lambda: admin.ListApiKeys(
            pb.ListApiKeysRequest(tenant_id=other_tenant.tenant_id), metadata=md
        ),
        NOT_FOUND,
        message=f"tenant {other_tenant.tenant_id} not found",
    )
    assert_status(
        lambda: admin.ListApiKeys(pb.ListApiKeysRequest(tenant_id="nx-x"), metadata=OPERATOR),
        NOT_FOUND,
        message="tenant nx-x not found",
    )
    assert_status(
        lambda: admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=OPERATOR),
        INVALID,
        field="tenant_id",
    )
    for role in ("viewer", "member"):
        assert_status(
            lambda r=role: admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=tenant.metadata(r)),
            DENIED,
        )


def test_revoke_applies_at_once_and_is_idempotent(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    md = tenant.metadata("admin")
    data_call(conversations, tenant.metadata("member"))  # cached as valid
    revoked = admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=tenant.key_ids["member"]), metadata=md
    ).api_key
    assert revoked.HasField("revoke_time")
    assert revoked.key_id == tenant.key_ids["member"]
    assert_status(
        lambda: data_call(conversations, tenant.metadata("member")),
        grpc.StatusCode.UNAUTHENTICATED,
        message="the API key is not valid",
    )
    again = admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=tenant.key_ids["member"]), metadata=md
    ).api_key
    assert again == revoked

    default = admin.ListApiKeys(pb.ListApiKeysRequest(), metadata=md).api_keys
    assert revoked.key_id not in [k.key_id for k in default]
    every = admin.ListApiKeys(pb.ListApiKeysRequest(include_revoked=True), metadata=md).api_keys
    assert revoked.key_id in [k.key_id for k in every]

    # Another tenant's key and an unknown one look the same.
    other = assert_status(
        lambda: admin.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=other_tenant.key_ids["viewer"]), metadata=md
        ),
        NOT_FOUND,
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    missing = assert_status(
        lambda: admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id=unknown), metadata=md), NOT_FOUND
    )
    assert other.details() == f"API key {other_tenant.key_ids['viewer']} not found"
    assert missing.details() == f"API key {unknown} not found"
    data_call(conversations, other_tenant.metadata("viewer"))
    assert_status(
        lambda: admin.RevokeApiKey(pb.RevokeApiKeyRequest(key_id="nope"), metadata=md),
        INVALID,
        field="key_id",
    )
    assert_status(
        lambda: admin.RevokeApiKey(
            pb.RevokeApiKeyRequest(key_id=tenant.key_ids["admin"]),
            metadata=tenant.metadata("viewer"),
        ),
        DENIED,
    )
    # Operators revoke any tenant's keys.
    admin.RevokeApiKey(
        pb.RevokeApiKeyRequest(key_id=other_tenant.key_ids["viewer"]), metadata=OPERATOR
    )
    assert_status(
        lambda: data_call(conversations, other_tenant.metadata("viewer")),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# -- EraseUser ------------------------------------------------------------------


def test_erase_user_checks_who_and_where(
    admin: Admin, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    md = tenant.metadata("admin")
    assert_status(
        lambda: admin.EraseUser(pb.EraseUserRequest(), metadata=md), INVALID, field="user_id"
    )
    assert_status(
        lambda: admin.EraseUser(
            pb.EraseUserRequest(tenant_id=other_tenant.tenant_id, user_id="u"), metadata=md
        ),
        NOT_FOUND,
        message=f"tenant {other_tenant.tenant_id} not found",
    )
    for role in ("viewer", "member"):
        assert_status(
            lambda r=role: admin.EraseUser(
                pb.EraseUserRequest(user_id="u"), metadata=tenant.metadata(r)
            ),
            DENIED,
        )
    assert_status(
        lambda: admin.EraseUser(pb.EraseUserRequest(user_id="u"), metadata=OPERATOR),
        INVALID,
        field="tenant_id",
    )
    assert_status(
        lambda: admin.EraseUser(
            pb.EraseUserRequest(tenant_id="no-such-tenant", user_id="u"), metadata=OPERATOR
        ),
        NOT_FOUND,
        message="tenant no-such-tenant not found",
    )


def test_erase_user_without_data_returns_zeros(admin: Admin, tenant: TenantKeys) -> None:
    receipt = admin.EraseUser(
        pb.EraseUserRequest(user_id="nobody"), metadata=tenant.metadata("admin")
    ).receipt
    assert (receipt.tenant_id, receipt.user_id) == (tenant.tenant_id, "nobody")
    counts = (receipt.conversations, receipt.messages, receipt.memories, receipt.history_snapshots)
    assert counts == (0, 0, 0, 0)
    assert receipt.erased_by == tenant.key_ids["admin"]
    assert receipt.HasField("erase_time")
    by_operator = admin.EraseUser(
        pb.EraseUserRequest(tenant_id=tenant.tenant_id, user_id="nobody"), metadata=OPERATOR
    ).receipt
    assert by_operator.erased_by == "admin-key"


def test_erase_user_removes_that_users_data(
    admin: Admin, conversations: Conversations, tenant: TenantKeys, uid: str
) -> None:
    for user in (f"gone-{uid}", f"kept-{uid}"):
        conversations.AppendMessages(
            conversation_pb2.AppendMessagesRequest(
                conversation_id=f"c-{user}",
                create_if_missing=True,
                conversation=conversation_pb2.Conversation(user_id=user),
                messages=[
                    conversation_pb2.Message(role=conversation_pb2.MESSAGE_ROLE_USER, content="hi")
                ],
            ),
            metadata=tenant.metadata("member"),
        )
    receipt = admin.EraseUser(
        pb.EraseUserRequest(tenant_id=tenant.tenant_id, user_id=f"gone-{uid}"), metadata=OPERATOR
    ).receipt
    assert (receipt.conversations, receipt.messages) == (1, 1)
    left = data_call(conversations, tenant.metadata("member")).conversations
    assert [c.user_id for c in left] == [f"kept-{uid}"]
