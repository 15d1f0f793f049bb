"""Per-tenant limits: a tenant's own quotas over the server's defaults, and their checks.

Stored memories and conversations are counted by triggers (migration 0008)
into up to 16 counter rows per tenant and kind, so a check reads a few rows,
and concurrent writers of one tenant seldom wait on the same counter. The
check reads the usage in the writer's transaction before inserting, without
locking it: concurrent creators can overshoot a limit by at most the rows they
have in flight together. Serialising a tenant's writes to be exact would cost
far more than that rounding.
"""

from __future__ import annotations

import contextvars
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from memoryd_server.auth.verifier import TenantRecord
from memoryd_server.config import Settings
from memoryd_server.errors import InvalidArgument, ResourceExhausted

Kind = Literal["memories", "conversations", "documents", "document_bytes"]


@dataclass(frozen=True)
class Limits:
    """The limits in force for one tenant; 0 means unlimited."""

    requests_per_second: float
    burst: int
    max_memories: int
    max_conversations: int
    # 0: only the server's MEMORYD_MAX_CONTENT_BYTES applies.
    max_content_bytes: int
    max_documents: int = 0
    # The UTF-8 bytes of all the tenant's documents' content together.
    max_document_bytes: int = 0


# Callers without a tenant's limits: MEMORYD_AUTH=off, operator keys, code
# outside an RPC.
UNLIMITED = Limits(0.0, 0, 0, 0, 0)


def effective_limits(settings: Settings, tenant: TenantRecord | None) -> Limits:
    """``tenant``'s overrides over the server's MEMORYD_QUOTA_* defaults.

    Content size can only go below MEMORYD_MAX_CONTENT_BYTES, which bounds
    what the server accepts at all.
    """

    def pick(own: Any, default: Any) -> Any:
        return default if own is None else own

    own = tenant or TenantRecord("", "active")
    content = pick(own.max_content_bytes, settings.max_content_bytes)
    content = (
        settings.max_content_bytes if content == 0 else min(content, settings.max_content_bytes)
    )
    return Limits(
        requests_per_second=pick(own.requests_per_second, settings.quota_requests_per_second),
        burst=pick(own.burst, settings.quota_burst),
        max_memories=pick(own.max_memories, settings.quota_max_memories),
        max_conversations=pick(own.max_conversations, settings.quota_max_conversations),
        max_content_bytes=content,
        max_documents=pick(own.max_documents, settings.quota_max_documents),
        max_document_bytes=pick(own.max_document_bytes, settings.quota_max_document_bytes),
    )


def limits_in_force(settings: Settings, tenant: TenantRecord | None) -> Limits:
    """What the server enforces: nothing beyond MEMORYD_MAX_CONTENT_BYTES with auth off."""
    if not settings.auth_enabled:
        return dataclasses.replace(UNLIMITED, max_content_bytes=settings.max_content_bytes)
    return effective_limits(settings, tenant)


# Set by the auth interceptor around each handler, beside the principal.
_current: contextvars.ContextVar[Limits] = contextvars.ContextVar(
    "memoryd_limits", default=UNLIMITED
)


def current() -> Limits:
    """The limits of the calling tenant (UNLIMITED when the caller has none)."""
    return _current.get()


def bind(limits: Limits) -> contextvars.Token[Limits]:
    """Make ``limits`` the current caller's; undo with ``unbind(token)``."""
    return _current.set(limits)


def unbind(token: contextvars.Token[Limits]) -> None:
    _current.reset(token)


def check_content(field: str, value: str, server_limit: int) -> str:
    """``value`` unless it is over the calling tenant's content limit (INVALID_ARGUMENT).

    Only a tenant limit below ``server_limit`` (MEMORYD_MAX_CONTENT_BYTES) is
    checked here; the server's own is checked with the rest of the field.
    """
    limit = current().max_content_bytes
    if 0 < limit < server_limit:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            description = f"is {size} bytes, over the tenant's limit of {limit} bytes"
            raise InvalidArgument(field, description)
    return value


@dataclass(frozen=True)
class Usage:
    """What a tenant stores now."""

    memories: int
    conversations: int
    documents: int = 0
    document_bytes: int = 0


# The counters' sum; a slot may be negative (rows deleted by another slot's writer).
_USAGE = """
SELECT coalesce(sum(n) FILTER (WHERE kind = 'memories'), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE kind = 'conversations'), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE kind = 'documents'), 0)::bigint,
       coalesce(sum(n) FILTER (WHERE kind = 'document_bytes'), 0)::bigint
FROM tenant_usage WHERE tenant_id = %s
"""


async def read_usage(conn: psycopg.AsyncConnection[Any], tenant_id: str) -> Usage:
    """The tenant's stored memories and conversations (``conn`` declared the tenant,
    or works as memoryd_operator)."""
    cur = await conn.execute(_USAGE, (tenant_id,))
    row = await cur.fetchone()
    assert row is not None
    return Usage(*(int(n) for n in row))


async def check_room(
    conn: psycopg.AsyncConnection[Any], *, tenant_id: str, kind: Kind, adding: int, limit: int
) -> None:
    """RESOURCE_EXHAUSTED unless ``adding`` more ``kind`` fit the tenant's ``limit`` (0: none).

    Call it in the creating transaction, before the insert.
    """
    if not limit or not adding:
        return
    usage = await read_usage(conn, tenant_id)
    used: int = getattr(usage, kind)
    if used + adding <= limit:
        return
    if used >= limit:
        raise ResourceExhausted(
            f"tenant {tenant_id} stores {used} {kind}, its limit of {limit} reached"
            f" (max_{kind}); delete some or have an operator raise the quota"
        )
    raise ResourceExhausted(
        f"tenant {tenant_id} stores {used} {kind}; {adding} more would exceed its limit"
        f" (max_{kind} {limit}) by {used + adding - limit}"
    )
