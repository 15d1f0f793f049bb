"""The typed client's overhead over the raw generated stubs, for GetContextWindow.

Usage: python -m bench.client_overhead [--calls 2000] [--messages 100]

Starts an embedded PostgreSQL and an in-process memoryd, fills one conversation,
then times the same GetContextWindow through the raw stub and through
``memoryd.Client`` (interleaved, one channel each) and prints the p50 ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import grpc

import memoryd
from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.telemetry import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="console"))
    with tempfile.TemporaryDirectory() as tmp:
        server = BackgroundServer(Settings(addr="127.0.0.1:0", data_dir=Path(tmp) / "pg"))
        try:
            with (
                grpc.insecure_channel(server.addr) as channel,
                memoryd.Client(server.addr) as client,
            ):
                stub = conversation_pb2_grpc.ConversationServiceStub(channel)
                client.conversations.append(
                    "bench",
                    [memoryd.NewMessage("user", f"message {i}", token_count=8)
                     for i in range(args.messages)],
                    create_if_missing=True,
                )  # fmt: skip
                request = pb.GetContextWindowRequest(conversation_id="bench")
                raw: list[float] = []
                typed: list[float] = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    stub.GetContextWindow(request, timeout=10)
                    raw.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    client.conversations.context_window("bench")
                    typed.append(time.perf_counter() - t0)
        finally:
            server.stop()
    raw_p50, typed_p50 = statistics.median(raw), statistics.median(typed)
    print(f"raw stub     p50 {raw_p50 * 1000:7.3f} ms  n={len(raw)}")
    print(f"memoryd.Client p50 {typed_p50 * 1000:7.3f} ms  n={len(typed)}")
    print(f"typed client / raw stub p50 ratio: {typed_p50 / raw_p50:.3f}")


if __name__ == "__main__":
    main()
