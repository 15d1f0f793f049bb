"""Filtered search keeps k on MemorydStore where LangGraph's PostgresStore comes back short.

Both stores hold the same 6,000 items and vectors (bench/langgraph_store.py's
data) on the session's PostgreSQL, PostgresStore in a database of its own,
analyzed as autovacuum would. Under a namespace holding 10% of the items,
PostgresStore's HNSW scan finds its ef_search candidates first and filters
them after, so it returns fewer than 10; memoryd's filtered search does not.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import datasets
from bench.langgraph_store import DIM, analyze, index_config, load, peer_store, peer_uri
from memoryd.integrations.langgraph import MemorydStore
from tests.conftest import ServerThread, TenantKeys

ROWS = 6_000
QUERIES = 10


def test_filtered_search_keeps_k_where_postgres_store_does_not(
    auth_server: ServerThread, tenant: TenantKeys, pg_uri: str
) -> None:
    data = datasets.clustered(ROWS, DIM, queries=QUERIES, seed=1)
    returned: dict[str, list[int]] = {"memoryd": [], "postgres": []}
    other = peer_uri(pg_uri)
    index: Any = index_config(data)
    with (
        MemorydStore(auth_server.addr, api_key=tenant.member, index=index) as ours,
        peer_store(other, data) as peer,
    ):
        load(ours, ROWS)
        load(peer, ROWS)
        analyze(other)
        for j in range(QUERIES):
            for name, store in (("memoryd", ours), ("postgres", peer)):
                hits = store.search(("docs", "g0"), query=f"query {j}", limit=10)
                assert all(h.namespace == ("docs", "g0") for h in hits)
                returned[name].append(len(hits))
        # The unfiltered search is complete on both: the difference is the filter.
        assert len(ours.search(("docs",), query="query 0", limit=10)) == 10
        assert len(peer.search(("docs",), query="query 0", limit=10)) == 10
    assert returned["memoryd"] == [10] * QUERIES
    assert statistics.mean(returned["postgres"]) < 8, returned["postgres"]
