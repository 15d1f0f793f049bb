"""The key cache in front of the database: shared lookups, cancellation, expiry (no database)."""

from __future__ import annotations

import asyncio
from typing import Any

from memoryd_server.auth.principal import Principal
from memoryd_server.auth.verifier import KeyVerifier, Verified
from memoryd_server.config import Settings

VERIFIED = Verified(Principal("key-1", "bot", "member", "acme"), None)


class SlowVerifier(KeyVerifier):
    """Its lookups wait for ``release`` and count themselves."""

    def __init__(self, ttl: float = 10.0) -> None:
        super().__init__(pool=None, settings=Settings(auth_cache_seconds=ttl))  # type: ignore[arg-type]
        self.lookups = 0
        self.release = asyncio.Event()
        self.fail: BaseException | None = None

    async def _lookup(self, digest: bytes) -> Verified | None:
        del digest
        self.lookups += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return VERIFIED


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_first_calls_share_one_lookup_then_hit_the_cache() -> None:
    async def scenario() -> None:
        verifier = SlowVerifier()
        calls = [asyncio.ensure_future(verifier.verify("mdk_k")) for _ in range(5)]
        await asyncio.sleep(0)
        verifier.release.set()
        assert await asyncio.gather(*calls) == [VERIFIED] * 5
        assert await verifier.verify("mdk_k") == VERIFIED
        assert verifier.lookups == 1

    run(scenario())


def test_a_cancelled_first_caller_does_not_fail_the_others() -> None:
    """The first caller's deadline passing must not cancel the lookup others wait on."""

    async def scenario() -> None:
        verifier = SlowVerifier()
        first = asyncio.ensure_future(verifier.verify("mdk_k"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(verifier.verify("mdk_k"))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        verifier.release.set()
        assert await second == VERIFIED
        assert first.cancelled()
        assert verifier.lookups == 1

    run(scenario())


def test_a_failed_lookup_reaches_every_waiter_and_is_not_cached() -> None:
    async def scenario() -> None:
        verifier = SlowVerifier()
        verifier.fail = ConnectionError("database down")
        calls = [asyncio.ensure_future(verifier.verify("mdk_k")) for _ in range(3)]
        await asyncio.sleep(0)
        verifier.release.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results)
        verifier.fail = None
        assert await verifier.verify("mdk_k") == VERIFIED
        assert verifier.lookups == 2

    run(scenario())


def test_entries_expire_after_the_cache_period() -> None:
    async def scenario() -> None:
        verifier = SlowVerifier(ttl=0.05)
        verifier.release.set()
        assert await verifier.verify("mdk_k") == VERIFIED
        await asyncio.sleep(0.1)
        assert await verifier.verify("mdk_k") == VERIFIED
        assert verifier.lookups == 2

    run(scenario())


def test_forget_drops_a_key_or_a_tenant() -> None:
    async def scenario() -> None:
        verifier = SlowVerifier()
        verifier.release.set()
        await verifier.verify("mdk_k")
        verifier.forget(key_id="other")
        await verifier.verify("mdk_k")
        assert verifier.lookups == 1
        verifier.forget(tenant_id="acme")
        await verifier.verify("mdk_k")
        assert verifier.lookups == 2

    run(scenario())


def test_admin_key_needs_no_lookup() -> None:
    async def scenario() -> None:
        admin = "a" * 40
        verifier = SlowVerifier()
        verifier._admin_hash = KeyVerifier(
            pool=None,  # type: ignore[arg-type]
            settings=Settings(admin_key=admin),
        )._admin_hash
        found = await verifier.verify(admin)
        assert found is not None
        assert found.principal.role == "operator"
        assert verifier.lookups == 0

    run(scenario())
