"""SearchMemories latency and recall under filters, and server-side embedding cost, vs raw SQL.

Usage: python -m bench.memory_search [--rows 100000] [--dim 384] [--queries 200] [--no-copy]

Starts its own embedded PostgreSQL and an in-process memoryd with embedder
none (the model "" of ``--dim`` dimensions), then:

1. loads ``--rows`` clustered vectors (bench/datasets.py) through
   BatchCreateMemories and, unless ``--no-copy``, the same rows by raw binary
   COPY into ``bench_copy (LIKE memories INCLUDING ALL)`` (same columns,
   defaults and indexes, the model's partial HNSW index included), batches of
   the same size, one transaction each; then COPY into a copy without HNSW
   followed by building that index;
2. runs SearchMemories (top_k 10) unfiltered, with a 10% filter (one ``t``
   tag, tags_any) and a 1% filter (one user_id), each interleaved per query
   with the server's own SQL run directly with psycopg: built by
   ``memoryd_server.memories.search`` and ``.filters``, with the same
   transaction settings and exact fallback, as the server's role under
   row-level security. Reports p50/p95, recall@10 against numpy's exact
   search, filtered/unfiltered and server/SQL p50 ratios, and each query's
   plan (EXPLAIN node types);
3. times the local embedder (all-MiniLM-L6-v2) in this process at batch 1 and
   64 on ~12-word texts, then starts a second in-process memoryd with
   embedder local on the same database and interleaves CreateMemory and
   hybrid SearchMemories sent text only (the server embeds) with the same
   calls carrying the caller's vector of the same model, sent to the first
   server (so both write to and search the same index).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row

from bench import datasets
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd.v1 import search_pb2 as spb
from memoryd_server.background import BackgroundServer
from memoryd_server.config import LOCAL_MODEL, Settings
from memoryd_server.database import APP_ROLE
from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.ids import uuid7
from memoryd_server.memories import convert
from memoryd_server.memories.filters import filter_condition
from memoryd_server.memories.models import COLUMNS, ns_path
from memoryd_server.memories.search import (
    EF_SEARCH,
    search_settings,
    vector_condition,
    vector_distance,
)
from memoryd_server.memories.store import column_sql
from memoryd_server.telemetry import configure_logging
from memoryd_server.tenancy import DEFAULT_TENANT

NAMESPACE = ["bench", "memories"]
EMBED_NAMESPACE = ["bench", "embedded"]
TOP_K = 10
# The server's candidate depth for a vector-only search with default weights.
DEPTH = max(2 * TOP_K, 20)
SCOPES = ("all", "10%", "1%")
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
# The server's result columns (search.py): every Memory field but the vector.
RESULT_COLUMNS = sql.SQL(", ").join(
    sql.SQL("NULL::vector AS embedding") if c == "embedding" else column_sql(c) for c in COLUMNS
)
# Words of the ~12-word texts the embedding timings use.
# fmt: off
WORDS = (
    "the", "a", "my", "our", "team", "user", "prefers", "likes", "wants", "asked", "about",
    "meeting", "project", "deadline", "coffee", "tea", "morning", "evening", "weekly", "report",
    "budget", "trip", "flight", "hotel", "Berlin", "Paris", "doctor", "dentist", "appointment",
    "birthday", "gift", "sister", "brother", "dog", "cat", "garden", "book", "novel", "python",
    "code", "review", "release", "bug", "fix", "database", "server", "laptop", "phone", "call",
    "email", "friday", "monday", "next", "last", "week", "month", "plan", "dinner", "lunch",
    "recipe", "pasta", "salad", "running", "gym", "yoga", "music", "concert", "ticket",
)
# fmt: on


@dataclass
class Timed:
    """Latency samples (and recalls) of one kind of call."""

    seconds: list[float] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    short: int = 0  # answers with fewer than TOP_K results
    fallbacks: int = 0  # raw SQL only: the index gave fewer than DEPTH rows

    def p50(self) -> float:
        return statistics.median(self.seconds)

    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(int(len(ordered) * 0.95) - 1, 0)]


def timed(samples: Timed, call: Callable[[], Any]) -> Any:
    """``call()``'s result; its duration appended to ``samples``."""
    t0 = time.perf_counter()
    result = call()
    samples.seconds.append(time.perf_counter() - t0)
    return result


# -- loading ------------------------------------------------------------------------------


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
    per_batch = Timed()
    started = time.perf_counter()
    for req in reqs:
        ids.extend(
            timed(per_batch, lambda r=req: stub.BatchCreateMemories(r, timeout=3600)).memory_ids
        )
    return time.perf_counter() - started, per_batch.seconds, ids


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
    conn: psycopg.Connection[Any], data: datasets.Dataset, batch: int, space: ModelSpace
) -> dict[str, float]:
    """COPY into a full copy of ``memories``; then COPY without HNSW and build it after."""
    conn.execute("CREATE TABLE bench_copy (LIKE memories INCLUDING ALL)")
    conn.commit()
    with_index = copy_rows(conn, "bench_copy", data, batch)
    conn.execute("DROP TABLE bench_copy")
    conn.execute("CREATE TABLE bench_late (LIKE memories INCLUDING ALL)")
    for (name,) in conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'bench_late'"
        " AND indexdef LIKE '%USING hnsw%'"
    ).fetchall():
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    conn.commit()
    without_index = copy_rows(conn, "bench_late", data, batch)
    # Enough memory for the graph of 100,000 x 384 (else the build spills and crawls).
    conn.execute("SET maintenance_work_mem = '1GB'")
    t0 = time.perf_counter()
    # The partial expression index memoryd_create_embedding_indexes builds (migration 0010).
    conn.execute(
        sql.SQL(
            "CREATE INDEX ON bench_late USING hnsw ((embedding::vector({})) vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64) WHERE embedding_model = {}"
        ).format(sql.Literal(space.dimension), sql.Literal(space.name))
    )
    conn.commit()
    build = time.perf_counter() - t0
    conn.execute("DROP TABLE bench_late")
    conn.execute("RESET maintenance_work_mem")
    conn.commit()
    return {"with_index": with_index, "without_hnsw": without_index, "build": build}


# -- vector search: the server vs its own SQL ------------------------------------------------


@dataclass(frozen=True)
class ServerSql:
    """The server's vector search for one filter (search.py), to run directly."""

    query: sql.Composed
    exact: sql.Composed
    params: dict[str, Any]
    settings: sql.Composed
    values: list[str]


def server_sql(space: ModelSpace, request_filter: pb.MemoryFilter) -> ServerSql:
    """SQL and settings as ``search_memories`` builds them for a vector search."""
    flt = convert.memory_filter("filter", request_filter, max_bytes=Settings().max_content_bytes)
    params: dict[str, Any] = {"k": DEPTH}
    where = filter_condition(DEFAULT_TENANT, flt, params)
    distance = vector_distance(space)
    select = sql.SQL(
        "SELECT {}, {} AS distance, 0::float4 AS text_rank, now() AS query_time"
        " FROM memories WHERE {} AND {}"
    ).format(RESULT_COLUMNS, distance, where, vector_condition(space))
    # As database.transaction() sends them: one SELECT of set_config calls.
    local = search_settings(DEPTH) | {"memoryd.tenant": DEFAULT_TENANT}
    settings = sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Placeholder())
            for k in local
        )
    )
    return ServerSql(
        sql.SQL("{} ORDER BY {} LIMIT %(k)s").format(select, distance),
        sql.SQL("{} ORDER BY {} + 0 LIMIT %(k)s").format(select, distance),
        params,
        settings,
        list(local.values()),
    )


def raw_search(
    conn: psycopg.Connection[Any], s: ServerSql, q: np.ndarray, *, exact: bool = False
) -> tuple[list[str], bool]:
    """The top ids of the server's SQL, and whether it fell back to the exact scan.

    With ``exact``, only the server's fallback query runs (for comparison).
    """
    params = s.params | {"q": q}
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(s.settings, s.values)
        rows = [] if exact else cur.execute(s.query, params).fetchall()
        fell_back = len(rows) < DEPTH
        if fell_back:
            rows = cur.execute(s.exact, params).fetchall()
    rows.sort(key=lambda r: (r["distance"], str(r["id"])))
    return [str(r["id"]) for r in rows[:TOP_K]], fell_back


def rpc_search(
    stub: memory_pb2_grpc.MemoryServiceStub, flt: pb.MemoryFilter, q: np.ndarray
) -> list[str]:
    request = pb.SearchMemoriesRequest(query_embedding=q.tolist(), top_k=TOP_K, filter=flt)
    return [r.memory.id for r in stub.SearchMemories(request, timeout=60).results]


def plan_nodes(
    conn: psycopg.Connection[Any], s: ServerSql, q: np.ndarray, *, exact: bool = False
) -> str:
    """The plan's node types (and index names), outermost first, under the server's settings."""
    query = s.exact if exact else s.query
    with conn.transaction():
        conn.execute(s.settings, s.values)
        row = conn.execute(
            sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), s.params | {"q": q}
        ).fetchone()
    assert row is not None
    nodes: list[str] = []
    subplans = 0
    stack = [row[0][0]["Plan"]]
    while stack:
        node = stack.pop(0)
        if node.get("Parent Relationship") == "SubPlan":  # access-count columns' lookups
            subplans += 1
            continue
        index = node.get("Index Name")
        nodes.append(node["Node Type"] + (f" ({index})" if index else ""))
        stack = node.get("Plans", []) + stack
    return " > ".join(nodes) + (f" (+ {subplans} subplans)" if subplans else "")


def scope_filter(scope: str, qi: int) -> pb.MemoryFilter:
    """Query ``qi``'s filter: none, one ``t`` tag (10% of rows) or one user (1%)."""
    if scope == "10%":
        return pb.MemoryFilter(namespace_prefix=NAMESPACE, tags_any=[f"t{qi % datasets.TOPICS}"])
    if scope == "1%":
        return pb.MemoryFilter(namespace_prefix=NAMESPACE, user_id=datasets.user_id(qi))
    return pb.MemoryFilter(namespace_prefix=NAMESPACE)


def exact_answers(data: datasets.Dataset) -> dict[str, list[list[int]]]:
    """numpy's exact top 10 of every query in every scope."""
    n, queries = data.size, data.queries
    exact = {"all": datasets.brute_force_top_k(data.vectors, queries, TOP_K).tolist()}
    masks = {f"t{t}": datasets.tags_any_mask(n, [f"t{t}"]) for t in range(datasets.TOPICS)}
    users = {datasets.user_id(qi) for qi in range(len(queries))}
    masks |= {u: datasets.user_mask(n, u) for u in users}
    for scope in ("10%", "1%"):
        exact[scope] = []
        for qi, q in enumerate(queries):
            f = scope_filter(scope, qi)
            mask = masks[f.tags_any[0] if f.tags_any else f.user_id]
            exact[scope].append(
                datasets.brute_force_top_k(data.vectors, q[None, :], TOP_K, mask)[0].tolist()
            )
    return exact


def search(
    stub: memory_pb2_grpc.MemoryServiceStub,
    conn: psycopg.Connection[Any],
    data: datasets.Dataset,
    row_of: dict[str, int],
    space: ModelSpace,
) -> tuple[dict[str, Timed], dict[str, str]]:
    """Every scope through both paths, interleaved per query, with recall@10; and plans."""
    exact = exact_answers(data)  # first: nothing but the searches runs between samples
    # "exact": the server's exact fallback alone, what the 1% filter would cost without HNSW.
    paths = {
        scope: ("rpc", "sql") if scope == "all" else ("rpc", "sql", "exact") for scope in SCOPES
    }
    timings = {f"{path}-{scope}": Timed() for scope in SCOPES for path in paths[scope]}
    plans = {
        f"{path} {scope}": plan_nodes(
            conn, server_sql(space, scope_filter(scope, 0)), data.queries[0], exact=path == "exact"
        )
        for scope in SCOPES
        for path in paths[scope][1:]
    }
    for q in data.queries[:10]:  # warm both paths (channel, pools, caches)
        for scope in SCOPES:
            rpc_search(stub, scope_filter(scope, 0), q)
            raw_search(conn, server_sql(space, scope_filter(scope, 0)), q)
    for qi, q in enumerate(data.queries):
        for scope in SCOPES:
            flt = scope_filter(scope, qi)
            s = server_sql(space, flt)  # built outside the timing, as the server's is cheap
            order = paths[scope] if qi % 2 == 0 else paths[scope][::-1]  # no fixed order bias
            for path in order:
                t = timings[f"{path}-{scope}"]
                if path == "rpc":
                    found = timed(t, lambda f=flt, v=q: rpc_search(stub, f, v))
                else:
                    run = partial(raw_search, conn, s, q, exact=path == "exact")
                    found, fell_back = timed(t, run)
                    t.fallbacks += fell_back and path == "sql"
                t.recalls.append(datasets.recall([row_of[i] for i in found], exact[scope][qi]))
                t.short += len(found) < TOP_K
    return timings, plans


# -- embeddings ----------------------------------------------------------------------------


def sentences(n: int, seed: int) -> list[str]:
    """``n`` short texts of 12 words each (about 15 word pieces)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 12)).capitalize() + "." for _ in range(n)]


def embed_rates(embedder: Any, texts: list[str], rounds: int = 7) -> dict[int, float]:
    """Texts per second of ``embed_batch`` at batch 1 and batch 64: medians of rounds
    that alternate the two (single rounds on this shared machine vary 2x)."""
    embedder.embed_batch(texts[:64])  # warm-up
    rates: dict[int, list[float]] = {1: [], 64: []}
    for _ in range(rounds):
        for size, count in ((1, 64), (64, len(texts))):
            t0 = time.perf_counter()
            for start in range(0, count, size):
                embedder.embed_batch(texts[start : start + size])
            rates[size].append(count / (time.perf_counter() - t0))
    return {size: statistics.median(r) for size, r in rates.items()}


def embedding_costs(
    first: memory_pb2_grpc.MemoryServiceStub,
    local: memory_pb2_grpc.MemoryServiceStub,
    embedder: Any,
    calls: int,
) -> dict[str, Timed]:
    """CreateMemory and hybrid SearchMemories: caller's vector (first) vs text only (local)."""
    texts = sentences(2 * calls + 20, seed=1)
    questions = sentences(calls + 10, seed=2)
    vectors = embedder.embed_batch(texts + questions)  # the caller's, before timing
    vector_of = dict(zip(texts + questions, vectors, strict=True))

    def create(stub: memory_pb2_grpc.MemoryServiceStub, text: str, with_vector: bool) -> None:
        memory = pb.Memory(namespace=EMBED_NAMESPACE, content=text)
        if with_vector:
            memory.embedding.extend(vector_of[text].tolist())
            memory.embedding_model = LOCAL_MODEL
        stub.CreateMemory(pb.CreateMemoryRequest(memory=memory), timeout=60)

    def find(stub: memory_pb2_grpc.MemoryServiceStub, text: str, with_vector: bool) -> None:
        request = pb.SearchMemoriesRequest(
            query_text=text,
            top_k=TOP_K,
            mode=spb.SEARCH_MODE_HYBRID,
            filter=pb.MemoryFilter(namespace_prefix=EMBED_NAMESPACE),
        )
        if with_vector:
            request.query_embedding.extend(vector_of[text].tolist())
            request.embedding_model = LOCAL_MODEL
        stub.SearchMemories(request, timeout=60)

    for i in range(10):  # warm-up: channels, pools, the server's model session
        create(first, texts[2 * calls + i], True)
        create(local, texts[2 * calls + 10 + i], False)
        find(first, questions[calls + i], True)
        find(local, questions[calls + i], False)
    out = {k: Timed() for k in ("create-vector", "create-text", "search-vector", "search-text")}
    for i in range(calls):
        for kind, call in (("create", create), ("search", find)):
            text_a, text_b = (
                (texts[2 * i], texts[2 * i + 1]) if kind == "create" else (questions[i],) * 2
            )
            pair = [("vector", first, text_a, True), ("text", local, text_b, False)]
            for name, stub, text, with_vector in pair if i % 2 == 0 else pair[::-1]:
                timed(
                    out[f"{kind}-{name}"], lambda c=call, s=stub, t=text, w=with_vector: c(s, t, w)
                )
    return out


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-copy", action="store_true", help="skip the raw COPY comparison")
    args = parser.parse_args()
    # Access logs would dominate the timings' noise; the benchmark reports its own.
    configure_logging(Settings(log_level="warning", log_format="console"))

    started = time.perf_counter()
    data = datasets.clustered(args.rows, args.dim, queries=args.queries, seed=args.seed)
    reqs = requests(data, args.batch)
    print(
        f"generated {args.rows} x {args.dim} in {time.perf_counter() - started:.1f} s", flush=True
    )

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = Settings(addr="127.0.0.1:0", data_dir=Path(tmp) / "pg", embedding_dim=args.dim)
        servers = [BackgroundServer(settings)]
        uri = servers[0].app.database_url
        assert uri is not None
        try:
            with grpc.insecure_channel(servers[0].addr) as channel, psycopg.connect(uri) as conn:
                register_vector(conn)
                stub = memory_pb2_grpc.MemoryServiceStub(channel)
                row = conn.execute(
                    "SELECT name, dimension, provider, endpoint FROM embedding_models"
                    " WHERE name = ''"
                ).fetchone()
                space = ModelSpace(*row) if row else ModelSpace("", args.dim, "external", "")
                conn.commit()
                results["rpc_seconds"], per_batch, ids = load_rpc(stub, reqs)
                print(
                    f"BatchCreateMemories: {args.rows} rows in {results['rpc_seconds']:.1f} s"
                    f" (slowest batch {max(per_batch):.1f} s)",
                    flush=True,
                )
                if not args.no_copy:
                    results["copies"] = load_copy(conn, data, args.batch, space)
                    print(f"COPY: {results['copies']}", flush=True)
                # What autovacuum would do soon after such a load; here, not mid-measurement.
                conn.autocommit = True
                conn.execute("VACUUM (ANALYZE) memories")
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
                conn.autocommit = False
                row_of = {memory_id: i for i, memory_id in enumerate(ids)}
                results["search"], results["plans"] = search(stub, conn, data, row_of, space)
                print("searches done", flush=True)
                results["embed"] = embeddings(stub, uri, servers, args.queries)
        finally:
            for server in reversed(servers):
                server.stop()
    report(args, results)


def embeddings(
    stub: memory_pb2_grpc.MemoryServiceStub, uri: str, servers: list[BackgroundServer], calls: int
) -> tuple[dict[int, float], dict[str, Timed]] | None:
    """The local embedder's rates in process, and its cost per call through the server."""
    from memoryd_server.embeddings.local import LocalEmbedder, ModelUnavailable

    try:
        embedder = LocalEmbedder()
    except ModelUnavailable as exc:
        print(f"embeddings skipped: {exc}")
        return None
    rates = embed_rates(embedder, sentences(64 * 4, seed=3))
    local = Settings(addr="127.0.0.1:0", database_url=uri, embedder="local", auth="off")
    servers.append(BackgroundServer(local))
    with grpc.insecure_channel(servers[-1].addr) as channel:
        costs = embedding_costs(stub, memory_pb2_grpc.MemoryServiceStub(channel), embedder, calls)
    return rates, costs


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    rows, rpc_seconds = args.rows, results["rpc_seconds"]
    print(
        f"\n{rows} x {args.dim} vectors, batches of {args.batch}, ef_search {EF_SEARCH},"
        f" candidate depth {DEPTH}"
    )
    loads = [("BatchCreateMemories (same indexes + history)", rpc_seconds)]
    copies = results.get("copies")
    if copies:
        loads += [
            ("raw binary COPY, same table and indexes", copies["with_index"]),
            ("raw binary COPY without HNSW", copies["without_hnsw"]),
            ("  + CREATE INDEX hnsw afterwards (total)", copies["without_hnsw"] + copies["build"]),
        ]
    print(f"{'load':44s} {'rows/s':>9s} {'seconds':>8s}")
    for name, seconds in loads:
        print(f"{name:44s} {rows / seconds:9.0f} {seconds:8.1f}")
    if copies:
        print(
            f"BatchCreateMemories / COPY throughput: {copies['with_index'] / rpc_seconds:.2f}"
            f"  (HNSW build alone: {copies['build']:.1f} s)"
        )
    timings: dict[str, Timed] = results["search"]
    print(
        f"\n{'search (top_k 10)':24s} {'p50 ms':>8s} {'p95 ms':>8s} {'recall@10':>10s}"
        f" {'short':>6s} {'exact fallback':>15s}"
    )
    for scope in SCOPES:
        labels = (("rpc", "SearchMemories"), ("sql", "server's SQL"), ("exact", "exact SQL"))
        for path, label in labels:
            t = timings.get(f"{path}-{scope}")
            if t is None:
                continue
            print(
                f"{label + ', ' + scope:24s} {t.p50() * 1000:8.2f} {t.p95() * 1000:8.2f}"
                f" {np.mean(t.recalls):10.3f} {t.short:6d}"
                f" {t.fallbacks if path == 'sql' else '':>15}"
            )
    for scope in SCOPES:
        rpc, raw = timings[f"rpc-{scope}"].p50(), timings[f"sql-{scope}"].p50()
        line = f"{scope:>4s}: server / SQL p50 {rpc / raw:.2f}x"
        if scope != "all":
            line += (
                f"; filtered / unfiltered p50: server {rpc / timings['rpc-all'].p50():.2f}x,"
                f" SQL {raw / timings['sql-all'].p50():.2f}x (goal: within 2x);"
                f" exact SQL / server's SQL {timings[f'exact-{scope}'].p50() / raw:.2f}x"
            )
        print(line)
    print("plans (EXPLAIN of the server's vector query, its settings):")
    for scope, plan in results["plans"].items():
        print(f"  {scope:>9s}: {plan}")
    if results.get("embed"):
        report_embeddings(*results["embed"])


def report_embeddings(rates: dict[int, float], costs: dict[str, Timed]) -> None:
    print(
        f"\nlocal embedder ({LOCAL_MODEL}) in process, 12-word texts:"
        f" batch 1 {rates[1]:.0f} texts/s ({1000 / rates[1]:.2f} ms/text),"
        f" batch 64 {rates[64]:.0f} texts/s ({rates[64] / rates[1]:.1f}x)"
    )
    print(f"{'call':52s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for kind, label in (("create", "CreateMemory"), ("search", "SearchMemories hybrid")):
        vector, text = costs[f"{kind}-vector"], costs[f"{kind}-text"]
        print(
            f"{label + ', caller vector (embedder none)':52s} {vector.p50() * 1000:8.2f}"
            f" {vector.p95() * 1000:8.2f}"
        )
        print(
            f"{label + ', text only (server embeds)':52s} {text.p50() * 1000:8.2f}"
            f" {text.p95() * 1000:8.2f}"
        )
        print(
            f"  added by embedding: {(text.p50() - vector.p50()) * 1000:.2f} ms p50"
            f" ({text.p50() / vector.p50():.2f}x)"
        )


if __name__ == "__main__":
    main()
