"""SearchMemories latency and recall, and BatchCreateMemories throughput, against raw SQL.

Usage: python -m bench.memory_search [--rows 100000] [--dim 384] [--queries 200]

Starts its own embedded PostgreSQL and an in-process memoryd, then:

1. loads ``--rows`` clustered vectors (bench/datasets.py) through
   BatchCreateMemories, and the same rows by raw binary COPY into
   ``bench_copy (LIKE memories INCLUDING ALL)`` (same columns, defaults,
   generated column and indexes, HNSW included), in batches of the same size,
   one transaction each; then, for reference, COPY into a copy without the
   HNSW index followed by building it;
2. runs SearchMemories (top_k 10) unfiltered and with a 1% filter (one
   user_id), interleaved with the same search written directly in SQL with
   psycopg (iterative scan, the server's ef_search), and reports p50/p95 and
   recall@10 against numpy's exact search for both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from bench import datasets
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.ids import uuid7
from memoryd_server.memories.models import ns_path
from memoryd_server.telemetry import configure_logging
from memoryd_server.tenancy import DEFAULT_TENANT

try:
    from memoryd_server.memories.search import EF_SEARCH
except ImportError:  # an older server: pgvector's default would be 40; FACTS.md used 100
    EF_SEARCH = 100

NAMESPACE = ["bench", "memories"]
TOP_K = 10
COPY_COLUMNS = (
    "tenant_id",
    "id",
    "namespace",
    "ns_path",
    "content",
    "embedding",
    "user_id",
    "tags",
)
RAW_SEARCH = (
    "SELECT id, embedding <=> %(q)s FROM memories WHERE tenant_id = %(tenant)s{extra}"
    " ORDER BY embedding <=> %(q)s LIMIT %(k)s"
)


@dataclass
class Timed:
    """Latency samples and recalls of one kind of search."""

    seconds: list[float]
    recalls: list[float]
    short: int = 0  # answers with fewer than TOP_K results

    def p50(self) -> float:
        return statistics.median(self.seconds)

    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[int(len(ordered) * 0.95) - 1]


def requests(data: datasets.Dataset, batch: int) -> list[pb.BatchCreateMemoriesRequest]:
    """The load's requests, built before timing (client-side protobuf is not the server's)."""
    return [
        pb.BatchCreateMemoriesRequest(
            memories=[
                pb.Memory(
                    namespace=NAMESPACE,
                    content=f"memory {i}",
                    embedding=data.vectors[i].tolist(),
                    user_id=datasets.user_id(i),
                    tags=datasets.tags(i),
                )
                for i in range(start, min(start + batch, data.size))
            ]
        )
        for start in range(0, data.size, batch)
    ]


def load_rpc(
    stub: memory_pb2_grpc.MemoryServiceStub, reqs: list[pb.BatchCreateMemoriesRequest]
) -> tuple[float, list[float], list[str]]:
    """Total seconds, per-batch seconds and the ids (row order) of the RPC load."""
    ids: list[str] = []
    per_batch = []
    started = time.perf_counter()
    for req in reqs:
        t0 = time.perf_counter()
        ids.extend(stub.BatchCreateMemories(req, timeout=3600).memory_ids)
        per_batch.append(time.perf_counter() - t0)
    return time.perf_counter() - started, per_batch, ids


def copy_rows(
    conn: psycopg.Connection[Any], table: str, data: datasets.Dataset, batch: int
) -> float:
    """Seconds to binary-COPY the data set into ``table``, one transaction per batch."""
    path = ns_path(NAMESPACE)
    copy = f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    started = time.perf_counter()
    for start in range(0, data.size, batch):
        with conn.transaction(), conn.cursor().copy(copy) as cp:
            cp.set_types(["text", "uuid", "text[]", "text", "text", "vector", "text", "text[]"])
            for i in range(start, min(start + batch, data.size)):
                cp.write_row(
                    (
                        DEFAULT_TENANT,
                        uuid7(),
                        NAMESPACE,
                        path,
                        f"memory {i}",
                        data.vectors[i],
                        datasets.user_id(i),
                        datasets.tags(i),
                    )
                )
    return time.perf_counter() - started


def load_copy(
    conn: psycopg.Connection[Any], data: datasets.Dataset, batch: int
) -> dict[str, float]:
    """COPY into a full copy of ``memories``; then COPY without HNSW and build it after."""
    conn.execute("CREATE TABLE bench_copy (LIKE memories INCLUDING ALL)")
    conn.commit()
    with_index = copy_rows(conn, "bench_copy", data, batch)
    conn.execute("DROP TABLE bench_copy")
    conn.execute("CREATE TABLE bench_late (LIKE memories INCLUDING ALL)")
    (hnsw,) = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'bench_late'"
        " AND indexdef LIKE '%USING hnsw%'"
    ).fetchone() or (None,)
    assert hnsw is not None
    conn.execute(f"DROP INDEX {hnsw}")
    conn.commit()
    without_index = copy_rows(conn, "bench_late", data, batch)
    # Enough memory for the graph of 100,000 x 384 (else the build spills and crawls).
    conn.execute("SET maintenance_work_mem = '1GB'")
    t0 = time.perf_counter()
    conn.execute(
        "CREATE INDEX ON bench_late USING hnsw (embedding vector_cosine_ops)"
        " WITH (m = 16, ef_construction = 64)"
    )
    conn.commit()
    build = time.perf_counter() - t0
    conn.execute("DROP TABLE bench_late")
    conn.execute("RESET maintenance_work_mem")
    conn.commit()
    return {"with_index": with_index, "without_hnsw": without_index, "build": build}


def raw_search(conn: psycopg.Connection[Any], q: np.ndarray, user: str | None) -> list[str]:
    """The search as one would write it by hand: iterative scan, the server's ef_search."""
    params = {"q": q, "tenant": DEFAULT_TENANT, "k": TOP_K, "user": user}
    query = RAW_SEARCH.format(extra=" AND user_id = %(user)s" if user else "")
    with conn.transaction():
        conn.execute(
            "SET LOCAL hnsw.iterative_scan = relaxed_order;"
            f" SET LOCAL hnsw.ef_search = {int(EF_SEARCH)}"
        )
        rows = conn.execute(query, params).fetchall()
    return [str(row[0]) for row in rows]


def rpc_search(
    stub: memory_pb2_grpc.MemoryServiceStub, q: np.ndarray, user: str | None
) -> list[str]:
    response = stub.SearchMemories(
        pb.SearchMemoriesRequest(
            query_embedding=q.tolist(),
            top_k=TOP_K,
            filter=pb.MemoryFilter(namespace_prefix=NAMESPACE, user_id=user or ""),
        )
    )
    return [r.memory.id for r in response.results]


def plan_of(conn: psycopg.Connection[Any], q: np.ndarray, user: str | None) -> str:
    """Which index the raw query's plan scans (EXPLAIN), for the report."""
    query = RAW_SEARCH.format(extra=" AND user_id = %(user)s" if user else "")
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = conn.execute(
            "EXPLAIN " + query, {"q": q, "tenant": DEFAULT_TENANT, "k": TOP_K, "user": user}
        ).fetchall()
    lines = [str(r[0]) for r in rows]
    scans = [line.split(" on ")[0].strip().removeprefix("->  ") for line in lines if " on " in line]
    return "; ".join(scans)


def updates(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """Rows updated in ``memories`` so far, and how many of those updates were HOT."""
    row = conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'memories'"
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0]), int(row[1])


def search(
    stub: memory_pb2_grpc.MemoryServiceStub,
    conn: psycopg.Connection[Any],
    data: datasets.Dataset,
    row_of: dict[str, int],
) -> dict[str, Timed]:
    """Both searches through both paths, interleaved per query, with recall@10."""
    # The exact answers first: nothing but the searches runs between the samples.
    users = [datasets.user_id(qi) for qi in range(len(data.queries))]
    masks = {u: datasets.user_mask(data.size, u) for u in set(users)}
    exact_all = datasets.brute_force_top_k(data.vectors, data.queries, TOP_K)
    exact_user = [
        datasets.brute_force_top_k(data.vectors, q[None, :], TOP_K, masks[u])[0]
        for q, u in zip(data.queries, users, strict=True)
    ]
    timings = {k: Timed([], []) for k in ("rpc-all", "sql-all", "rpc-1%", "sql-1%")}
    # Warm both paths (channel, pool, caches) outside the samples.
    for q in data.queries[:10]:
        rpc_search(stub, q, None)
        raw_search(conn, q, None)
    for qi, q in enumerate(data.queries):
        user = users[qi]
        for scope, who, exact in (("all", None, exact_all[qi]), ("1%", user, exact_user[qi])):
            for path, run in (("rpc", rpc_search), ("sql", raw_search)):
                t0 = time.perf_counter()
                found = run(stub if path == "rpc" else conn, q, who)  # type: ignore[arg-type]
                elapsed = time.perf_counter() - t0
                timed = timings[f"{path}-{scope}"]
                timed.seconds.append(elapsed)
                timed.recalls.append(datasets.recall([row_of[i] for i in found], exact.tolist()))
                timed.short += len(found) < TOP_K
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Access logs would dominate the timings' noise; the benchmark reports its own.
    configure_logging(Settings(log_level="warning", log_format="console"))

    started = time.perf_counter()
    data = datasets.clustered(args.rows, args.dim, queries=args.queries, seed=args.seed)
    reqs = requests(data, args.batch)
    print(f"generated {args.rows} x {args.dim} in {time.perf_counter() - started:.1f} s")

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = Settings(addr="127.0.0.1:0", data_dir=Path(tmp) / "pg", embedding_dim=args.dim)
        server = BackgroundServer(settings)
        uri = server.app.database_url
        assert uri is not None
        try:
            with grpc.insecure_channel(server.addr) as channel, psycopg.connect(uri) as conn:
                register_vector(conn)
                stub = memory_pb2_grpc.MemoryServiceStub(channel)
                rpc_seconds, per_batch, ids = load_rpc(stub, reqs)
                print(
                    f"BatchCreateMemories: {args.rows} rows in {rpc_seconds:.1f} s"
                    f" (slowest batch {max(per_batch):.1f} s)"
                )
                copies = load_copy(conn, data, args.batch)
                print(f"COPY: {copies}")
                # What autovacuum would do soon after such a load; here, not mid-measurement.
                conn.autocommit = True
                conn.execute("VACUUM (ANALYZE) memories")
                conn.autocommit = False
                plans = {
                    "all": plan_of(conn, data.queries[0], None),
                    "1%": plan_of(conn, data.queries[0], "u0"),
                }
                row_of = {memory_id: i for i, memory_id in enumerate(ids)}
                before = updates(conn)
                timings = search(stub, conn, data, row_of)
                time.sleep(2.5)  # the server's access counts are flushed about once a second
                after = updates(conn)
                access = (after[0] - before[0], after[1] - before[1])
        finally:
            server.stop()

    report(args, rpc_seconds, copies, timings, plans)
    print(
        f"searches' access-count UPDATEs on memories: {access[0]} rows,"
        f" {access[1]} of them HOT (the rest re-inserted into every index, HNSW included)"
    )


def report(
    args: argparse.Namespace,
    rpc_seconds: float,
    copies: dict[str, float],
    timings: dict[str, Timed],
    plans: dict[str, str],
) -> None:
    rows = args.rows
    late = copies["without_hnsw"] + copies["build"]
    print()
    print(f"{rows} x {args.dim} vectors, batches of {args.batch}, ef_search {EF_SEARCH}")
    print(f"{'load':44s} {'rows/s':>9s} {'seconds':>8s}")
    for name, seconds in (
        ("BatchCreateMemories (same indexes + history)", rpc_seconds),
        ("raw binary COPY, same table and indexes", copies["with_index"]),
        ("raw binary COPY without HNSW", copies["without_hnsw"]),
        ("  + CREATE INDEX hnsw afterwards (total)", late),
    ):
        print(f"{name:44s} {rows / seconds:9.0f} {seconds:8.1f}")
    print(f"BatchCreateMemories / COPY throughput: {copies['with_index'] / rpc_seconds:.2f}")
    print(f"  (HNSW build alone: {copies['build']:.1f} s)")
    print()
    print(
        f"{'search (top_k 10)':22s} {'p50 ms':>8s} {'p95 ms':>8s} {'recall@10':>10s} {'short':>6s}"
    )
    for name, label in (
        ("rpc-all", "SearchMemories, all"),
        ("sql-all", "raw SQL, all"),
        ("rpc-1%", "SearchMemories, 1%"),
        ("sql-1%", "raw SQL, 1%"),
    ):
        t = timings[name]
        print(
            f"{label:22s} {t.p50() * 1000:8.2f} {t.p95() * 1000:8.2f}"
            f" {np.mean(t.recalls):10.3f} {t.short:6d}"
        )
    for scope in ("all", "1%"):
        ratio = timings[f"rpc-{scope}"].p50() / timings[f"sql-{scope}"].p50()
        print(f"server/raw SQL p50 ratio ({scope}): {ratio:.2f}   plan: {plans[scope]}")


if __name__ == "__main__":
    main()
