"""One LangGraph batch as memoryd calls: reads first, then writes, each group concurrently.

Reads see the store as it was before the batch's writes (as InMemoryStore's
do); of several writes to one key the last wins and only it is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.store.base import (
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from memoryd._client import types as t
from memoryd._client.errors import AlreadyExists
from memoryd.integrations.langgraph import mapping
from memoryd.integrations.langgraph.calls import Calls

# memoryd's limits: SearchMemories' top_k, ListMemories' and ListNamespaces' page size,
# and the memories per BatchCreateMemories call (well under its 10,000 and its bytes limit).
MAX_TOP_K = 100
MAX_PAGE = 1000
BATCH_CREATE = 500


@dataclass(frozen=True)
class StoreConfig:
    """What the store was built with: the fields to index and whether it embeds itself."""

    fields: Sequence[str] | None
    embeds: bool


async def run_ops(calls: Calls, ops: Sequence[Op], config: StoreConfig) -> list[Result]:
    """The results of ``ops`` in order (None for puts)."""
    for op in ops:
        if not isinstance(op, GetOp | SearchOp | ListNamespacesOp | PutOp):
            raise TypeError(f"unknown store operation {type(op).__name__}")
    results: list[Result] = [None] * len(ops)
    reads: list[Any] = []
    read_at: list[int] = []
    puts: dict[tuple[tuple[str, ...], str], PutOp] = {}
    for i, op in enumerate(ops):
        if isinstance(op, GetOp):
            reads.append(_get(calls, op))
        elif isinstance(op, SearchOp):
            reads.append(_search(calls, op, config))
        elif isinstance(op, ListNamespacesOp):
            reads.append(_namespaces(calls, op))
        else:
            puts[(op.namespace, op.key)] = op
            continue
        read_at.append(i)
    for i, result in zip(read_at, await calls.gather(reads), strict=True):
        results[i] = result
    if puts:
        await _put_all(calls, list(puts.values()), config)
    return results


async def _get(calls: Calls, op: GetOp) -> Item | None:
    memory = await calls.get(op.namespace, op.key)
    if memory is None or mapping.is_expired(memory):
        return None
    if op.refresh_ttl:
        await _refresh(calls, [memory])
    return mapping.to_item(memory)


async def _refresh(calls: Calls, memories: Sequence[t.Memory]) -> None:
    """Push back the expiry of items put with a TTL (LangGraph's refresh on read)."""
    now = datetime.now(UTC)
    refreshes = [
        calls.expire_at(m.id, now + timedelta(minutes=ttl))
        for m in memories
        if (ttl := mapping.ttl_of(m)) is not None
    ]
    if refreshes:
        await calls.gather(refreshes)


def _filter(op: SearchOp) -> t.MemoryFilter:
    return t.MemoryFilter(
        namespace_prefix=op.namespace_prefix,
        tags_all=(mapping.TAG,),
        metadata=mapping.containment(op.filter),
    )


async def _search(calls: Calls, op: SearchOp, config: StoreConfig) -> list[SearchItem]:
    wanted = op.offset + op.limit
    if op.query:
        hits = await _ranked(calls, op, config, wanted)
    else:
        hits = await _listed(calls, op, wanted)
    page = hits[op.offset : wanted]
    if op.refresh_ttl:
        await _refresh(calls, [m for m, _ in page])
    return [mapping.to_search_item(m, score) for m, score in page]


async def _listed(calls: Calls, op: SearchOp, wanted: int) -> list[tuple[t.Memory, float | None]]:
    """Items without a query, most recently updated first, as PostgresStore orders them."""
    local = mapping.needs_local_check(op.filter)
    page_size = min(MAX_PAGE, max(wanted, 100) if local else max(wanted, 1))
    found: list[tuple[t.Memory, float | None]] = []
    token = ""
    while len(found) < wanted:
        page = await calls.list_memories(_filter(op), page_size, token)
        found.extend(
            (m, None)
            for m in page.items
            if not mapping.is_expired(m) and (not local or mapping.matches(m.metadata, op.filter))
        )
        token = page.next_page_token
        if not token:
            break
    return found


async def _ranked(
    calls: Calls, op: SearchOp, config: StoreConfig, wanted: int
) -> list[tuple[t.Memory, float | None]]:
    """Items ranked by the query: the server's filtered search keeps k under its filter.

    Operators other than equality and items put with index=False are sifted
    here; when that drops any, the search is asked again for memoryd's most.
    """
    assert op.query is not None
    request: dict[str, Any] = {"filter": _filter(op)}
    if config.embeds:
        request["query_embedding"] = await calls.embed_query(op.query)
        request["mode"] = "vector"
        request["weights"] = t.RankingWeights(similarity=1.0)
    else:
        request["query_text"] = op.query
    top_k = min(MAX_TOP_K, max(wanted, 1))
    if mapping.needs_local_check(op.filter):
        top_k = MAX_TOP_K
    while True:
        results = await calls.search(top_k=top_k, **request)
        kept: list[tuple[t.Memory, float | None]] = [
            (r.memory, r.similarity_score if config.embeds else r.score)
            for r in results
            if mapping.is_indexed(r.memory) and mapping.matches(r.memory.metadata, op.filter)
        ]
        if len(kept) == len(results) or len(results) < top_k or top_k == MAX_TOP_K:
            return kept
        top_k = MAX_TOP_K


async def _namespaces(calls: Calls, op: ListNamespacesOp) -> list[tuple[str, ...]]:
    wanted = op.offset + op.limit
    prefix = mapping.server_prefix(op)
    if mapping.server_does_all(op):
        found = await _all_namespaces(calls, prefix, op.max_depth or 0, wanted)
        return found[op.offset : wanted]
    # Wildcards and suffixes are matched here, on whole namespaces, before truncation.
    every = await _all_namespaces(calls, prefix, 0, None)
    kept = [ns for ns in every if mapping.namespace_matches(ns, op)]
    if op.max_depth is not None:
        kept = sorted({ns[: op.max_depth] for ns in kept})
    return kept[op.offset : wanted]


async def _all_namespaces(
    calls: Calls, prefix: tuple[str, ...], max_depth: int, wanted: int | None
) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    token = ""
    page_size = MAX_PAGE if wanted is None else min(MAX_PAGE, max(wanted, 1))
    while wanted is None or len(found) < wanted:
        page = await calls.namespaces(prefix, max_depth, page_size, token)
        found.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    return found


async def _put_all(calls: Calls, puts: list[PutOp], config: StoreConfig) -> None:
    deletes = [_delete(calls, op) for op in puts if op.value is None]
    writes = [op for op in puts if op.value is not None]
    memories: list[t.NewMemory] = []
    to_embed: list[int] = []
    for op in writes:
        assert op.value is not None
        indexed = op.index is not False
        fields = config.fields if op.index is None or op.index is False else op.index
        text = mapping.index_text(op.value, fields) if indexed else ""
        if not text:
            # Nothing at the indexed paths: LangGraph keeps such an item out of
            # semantic search; its content is then the whole value.
            indexed, text = False, mapping.index_text(op.value, None)
        if indexed and config.embeds:
            to_embed.append(len(memories))
        memories.append(
            t.NewMemory(
                content=text,
                namespace=op.namespace,
                key=op.key,
                metadata=op.value,
                tags=mapping.memory_tags(indexed=indexed, ttl_minutes=op.ttl),
            )
        )
    if to_embed:
        vectors = await calls.embed_documents([memories[i].content for i in to_embed])
        for i, vector in zip(to_embed, vectors, strict=True):
            memories[i] = replace(memories[i], embedding=vector)
    if deletes:
        await calls.gather(deletes)
    pairs = list(zip(memories, writes, strict=True))
    if len(pairs) == 1:
        await _upsert(calls, pairs)
        return
    chunks = [pairs[i : i + BATCH_CREATE] for i in range(0, len(pairs), BATCH_CREATE)]
    await calls.gather([_create_chunk(calls, chunk) for chunk in chunks])


async def _create_chunk(calls: Calls, chunk: list[tuple[t.NewMemory, PutOp]]) -> None:
    """New keys, the common case of a bulk put, in one call (all or nothing)."""
    now = datetime.now(UTC)
    try:
        await calls.create_all(
            [
                m if op.ttl is None else replace(m, expire_time=now + _minutes(op.ttl))
                for m, op in chunk
            ]
        )
    except AlreadyExists:
        await _upsert(calls, chunk)  # some keys are taken: upsert one by one


async def _upsert(calls: Calls, pairs: list[tuple[t.NewMemory, PutOp]]) -> None:
    await calls.gather(
        [calls.put(m, None if op.ttl is None else _minutes(op.ttl)) for m, op in pairs]
    )


def _minutes(ttl: float) -> timedelta:
    return timedelta(minutes=ttl)


async def _delete(calls: Calls, op: PutOp) -> None:
    """Archive the item: memoryd keeps its history, and its key is free again."""
    memory = await calls.get(op.namespace, op.key)
    if memory is not None:
        await calls.archive(memory.id)
