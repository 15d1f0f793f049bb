"""MemorydStore vs LangGraph's PostgresStore: search latency and results kept under filters.

Usage: python -m bench.langgraph_store [--rows 20000] [--queries 100]

Starts its own embedded PostgreSQL and an in-process memoryd (embedder none,
384 dimensions), and runs langgraph-checkpoint-postgres's PostgresStore on a
second database of the same PostgreSQL. Both stores get the same items
through their own ``batch`` (namespace ("docs", "g<i % 10>"), value
{"text", "group"}) and the same vectors (bench/datasets.py's clusters, looked
up by text, so neither store computes anything). Then, per query and
interleaved, both search with limit 10 (and so does the typed client, with
the request MemorydStore sends, to show the adapter's own cost): unfiltered, under a 10% namespace
prefix and under a 10% value filter ({"group": 0}), after VACUUM ANALYZE of
both databases. Reports p50/p95 latency,
the memoryd/PostgresStore p50 ratio, how many of 10 each returned and
recall@10 against numpy's exact search within the filter.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, PutOp
from langgraph.store.postgres import PostgresStore

import memoryd
from bench import datasets
from memoryd.integrations.langgraph import MemorydStore
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.telemetry import configure_logging

GROUPS = 10
DIM = 384


class LookupEmbeddings(Embeddings):
    """The dataset's vectors by text: "item <i>" is row i, "query <j>" is query j."""

    def __init__(self, data: datasets.Dataset) -> None:
        self._data = data

    def _vector(self, text: str) -> list[float]:
        kind, _, number = text.partition(" ")
        rows = self._data.vectors if kind == "item" else self._data.queries
        return [float(x) for x in rows[int(number)]]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def index_config(data: datasets.Dataset) -> Any:
    """The same index for both stores: the looked-up vectors of the ``text`` field."""
    return {"dims": DIM, "embed": LookupEmbeddings(data), "fields": ["text"]}


def puts(n: int) -> list[PutOp]:
    """Item i in group i % 10: each group is 10% of the items."""
    return [
        PutOp(("docs", f"g{i % GROUPS}"), f"item-{i}", {"text": f"item {i}", "group": i % GROUPS})
        for i in range(n)
    ]


def load(store: BaseStore, n: int, chunk: int = 500) -> float:
    """Put the items through the store's own batch; the seconds it took."""
    ops = puts(n)
    started = time.perf_counter()
    for start in range(0, n, chunk):
        store.batch(ops[start : start + chunk])
    return time.perf_counter() - started


def peer_uri(admin_uri: str) -> str:
    """A fresh database of the same server, for PostgresStore."""
    name = f"lg_peer_{time.monotonic_ns()}"
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_uri.replace("/postgres?", f"/{name}?")


@contextmanager
def peer_store(uri: str, data: datasets.Dataset) -> Iterator[PostgresStore]:
    """A set-up PostgresStore on ``uri``."""
    with PostgresStore.from_conn_string(uri, index=index_config(data)) as store:
        store.setup()
        yield store


def analyze(*uris: str) -> None:
    """What autovacuum does soon after a load, done now rather than mid-measurement."""
    for uri in uris:
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")


class RawClient:
    """The typed client's SearchMemories with what MemorydStore would send: its overhead's floor."""

    def __init__(self, client: memoryd.Client, data: datasets.Dataset) -> None:
        self._client = client
        self._embed = LookupEmbeddings(data)

    def search(
        self, prefix: tuple[str, ...], *, query: str, filter: dict[str, Any] | None, limit: int
    ) -> list[Any]:
        hits = self._client.memories.search(
            query_embedding=self._embed.embed_query(query),
            filter=memoryd.MemoryFilter(
                namespace_prefix=prefix, tags_all=("langgraph",), metadata=filter
            ),
            top_k=limit,
            mode="vector",
            weights=memoryd.RankingWeights(similarity=1.0),
        )
        return [_Hit(hit.memory.key) for hit in hits]


@dataclass(frozen=True)
class _Hit:
    key: str


# (label, namespace prefix, value filter, which rows match)
Scenario = tuple[str, tuple[str, ...], dict[str, Any] | None, Callable[[int], bool]]
SCENARIOS: list[Scenario] = [
    ("unfiltered", ("docs",), None, lambda i: True),
    ("10% namespace", ("docs", "g0"), None, lambda i: i % GROUPS == 0),
    ("10% value filter", ("docs",), {"group": 0}, lambda i: i % GROUPS == 0),
]


@dataclass
class Sample:
    """One store's searches of one scenario."""

    seconds: list[float] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)


def exact(data: datasets.Dataset, j: int, matches: Callable[[int], bool]) -> list[int]:
    scores = data.vectors @ data.queries[j]
    rows = [i for i in np.argsort(-scores) if matches(int(i))][:10]
    return [int(i) for i in rows]


def search(
    stores: dict[str, Any], data: datasets.Dataset, queries: int
) -> dict[str, dict[str, Sample]]:
    """Every scenario's queries on every store, interleaved per query, in rotating order."""
    results = {label: {name: Sample() for name in stores} for label, *_ in SCENARIOS}
    for label, prefix, value_filter, matches in SCENARIOS:
        for j in range(queries):
            truth = set(exact(data, j, matches))
            # Each query's first search warms the pages it reads: rotate who goes first.
            names = list(stores)
            for name in names[j % len(names) :] + names[: j % len(names)]:
                store = stores[name]
                started = time.perf_counter()
                hits = store.search(prefix, query=f"query {j}", filter=value_filter, limit=10)
                sample = results[label][name]
                sample.seconds.append(time.perf_counter() - started)
                sample.returned.append(len(hits))
                found = {int(h.key.removeprefix("item-")) for h in hits}
                sample.recall.append(len(found & truth) / max(1, len(truth)))
    return results


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def report(args: argparse.Namespace, loads: dict[str, float], results: Any) -> None:
    print(f"\n{args.rows} items x {DIM}, {args.queries} queries per scenario, limit 10")
    for name, seconds in loads.items():
        print(f"load {name}: {seconds:.1f} s ({args.rows / seconds:.0f} items/s)")
    print(
        f"\n{'scenario':<18} {'store':<14} {'p50 ms':>7} {'p95 ms':>7}"
        f" {'returned/10':>11} {'recall@10':>9}"
    )
    for label, by_store in results.items():
        for name, s in by_store.items():
            print(
                f"{label:<18} {name:<14} {p(s.seconds, 50):>7.2f} {p(s.seconds, 95):>7.2f}"
                f" {statistics.mean(s.returned):>11.1f} {statistics.mean(s.recall):>9.2f}"
            )
        ours = p(by_store["MemorydStore"].seconds, 50)
        peer = ours / p(by_store["PostgresStore"].seconds, 50)
        raw = ours / p(by_store["memoryd.Client"].seconds, 50)
        print(
            f"{label:<18} p50 MemorydStore / PostgresStore = {peer:.2f},"
            f" MemorydStore / memoryd.Client = {raw:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="console"))
    data = datasets.clustered(args.rows, DIM, queries=args.queries, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = Settings(addr="127.0.0.1:0", data_dir=Path(tmp) / "pg", embedding_dim=DIM)
        server = BackgroundServer(settings)
        uri = server.app.database_url
        assert uri is not None
        try:
            other = peer_uri(uri)
            with (
                MemorydStore(server.addr, index=index_config(data)) as ours,
                peer_store(other, data) as peer,
                memoryd.Client(server.addr) as client,
            ):
                loaded: dict[str, BaseStore] = {"MemorydStore": ours, "PostgresStore": peer}
                loads = {name: load(store, args.rows) for name, store in loaded.items()}
                analyze(uri, other)
                stores = {**loaded, "memoryd.Client": RawClient(client, data)}
                results = search(stores, data, args.queries)
        finally:
            server.stop()
    report(args, loads, results)


if __name__ == "__main__":
    main()
