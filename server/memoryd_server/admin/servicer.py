"""AdminService: who may act where, validation, the store, and the key cache.

Tenant RPCs (CreateTenant, ListTenants, UpdateTenant, Disable/EnableTenant)
are for operator keys; the auth interceptor refuses every other caller before
these handlers run. The others act in the caller's own tenant, or for an
operator key in the tenant its request names.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc.aio
from psycopg_pool import AsyncConnectionPool

from memoryd.v1 import admin_pb2 as pb
from memoryd.v1 import admin_pb2_grpc as pb_grpc
from memoryd_server.admin import convert, store
from memoryd_server.admin.erasure import erase_user
from memoryd_server.admin.models import (
    MAX_DISPLAY_NAME_CHARS,
    MAX_KEY_NAME_CHARS,
    UPDATABLE_PATHS,
    NewApiKey,
    Scope,
    Tenant,
)
from memoryd_server.auth import keys, principal
from memoryd_server.auth.verifier import KeyVerifier
from memoryd_server.config import Settings
from memoryd_server.errors import InvalidArgument, PermissionDenied
from memoryd_server.ids import parse_uuid, uuid7
from memoryd_server.pagination import PageTokens, invalid_token, page_size
from memoryd_server.protoconv import to_datetime
from memoryd_server.validation import check_chars, check_enum, check_name

Context = grpc.aio.ServicerContext[Any, Any]

DEFAULT_PAGE_SIZE = 100
# The operator scope of RevokeApiKey and of operator keys: every key.
_EVERY_KEY = Scope(None, operator=True)


def _is_operator() -> bool:
    return principal.current().tenant_id is None


def _scope(tenant_id: str) -> Scope:
    """The tenant a tenant-admin RPC acts in.

    A tenant admin acts in its own tenant; naming another one gets the same
    NOT_FOUND as a tenant that does not exist. An operator must name one.
    """
    caller = principal.current()
    if caller.tenant_id is None:
        if not tenant_id:
            raise InvalidArgument("tenant_id", "is required for operator keys")
        return Scope(convert.check_tenant_id("tenant_id", tenant_id), operator=True)
    if tenant_id and tenant_id != caller.tenant_id:
        raise store.tenant_not_found(convert.check_tenant_id("tenant_id", tenant_id))
    return Scope(caller.tenant_id, operator=False)


def _decode_key_position(position: list[Any]) -> tuple[dt.datetime, str]:
    try:
        when, key_id = position
        return dt.datetime.fromisoformat(when), str(parse_uuid("page_token", key_id))
    except (TypeError, ValueError, InvalidArgument):
        raise invalid_token() from None


class AdminServicer(pb_grpc.AdminServiceServicer):
    """The proto boundary of AdminService.

    ``verifier`` is this replica's key cache (None when MEMORYD_AUTH is off):
    revocations, state and quota changes evict from it so they apply here at
    once, and on other replicas within MEMORYD_AUTH_CACHE_SECONDS.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: Settings,
        tokens: PageTokens,
        verifier: KeyVerifier | None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._tokens = tokens
        self._verifier = verifier

    def _forget(self, *, key_id: str | None = None, tenant_id: str | None = None) -> None:
        if self._verifier is not None:
            self._verifier.forget(key_id=key_id, tenant_id=tenant_id)

    def _tenant_pb(self, tenant: Tenant) -> pb.Tenant:
        return convert.tenant_to_pb(tenant, self._settings)

    # -- tenants ----------------------------------------------------------

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: Context) -> pb.WhoAmIResponse:
        return convert.whoami_to_pb(principal.current())

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: Context
    ) -> pb.CreateTenantResponse:
        new = request.tenant
        created = await store.create_tenant(
            self._pool,
            tenant_id=convert.check_tenant_id("tenant.tenant_id", new.tenant_id),
            display_name=check_name(
                "tenant.display_name", new.display_name, MAX_DISPLAY_NAME_CHARS
            ),
            quotas=convert.quotas_from_pb("tenant.quotas", new.quotas),
        )
        return pb.CreateTenantResponse(tenant=self._tenant_pb(created))

    async def GetTenant(
        self, request: pb.GetTenantRequest, context: Context
    ) -> pb.GetTenantResponse:
        scope = _scope(request.tenant_id)
        assert scope.tenant_id is not None
        found, usage = await store.get_tenant(self._pool, tenant_id=scope.tenant_id)
        return pb.GetTenantResponse(tenant=self._tenant_pb(found), usage=convert.usage_to_pb(usage))

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: Context
    ) -> pb.ListTenantsResponse:
        limit = page_size(request.page_size, default=DEFAULT_PAGE_SIZE)
        position = self._tokens.decode(request.page_token, "tenants", {})
        after = None
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], str):
                raise invalid_token()
            after = position[0]
        rows = await store.list_tenants(self._pool, limit=limit + 1, after=after)
        rows, token = self._tokens.next_page(rows, limit, "tenants", {}, lambda t: [t.tenant_id])
        return pb.ListTenantsResponse(
            tenants=[self._tenant_pb(t) for t in rows], next_page_token=token
        )

    async def UpdateTenant(
        self, request: pb.UpdateTenantRequest, context: Context
    ) -> pb.UpdateTenantResponse:
        tenant_id = convert.check_tenant_id("tenant.tenant_id", request.tenant.tenant_id)
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                "update_mask", "must name at least one of " + ", ".join(sorted(UPDATABLE_PATHS))
            )
        given = convert.quotas_from_pb("tenant.quotas", request.tenant.quotas)
        changes: dict[str, Any] = {}
        for path in paths:
            if path not in UPDATABLE_PATHS:
                raise InvalidArgument(
                    "update_mask",
                    f"{path!r} is not an updatable field; use "
                    + ", ".join(sorted(UPDATABLE_PATHS)),
                )
            if path == "display_name":
                changes["display_name"] = check_name(
                    "tenant.display_name", request.tenant.display_name, MAX_DISPLAY_NAME_CHARS
                )
            elif path == "quotas":
                changes.update(vars(given))
            else:
                name = path.removeprefix("quotas.")
                changes[name] = getattr(given, name)
        updated = await store.update_tenant(self._pool, tenant_id=tenant_id, changes=changes)
        self._forget(tenant_id=tenant_id)
        return pb.UpdateTenantResponse(tenant=self._tenant_pb(updated))

    async def DisableTenant(
        self, request: pb.DisableTenantRequest, context: Context
    ) -> pb.DisableTenantResponse:
        tenant_id = convert.check_tenant_id("tenant_id", request.tenant_id)
        updated = await store.set_tenant_state(self._pool, tenant_id=tenant_id, disabled=True)
        self._forget(tenant_id=tenant_id)
        return pb.DisableTenantResponse(tenant=self._tenant_pb(updated))

    async def EnableTenant(
        self, request: pb.EnableTenantRequest, context: Context
    ) -> pb.EnableTenantResponse:
        tenant_id = convert.check_tenant_id("tenant_id", request.tenant_id)
        updated = await store.set_tenant_state(self._pool, tenant_id=tenant_id, disabled=False)
        self._forget(tenant_id=tenant_id)
        return pb.EnableTenantResponse(tenant=self._tenant_pb(updated))

    # -- API keys ---------------------------------------------------------

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: Context
    ) -> pb.CreateApiKeyResponse:
        if not request.name:
            raise InvalidArgument("name", "is required")
        name = check_name("name", request.name, MAX_KEY_NAME_CHARS)
        role = convert.ROLES.get(check_enum("role", request.role, pb.Role.DESCRIPTOR))
        if role is None:
            raise InvalidArgument("role", "is required: viewer, member, admin or operator")
        if role == "operator":
            if not _is_operator():
                raise PermissionDenied("only operator keys may create operator keys")
            scope = _EVERY_KEY
        else:
            scope = _scope(request.tenant_id)
        expire_time = None
        if request.HasField("expire_time"):
            expire_time = to_datetime("expire_time", request.expire_time)
            if expire_time <= dt.datetime.now(dt.UTC):
                raise InvalidArgument("expire_time", "is in the past")
        secret = keys.new_secret()
        new = NewApiKey(
            key_id=str(uuid7()),
            tenant_id=scope.tenant_id,
            name=name,
            role=role,
            prefix=keys.prefix_of(secret),
            secret_hash=keys.hash_secret(secret),
            created_by=principal.current().key_id,
            expire_time=expire_time,
        )
        created = await store.create_api_key(self._pool, scope=scope, new=new)
        return pb.CreateApiKeyResponse(api_key=convert.key_to_pb(created), secret=secret)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: Context
    ) -> pb.ListApiKeysResponse:
        if request.operator_keys:
            if not _is_operator():
                raise PermissionDenied("only operator keys may list operator keys")
            scope = _EVERY_KEY
        else:
            scope = _scope(request.tenant_id)
        limit = page_size(request.page_size, default=DEFAULT_PAGE_SIZE)
        query = {
            "tenant": scope.tenant_id,
            "include_revoked": request.include_revoked,
        }
        position = self._tokens.decode(request.page_token, "api_keys", query)
        after = None if position is None else _decode_key_position(position)
        rows = await store.list_api_keys(
            self._pool,
            scope=scope,
            include_revoked=request.include_revoked,
            limit=limit + 1,
            after=after,
        )
        rows, token = self._tokens.next_page(
            rows, limit, "api_keys", query, lambda k: [k.create_time.isoformat(), k.key_id]
        )
        return pb.ListApiKeysResponse(
            api_keys=[convert.key_to_pb(k) for k in rows], next_page_token=token
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        key_id = str(parse_uuid("key_id", request.key_id))
        caller = principal.current()
        scope = _EVERY_KEY if caller.tenant_id is None else Scope(caller.tenant_id, operator=False)
        revoked = await store.revoke_api_key(self._pool, scope=scope, key_id=key_id)
        self._forget(key_id=revoked.key_id)
        return pb.RevokeApiKeyResponse(api_key=convert.key_to_pb(revoked))

    # -- erasure ----------------------------------------------------------

    async def EraseUser(
        self, request: pb.EraseUserRequest, context: Context
    ) -> pb.EraseUserResponse:
        if not request.user_id:
            raise InvalidArgument("user_id", "is required")
        user_id = check_chars("user_id", request.user_id, 256)
        scope = _scope(request.tenant_id)
        assert scope.tenant_id is not None
        if scope.operator:  # a tenant admin's own tenant exists: its key was verified
            await store.require_tenant(self._pool, scope=scope)
        caller = principal.current()
        receipt = await erase_user(
            self._pool,
            tenant_id=scope.tenant_id,
            user_id=user_id,
            actor=caller.key_id,
            actor_name=caller.key_name,
        )
        return pb.EraseUserResponse(receipt=convert.receipt_to_pb(receipt))
