"""Admin protos to validated records and back; each failure names the field."""

from __future__ import annotations

import math

from memoryd.v1 import admin_pb2 as pb
from memoryd_server import quotas
from memoryd_server.admin.erasure import ErasureReceipt
from memoryd_server.admin.models import QUOTA_FIELDS, TENANT_ID, ApiKey, Quotas, Tenant
from memoryd_server.auth.principal import Principal, Role
from memoryd_server.config import Settings
from memoryd_server.errors import InvalidArgument
from memoryd_server.protoconv import timestamp

ROLES: dict[pb.Role.ValueType, Role] = {
    pb.ROLE_VIEWER: "viewer",
    pb.ROLE_MEMBER: "member",
    pb.ROLE_ADMIN: "admin",
    pb.ROLE_OPERATOR: "operator",
}
_ROLES_PB = {v: k for k, v in ROLES.items()}
_STATES_PB = {"active": pb.TENANT_STATE_ACTIVE, "disabled": pb.TENANT_STATE_DISABLED}


def check_tenant_id(field: str, value: str) -> str:
    """``value`` if it is a well-formed tenant id."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not TENANT_ID.fullmatch(value):
        raise InvalidArgument(
            field,
            "must be 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
        )
    return value


def quotas_from_pb(field: str, message: pb.Quotas) -> Quotas:
    """The quotas set in ``message`` (unset: None); negative or NaN values are refused."""
    values: dict[str, float | int | None] = {}
    for name in QUOTA_FIELDS:
        if not message.HasField(name):  # type: ignore[arg-type]
            values[name] = None
            continue
        value = getattr(message, name)
        if not math.isfinite(value) or value < 0:
            raise InvalidArgument(f"{field}.{name}", "must be a finite number, 0 or more")
        values[name] = value
    return Quotas(**values)  # type: ignore[arg-type]


def _quotas_pb(values: Quotas | quotas.Limits) -> pb.Quotas:
    return pb.Quotas(**{k: v for k, v in vars(values).items() if v is not None})


def tenant_to_pb(tenant: Tenant, settings: Settings) -> pb.Tenant:
    """The proto of a tenant row, with the limits in force for it."""
    return pb.Tenant(
        tenant_id=tenant.tenant_id,
        display_name=tenant.display_name,
        state=_STATES_PB[tenant.state],
        quotas=_quotas_pb(tenant.quotas),
        effective_quotas=_quotas_pb(quotas.limits_in_force(settings, tenant.record())),
        create_time=timestamp(tenant.create_time),
        update_time=timestamp(tenant.update_time),
        disable_time=timestamp(tenant.disable_time),
    )


def usage_to_pb(usage: quotas.Usage) -> pb.TenantUsage:
    return pb.TenantUsage(
        memories=usage.memories,
        conversations=usage.conversations,
        documents=usage.documents,
        document_bytes=usage.document_bytes,
    )


def key_to_pb(key: ApiKey) -> pb.ApiKey:
    """The proto of a key row (it holds no secret, nor its hash)."""
    return pb.ApiKey(
        key_id=key.key_id,
        tenant_id=key.tenant_id or "",
        name=key.name,
        role=_ROLES_PB[key.role],
        prefix=key.prefix,
        create_time=timestamp(key.create_time),
        last_used_time=timestamp(key.last_used_time),
        expire_time=timestamp(key.expire_time),
        revoke_time=timestamp(key.revoke_time),
        created_by=key.created_by,
    )


def whoami_to_pb(caller: Principal) -> pb.WhoAmIResponse:
    return pb.WhoAmIResponse(
        key_id=caller.key_id,
        key_name=caller.key_name,
        role=_ROLES_PB[caller.role],
        tenant_id=caller.tenant_id or "",
    )


def receipt_to_pb(receipt: ErasureReceipt) -> pb.ErasureReceipt:
    return pb.ErasureReceipt(
        tenant_id=receipt.tenant_id,
        user_id=receipt.user_id,
        conversations=receipt.conversations,
        messages=receipt.messages,
        memories=receipt.memories,
        history_snapshots=receipt.history_snapshots,
        erase_time=timestamp(receipt.erase_time),
        erased_by=receipt.erased_by,
        documents=receipt.documents,
    )
