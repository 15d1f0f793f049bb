"""``client.memories``: typed methods for every MemoryService RPC."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import field_mask_pb2

from memoryd._client import convert
from memoryd._client import types as t
from memoryd._client.transport import SyncTransport
from memoryd.v1 import memory_pb2 as pb

_SERVICE = "/memoryd.v1.MemoryService/"

# RPC name -> client method name; tests check it covers the whole service.
RPC_METHODS: dict[str, str] = {
    "CreateMemory": "create",
    "BatchCreateMemories": "batch_create",
    "GetMemory": "get",
    "UpdateMemory": "update",
    "SupersedeMemory": "supersede",
    "DeleteMemory": "delete",
    "ListMemories": "list",
    "SearchMemories": "search",
    "ListNamespaces": "list_namespaces",
    "GetMemoryHistory": "history",
    "GetMemoryAt": "at",
}

# The fields update() may replace, with how each is set on the proto.
_UPDATABLE = (
    "content",
    "subject",
    "embedding",
    "embedding_model",
    "memory_type",
    "importance",
    "confidence",
    "pinned",
    "tier",
    "status",
    "tags",
    "metadata",
    "related_to",
    "contradicts",
    "expire_time",
)


def _update_request(
    memory_id: str, changes: Mapping[str, Any], expected_version: int | None, reason: str
) -> pb.UpdateMemoryRequest:
    mem = pb.Memory(id=memory_id)
    paths = []
    for name in _UPDATABLE:
        value = changes.get(name)
        if value is None:
            continue
        paths.append(name)
        if name in ("memory_type", "tier", "status"):
            enum = {"memory_type": pb.MemoryType, "tier": pb.MemoryTier, "status": pb.MemoryStatus}
            setattr(mem, name, convert.enum_value(enum[name], value, f"memory.{name}"))
        elif name == "embedding":
            mem.embedding.extend(convert.floats(value))
        elif name in ("tags", "related_to", "contradicts"):
            getattr(mem, name).extend(convert.strings(value))
        elif name == "metadata":
            mem.metadata.update(dict(value))
        elif name == "expire_time":
            mem.expire_time.FromDatetime(convert.aware(value))
        else:
            setattr(mem, name, value)
    request = pb.UpdateMemoryRequest(
        memory=mem, update_mask=field_mask_pb2.FieldMask(paths=paths), reason=reason
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def _get_request(memory_id: str, namespace: Sequence[str] | None, key: str) -> pb.GetMemoryRequest:
    return pb.GetMemoryRequest(
        memory_id=memory_id, namespace=convert.strings(namespace or ()), key=key
    )


def _search_request(
    *,
    query_text: str,
    query_embedding: t.Embedding | None,
    filter: t.MemoryFilter | None,
    top_k: int,
    min_score: float,
    weights: t.RankingWeights | None,
) -> pb.SearchMemoriesRequest:
    return pb.SearchMemoriesRequest(
        filter=convert.memory_filter_pb(filter),
        query_embedding=convert.floats(query_embedding),
        query_text=query_text,
        top_k=top_k,
        min_score=min_score,
        weights=convert.weights_pb(weights),
    )


def _at_request(memory_id: str, time: datetime) -> pb.GetMemoryAtRequest:
    return pb.GetMemoryAtRequest(memory_id=memory_id, time=convert.timestamp(time))


def _memories_page(r: pb.ListMemoriesResponse) -> t.Page[t.Memory]:
    return t.Page(tuple(convert.memory(m) for m in r.memories), r.next_page_token)


def _namespaces_page(r: pb.ListNamespacesResponse) -> t.Page[tuple[str, ...]]:
    return t.Page(tuple(tuple(n.segments) for n in r.namespaces), r.next_page_token)


def _history_page(r: pb.GetMemoryHistoryResponse) -> t.Page[t.MemoryEvent]:
    return t.Page(tuple(convert.memory_event(e) for e in r.events), r.next_page_token)


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
            _SERVICE + "CreateMemory",
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
            _SERVICE + "BatchCreateMemories",
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
            _SERVICE + "GetMemory",
            _get_request(memory_id, namespace, key),
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
        }
        response = self._t.call(
            _SERVICE + "UpdateMemory",
            _update_request(memory_id, changes, expected_version, reason),
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
            _SERVICE + "SupersedeMemory",
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
            _SERVICE + "DeleteMemory",
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
            _SERVICE + "ListMemories",
            request,
            pb.ListMemoriesResponse,
            retryable=True,
            timeout=timeout,
        )
        return _memories_page(response)

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
        timeout: float | None = None,
    ) -> builtins.list[t.SearchResult]:
        """The best matches for a text, an embedding or both, best first."""
        request = _search_request(
            query_text=query_text,
            query_embedding=query_embedding,
            filter=filter,
            top_k=top_k,
            min_score=min_score,
            weights=weights,
        )
        response = self._t.call(
            _SERVICE + "SearchMemories",
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
            _SERVICE + "ListNamespaces",
            request,
            pb.ListNamespacesResponse,
            retryable=True,
            timeout=timeout,
        )
        return _namespaces_page(response)

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
            _SERVICE + "GetMemoryHistory",
            request,
            pb.GetMemoryHistoryResponse,
            retryable=True,
            timeout=timeout,
        )
        return _history_page(response)

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
            _SERVICE + "GetMemoryAt",
            _at_request(memory_id, time),
            pb.GetMemoryAtResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.memory(response.memory)
