"""Search hits counted as accesses, written in the background in batches.

A search must not wait for (or contend on) the rows it returns, so hits are
collected here and flushed about once a second, one UPDATE per tenant.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict

import structlog
from psycopg_pool import AsyncConnectionPool

from memoryd_server import metrics
from memoryd_server.memories import upkeep

log = structlog.get_logger(__name__)


class AccessRecorder:
    """Collects (tenant, memory id) hits; ``run()`` flushes them until cancelled."""

    def __init__(self, pool: AsyncConnectionPool, interval_seconds: float = 1.0) -> None:
        self._pool = pool
        self._interval = interval_seconds
        self._pending: dict[str, Counter[uuid.UUID]] = defaultdict(Counter)

    def note(self, tenant_id: str, memory_ids: list[uuid.UUID]) -> None:
        """Count one access of each memory."""
        if memory_ids:
            self._pending[tenant_id].update(memory_ids)

    async def flush(self) -> None:
        """Write what has been noted so far."""
        pending, self._pending = self._pending, defaultdict(Counter)
        for tenant_id, hits in pending.items():
            await upkeep.record_access(self._pool, tenant_id=tenant_id, hits=dict(hits))

    async def run(self) -> None:
        """Flush every interval; a failed flush is logged and its hits dropped."""
        try:
            while True:
                await asyncio.sleep(self._interval)
                try:
                    await self.flush()
                    metrics.task_ran("access_counts", ok=True)
                except Exception:
                    log.warning("access_flush_failed", exc_info=True)
                    metrics.task_ran("access_counts", ok=False)
        finally:
            try:
                await self.flush()
            except Exception:
                log.warning("access_flush_failed", exc_info=True)
