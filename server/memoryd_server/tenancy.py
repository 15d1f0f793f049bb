"""Which tenant a call runs as, and who it is: always from the caller's key."""

from __future__ import annotations

from typing import Any

import grpc.aio

from memoryd_server.auth import principal
from memoryd_server.auth.principal import DEFAULT_TENANT
from memoryd_server.errors import PermissionDenied

__all__ = ["DEFAULT_TENANT", "actor_name_of", "actor_of", "tenant_of"]


def tenant_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's tenant: from its API key, never from a request field."""
    del context  # the auth interceptor binds the caller around the handler
    tenant = principal.current().tenant_id
    if tenant is None:  # the role policy already refuses operator keys on tenant data
        raise PermissionDenied("operator keys hold no tenant data; use a tenant's key")
    return tenant


def actor_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Who is calling, for history: the API key's id ("anonymous" with auth off)."""
    del context
    return principal.current().key_id


def actor_name_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The calling key's name, recorded beside its id."""
    del context
    return principal.current().key_name
