"""Verifying API keys: one database lookup per key per cache period, not per RPC."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server.auth.keys import hash_secret
from memoryd_server.auth.principal import ADMIN_KEY, Principal, Role
from memoryd_server.config import Settings
from memoryd_server.database import transaction

# Verified keys held at once; the least recently used are dropped beyond it.
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class TenantRecord:
    """A tenant's row: its state and quota overrides (None: the server's default)."""

    tenant_id: str
    state: str
    requests_per_second: float | None = None
    burst: int | None = None
    max_memories: int | None = None
    max_conversations: int | None = None
    max_content_bytes: int | None = None
    max_documents: int | None = None
    max_document_bytes: int | None = None

    @property
    def disabled(self) -> bool:
        return self.state == "disabled"


@dataclass(frozen=True)
class Verified:
    """A valid key: who it is, and its tenant's row (None for operator keys)."""

    principal: Principal
    tenant: TenantRecord | None


@dataclass(frozen=True)
class _KeyRow:
    key_id: str
    tenant_id: str | None
    name: str
    role: str
    state: str | None
    requests_per_second: float | None
    burst: int | None
    max_memories: int | None
    max_conversations: int | None
    max_content_bytes: int | None
    max_documents: int | None
    max_document_bytes: int | None


# Unknown, revoked and expired keys all find no row. Finding one stamps
# last_used_time, at most once per key per cache period and replica.
_LOOKUP = """
WITH k AS (
    UPDATE api_keys SET last_used_time = now()
    WHERE secret_hash = memoryd_presented_key()
      AND revoke_time IS NULL AND (expire_time IS NULL OR expire_time > now())
    RETURNING key_id, tenant_id, name, role
)
SELECT k.key_id::text, k.tenant_id, k.name, k.role, t.state, t.requests_per_second, t.burst,
       t.max_memories, t.max_conversations, t.max_content_bytes, t.max_documents,
       t.max_document_bytes
FROM k LEFT JOIN tenants t ON t.tenant_id = k.tenant_id
"""


class KeyVerifier:
    """Turns a presented secret into a ``Verified`` caller, or None.

    Results (valid or not) are cached by the secret's hash for
    ``auth_cache_seconds``: that is how late a revocation, an expiry or a
    disabled tenant takes effect when done elsewhere (another replica or the
    CLI). This replica's own RevokeApiKey and DisableTenant evict at once.
    """

    def __init__(self, pool: AsyncConnectionPool, settings: Settings) -> None:
        self._pool = pool
        self._ttl = settings.auth_cache_seconds
        self._admin_hash = hash_secret(settings.admin_key) if settings.admin_key else None
        self._cache: OrderedDict[bytes, tuple[float, Verified | None]] = OrderedDict()
        # Keys found valid at least once, kept after their cache entry expires:
        # the failed-key limiter never holds them back.
        self._valid_once: OrderedDict[bytes, None] = OrderedDict()
        # Concurrent first calls with one key share one lookup.
        self._pending: dict[bytes, asyncio.Future[Verified | None]] = {}

    def known(self, secret: str) -> bool:
        """True if ``secret``'s answer is cached, or it was a valid key when last looked up."""
        digest = hash_secret(secret)
        entry = self._cache.get(digest)
        return digest in self._valid_once or (entry is not None and entry[0] > time.monotonic())

    async def verify(self, secret: str) -> Verified | None:
        """The caller holding ``secret``, or None for an unknown, revoked or expired key."""
        digest = hash_secret(secret)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Verified(ADMIN_KEY, None)
        now = time.monotonic()
        entry = self._cache.get(digest)
        if entry is not None and entry[0] > now:
            self._cache.move_to_end(digest)
            return entry[1]
        task = self._pending.get(digest)
        if task is None:
            # A task of its own, which no caller owns: a caller cancelled by its
            # deadline must not cancel the lookup the others are waiting on.
            task = asyncio.ensure_future(self._lookup_and_remember(digest, now + self._ttl))
            self._pending[digest] = task
            task.add_done_callback(lambda done: self._finished(digest, done))
        return await asyncio.shield(task)

    def _finished(self, digest: bytes, task: asyncio.Future[Verified | None]) -> None:
        self._pending.pop(digest, None)
        if not task.cancelled():
            task.exception()  # retrieved: its waiters, if any, got it already

    async def _lookup_and_remember(self, digest: bytes, until: float) -> Verified | None:
        result = await self._lookup(digest)
        self._remember(digest, until, result)
        return result

    def _remember(self, digest: bytes, until: float, result: Verified | None) -> None:
        self._cache[digest] = (until, result)
        self._cache.move_to_end(digest)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        if result is None:
            self._valid_once.pop(digest, None)
        else:
            self._valid_once[digest] = None
            self._valid_once.move_to_end(digest)
            while len(self._valid_once) > CACHE_ENTRIES:
                self._valid_once.popitem(last=False)

    async def _lookup(self, digest: bytes) -> Verified | None:
        async with (
            transaction(self._pool, None, {"memoryd.key_hash": digest.hex()}) as conn,
            conn.cursor(row_factory=class_row(_KeyRow)) as cur,
        ):
            await cur.execute(_LOOKUP)
            row = await cur.fetchone()
        if row is None:
            return None
        role: Role = row.role  # type: ignore[assignment]
        principal = Principal(row.key_id, row.name, role, row.tenant_id)
        tenant = None
        if row.tenant_id is not None:
            tenant = TenantRecord(
                row.tenant_id,
                row.state or "disabled",
                row.requests_per_second,
                row.burst,
                row.max_memories,
                row.max_conversations,
                row.max_content_bytes,
                row.max_documents,
                row.max_document_bytes,
            )
        return Verified(principal, tenant)

    def forget(self, *, key_id: str | None = None, tenant_id: str | None = None) -> None:
        """Drop cached entries of a key or a tenant, after this replica changed them."""

        def matches(result: Verified | None) -> bool:
            if result is None:
                return False
            principal = result.principal
            return principal.key_id == key_id or (
                tenant_id is not None and principal.tenant_id == tenant_id
            )

        for digest in [d for d, (_, result) in self._cache.items() if matches(result)]:
            del self._cache[digest]
