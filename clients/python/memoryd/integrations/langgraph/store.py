"""``MemorydStore``: a LangGraph ``BaseStore`` whose items are memoryd memories."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langgraph.store.base import BaseStore, IndexConfig, Op, Result, TTLConfig, ensure_embeddings

from memoryd._client.client import AsyncClient, Client
from memoryd.integrations.langgraph.calls import AsyncCalls, SyncCalls, run_sync
from memoryd.integrations.langgraph.ops import StoreConfig, run_ops
from memoryd.integrations.loop_clients import LoopClients


class MemorydStore(BaseStore):
    """LangGraph's long-term memory store on a memoryd server.

    Namespaces are memoryd namespaces, keys are memory keys, values are memory
    metadata, and the indexed text (``index["fields"]``, or the whole value) is
    the memory's content. Without ``index["embed"]`` the server embeds texts and
    queries itself and searches are hybrid (meaning and words); with it, the
    store sends its own vectors, which must have the server's dimension.
    Filtered searches keep ``limit`` results: the server applies equality
    filters inside its vector search. ``ttl`` is in minutes, as in LangGraph.

    Give ``target`` and ``api_key`` (and ``tls``), or clients you made:
    ``client`` for the sync methods and ``async_client`` for the async ones
    (without it, one is made per event loop).
    """

    supports_ttl = True

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        tls: bool = False,
        index: IndexConfig | None = None,
        ttl: TTLConfig | None = None,
        client: Client | None = None,
        async_client: AsyncClient | None = None,
    ) -> None:
        self._target = target
        self._api_key = api_key
        self._tls = tls
        self.index_config = index
        self.ttl_config = ttl
        embed = index.get("embed") if index else None
        self.embeddings = ensure_embeddings(embed) if embed is not None else None
        self._config = StoreConfig(
            fields=(index or {}).get("fields"), embeds=self.embeddings is not None
        )
        self._client = client
        self._owns_client = client is None
        self._async_clients = LoopClients(target, api_key=api_key, tls=tls, client=async_client)

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` with the blocking client; results in order."""
        if self._client is None:
            self._client = Client(self._target, api_key=self._api_key, tls=self._tls)
        return run_sync(run_ops(SyncCalls(self._client, self.embeddings), list(ops), self._config))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` with the asyncio client, independent calls concurrently."""
        calls = AsyncCalls(self._async_clients.get(), self.embeddings)
        return await run_ops(calls, list(ops), self._config)

    def close(self) -> None:
        """Close the blocking client if the store made it."""
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the asyncio client the store made for the running loop."""
        await self._async_clients.close()

    def __enter__(self) -> MemorydStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
