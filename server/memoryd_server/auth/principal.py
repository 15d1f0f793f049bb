"""The caller of the current RPC: its key, role and tenant."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "member", "admin", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "operator")

# The tenant of the single-tenant mode (MEMORYD_AUTH=off).
DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    """Who is calling: one API key, or the anonymous caller when auth is off."""

    key_id: str
    key_name: str
    role: Role
    # None for operator keys: they belong to no tenant.
    tenant_id: str | None


# With MEMORYD_AUTH=off every call is this caller, an admin of "default".
ANONYMOUS = Principal("anonymous", "anonymous", "admin", DEFAULT_TENANT)
# The caller holding MEMORYD_ADMIN_KEY.
ADMIN_KEY_ID = "admin-key"
ADMIN_KEY = Principal(ADMIN_KEY_ID, "MEMORYD_ADMIN_KEY", "operator", None)

# Set by the auth interceptor around each handler; the handler's task sees it.
_current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "memoryd_principal", default=ANONYMOUS
)


def current() -> Principal:
    """The principal of the RPC being handled (ANONYMOUS outside one)."""
    return _current.get()


def bind(principal: Principal) -> contextvars.Token[Principal]:
    """Make ``principal`` the current caller; undo with ``unbind(token)``."""
    return _current.set(principal)


def unbind(token: contextvars.Token[Principal]) -> None:
    _current.reset(token)
