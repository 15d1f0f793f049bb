"""What authentication and row-level security add to GetContextWindow.

Usage: python -m bench.auth_overhead [--calls 2000] [--messages 100]

Starts an embedded PostgreSQL and three in-process memoryd on it: one with
MEMORYD_AUTH=off, one with auth on (keys cached, the default), and one with
auth on whose key cache expires at once, so every call looks its key up in
the database. Each serves the same conversation (row-level security applies
to all three); the calls are interleaved and the p50 ratios printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.auth import keys
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.telemetry import configure_logging

TENANT = "bench"


def _create_key(url: str) -> str:
    """A member key of the tenant ``bench``, written as the CLI would."""
    secret = keys.new_secret()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (tenant_id) VALUES (%s)", (TENANT,))
        conn.execute(
            "INSERT INTO api_keys (key_id, tenant_id, name, role, prefix, secret_hash, created_by)"
            " VALUES (%s, %s, 'bench', 'member', %s, %s, 'bench')",
            (uuid.uuid4(), TENANT, keys.prefix_of(secret), keys.hash_secret(secret)),
        )
    return secret


def _fill(stub: conversation_pb2_grpc.ConversationServiceStub, messages: int, **kw: object) -> None:
    stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id="bench",
            create_if_missing=True,
            messages=[
                pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"message {i}", token_count=8)
                for i in range(messages)
            ],
        ),
        **kw,  # type: ignore[arg-type]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="console"))
    with tempfile.TemporaryDirectory() as tmp:
        off = BackgroundServer(Settings(addr="127.0.0.1:0", data_dir=Path(tmp) / "pg", auth="off"))
        servers = [off]
        try:
            url = off.app.database_url
            assert url is not None
            shared = Settings(addr="127.0.0.1:0", database_url=url, auth="on")
            cached = BackgroundServer(shared)
            servers.append(cached)
            uncached = BackgroundServer(shared.replace(auth_cache_seconds=1e-6))
            servers.append(uncached)
            key = (("authorization", f"Bearer {_create_key(url)}"),)
            channels = [grpc.insecure_channel(s.addr) for s in servers]
            stubs = [conversation_pb2_grpc.ConversationServiceStub(c) for c in channels]
            _fill(stubs[0], args.messages)
            _fill(stubs[1], args.messages, metadata=key)
            request = pb.GetContextWindowRequest(conversation_id="bench")
            calls: dict[str, Callable[[], object]] = {
                "auth off": lambda: stubs[0].GetContextWindow(request, timeout=10),
                "auth on, key cached": lambda: stubs[1].GetContextWindow(
                    request, timeout=10, metadata=key
                ),
                "auth on, key looked up": lambda: stubs[2].GetContextWindow(
                    request, timeout=10, metadata=key
                ),
            }
            times: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.calls):
                for name, call in calls.items():
                    t0 = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - t0)
            for channel in channels:
                channel.close()
        finally:
            for server in reversed(servers):
                server.stop()
    base = statistics.median(times["auth off"])
    for name, samples in times.items():
        p50 = statistics.median(samples)
        print(f"{name:24s} p50 {p50 * 1000:7.3f} ms  {p50 / base:5.2f}x  n={len(samples)}")


if __name__ == "__main__":
    main()
