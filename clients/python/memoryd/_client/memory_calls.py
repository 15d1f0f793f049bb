"""Requests and responses of MemoryService calls, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import field_mask_pb2

from memoryd._client import convert
from memoryd._client import types as t
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import search_pb2 as spb

SERVICE = "/memoryd.v1.MemoryService/"

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
UPDATABLE = (
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
    "occur_time",
)


def update_request(
    memory_id: str, changes: Mapping[str, Any], expected_version: int | None, reason: str
) -> pb.UpdateMemoryRequest:
    mem = pb.Memory(id=memory_id)
    paths = []
    for name in UPDATABLE:
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
        elif name in ("expire_time", "occur_time"):
            getattr(mem, name).FromDatetime(convert.aware(value))
        else:
            setattr(mem, name, value)
    request = pb.UpdateMemoryRequest(
        memory=mem, update_mask=field_mask_pb2.FieldMask(paths=paths), reason=reason
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def get_request(memory_id: str, namespace: Sequence[str] | None, key: str) -> pb.GetMemoryRequest:
    return pb.GetMemoryRequest(
        memory_id=memory_id, namespace=convert.strings(namespace or ()), key=key
    )


def search_request(
    *,
    query_text: str,
    query_embedding: t.Embedding | None,
    filter: t.MemoryFilter | None,
    top_k: int,
    min_score: float,
    weights: t.RankingWeights | None,
    mode: t.SearchMode | None = None,
    text_match: t.TextMatch | None = None,
    fusion: t.Fusion | None = None,
    embedding_model: str = "",
) -> pb.SearchMemoriesRequest:
    return pb.SearchMemoriesRequest(
        filter=convert.memory_filter_pb(filter),
        query_embedding=convert.floats(query_embedding),
        query_text=query_text,
        top_k=top_k,
        min_score=min_score,
        weights=convert.weights_pb(weights),
        **search_options(mode, text_match, fusion),
        embedding_model=embedding_model,
    )


def search_options(
    mode: t.SearchMode | None, text_match: t.TextMatch | None, fusion: t.Fusion | None
) -> dict[str, Any]:
    """The mode, text match and fusion fields of a search request (None: server default)."""
    return {
        "mode": convert.enum_value(spb.SearchMode, mode, "mode"),
        "text_match": convert.enum_value(spb.TextMatch, text_match, "text_match"),
        "fusion": convert.enum_value(spb.Fusion, fusion, "fusion"),
    }


def at_request(memory_id: str, time: datetime) -> pb.GetMemoryAtRequest:
    return pb.GetMemoryAtRequest(memory_id=memory_id, time=convert.timestamp(time))


def memories_page(r: pb.ListMemoriesResponse) -> t.Page[t.Memory]:
    return t.Page(tuple(convert.memory(m) for m in r.memories), r.next_page_token)


def namespaces_page(r: pb.ListNamespacesResponse) -> t.Page[tuple[str, ...]]:
    return t.Page(tuple(tuple(n.segments) for n in r.namespaces), r.next_page_token)


def history_page(r: pb.GetMemoryHistoryResponse) -> t.Page[t.MemoryEvent]:
    return t.Page(tuple(convert.memory_event(e) for e in r.events), r.next_page_token)
