"""Which tenant a call runs as. Until API keys exist every call is ``default``."""

from __future__ import annotations

from typing import Any

import grpc.aio

DEFAULT_TENANT = "default"


def tenant_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's tenant: from its credential once auth lands, never from a request field."""
    del context
    return DEFAULT_TENANT


def actor_of(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Who is calling, for history events: the API key's id once auth lands."""
    del context
    return "anonymous"
