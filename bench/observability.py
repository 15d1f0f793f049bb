"""What Prometheus metrics and statement tracing add to a simple RPC (GetContextWindow).

Usage: python -m bench.observability [--calls 2000] [--messages 20]

Starts an embedded PostgreSQL and four memoryd processes on it (separate
processes: metrics are per process): neither (MEMORYD_METRICS_ADDR=off, no
tracing), metrics only, tracing only, and both. Traced servers hand every span,
a span per SQL statement included, to a batch processor as an OTLP exporter
would be (its exporter discards them, so no collector's speed is measured).
Calls go round the four; the p50 and p99 ratios to the first are printed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.database import EmbeddedDatabase, prepare_database
from memoryd_server.telemetry import configure_logging

MODES = ("off", "metrics", "tracing", "both")


class _Discard(SpanExporter):
    """An exporter that drops spans: the batch processor's work without a collector."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        del spans
        return SpanExportResult.SUCCESS


def _child(mode: str, url: str) -> None:
    """Serve on a free port (printed on stdout) until stdin closes."""
    configure_logging(Settings(log_level="warning", log_format="json"))
    settings = Settings(addr="127.0.0.1:0", database_url=url, auth="off", metrics_addr=None)
    provider = None
    if mode in {"metrics", "both"}:
        settings = settings.replace(metrics_addr="127.0.0.1:0")
    if mode in {"tracing", "both"}:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_Discard()))
    server = BackgroundServer(settings, tracer_provider=provider)
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()


def _start(mode: str, url: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.observability", "--child", mode, "--url", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def _stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.url)
        return
    with tempfile.TemporaryDirectory() as tmp:
        embedded = EmbeddedDatabase(Path(tmp) / "pg")
        url = embedded.start()
        prepare_database(url)
        children = []
        try:
            for mode in MODES:  # one at a time: the first one migrates
                children.append(_start(mode, url))
            times = _measure([port for _, port in children], args.calls, args.messages)
        finally:
            for process, _ in children:
                _stop(process)
            embedded.stop()
    base = statistics.median(times[0])
    base_p99 = statistics.quantiles(times[0], n=100)[98]
    for name, samples in zip(MODES, times, strict=True):
        p50 = statistics.median(samples)
        p99 = statistics.quantiles(samples, n=100)[98]
        print(
            f"{name:18s} p50 {p50 * 1000:7.3f} ms  {p50 / base:5.3f}x"
            f"   p99 {p99 * 1000:7.3f} ms  {p99 / base_p99:5.3f}x  n={len(samples)}"
        )


def _measure(ports: list[int], calls: int, messages: int) -> list[list[float]]:
    """Alternate GetContextWindow between the servers; each one's latencies in seconds."""
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in ports]
    stubs = [conversation_pb2_grpc.ConversationServiceStub(c) for c in channels]
    for stub in stubs:  # each server its own copy of the conversation (one database)
        stub.AppendMessages(
            pb.AppendMessagesRequest(
                conversation_id=f"bench-{stubs.index(stub)}",
                create_if_missing=True,
                messages=[
                    pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"message {i}", token_count=8)
                    for i in range(messages)
                ],
            )
        )
    requests = [pb.GetContextWindowRequest(conversation_id=f"bench-{n}") for n in range(len(stubs))]
    times: list[list[float]] = [[] for _ in stubs]
    for i in range(calls + 100):
        for n, stub in enumerate(stubs):
            t0 = time.perf_counter()
            stub.GetContextWindow(requests[n], timeout=10)
            if i >= 100:  # warm-up: connections, caches, prepared statements
                times[n].append(time.perf_counter() - t0)
    for channel in channels:
        channel.close()
    return times


if __name__ == "__main__":
    main()
