"""The memoryd calls a LangGraph store makes, behind one async-shaped interface.

``run_ops`` is written once against ``Calls``. ``AsyncCalls`` awaits the
asyncio client and runs independent calls concurrently; ``SyncCalls`` wraps the
blocking client in coroutines that never suspend, so ``run_sync`` drives them
to the end in one step, with no event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from langchain_core.embeddings import Embeddings

from memoryd._client import types as t
from memoryd._client.client import AsyncClient, Client
from memoryd._client.errors import NotFound

T = TypeVar("T")


class Calls(Protocol):
    """What ``run_ops`` needs from memoryd and from the store's embedder."""

    async def get(self, namespace: tuple[str, ...], key: str) -> t.Memory | None: ...
    async def put(self, memory: t.NewMemory, ttl: timedelta | None) -> None: ...
    async def create_all(self, memories: Sequence[t.NewMemory]) -> None: ...
    async def archive(self, memory_id: str) -> None: ...
    async def expire_at(self, memory_id: str, when: datetime) -> None: ...
    async def list_memories(
        self, filter: t.MemoryFilter, page_size: int, page_token: str
    ) -> t.Page[t.Memory]: ...
    async def search(self, **request: Any) -> list[t.SearchResult]: ...
    async def namespaces(
        self, prefix: tuple[str, ...], max_depth: int, page_size: int, page_token: str
    ) -> t.Page[tuple[str, ...]]: ...
    async def embed_documents(self, texts: list[str]) -> list[list[float]]: ...
    async def embed_query(self, text: str) -> list[float]: ...
    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]: ...


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never suspends (one built on ``SyncCalls``)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a synchronous store call suspended")


class SyncCalls:
    """``Calls`` on the blocking ``memoryd.Client``."""

    def __init__(self, client: Client, embeddings: Embeddings | None) -> None:
        self._memories = client.memories
        self._embeddings = embeddings

    async def get(self, namespace: tuple[str, ...], key: str) -> t.Memory | None:
        try:
            return self._memories.get(namespace=namespace, key=key)
        except NotFound:
            return None

    async def put(self, memory: t.NewMemory, ttl: timedelta | None) -> None:
        self._memories.create(memory, ttl=ttl, upsert=True)

    async def create_all(self, memories: Sequence[t.NewMemory]) -> None:
        self._memories.batch_create(memories)

    async def archive(self, memory_id: str) -> None:
        with contextlib.suppress(NotFound):  # gone already: what the caller wanted
            self._memories.delete(memory_id, reason="langgraph delete")

    async def expire_at(self, memory_id: str, when: datetime) -> None:
        with contextlib.suppress(NotFound):  # gone already: what the caller wanted
            self._memories.update(memory_id, expire_time=when, reason="langgraph ttl refresh")

    async def list_memories(
        self, filter: t.MemoryFilter, page_size: int, page_token: str
    ) -> t.Page[t.Memory]:
        return self._memories.list(filter=filter, page_size=page_size, page_token=page_token)

    async def search(self, **request: Any) -> list[t.SearchResult]:
        return self._memories.search(**request)

    async def namespaces(
        self, prefix: tuple[str, ...], max_depth: int, page_size: int, page_token: str
    ) -> t.Page[tuple[str, ...]]:
        return self._memories.list_namespaces(
            prefix=prefix, max_depth=max_depth, page_size=page_size, page_token=page_token
        )

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        assert self._embeddings is not None
        return self._embeddings.embed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        assert self._embeddings is not None
        return self._embeddings.embed_query(text)

    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        return [await call for call in calls]


class AsyncCalls:
    """``Calls`` on ``memoryd.AsyncClient``: a batch's independent calls run concurrently."""

    def __init__(self, client: AsyncClient, embeddings: Embeddings | None) -> None:
        self._memories = client.memories
        self._embeddings = embeddings

    async def get(self, namespace: tuple[str, ...], key: str) -> t.Memory | None:
        try:
            return await self._memories.get(namespace=namespace, key=key)
        except NotFound:
            return None

    async def put(self, memory: t.NewMemory, ttl: timedelta | None) -> None:
        await self._memories.create(memory, ttl=ttl, upsert=True)

    async def create_all(self, memories: Sequence[t.NewMemory]) -> None:
        await self._memories.batch_create(memories)

    async def archive(self, memory_id: str) -> None:
        with contextlib.suppress(NotFound):  # gone already: what the caller wanted
            await self._memories.delete(memory_id, reason="langgraph delete")

    async def expire_at(self, memory_id: str, when: datetime) -> None:
        with contextlib.suppress(NotFound):  # gone already: what the caller wanted
            await self._memories.update(memory_id, expire_time=when, reason="langgraph ttl refresh")

    async def list_memories(
        self, filter: t.MemoryFilter, page_size: int, page_token: str
    ) -> t.Page[t.Memory]:
        return await self._memories.list(filter=filter, page_size=page_size, page_token=page_token)

    async def search(self, **request: Any) -> list[t.SearchResult]:
        return await self._memories.search(**request)

    async def namespaces(
        self, prefix: tuple[str, ...], max_depth: int, page_size: int, page_token: str
    ) -> t.Page[tuple[str, ...]]:
        return await self._memories.list_namespaces(
            prefix=prefix, max_depth=max_depth, page_size=page_size, page_token=page_token
        )

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        assert self._embeddings is not None
        return await self._embeddings.aembed_documents(texts)

    async def embed_query(self, text: str) -> list[float]:
        assert self._embeddings is not None
        return await self._embeddings.aembed_query(text)

    async def gather(self, calls: Sequence[Awaitable[T]]) -> list[T]:
        return list(await asyncio.gather(*calls))
