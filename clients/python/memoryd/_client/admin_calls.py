"""Requests and responses of AdminService calls, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf import field_mask_pb2

from memoryd._client import convert
from memoryd._client import types as t
from memoryd.v1 import admin_pb2 as pb

SERVICE = "/memoryd.v1.AdminService/"

# RPC name -> client method name; tests check it covers the whole service.
RPC_METHODS: dict[str, str] = {
    "WhoAmI": "whoami",
    "CreateTenant": "create_tenant",
    "GetTenant": "get_tenant",
    "ListTenants": "list_tenants",
    "UpdateTenant": "update_tenant",
    "DisableTenant": "disable_tenant",
    "EnableTenant": "enable_tenant",
    "CreateApiKey": "create_key",
    "ListApiKeys": "list_keys",
    "RevokeApiKey": "revoke_key",
    "EraseUser": "erase_user",
}

QUOTA_FIELDS = (
    "requests_per_second",
    "burst",
    "max_memories",
    "max_conversations",
    "max_content_bytes",
    "max_documents",
    "max_document_bytes",
)


def quotas_pb(quotas: t.Quotas | None) -> pb.Quotas | None:
    if quotas is None:
        return None
    return pb.Quotas(**{k: v for k, v in vars(quotas).items() if v is not None})


def quotas(message: pb.Quotas) -> t.Quotas:
    values = {n: getattr(message, n) if message.HasField(n) else None for n in QUOTA_FIELDS}  # type: ignore[arg-type]
    return t.Quotas(**values)


def tenant(message: pb.Tenant) -> t.Tenant:
    return t.Tenant(
        tenant_id=message.tenant_id,
        display_name=message.display_name,
        state=convert.enum_name(pb.TenantState, message.state),
        quotas=quotas(message.quotas),
        effective_quotas=quotas(message.effective_quotas),
        create_time=convert.from_timestamp(message, "create_time"),
        update_time=convert.from_timestamp(message, "update_time"),
        disable_time=convert.from_timestamp(message, "disable_time"),
    )


def tenant_details(r: pb.GetTenantResponse) -> t.TenantDetails:
    return t.TenantDetails(
        tenant=tenant(r.tenant),
        usage=t.TenantUsage(
            memories=r.usage.memories,
            conversations=r.usage.conversations,
            documents=r.usage.documents,
            document_bytes=r.usage.document_bytes,
        ),
    )


def api_key(message: pb.ApiKey) -> t.ApiKey:
    return t.ApiKey(
        key_id=message.key_id,
        tenant_id=message.tenant_id,
        name=message.name,
        role=convert.enum_name(pb.Role, message.role),
        prefix=message.prefix,
        created_by=message.created_by,
        create_time=convert.from_timestamp(message, "create_time"),
        last_used_time=convert.from_timestamp(message, "last_used_time"),
        expire_time=convert.from_timestamp(message, "expire_time"),
        revoke_time=convert.from_timestamp(message, "revoke_time"),
    )


def created_key(r: pb.CreateApiKeyResponse) -> t.CreatedApiKey:
    return t.CreatedApiKey(api_key=api_key(r.api_key), secret=r.secret)


def caller(r: pb.WhoAmIResponse) -> t.Caller:
    return t.Caller(
        key_id=r.key_id,
        key_name=r.key_name,
        role=convert.enum_name(pb.Role, r.role),
        tenant_id=r.tenant_id,
    )


def receipt(r: pb.EraseUserResponse) -> t.ErasureReceipt:
    m = r.receipt
    return t.ErasureReceipt(
        tenant_id=m.tenant_id,
        user_id=m.user_id,
        conversations=m.conversations,
        messages=m.messages,
        memories=m.memories,
        history_snapshots=m.history_snapshots,
        erase_time=convert.from_timestamp(m, "erase_time"),
        erased_by=m.erased_by,
        documents=m.documents,
    )


def create_tenant_request(
    tenant_id: str, *, display_name: str, quotas: t.Quotas | None
) -> pb.CreateTenantRequest:
    return pb.CreateTenantRequest(
        tenant=pb.Tenant(tenant_id=tenant_id, display_name=display_name, quotas=quotas_pb(quotas))
    )


def update_tenant_request(
    tenant_id: str,
    *,
    display_name: str | None,
    quotas: t.Quotas | None,
    reset_quotas: Sequence[str],
) -> pb.UpdateTenantRequest:
    """Set ``display_name`` unless None, the quotas ``quotas`` sets, and reset ``reset_quotas``.

    Raises ValueError for a quota both set and reset: the server would apply
    one of the two without a word.
    """
    for name in reset_quotas:
        if quotas is not None and getattr(quotas, name, None) is not None:
            raise ValueError(f"{name} is both set and reset")
    message = pb.Tenant(tenant_id=tenant_id, quotas=quotas_pb(quotas))
    paths = []
    if display_name is not None:
        message.display_name = display_name
        paths.append("display_name")
    if quotas is not None:
        paths += [f"quotas.{k}" for k, v in vars(quotas).items() if v is not None]
    paths += [f"quotas.{name}" for name in reset_quotas]
    return pb.UpdateTenantRequest(tenant=message, update_mask=field_mask_pb2.FieldMask(paths=paths))


def create_key_request(
    *, name: str, role: t.KeyRole, tenant_id: str, expire_time: datetime | None
) -> pb.CreateApiKeyRequest:
    return pb.CreateApiKeyRequest(
        tenant_id=tenant_id,
        name=name,
        role=convert.enum_value(pb.Role, role, "role"),
        expire_time=convert.timestamp(expire_time),
    )


def tenants_page(r: pb.ListTenantsResponse) -> t.Page[t.Tenant]:
    return t.Page(tuple(tenant(m) for m in r.tenants), r.next_page_token)


def keys_page(r: pb.ListApiKeysResponse) -> t.Page[t.ApiKey]:
    return t.Page(tuple(api_key(m) for m in r.api_keys), r.next_page_token)
