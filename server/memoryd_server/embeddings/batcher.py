"""Micro-batching: concurrent embedding requests share one model call, off the loop.

Each request's texts wait at most ``max_wait`` for others to join (less when a
batch fills up), then one worker thread runs the model on the whole batch.
A model runs far faster on 32 texts at once than on 32 single texts, and the
event loop never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import structlog

from memoryd_server import metrics
from memoryd_server.embeddings.base import Embedder, Vectors

log = structlog.get_logger(__name__)


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[Vectors] = field(repr=False)


class EmbeddingBatcher:
    """Embeds texts for many concurrent callers in shared batches."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = 64,
        max_wait: float = 0.002,
        workers: int = 1,
    ) -> None:
        self.embedder = embedder
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._workers = workers
        self._queue: asyncio.Queue[_Request] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="memoryd-embed")
        # (batches, texts, seconds in the model) since start, for logs and benchmarks.
        self.batches = 0
        self.texts = 0
        self.seconds = 0.0

    @property
    def model(self) -> str:
        """The embedder's model name."""
        return self.embedder.model

    @property
    def dimension(self) -> int:
        """The embedder's vector length."""
        return self.embedder.dimension

    async def embed(self, texts: list[str]) -> Vectors:
        """One unit-length vector per text, in order."""
        if not texts:
            return np.zeros((0, self.dimension), np.float32)
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._tasks = [
                asyncio.create_task(self._run(), name=f"memoryd-embed-{i}")
                for i in range(self._workers)
            ]
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(texts, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].texts)
            deadline = loop.time() + self._max_wait
            while size < self._max_batch:
                timeout = deadline - loop.time()
                try:
                    request = (
                        self._queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self._queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                batch.append(request)
                size += len(request.texts)
            batch = [r for r in batch if not r.future.done()]  # cancelled callers
            if batch:
                await self._embed(loop, batch)

    async def _embed(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        texts = [t for r in batch for t in r.texts]
        started = time.perf_counter()
        try:
            rows = await loop.run_in_executor(self._executor, self.embedder.embed_batch, texts)
        except Exception as exc:  # noqa: BLE001 - every waiting caller gets the error
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self.batches += 1
        self.texts += len(texts)
        self.seconds += elapsed
        metrics.embedded(len(texts), elapsed)
        log.debug("embedded", model=self.model, texts=len(texts), duration_ms=elapsed * 1000)
        start = 0
        for r in batch:
            if not r.future.done():
                r.future.set_result(rows[start : start + len(r.texts)])
            start += len(r.texts)

    async def close(self) -> None:
        """Stop the workers; calls still waiting fail."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._executor.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.embedder, "close", None)  # an HTTP embedder's connections
        if callable(close):
            close()
