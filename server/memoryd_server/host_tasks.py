"""The host-wide background work: idempotency-key and memory expiry, message embedding.

One process per host runs it (a lone server, or worker 0 under a supervisor),
on the one-connection maintenance pool, off the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from psycopg_pool import AsyncConnectionPool

from memoryd_server import idempotency, metrics
from memoryd_server.config import Settings
from memoryd_server.conversations.embedding import BATCH as MESSAGE_EMBED_BATCH
from memoryd_server.conversations.embedding import embed_pending_messages
from memoryd_server.embeddings.service import Embeddings
from memoryd_server.memories import upkeep

log = structlog.get_logger("memoryd")

# How often the message embedder looks for new messages once it has caught up.
MESSAGE_EMBED_POLL_SECONDS = 0.2
IDEMPOTENCY_EXPIRY_SECONDS = 600.0
# Most batches of one round: a backlog drains over the rounds, each delete short.
ROUND_BATCHES = 100


async def _round(task: str, work: Callable[[], Awaitable[int]]) -> int | None:
    """One round of ``task``, counted in the metrics; None when it failed (logged)."""
    try:
        done = await work()
    except Exception:
        log.warning("background_task_failed", task=task, exc_info=True)
        metrics.task_ran(task, ok=False)
        return None
    metrics.task_ran(task, ok=True)
    return done


async def expire_idempotency_keys(pool: AsyncConnectionPool) -> None:
    """Delete expired request_id records, every ten minutes."""

    async def work() -> int:
        for _ in range(ROUND_BATCHES):
            if not await idempotency.delete_expired(pool):
                break
        return 0

    while True:
        await _round("idempotency_expiry", work)
        await asyncio.sleep(IDEMPOTENCY_EXPIRY_SECONDS)


async def expire_memories(pool: AsyncConnectionPool, settings: Settings) -> None:
    """Archive (or purge) expired memories in small batches."""
    purge = settings.expiry_action == "purge"

    async def work() -> int:
        for _ in range(ROUND_BATCHES):
            done = await upkeep.expire_memories(pool, purge=purge)
            if done:
                log.info("memories_expired", count=done, action=settings.expiry_action)
            if done < upkeep.EXPIRY_BATCH:
                break
        return 0

    while True:
        await asyncio.sleep(settings.expiry_interval_seconds)
        await _round("memory_expiry", work)


async def embed_messages(pool: AsyncConnectionPool, embeddings: Embeddings) -> None:
    """Embed appended messages shortly after their append (SearchMessages)."""
    while True:
        done = await _round("message_embedding", lambda: embed_pending_messages(pool, embeddings))
        if done is None:
            await asyncio.sleep(1.0)
        elif done < MESSAGE_EMBED_BATCH:
            await asyncio.sleep(MESSAGE_EMBED_POLL_SECONDS)
