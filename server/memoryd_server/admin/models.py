"""Tenant and API key records as the admin store reads and writes them."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from memoryd_server.auth.principal import Role
from memoryd_server.auth.verifier import TenantRecord

# The tenants table's CHECK, enforced here first so the error names the field.
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
QUOTA_FIELDS = (
    "requests_per_second",
    "burst",
    "max_memories",
    "max_conversations",
    "max_content_bytes",
    "max_documents",
    "max_document_bytes",
)
# Paths UpdateTenant's mask may name.
UPDATABLE_PATHS = frozenset({"display_name", "quotas", *(f"quotas.{q}" for q in QUOTA_FIELDS)})
MAX_DISPLAY_NAME_CHARS = 200
MAX_KEY_NAME_CHARS = 200


@dataclass(frozen=True)
class Quotas:
    """A tenant's quota overrides; None takes the server's default, 0 is unlimited."""

    requests_per_second: float | None = None
    burst: int | None = None
    max_memories: int | None = None
    max_conversations: int | None = None
    max_content_bytes: int | None = None
    max_documents: int | None = None
    max_document_bytes: int | None = None


@dataclass(frozen=True)
class Tenant:
    """A row of ``tenants``."""

    tenant_id: str
    display_name: str
    state: str
    requests_per_second: float | None
    burst: int | None
    max_memories: int | None
    max_conversations: int | None
    max_content_bytes: int | None
    max_documents: int | None
    max_document_bytes: int | None
    create_time: dt.datetime
    update_time: dt.datetime
    disable_time: dt.datetime | None

    @property
    def quotas(self) -> Quotas:
        return Quotas(
            self.requests_per_second,
            self.burst,
            self.max_memories,
            self.max_conversations,
            self.max_content_bytes,
            self.max_documents,
            self.max_document_bytes,
        )

    def record(self) -> TenantRecord:
        """The form the key verifier and the quota code take."""
        return TenantRecord(
            self.tenant_id,
            self.state,
            self.requests_per_second,
            self.burst,
            self.max_memories,
            self.max_conversations,
            self.max_content_bytes,
            self.max_documents,
            self.max_document_bytes,
        )


@dataclass(frozen=True)
class NewApiKey:
    """A key to store: everything but its secret, of which only the hash is kept."""

    key_id: str
    tenant_id: str | None
    name: str
    role: Role
    prefix: str
    secret_hash: bytes
    created_by: str
    expire_time: dt.datetime | None


@dataclass(frozen=True)
class ApiKey:
    """A row of ``api_keys`` without its hash."""

    key_id: str
    tenant_id: str | None
    name: str
    role: Role
    prefix: str
    created_by: str
    create_time: dt.datetime
    last_used_time: dt.datetime | None
    expire_time: dt.datetime | None
    revoke_time: dt.datetime | None


@dataclass(frozen=True)
class Scope:
    """Where an admin call acts: one tenant, or (``tenant_id`` None) the operator keys.

    ``operator`` calls work as the database role memoryd_operator, which sees
    every tenant; a tenant admin's calls work as memoryd_app with its tenant
    declared, so row-level security confines them to it.
    """

    tenant_id: str | None
    operator: bool
