"""``client.memories``: typed methods for every MemoryService RPC."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from memoryd._client import convert
from memoryd._client import types as t
from memoryd._client.memory_calls import (
    SERVICE,
    at_request,
    get_request,
    history_page,
    memories_page,
    namespaces_page,
    search_request,
    update_request,
)
from memoryd._client.transport import SyncTransport
from memoryd.v1 import memory_pb2 as pb


class Memories:
    """Long-term memories, on a synchronous channel."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self,
        memory: t.NewMemory,
        *,
        ttl: timedelta | None = None,
        upsert: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> t.CreateMemoryResult:
        """Create a memory (with ``upsert``, replace the one holding its key); retried safely."""
        request = pb.CreateMemoryRequest(
            memory=convert.memory_pb(memory),
            ttl=convert.duration(ttl),
            upsert=upsert,
            request_id=request_id or str(uuid.uuid4()),
        )
        response = self._t.call(
            SERVICE + "CreateMemory",
            request,
            pb.CreateMemoryResponse,
            retryable=True,
            timeout=timeout,
        )
        return t.CreateMemoryResult(convert.memory(response.memory), response.updated)

    def batch_create(
        self,
        memories: Sequence[t.NewMemory],
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> builtins.list[str]:
        """Create up to 10,000 memories, all or nothing; returns their ids in order."""
        request = pb.BatchCreateMemoriesRequest(
            memories=[convert.memory_pb(m, f"memories[{i}]") for i, m in enumerate(memories)],
            request_id=request_id or str(uuid.uuid4()),
        )
        response = self._t.call(
            SERVICE + "BatchCreateMemories",
            request,
            pb.BatchCreateMemoriesResponse,
            retryable=True,
            timeout=timeout,
        )
        return list(response.memory_ids)

    def get(
        self,
        memory_id: str = "",
        *,
        namespace: Sequence[str] | None = None,
        key: str = "",
        timeout: float | None = None,
    ) -> t.Memory:
        """Get a memory by id, or by ``namespace`` and ``key``; NotFound if there is none."""
        response = self._t.call(
            SERVICE + "GetMemory",
            get_request(memory_id, namespace, key),
            pb.GetMemoryResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.memory(response.memory)

    def update(
        self,
        memory_id: str,
        *,
        content: str | None = None,
        subject: str | None = None,
        embedding: t.Embedding | None = None,
        embedding_model: str | None = None,
        memory_type: t.MemoryType | None = None,
        importance: int | None = None,
        confidence: float | None = None,
        pinned: bool | None = None,
        tier: t.MemoryTier | None = None,
        status: t.MemoryStatus | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        related_to: Sequence[str] | None = None,
        contradicts: Sequence[str] | None = None,
        expire_time: datetime | None = None,
        occur_time: datetime | None = None,
        expected_version: int | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> t.Memory:
        """Replace the fields given (None: unchanged); not retried."""
        changes = {
            "content": content,
            "subject": subject,
            "embedding": embedding,
            "embedding_model": embedding_model,
            "memory_type": memory_type,
            "importance": importance,
            "confidence": confidence,
            "pinned": pinned,
            "tier": tier,
            "status": status,
            "tags": tags,
            "metadata": metadata,
            "related_to": related_to,
            "contradicts": contradicts,
            "expire_time": expire_time,
            "occur_time": occur_time,
        }
        response = self._t.call(
            SERVICE + "UpdateMemory",
            update_request(memory_id, changes, expected_version, reason),
            pb.UpdateMemoryResponse,
            retryable=False,
            timeout=timeout,
        )
        return convert.memory(response.memory)

    def supersede(
        self,
        memory_id: str,
        replacement: t.NewMemory,
        *,
        expected_version: int | None = None,
        reason: str = "",
        timeout: float | None = None,
    ) -> t.SupersedeResult:
        """Replace a memory with a new one; the old becomes superseded. Not retried."""
        request = pb.SupersedeMemoryRequest(
            memory_id=memory_id, memory=convert.memory_pb(replacement), reason=reason
        )
        if expected_version is not None:
            request.expected_version = expected_version
        response = self._t.call(
            SERVICE + "SupersedeMemory",
            request,
            pb.SupersedeMemoryResponse,
            retryable=False,
            timeout=timeout,
        )
        return t.SupersedeResult(
            convert.memory(response.superseded), convert.memory(response.memory)
        )

    def delete(
        self,
        memory_id: str,
        *,
        purge: bool = False,
        reason: str = "",
        timeout: float | None = None,
    ) -> t.Memory | None:
        """Archive a memory (returned), or with ``purge`` remove it for good (None)."""
        response = self._t.call(
            SERVICE + "DeleteMemory",
            pb.DeleteMemoryRequest(memory_id=memory_id, purge=purge, reason=reason),
            pb.DeleteMemoryResponse,
            retryable=False,
            timeout=timeout,
        )
        return convert.optional_memory(response, "memory")

    def list(
        self,
        *,
        filter: t.MemoryFilter | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[t.Memory]:
        """One page of memories matching ``filter``, newest first."""
        request = pb.ListMemoriesRequest(
            filter=convert.memory_filter_pb(filter), page_size=page_size, page_token=page_token
        )
        response = self._t.call(
            SERVICE + "ListMemories",
            request,
            pb.ListMemoriesResponse,
            retryable=True,
            timeout=timeout,
        )
        return memories_page(response)

    def iter(
        self,
        *,
        filter: t.MemoryFilter | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[t.Memory]:
        """Every memory matching ``filter``, fetching pages as needed."""
        token = ""
        while True:
            page = self.list(filter=filter, page_size=page_size, page_token=token, timeout=timeout)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def search(
        self,
        *,
        query_text: str = "",
        query_embedding: t.Embedding | None = None,
        filter: t.MemoryFilter | None = None,
        top_k: int = 0,
        min_score: float = 0.0,
        weights: t.RankingWeights | None = None,
        mode: t.SearchMode | None = None,
        text_match: t.TextMatch | None = None,
        fusion: t.Fusion | None = None,
        embedding_model: str = "",
        timeout: float | None = None,
    ) -> builtins.list[t.SearchResult]:
        """The best matches for a text, an embedding or both, best first.

        With the server's embedder on, ``query_text`` alone searches by meaning
        and words (hybrid); ``mode`` picks ``"vector"``, ``"text"`` or
        ``"hybrid"``, ``text_match`` ``"any"`` (natural language) or
        ``"websearch"`` (every word), ``fusion`` ``"rrf"`` or ``"weighted"``.
        """
        request = search_request(
            query_text=query_text,
            query_embedding=query_embedding,
            filter=filter,
            top_k=top_k,
            min_score=min_score,
            weights=weights,
            mode=mode,
            text_match=text_match,
            fusion=fusion,
            embedding_model=embedding_model,
        )
        response = self._t.call(
            SERVICE + "SearchMemories",
            request,
            pb.SearchMemoriesResponse,
            retryable=True,
            timeout=timeout,
        )
        return [convert.search_result(r) for r in response.results]

    def list_namespaces(
        self,
        *,
        prefix: Sequence[str] = (),
        max_depth: int = 0,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[tuple[str, ...]]:
        """One page of distinct namespaces (tuples of segments) under ``prefix``."""
        request = pb.ListNamespacesRequest(
            prefix=convert.strings(prefix),
            max_depth=max_depth,
            page_size=page_size,
            page_token=page_token,
        )
        response = self._t.call(
            SERVICE + "ListNamespaces",
            request,
            pb.ListNamespacesResponse,
            retryable=True,
            timeout=timeout,
        )
        return namespaces_page(response)

    def iter_namespaces(
        self,
        *,
        prefix: Sequence[str] = (),
        max_depth: int = 0,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[tuple[str, ...]]:
        """Every namespace under ``prefix``, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_namespaces(
                prefix=prefix,
                max_depth=max_depth,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def history(
        self,
        memory_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[t.MemoryEvent]:
        """One page of a memory's history events, oldest first."""
        request = pb.GetMemoryHistoryRequest(
            memory_id=memory_id, page_size=page_size, page_token=page_token
        )
        response = self._t.call(
            SERVICE + "GetMemoryHistory",
            request,
            pb.GetMemoryHistoryResponse,
            retryable=True,
            timeout=timeout,
        )
        return history_page(response)

    def iter_history(
        self,
        memory_id: str,
        *,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[t.MemoryEvent]:
        """Every history event of a memory, fetching pages as needed."""
        token = ""
        while True:
            page = self.history(memory_id, page_size=page_size, page_token=token, timeout=timeout)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def at(self, memory_id: str, time: datetime, *, timeout: float | None = None) -> t.Memory:
        """The memory as it was at ``time``, rebuilt from its history."""
        response = self._t.call(
            SERVICE + "GetMemoryAt",
            at_request(memory_id, time),
            pb.GetMemoryAtResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.memory(response.memory)
