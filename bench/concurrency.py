"""The same reads through memoryd and through a bare async psycopg client, at 1, 8 and 32 in flight.

Usage: python -m bench.concurrency [--rows 100000] [--dim 384] [--messages 10000] [--seconds 5]
       [--workers N] [--channels 8]

Starts an embedded PostgreSQL, then ``memoryd serve`` in its own process on
it (auth off, logs at warning), and loads ``--rows`` clustered vectors (binary
COPY with the HNSW index dropped and rebuilt, as bench/memory_search.py
measures it) and one conversation of ``--messages`` messages. For each of
SearchMemories (vector, top_k 10, no filter) and GetContextWindow (last 20),
and for 1, 8 and 32 calls in flight, it runs for ``--seconds``:

- memoryd: the RPC through `--channels` grpc.aio channels (default 8, each its
  own TCP connection, which the kernel spreads over the workers), calls going
  round them by slot;
- psycopg: the statements the server sends for it (a transaction declaring
  the tenant and the search settings, then the query), as the server's role
  under row-level security, one connection per call in flight.

It prints QPS, p50/p99, the server's CPU time per call (from /proc, the
server process and its children) and the ratio of memoryd's QPS to the bare
client's; then p50 at 1 in flight of the raw SQL, of a gRPC no-op (health
Check) and of the RPC, and the ratio RPC / (SQL + no-op). The client runs in
this process, so on a small machine it competes with the server for cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pgvector.psycopg import register_vector, register_vector_async
from psycopg import sql

from bench import datasets
from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import conversation_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as pb
from memoryd_server.database import APP_ROLE, EmbeddedDatabase
from memoryd_server.ids import uuid7
from memoryd_server.memories.models import ns_path
from memoryd_server.tenancy import DEFAULT_TENANT

NAMESPACE = ["bench", "concurrency"]
CONVERSATION = "bench-concurrency"
TOP_K = 10
WINDOW = 20
IN_FLIGHT = (1, 8, 32)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The statements memoryd sends for the two RPCs (search.py, messages.py), written
# out here so that the same benchmark runs against every version of the server.
SEARCH_SETTINGS = (
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),"
    " set_config('hnsw.ef_search', '100', true), set_config('enable_sort', 'off', true),"
    " set_config('memoryd.tenant', %(tenant)s, true)"
)
SEARCH_QUERY = (
    "SELECT id, namespace, content, metadata, importance, occur_time, create_time,"
    " (embedding::vector({dim}) <=> %(q)s::vector({dim})) AS distance"
    " FROM memories WHERE tenant_id = %(tenant)s AND status = ANY('{{active}}')"
    " AND (pinned OR expire_time IS NULL OR expire_time > now())"
    " AND embedding_model = '' AND embedding IS NOT NULL"
    " ORDER BY (embedding::vector({dim}) <=> %(q)s::vector({dim})) LIMIT 20"
)
TENANT_SETTING = "SELECT set_config('memoryd.tenant', %(tenant)s, true)"
WINDOW_QUERY = (
    "SELECT id, seq, role, content, token_count, metadata, create_time FROM messages"
    " WHERE tenant_id = %(tenant)s AND conversation_id = %(conversation)s"
    " AND seq <= (SELECT message_count FROM conversations"
    " WHERE tenant_id = %(tenant)s AND id = %(conversation)s)"
    " ORDER BY seq DESC LIMIT 20"
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants, from /proc."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        total += times.get(p, 0.0)
        stack.extend(children.get(p, []))
    return total


@dataclass
class Run:
    """One workload at one concurrency."""

    calls: int
    seconds: float
    latencies: list[float]
    cpu: float | None

    @property
    def qps(self) -> float:
        return self.calls / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


async def drive(
    call: Callable[[int, int], Awaitable[Any]], in_flight: int, seconds: float, pid: int | None
) -> Run:
    """Keep ``in_flight`` calls going for ``seconds`` (after a short warm-up)."""
    latencies: list[float] = []
    stop = False

    async def worker(slot: int) -> None:
        i = slot
        while not stop:
            t0 = time.perf_counter()
            await call(slot, i)
            if measuring:
                latencies.append(time.perf_counter() - t0)
            i += in_flight

    measuring = False
    tasks = [asyncio.create_task(worker(s)) for s in range(in_flight)]
    await asyncio.sleep(min(1.0, seconds / 5))
    measuring = True
    cpu0 = cpu_seconds(pid) if pid else 0.0
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    elapsed = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - cpu0 if pid else None
    measuring = False
    stop = True
    await asyncio.gather(*tasks)
    return Run(len(latencies), elapsed, latencies, cpu)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int, dim: int, workers: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MEMORYD_ADDR": f"127.0.0.1:{port}",
        "MEMORYD_DATA_DIR": str(data_dir),
        "MEMORYD_EMBEDDING_DIM": str(dim),
        "MEMORYD_AUTH": "off",
        "MEMORYD_LOG_LEVEL": "warning",
        "MEMORYD_POOL_MAX_SIZE": "32",
    }
    if workers:
        env["MEMORYD_WORKERS"] = str(workers)
    proc = subprocess.Popen(
        [sys.executable, "-m", "memoryd_server", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("memoryd did not start")
            time.sleep(0.2)


def load(uri: str, port: int, data: datasets.Dataset, messages: int) -> None:
    """The memories (COPY, HNSW rebuilt after) and the conversation (AppendMessages)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        # One memory through the API, so the model's HNSW index exists.
        stub.CreateMemory(
            pb.CreateMemoryRequest(
                memory=pb.Memory(
                    namespace=NAMESPACE, content="first", embedding=data.vectors[0].tolist()
                )
            )
        )
        conversations = conversation_pb2_grpc.ConversationServiceStub(channel)
        for start in range(0, messages, 1000):
            batch = [
                cpb.Message(role=cpb.MESSAGE_ROLE_USER, content=f"message {i} " * 8, token_count=24)
                for i in range(start, min(start + 1000, messages))
            ]
            conversations.AppendMessages(
                cpb.AppendMessagesRequest(
                    conversation_id=CONVERSATION, messages=batch, create_if_missing=True
                )
            )
    with psycopg.connect(uri, autocommit=True) as conn:
        register_vector(conn)
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories'"
            " AND indexdef LIKE '%USING hnsw%'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        path = ns_path(NAMESPACE)
        copy = (
            "COPY memories (tenant_id, id, namespace, ns_path, content, embedding, user_id, tags)"
            " FROM STDIN (FORMAT BINARY)"
        )
        with conn.cursor().copy(copy) as cp:
            cp.set_types(["text", "uuid", "text[]", "text", "text", "vector", "text", "text[]"])
            for i in range(1, data.size):
                cp.write_row(
                    (
                        DEFAULT_TENANT, uuid7(), NAMESPACE, path, f"memory {i}",
                        data.vectors[i], datasets.user_id(i), datasets.tags(i),
                    )
                )  # fmt: skip
        conn.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("ANALYZE memories")
        conn.execute("ANALYZE messages")


async def app_connections(uri: str, count: int) -> list[psycopg.AsyncConnection[Any]]:
    """Connections working as the server's role, as its pool's are."""
    conns = []
    for _ in range(count):
        conn = await psycopg.AsyncConnection.connect(uri)
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
        await register_vector_async(conn)
        await conn.commit()
        conns.append(conn)
    return conns


async def measure(args: argparse.Namespace, uri: str, port: int, pid: int) -> None:
    data_queries = datasets.clustered(1, args.dim, queries=200, seed=1).queries
    queries = [q.tolist() for q in data_queries]
    search_sql = sql.SQL(SEARCH_QUERY.format(dim=args.dim))
    conns = await app_connections(uri, max(IN_FLIGHT))
    # Each channel its own TCP connection (a local subchannel pool), so that
    # the kernel spreads them over the workers (SO_REUSEPORT), as it spreads
    # many agents' connections; calls go round the channels by slot.
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(args.channels)
    ]
    memories = [memory_pb2_grpc.MemoryServiceStub(c) for c in channels]
    conversations = [conversation_pb2_grpc.ConversationServiceStub(c) for c in channels]
    health = health_pb2_grpc.HealthStub(channels[0])
    tenant = {"tenant": DEFAULT_TENANT}

    async def rpc_search(slot: int, i: int) -> None:
        reply = await memories[slot % len(channels)].SearchMemories(
            pb.SearchMemoriesRequest(query_embedding=queries[i % len(queries)], top_k=TOP_K)
        )
        assert len(reply.results) == TOP_K

    async def sql_search(slot: int, i: int) -> None:
        conn = conns[slot]
        async with conn.transaction():
            await conn.execute(SEARCH_SETTINGS, tenant)
            cur = await conn.execute(search_sql, {**tenant, "q": data_queries[i % len(queries)]})
            assert len(await cur.fetchall()) == 2 * TOP_K

    window_request = cpb.GetContextWindowRequest(conversation_id=CONVERSATION, max_messages=WINDOW)

    async def rpc_window(slot: int, _: int) -> None:
        reply = await conversations[slot % len(channels)].GetContextWindow(window_request)
        assert len(reply.messages) == WINDOW

    window_params = {**tenant, "conversation": CONVERSATION}

    async def sql_window(slot: int, _: int) -> None:
        conn = conns[slot]
        async with conn.transaction():
            await conn.execute(TENANT_SETTING, tenant)
            cur = await conn.execute(WINDOW_QUERY, window_params)
            assert len(await cur.fetchall()) == WINDOW

    async def noop(_: int, __: int) -> None:
        await health.Check(health_pb2.HealthCheckRequest())

    print(f"{'workload':26s} {'in flight':>9s} {'QPS':>8s} {'p50 ms':>8s} {'p99 ms':>8s}"
          f" {'CPU ms/call':>11s} {'QPS vs SQL':>10s}")  # fmt: skip
    p50_at_1: dict[str, float] = {}
    for name, rpc, raw in (
        ("SearchMemories", rpc_search, sql_search),
        ("GetContextWindow", rpc_window, sql_window),
    ):
        for n in IN_FLIGHT:
            # Interleaved per concurrency level, so machine noise hits both alike.
            served = await drive(rpc, n, args.seconds, pid)
            bare = await drive(raw, n, args.seconds, None)
            if n == 1:
                p50_at_1[f"{name} rpc"] = served.pct(0.5)
                p50_at_1[f"{name} sql"] = bare.pct(0.5)
            assert served.cpu is not None
            for label, run, ratio in (
                (f"{name} memoryd", served, f"{served.qps / bare.qps:10.2f}"),
                (f"{name} psycopg", bare, ""),
            ):
                cpu = f"{run.cpu / run.calls * 1000:11.2f}" if run.cpu is not None else " " * 11
                print(f"{label:26s} {n:9d} {run.qps:8.0f} {run.pct(0.5) * 1000:8.2f}"
                      f" {run.pct(0.99) * 1000:8.2f} {cpu} {ratio}")  # fmt: skip
    noop_run = await drive(noop, 1, args.seconds, pid)
    noop_p50 = noop_run.pct(0.5)
    print(f"\ngRPC no-op (health Check) p50 {noop_p50 * 1000:.3f} ms")
    for name in ("SearchMemories", "GetContextWindow"):
        rpc, raw = p50_at_1[f"{name} rpc"], p50_at_1[f"{name} sql"]
        print(
            f"{name}: p50 {rpc * 1000:.3f} ms, raw SQL {raw * 1000:.3f} ms;"
            f" RPC / (SQL + no-op) = {rpc / (raw + noop_p50):.2f}"
        )
    for channel in channels:
        await channel.close()
    for conn in conns:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=0, help="MEMORYD_WORKERS (0: unset)")
    parser.add_argument(
        "--channels", type=int, default=8, help="client connections the calls go round (1: one)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        database = EmbeddedDatabase(Path(tmp) / "pg")
        uri = database.start()
        port = free_port()
        server = start_server(Path(tmp) / "pg", port, args.dim, args.workers)
        try:
            t0 = time.perf_counter()
            load(uri, port, datasets.clustered(args.rows, args.dim), args.messages)
            print(f"loaded {args.rows} memories and {args.messages} messages"
                  f" in {time.perf_counter() - t0:.0f} s; server pid {server.pid}")  # fmt: skip
            asyncio.run(measure(args, uri, port, server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            database.stop()


if __name__ == "__main__":
    main()
