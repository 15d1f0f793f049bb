"""MemoryService: validate requests, call the store, map records to protos."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc.aio
from psycopg_pool import AsyncConnectionPool

from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc as pb_grpc
from memoryd_server import quotas, tenancy
from memoryd_server.config import Settings
from memoryd_server.embeddings.service import Embeddings
from memoryd_server.errors import InvalidArgument, NotFound
from memoryd_server.ids import parse_uuid
from memoryd_server.memories import batch, convert, history, listing, search, store, vectors
from memoryd_server.memories.access import AccessRecorder
from memoryd_server.memories.models import UPDATABLE_FIELDS, NewMemory
from memoryd_server.pagination import PageTokens, invalid_token, page_size
from memoryd_server.protoconv import (
    request_hash,
    struct_to_dict,
    timestamp,
    to_datetime,
    to_timedelta,
)
from memoryd_server.search_query import MODES_PB, resolve_query
from memoryd_server.validation import check_chars

Context = grpc.aio.ServicerContext[Any, Any]

MAX_BATCH = 10_000


class MemoryServicer(pb_grpc.MemoryServiceServicer):
    """The proto boundary of MemoryService."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings, tokens: PageTokens,
                 access: AccessRecorder, embeddings: Embeddings) -> None:  # fmt: skip
        self._pool = pool
        self._embeddings = embeddings
        self._max_bytes = settings.max_content_bytes
        self._tokens = tokens
        self._access = access

    def _memory_id(self, field: str, value: str) -> uuid.UUID:
        return parse_uuid(field, value)

    def _new_memory(self, field: str, m: pb.Memory, **options: Any) -> NewMemory:
        """``m`` validated, its content within the tenant's limit too."""
        quotas.check_content(f"{field}.content", m.content, self._max_bytes)
        return convert.new_memory(field, m, max_bytes=self._max_bytes, **options)

    async def _vectors(self, tenant_id: str, fields: list[str],
                       news: list[NewMemory]) -> list[NewMemory]:  # fmt: skip
        """``news`` with their vectors checked against their model, or made by the server."""
        return await vectors.complete(self._embeddings, tenant_id, fields, news)

    async def CreateMemory(self, request: pb.CreateMemoryRequest,
                           context: Context) -> pb.CreateMemoryResponse:  # fmt: skip
        ttl = None
        if request.HasField("ttl"):
            ttl = to_timedelta("ttl", request.ttl)
            if ttl <= dt.timedelta(0):
                raise InvalidArgument("ttl", "must be positive")
        new = self._new_memory("memory", request.memory, ttl=ttl)
        if request.upsert and not new.key:
            raise InvalidArgument("memory.key", "is required with upsert")
        tenant = tenancy.tenant_of(context)
        (new,) = await self._vectors(tenant, ["memory"], [new])
        memory, updated = await store.create_memory(
            self._pool, tenant_id=tenant, actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            new=new, upsert=request.upsert,
            request_id=check_chars("request_id", request.request_id, 128),
            request_hash=request_hash(request), max_memories=quotas.current().max_memories,
        )  # fmt: skip
        return pb.CreateMemoryResponse(memory=convert.memory_to_pb(memory), updated=updated)

    async def BatchCreateMemories(self, request: pb.BatchCreateMemoriesRequest,
                                  context: Context) -> pb.BatchCreateMemoriesResponse:  # fmt: skip
        if not request.memories:
            raise InvalidArgument("memories", "must hold at least one memory")
        if len(request.memories) > MAX_BATCH:
            raise InvalidArgument("memories", f"must hold at most {MAX_BATCH}")
        fields = [f"memories[{i}]" for i in range(len(request.memories))]
        news = [self._new_memory(f, m) for f, m in zip(fields, request.memories, strict=True)]
        tenant = tenancy.tenant_of(context)
        news = await self._vectors(tenant, fields, news)
        ids = await batch.batch_create_memories(
            self._pool, tenant_id=tenant, actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            memories=news, request_id=check_chars("request_id", request.request_id, 128),
            request_hash=request_hash(request), max_memories=quotas.current().max_memories,
        )  # fmt: skip
        return pb.BatchCreateMemoriesResponse(memory_ids=[str(i) for i in ids])

    async def GetMemory(self, request: pb.GetMemoryRequest,
                        context: Context) -> pb.GetMemoryResponse:  # fmt: skip
        tenant = tenancy.tenant_of(context)
        by_key = bool(request.namespace or request.key)
        if request.memory_id and by_key:
            raise InvalidArgument("memory_id", "give memory_id or namespace and key, not both")
        if by_key:
            if not request.key:
                raise InvalidArgument("key", "is required with namespace")
            memory = await store.get_memory_by_key(
                self._pool, tenant_id=tenant,
                namespace=convert.namespace("namespace", request.namespace),
                key=check_chars("key", request.key, 256),
            )  # fmt: skip
        else:
            memory = await store.get_memory(
                self._pool, tenant_id=tenant,
                memory_id=self._memory_id("memory_id", request.memory_id),
            )  # fmt: skip
        return pb.GetMemoryResponse(memory=convert.memory_to_pb(memory))

    def _change(self, path: str, m: pb.Memory) -> Any:  # noqa: PLR0911, PLR0912 - one branch per field
        """The validated new value of one updatable field."""
        field = f"memory.{path}"
        if path == "content":
            content = quotas.check_content(field, m.content, self._max_bytes)
            return convert.content(field, content, self._max_bytes)
        if path == "embedding":
            return convert.embedding(field, m.embedding, None)
        if path == "occur_time":
            return to_datetime(field, m.occur_time) if m.HasField("occur_time") else None
        if path == "importance":
            return convert.importance(field, m.importance, default=None)
        if path == "confidence":
            return convert.confidence(field, m.confidence)
        if path == "memory_type":
            return convert.enum_value(field, m.memory_type, convert.TYPES,
                                      pb.MemoryType.DESCRIPTOR, None)  # fmt: skip
        if path == "tier":
            return convert.enum_value(field, m.tier, convert.TIERS, pb.MemoryTier.DESCRIPTOR, None)
        if path == "status":
            status = convert.enum_value(field, m.status, convert.STATUSES,
                                        pb.MemoryStatus.DESCRIPTOR, None)  # fmt: skip
            if status == "superseded":
                raise InvalidArgument(field, "use SupersedeMemory to supersede a memory")
            return status
        if path == "tags":
            return convert.tags(field, m.tags)
        if path in {"related_to", "contradicts"}:
            return convert.links(field, getattr(m, path))
        if path == "metadata":
            return struct_to_dict(field, m.metadata, self._max_bytes)
        if path == "expire_time":
            return to_datetime(field, m.expire_time) if m.HasField("expire_time") else None
        if path == "pinned":
            return m.pinned
        limit = 1024 if path == "subject" else 256  # subject, embedding_model
        return check_chars(field, getattr(m, path), limit)

    async def UpdateMemory(self, request: pb.UpdateMemoryRequest,
                           context: Context) -> pb.UpdateMemoryResponse:  # fmt: skip
        memory_id = self._memory_id("memory.id", request.memory.id)
        paths = list(dict.fromkeys(request.update_mask.paths))
        if not paths:
            raise InvalidArgument("update_mask", "must name at least one field")
        for path in paths:
            if path not in UPDATABLE_FIELDS:
                raise InvalidArgument(
                    "update_mask", f"{path!r} is not an updatable field; use one of "
                    + ", ".join(sorted(UPDATABLE_FIELDS)))  # fmt: skip
        changes = {path: self._change(path, request.memory) for path in paths}
        tenant = tenancy.tenant_of(context)
        changes = await vectors.complete_update(self._embeddings, tenant, changes)
        expected = request.expected_version if request.HasField("expected_version") else None
        memory = await store.update_memory(
            self._pool, tenant_id=tenant, actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            memory_id=memory_id, changes=changes, expected_version=expected,
            reason=check_chars("reason", request.reason, 1024),
        )  # fmt: skip
        return pb.UpdateMemoryResponse(memory=convert.memory_to_pb(memory))

    async def SupersedeMemory(self, request: pb.SupersedeMemoryRequest,
                              context: Context) -> pb.SupersedeMemoryResponse:  # fmt: skip
        memory_id = self._memory_id("memory_id", request.memory_id)
        new = self._new_memory("memory", request.memory, namespace_default=True)
        tenant = tenancy.tenant_of(context)
        (new,) = await self._vectors(tenant, ["memory"], [new])
        expected = request.expected_version if request.HasField("expected_version") else None
        old, created = await store.supersede_memory(
            self._pool, tenant_id=tenant, actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            memory_id=memory_id, new=new, expected_version=expected,
            reason=check_chars("reason", request.reason, 1024),
            max_memories=quotas.current().max_memories,
        )  # fmt: skip
        return pb.SupersedeMemoryResponse(
            superseded=convert.memory_to_pb(old), memory=convert.memory_to_pb(created)
        )

    async def DeleteMemory(self, request: pb.DeleteMemoryRequest,
                           context: Context) -> pb.DeleteMemoryResponse:  # fmt: skip
        archived = await store.delete_memory(
            self._pool, tenant_id=tenancy.tenant_of(context), actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            memory_id=self._memory_id("memory_id", request.memory_id), purge=request.purge,
            reason=check_chars("reason", request.reason, 1024),
        )  # fmt: skip
        if archived is None:
            return pb.DeleteMemoryResponse()
        return pb.DeleteMemoryResponse(memory=convert.memory_to_pb(archived))

    async def ListMemories(self, request: pb.ListMemoriesRequest,
                           context: Context) -> pb.ListMemoriesResponse:  # fmt: skip
        tenant = tenancy.tenant_of(context)
        filter_ = convert.memory_filter("filter", request.filter, max_bytes=self._max_bytes)
        limit = page_size(request.page_size)
        query = {"tenant": tenant, **vars(filter_)}
        position = self._tokens.decode(request.page_token, "memories", query)
        before = None
        if position is not None:
            before = _token_uuid(position)
        rows = await listing.list_memories(self._pool, tenant_id=tenant, filter=filter_,
                                         limit=limit + 1, before_id=before)  # fmt: skip
        rows, token = self._tokens.next_page(rows, limit, "memories", query, lambda m: [str(m.id)])
        return pb.ListMemoriesResponse(
            memories=[convert.memory_to_pb(m) for m in rows], next_page_token=token
        )

    async def SearchMemories(self, request: pb.SearchMemoriesRequest,
                             context: Context) -> pb.SearchMemoriesResponse:  # fmt: skip
        tenant = tenancy.tenant_of(context)
        filter_ = convert.memory_filter("filter", request.filter, max_bytes=self._max_bytes)
        if not 0 <= request.top_k <= search.MAX_TOP_K:
            raise InvalidArgument("top_k", f"must be 1 to {search.MAX_TOP_K}")
        weights = _weights(request.weights)
        query = await resolve_query(
            self._embeddings, tenant, query_text=request.query_text,
            query_embedding=request.query_embedding, embedding_model=request.embedding_model,
            mode=request.mode, text_match=request.text_match, fusion=request.fusion,
        )  # fmt: skip
        results = await search.search_memories(
            self._pool, tenant_id=tenant, filter=filter_, query=query,
            top_k=request.top_k or search.DEFAULT_TOP_K, weights=weights,
            min_score=request.min_score,
        )  # fmt: skip
        self._access.note(tenant, [r.memory.id for r in results])
        return pb.SearchMemoriesResponse(results=[
            pb.SearchResult(
                memory=convert.memory_to_pb(r.memory), score=r.score.score,
                similarity_score=r.score.similarity, text_score=r.score.text,
                recency_score=r.score.recency, importance_score=r.score.importance,
                fusion_score=r.score.fusion, vector_rank=r.vector_rank, text_rank=r.text_rank,
            ) for r in results
        ], mode=MODES_PB[query.mode], embedding_model=query.model_name)  # fmt: skip

    async def ListNamespaces(self, request: pb.ListNamespacesRequest,
                             context: Context) -> pb.ListNamespacesResponse:  # fmt: skip
        tenant = tenancy.tenant_of(context)
        prefix = convert.namespace("prefix", request.prefix, allow_empty=True)
        if not 0 <= request.max_depth <= convert.MAX_NAMESPACE_DEPTH:
            raise InvalidArgument("max_depth", f"must be 0 to {convert.MAX_NAMESPACE_DEPTH}")
        limit = page_size(request.page_size, default=100)
        query = {"tenant": tenant, "prefix": prefix, "depth": request.max_depth}
        position = self._tokens.decode(request.page_token, "namespaces", query)
        if position is not None and not all(isinstance(s, str) for s in position):
            raise invalid_token()
        rows = await listing.list_namespaces(
            self._pool, tenant_id=tenant, prefix=prefix, max_depth=request.max_depth,
            limit=limit + 1, after=position,
        )  # fmt: skip
        rows, token = self._tokens.next_page(rows, limit, "namespaces", query, lambda ns: ns)
        return pb.ListNamespacesResponse(
            namespaces=[pb.Namespace(segments=ns) for ns in rows], next_page_token=token
        )

    async def GetMemoryHistory(self, request: pb.GetMemoryHistoryRequest,
                               context: Context) -> pb.GetMemoryHistoryResponse:  # fmt: skip
        tenant = tenancy.tenant_of(context)
        memory_id = self._memory_id("memory_id", request.memory_id)
        limit = page_size(request.page_size, default=100)
        query = {"tenant": tenant, "memory": str(memory_id)}
        position = self._tokens.decode(request.page_token, "history", query)
        after = 0
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], int):
                raise invalid_token()
            after = position[0]
        events = await history.list_events(self._pool, tenant_id=tenant, memory_id=memory_id,
                                           after_version=after, limit=limit + 1)  # fmt: skip
        if not events and after == 0:
            raise NotFound(f"memory {str(memory_id)!r} does not exist")
        events, token = self._tokens.next_page(
            events, limit, "history", query, lambda e: [e.version]
        )
        return pb.GetMemoryHistoryResponse(events=[
            pb.MemoryEvent(
                seq=e.version, memory_id=str(e.memory_id), event_type=convert.EVENTS[e.event_type],
                actor=e.actor, actor_name=e.actor_name, reason=e.reason,
                event_time=timestamp(e.event_time),
                before=convert.memory_to_pb(e.before) if e.before else None,
                after=convert.memory_to_pb(e.after) if e.after else None,
            ) for e in events
        ], next_page_token=token)  # fmt: skip

    async def GetMemoryAt(self, request: pb.GetMemoryAtRequest,
                          context: Context) -> pb.GetMemoryAtResponse:  # fmt: skip
        memory_id = self._memory_id("memory_id", request.memory_id)
        if not request.HasField("time"):
            raise InvalidArgument("time", "is required")
        at = to_datetime("time", request.time)
        event, state = await history.state_at(
            self._pool, tenant_id=tenancy.tenant_of(context), memory_id=memory_id, at=at
        )
        if event is None:
            raise NotFound(f"memory {str(memory_id)!r} did not exist at {at.isoformat()}")
        if state is None:
            raise NotFound(f"memory {str(memory_id)!r} was purged")
        return pb.GetMemoryAtResponse(memory=convert.memory_to_pb(state))


def _token_uuid(position: list[Any]) -> uuid.UUID:
    try:
        (value,) = position
        return uuid.UUID(str(value))
    except ValueError:
        raise invalid_token() from None


def _weights(w: pb.RankingWeights) -> search.Weights:
    values = {"similarity": w.similarity, "text": w.text, "recency": w.recency,
              "importance": w.importance}  # fmt: skip
    for name, value in values.items():
        if not (value >= 0 and value < float("inf")):
            raise InvalidArgument(f"weights.{name}", "must be a finite number >= 0")
    half_life = search.DEFAULT_HALF_LIFE
    if w.HasField("recency_half_life"):
        half_life = to_timedelta("weights.recency_half_life", w.recency_half_life)
        if half_life <= dt.timedelta(0):
            raise InvalidArgument("weights.recency_half_life", "must be positive")
    return search.Weights(half_life=half_life, **values)
