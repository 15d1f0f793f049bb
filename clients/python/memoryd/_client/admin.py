"""``client.admin``: typed methods for every AdminService RPC.

Tenant methods need an operator key; key and erasure methods an admin key of
the tenant (``tenant_id`` empty: the key's own) or an operator key naming
one. Only reads are retried.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from memoryd._client import admin_calls as calls
from memoryd._client import types as t
from memoryd._client.admin_calls import SERVICE
from memoryd._client.transport import SyncTransport
from memoryd.v1 import admin_pb2 as pb


class Admin:
    """Tenants, API keys and erasure, on a synchronous channel."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def whoami(self, *, timeout: float | None = None) -> t.Caller:
        """The key this client calls with: its id, name, role and tenant."""
        response = self._t.call(
            SERVICE + "WhoAmI",
            pb.WhoAmIRequest(),
            pb.WhoAmIResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.caller(response)

    def create_tenant(
        self,
        tenant_id: str,
        *,
        display_name: str = "",
        quotas: t.Quotas | None = None,
        timeout: float | None = None,
    ) -> t.Tenant:
        """Create a tenant; AlreadyExists if the id is taken."""
        response = self._t.call(
            SERVICE + "CreateTenant",
            calls.create_tenant_request(tenant_id, display_name=display_name, quotas=quotas),
            pb.CreateTenantResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.tenant(response.tenant)

    def get_tenant(self, tenant_id: str = "", *, timeout: float | None = None) -> t.TenantDetails:
        """A tenant (empty: the key's own) with its usage; NotFound if not visible."""
        response = self._t.call(
            SERVICE + "GetTenant",
            pb.GetTenantRequest(tenant_id=tenant_id),
            pb.GetTenantResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.tenant_details(response)

    def list_tenants(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> t.Page[t.Tenant]:
        """One page of tenants in id order."""
        response = self._t.call(
            SERVICE + "ListTenants",
            pb.ListTenantsRequest(page_size=page_size, page_token=page_token),
            pb.ListTenantsResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.tenants_page(response)

    def iter_tenants(
        self, *, page_size: int = 0, timeout: float | None = None
    ) -> Iterator[t.Tenant]:
        """Every tenant, fetching pages as needed (``timeout`` is per page)."""
        token = ""
        while True:
            page = self.list_tenants(page_size=page_size, page_token=token, timeout=timeout)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def update_tenant(
        self,
        tenant_id: str,
        *,
        display_name: str | None = None,
        quotas: t.Quotas | None = None,
        reset_quotas: Sequence[str] = (),
        timeout: float | None = None,
    ) -> t.Tenant:
        """Set ``display_name`` unless None and each quota ``quotas`` sets; the quotas
        named in ``reset_quotas`` go back to the server's defaults (ValueError if a
        quota is both set and reset)."""
        request = calls.update_tenant_request(
            tenant_id, display_name=display_name, quotas=quotas, reset_quotas=reset_quotas
        )
        response = self._t.call(
            SERVICE + "UpdateTenant",
            request,
            pb.UpdateTenantResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.tenant(response.tenant)

    def disable_tenant(self, tenant_id: str, *, timeout: float | None = None) -> t.Tenant:
        """Disable a tenant: its keys get PermissionDenied; its data is kept."""
        response = self._t.call(
            SERVICE + "DisableTenant",
            pb.DisableTenantRequest(tenant_id=tenant_id),
            pb.DisableTenantResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.tenant(response.tenant)

    def enable_tenant(self, tenant_id: str, *, timeout: float | None = None) -> t.Tenant:
        """Enable a disabled tenant again."""
        response = self._t.call(
            SERVICE + "EnableTenant",
            pb.EnableTenantRequest(tenant_id=tenant_id),
            pb.EnableTenantResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.tenant(response.tenant)

    def create_key(
        self,
        *,
        name: str,
        role: t.KeyRole,
        tenant_id: str = "",
        expire_time: datetime | None = None,
        timeout: float | None = None,
    ) -> t.CreatedApiKey:
        """Create an API key; its ``secret`` is in the result and nowhere else."""
        request = calls.create_key_request(
            name=name, role=role, tenant_id=tenant_id, expire_time=expire_time
        )
        response = self._t.call(
            SERVICE + "CreateApiKey",
            request,
            pb.CreateApiKeyResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.created_key(response)

    def list_keys(
        self,
        *,
        tenant_id: str = "",
        include_revoked: bool = False,
        operator_keys: bool = False,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[t.ApiKey]:
        """One page of a tenant's keys (or the operator keys), newest first."""
        request = pb.ListApiKeysRequest(
            tenant_id=tenant_id,
            page_size=page_size,
            page_token=page_token,
            include_revoked=include_revoked,
            operator_keys=operator_keys,
        )
        response = self._t.call(
            SERVICE + "ListApiKeys",
            request,
            pb.ListApiKeysResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.keys_page(response)

    def iter_keys(
        self,
        *,
        tenant_id: str = "",
        include_revoked: bool = False,
        operator_keys: bool = False,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[t.ApiKey]:
        """Every matching key, fetching pages as needed (``timeout`` is per page)."""
        token = ""
        while True:
            page = self.list_keys(
                tenant_id=tenant_id,
                include_revoked=include_revoked,
                operator_keys=operator_keys,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def revoke_key(self, key_id: str, *, timeout: float | None = None) -> t.ApiKey:
        """Revoke a key; revoking a revoked key returns it unchanged."""
        response = self._t.call(
            SERVICE + "RevokeApiKey",
            pb.RevokeApiKeyRequest(key_id=key_id),
            pb.RevokeApiKeyResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.api_key(response.api_key)

    def erase_user(
        self, user_id: str, *, tenant_id: str = "", timeout: float | None = None
    ) -> t.ErasureReceipt:
        """Erase one user's conversations, messages and memories; returns what went."""
        response = self._t.call(
            SERVICE + "EraseUser",
            pb.EraseUserRequest(tenant_id=tenant_id, user_id=user_id),
            pb.EraseUserResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.receipt(response)
