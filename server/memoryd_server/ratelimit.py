"""Request rates per tenant: a token bucket per tenant in each server replica.

A bucket holds up to ``burst`` tokens and refills at ``requests_per_second``;
each call takes one. The buckets live in this process only: with N replicas
behind a load balancer a tenant may reach N times its rate, and a restart
refills every bucket. Counting in the database instead would add a write to
every call of every tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from memoryd_server.auth.verifier import TenantRecord
from memoryd_server.config import Settings
from memoryd_server.errors import ResourceExhausted
from memoryd_server.quotas import Limits, effective_limits

# Buckets kept at once; the least recently used go beyond it. An idle
# tenant's bucket refills to full, which is what a new bucket starts with, so
# dropping it loses nothing once it has been idle for burst / rate seconds.
MAX_TENANTS = 10_000
# The longest retry delay a refused call is told to wait.
MAX_WAIT_SECONDS = 3600.0


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """Token buckets by tenant id. Not thread-safe: the server's event loop owns it."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tenants: int = MAX_TENANTS,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._max_tenants = max_tenants
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def limits(self, tenant: TenantRecord) -> Limits:
        """The limits in force for ``tenant``: its quotas over the server's defaults."""
        return effective_limits(self._settings, tenant)

    def check(self, tenant_id: str, limits: Limits) -> None:
        """Take one call from the tenant's bucket; RESOURCE_EXHAUSTED with retry info if empty."""
        wait = self.take(tenant_id, rate=limits.requests_per_second, burst=limits.burst)
        if wait > 0:
            raise ResourceExhausted(
                f"tenant {tenant_id} exceeded its rate of {limits.requests_per_second:g}"
                f" requests per second; retry in {wait:.3f} s",
                retry_after=wait,
            )

    def take(self, tenant_id: str, *, rate: float, burst: int, peek: bool = False) -> float:
        """0 when a token was taken, else the seconds until one is there (none is taken).

        ``rate`` or ``burst`` 0 means unlimited. A changed rate or burst
        applies at the next call, to the refill since the previous one too.
        With ``peek`` the token is left in the bucket: 0 says one is there.
        """
        if rate <= 0 or burst <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            bucket = self._buckets[tenant_id] = _Bucket(float(burst), now)
            while len(self._buckets) > self._max_tenants:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant_id)
            elapsed = max(now - bucket.stamp, 0.0)
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            if not peek:
                bucket.tokens -= 1.0
            return 0.0
        # A rate of a few per day would otherwise ask clients to wait for days
        # (or, near zero, overflow the RetryInfo): they ask again within the hour.
        return min((1.0 - bucket.tokens) / rate, MAX_WAIT_SECONDS)

    def __len__(self) -> int:
        """How many tenants have a bucket now."""
        return len(self._buckets)


class FailedKeyLimiter:
    """Keys that found nothing in the database, per client address.

    Each distinct wrong key costs a database lookup, so a client sending
    random keys could keep the pool busy. Once an address has used up its
    failures (``rate`` per second, ``10 * rate`` at once), its lookups of keys
    this replica has not verified before run one at a time (``turn``) until
    the bucket refills: a flood from one address holds at most one connection.
    Nothing is refused: a valid key behind that address (a gateway, a NAT)
    still gets its lookup, only later, and keys verified before skip the
    limiter altogether.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = max(1, int(10 * rate))
        self._buckets = RateLimiter(Settings(), clock=clock)
        # A lock per address whose lookups queue, with how many hold or await it.
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}

    def exhausted(self, address: str) -> bool:
        """True while ``address`` has no failure left in its bucket."""
        return self._buckets.take(address, rate=self._rate, burst=self._burst, peek=True) > 0

    @asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """Wait until no other lookup of ``address`` runs, and hold the turn."""
        lock, users = self._turns.get(address) or (asyncio.Lock(), 0)
        self._turns[address] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[address]
            if users == 1:
                del self._turns[address]
            else:
                self._turns[address] = (lock, users - 1)

    def failed(self, address: str) -> None:
        """Count a lookup that found no valid key."""
        self._buckets.take(address, rate=self._rate, burst=self._burst)
