"""SearchMemories quality on 20,000 clustered vectors: recall, full results, exact filters.

One module-scoped data set (bench/datasets.py, 384 dimensions) is loaded through
BatchCreateMemories into its own namespace; answers are checked against numpy's
exact search over the same rows, and the plans with EXPLAIN.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql

from bench import datasets
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd_server.database import APP_ROLE
from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.memories.filters import filter_condition
from memoryd_server.memories.models import MemoryFilter
from memoryd_server.memories.search import (
    EXACT_MAX_ROWS,
    search_settings,
    vector_condition,
    vector_distance,
)
from memoryd_server.tenancy import DEFAULT_TENANT

ROWS = 20_000
DIM = 384
QUERIES = 50
TOP_K = 10
BATCH = 2_000
MIN_RECALL = 0.95


def shard(i: int) -> str:
    """Row ``i``'s third namespace segment (7 shards, independent of user and tags)."""
    return f"s{i // 1000 % 7}"


@dataclass(frozen=True, repr=False)  # arrays of 20,000 rows: no repr in failures
class Loaded:
    """The data set as stored: row ``i`` is memory ``ids[i]`` in ``namespace + [shard(i)]``."""

    data: datasets.Dataset
    namespace: list[str]
    ids: list[str]

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Row index by memory id."""
        return {memory_id: i for i, memory_id in enumerate(self.ids)}

    @cached_property
    def attributes(self) -> list[tuple[str, frozenset[str], str]]:
        """Each row's (user_id, tags, shard), as generated."""
        return [(datasets.user_id(i), frozenset(datasets.tags(i)), shard(i)) for i in range(ROWS)]

    def mask(
        self,
        *,
        user_id: str = "",
        tags_any: Sequence[str] = (),
        tags_all: Sequence[str] = (),
        shard_of: str = "",
    ) -> npt.NDArray[np.bool_]:
        """Which rows a filter admits, computed from the generated attributes."""
        return np.array(
            [
                (not user_id or user == user_id)
                and (not tags_any or not tags.isdisjoint(tags_any))
                and tags.issuperset(tags_all)
                and (not shard_of or s == shard_of)
                for user, tags, s in self.attributes
            ],
            dtype=np.bool_,
        )


@pytest.fixture(scope="module")
def stub(grpc_create_channel) -> Iterator[memory_pb2_grpc.MemoryServiceStub]:
    with grpc_create_channel() as channel:
        yield memory_pb2_grpc.MemoryServiceStub(channel)


@pytest.fixture(scope="module")
def loaded(stub, pg_uri) -> Loaded:
    """20,000 memories loaded once for the module, in batches on two connections.

    Then ANALYZE, as autovacuum would soon: without statistics the planner
    takes a filter for rarer than it is and sorts its rows exactly, which would
    leave the HNSW path (and its iterative scan) untested.
    """
    data = datasets.clustered(ROWS, DIM, queries=QUERIES, seed=7)
    namespace = ["quality", uuid.uuid4().hex[:12]]

    def batch(start: int) -> list[str]:
        memories = [
            pb.Memory(
                namespace=[*namespace, shard(i)],
                content=f"memory {i}",
                embedding=data.vectors[i].tolist(),
                user_id=datasets.user_id(i),
                tags=datasets.tags(i),
            )
            for i in range(start, min(start + BATCH, ROWS))
        ]
        response = stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(memories=memories), timeout=120
        )
        return list(response.memory_ids)

    # HNSW inserts are CPU-bound in PostgreSQL; two loaders keep both cores busy.
    with ThreadPoolExecutor(max_workers=2) as pool:
        ids = [memory_id for part in pool.map(batch, range(0, ROWS, BATCH)) for memory_id in part]
    assert len(ids) == len(set(ids)) == ROWS
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute("ANALYZE memories")
    return Loaded(data=data, namespace=namespace, ids=ids)


def _search(stub, loaded: Loaded, query: np.ndarray, **filters: Any) -> list[int]:
    """Row indices of SearchMemories' results for ``query``, best first."""
    response = stub.SearchMemories(
        pb.SearchMemoriesRequest(
            query_embedding=query.tolist(),
            top_k=TOP_K,
            filter=pb.MemoryFilter(namespace_prefix=loaded.namespace, **filters),
        )
    )
    return [loaded.row_of[r.memory.id] for r in response.results]


CASES = {
    "unfiltered": {},
    "10% (tags_any)": {"tags_any": ["t3"]},
    "1% (user_id)": {"user_id": "u42"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_recall_and_full_results(stub, loaded, case):
    """Mean recall@10 against exact search is at least 0.95, and every answer has 10 results."""
    filters = CASES[case]
    mask = loaded.mask(**filters)
    assert mask.sum() >= TOP_K
    exact = datasets.brute_force_top_k(loaded.data.vectors, loaded.data.queries, TOP_K, mask)
    recalls = []
    for q, expected in zip(loaded.data.queries, exact, strict=True):
        found = _search(stub, loaded, q, **filters)
        assert len(found) == TOP_K, (case, len(found))
        assert mask[found].all(), "a result outside the filter"
        recalls.append(datasets.recall(found, expected.tolist()))
    assert np.mean(recalls) >= MIN_RECALL, (case, np.mean(recalls), min(recalls))


def test_small_filter_returns_every_match(stub, loaded):
    """A filter that admits fewer than top_k rows returns exactly those rows."""
    small = next(
        (user, phase, s)
        for user in ("u7", "u8", "u9")
        for phase in ("p0", "p1", "p2", "p3")
        for s in ("s0", "s1", "s2")
        if 0 < loaded.mask(user_id=user, tags_all=[phase], shard_of=s).sum() < TOP_K
    )
    user, phase, s = small
    mask = loaded.mask(user_id=user, tags_all=[phase], shard_of=s)
    response = stub.SearchMemories(
        pb.SearchMemoriesRequest(
            query_embedding=loaded.data.queries[0].tolist(),
            top_k=TOP_K,
            filter=pb.MemoryFilter(
                namespace_prefix=[*loaded.namespace, s], user_id=user, tags_all=[phase]
            ),
        )
    )
    assert {loaded.row_of[r.memory.id] for r in response.results} == set(
        np.flatnonzero(mask).tolist()
    )


LIST_CASES = {
    "user and any of two tags": {"user_id": "u7", "tags_any": ["p1", "p2"]},
    "all of two tags": {"tags_all": ["t3", "p0"]},
    "any and all": {"tags_any": ["t1", "t2"], "tags_all": ["p3"]},
    "shard and tag": {"shard_of": "s4", "tags_any": ["t9"]},
}


@pytest.mark.parametrize("case", list(LIST_CASES))
def test_list_filters_are_exact(stub, loaded, case):
    """ListMemories paged to the end returns exactly the rows the filter admits."""
    args = LIST_CASES[case]
    prefix = [*loaded.namespace, args["shard_of"]] if "shard_of" in args else loaded.namespace
    proto_filter = pb.MemoryFilter(
        namespace_prefix=prefix,
        user_id=args.get("user_id", ""),
        tags_any=args.get("tags_any", []),
        tags_all=args.get("tags_all", []),
    )
    seen: list[str] = []
    token = ""
    while True:
        page = stub.ListMemories(
            pb.ListMemoriesRequest(filter=proto_filter, page_size=400, page_token=token)
        )
        seen.extend(m.id for m in page.memories)
        token = page.next_page_token
        if not token:
            break
    expected = np.flatnonzero(loaded.mask(**args))
    assert len(seen) == len(set(seen)), "a memory listed twice"
    assert set(seen) == {loaded.ids[i] for i in expected}
    assert seen == sorted(seen, reverse=True), "not newest first"


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({}, id="unfiltered"),
        pytest.param({"tags_any": ["t3"]}, id="10%"),
        pytest.param({"user_id": "u42"}, id="1%"),
    ],
)
def test_plan_uses_hnsw_index(db, loaded, filters):
    """The search's index SQL (the server's own conditions) walks the model's HNSW index.

    The server runs it when more than EXACT_MAX_ROWS rows pass the filter (at
    100k rows, a 1% filter too); fewer are sorted exactly (the test below).

    Planned as the server plans it: as the request role, under row-level
    security, with the tenant declared and the server's transaction settings.
    ``loaded`` has run ANALYZE, so the planner knows how many rows the filter
    keeps: at 10% and 1% an exact sort of every matching row looks cheap to it,
    and the plan must still be the index's iterative scan.
    """
    register_vector(db)
    (model_id,) = db.execute("SELECT id FROM embedding_models WHERE name = ''").fetchone()
    space = ModelSpace(name="", dimension=DIM, provider="external", endpoint="")
    params: dict[str, Any] = {"q": loaded.data.queries[0]}
    where = filter_condition(
        DEFAULT_TENANT, MemoryFilter(namespace_prefix=loaded.namespace, **filters), params
    )
    query = sql.SQL(
        "EXPLAIN (FORMAT JSON) SELECT id FROM memories WHERE {} AND {} ORDER BY {} LIMIT 20"
    ).format(where, vector_condition(space), vector_distance(space))
    with db.transaction():
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(APP_ROLE)))
        db.execute("SELECT set_config('memoryd.tenant', %s, true)", (DEFAULT_TENANT,))
        for name, value in search_settings(20).items():
            db.execute("SELECT set_config(%s, %s, true)", (name, value))
        (plan,) = db.execute(query, params).fetchone()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    scans = [(node["Node Type"], node.get("Index Name")) for node in _nodes(plan[0]["Plan"])]
    assert ("Index Scan", f"memories_embedding_m{model_id}_idx") in scans, scans


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def test_a_filter_keeping_few_rows_is_searched_exactly(stub, loaded):
    """At most EXACT_MAX_ROWS rows pass a 1% filter here (200): the answer is the exact top 10."""
    filters = {"user_id": "u42"}
    mask = loaded.mask(**filters)
    assert TOP_K <= mask.sum() <= EXACT_MAX_ROWS
    exact = datasets.brute_force_top_k(loaded.data.vectors, loaded.data.queries, TOP_K, mask)
    for q, expected in zip(loaded.data.queries, exact, strict=True):
        assert _search(stub, loaded, q, **filters) == expected.tolist()
