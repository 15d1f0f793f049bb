"""GetContextWindow(last 20) on a short and a very long conversation, against raw SQL.

Usage: python bench/context_window.py [--long 100000] [--short 100] [--calls 500]

Starts its own embedded PostgreSQL and an in-process memoryd, loads two
conversations through AppendMessages, then times GetContextWindow on both
(interleaved, so machine noise hits both alike) and the same SQL run directly
with psycopg. Prints p50/p95 per case and the ratios that matter.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import grpc
import psycopg

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.conversations.messages import CONTEXT_WINDOW_QUERY
from memoryd_server.telemetry import configure_logging
from memoryd_server.tenancy import DEFAULT_TENANT


def load(stub: conversation_pb2_grpc.ConversationServiceStub, conv: str, count: int) -> None:
    for start in range(0, count, 1000):
        batch = [
            pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"message {i} " * 8, token_count=24)
            for i in range(start, min(start + 1000, count))
        ]
        stub.AppendMessages(
            pb.AppendMessagesRequest(conversation_id=conv, messages=batch, create_if_missing=True)
        )


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", type=int, default=100_000)
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    # Access logs would dominate the timings' noise; the benchmark reports its own.
    configure_logging(Settings(log_level="warning", log_format="console"))

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = Path(tmp) / "pg"
        server = BackgroundServer(Settings(addr="127.0.0.1:0", data_dir=data))
        uri = server.app.database_url
        assert uri is not None
        try:
            with grpc.insecure_channel(server.addr) as channel, psycopg.connect(uri) as conn:
                stub = conversation_pb2_grpc.ConversationServiceStub(channel)
                started = time.perf_counter()
                load(stub, "short", args.short)
                load(stub, "long", args.long)
                elapsed = time.perf_counter() - started
                print(f"loaded {args.short + args.long} messages in {elapsed:.1f} s")
                conn.execute("ANALYZE messages")
                conn.commit()
                timings: dict[str, list[float]] = {
                    k: [] for k in ("rpc-short", "rpc-long", "sql-short", "sql-long")
                }
                for _ in range(args.calls):
                    for name in ("short", "long"):
                        t0 = time.perf_counter()
                        window = stub.GetContextWindow(
                            pb.GetContextWindowRequest(conversation_id=name)
                        )
                        timings[f"rpc-{name}"].append(time.perf_counter() - t0)
                        assert len(window.messages) == 20
                        t0 = time.perf_counter()
                        rows = conn.execute(
                            CONTEXT_WINDOW_QUERY,
                            {
                                "tenant": DEFAULT_TENANT,
                                "conversation": name,
                                "limit": 20,
                                "max_tokens": None,
                                "system": False,
                                "pins": 100,
                            },
                        ).fetchall()
                        timings[f"sql-{name}"].append(time.perf_counter() - t0)
                        assert len(rows) == 20
                conn.rollback()
        finally:
            server.stop()

    p50 = {}
    for name, samples in timings.items():
        median, p95 = percentiles(samples)
        p50[name] = median
        print(
            f"{name:10s} p50 {median * 1000:7.3f} ms   p95 {p95 * 1000:7.3f} ms   n={len(samples)}"
        )
    print(f"GetContextWindow long/short p50 ratio: {p50['rpc-long'] / p50['rpc-short']:.2f}")
    print(f"raw SQL long/short p50 ratio:          {p50['sql-long'] / p50['sql-short']:.2f}")
    print(f"server/raw SQL p50 ratio (long):       {p50['rpc-long'] / p50['sql-long']:.2f}")


if __name__ == "__main__":
    main()
