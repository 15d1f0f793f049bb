"""Prometheus metrics: what memoryd records, and the /metrics endpoint (one process or many)."""

from __future__ import annotations

import asyncio
import platform
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import grpc
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    multiprocess,
    start_http_server,
)

from memoryd_server import __version__
from memoryd_server.config import Settings

log = structlog.get_logger("memoryd.metrics")

# Seconds: from a cached read (~0.5 ms) to a statement timeout (30 s).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
# How often the pools' gauges are sampled: their state changes with every checkout,
# and sampling costs nothing on the request path.
POOL_SAMPLE_SECONDS = 1.0
# The tenant label of calls that never reached a tenant (no key, a refused key).
NO_TENANT = "-"


class _Stats(Protocol):
    name: str

    def get_stats(self) -> dict[str, int]: ...


class Metrics:
    """Every series memoryd records, in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: Iterable[str]) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        def gauge(name: str, doc: str, labels: Iterable[str], mode: str) -> Gauge:
            # mode: how a supervisor adds up its workers' values (multiprocess only).
            return Gauge(name, doc, list(labels), registry=registry, multiprocess_mode=mode)  # type: ignore[arg-type]

        def histogram(
            name: str, doc: str, labels: Iterable[str], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(name, doc, list(labels), registry=registry, buckets=buckets)

        self.rpc_requests = counter(
            "memoryd_rpc_requests", "Finished RPCs by method, tenant and status code.",
            ["rpc", "tenant", "code"],
        )  # fmt: skip
        self.rpc_duration = histogram(
            "memoryd_rpc_duration_seconds", "RPC latency, from the handler's start to its end.",
            ["rpc", "tenant"], LATENCY_BUCKETS,
        )  # fmt: skip
        self.rpc_in_flight = gauge(
            "memoryd_rpc_in_flight", "RPCs being handled now.", ["rpc"], "livesum"
        )
        self.pool_connections = gauge(
            "memoryd_db_pool_connections", "Open connections of each pool (idle and in use).",
            ["pool"], "livesum",
        )  # fmt: skip
        self.pool_idle = gauge(
            "memoryd_db_pool_idle_connections", "Connections ready for a checkout.",
            ["pool"], "livesum",
        )  # fmt: skip
        self.pool_max = gauge(
            "memoryd_db_pool_max_connections", "The most connections a pool opens.",
            ["pool"], "livesum",
        )  # fmt: skip
        self.pool_waiting = gauge(
            "memoryd_db_pool_waiting", "Checkouts waiting for a connection.", ["pool"], "livesum"
        )
        self.pool_checkout = histogram(
            "memoryd_db_pool_checkout_seconds",
            "Time to get a connection from a pool (waiting and its liveness check).",
            ["pool"], LATENCY_BUCKETS,
        )  # fmt: skip
        self.statement_duration = histogram(
            "memoryd_db_statement_duration_seconds",
            "Time of each SQL statement, by its first keyword (SELECT, INSERT, WITH, ...).",
            ["operation"], LATENCY_BUCKETS,
        )  # fmt: skip
        self.embedding_batch_size = histogram(
            "memoryd_embedding_batch_size", "Texts embedded by one model call.", [], BATCH_BUCKETS
        )
        self.embedding_duration = histogram(
            "memoryd_embedding_batch_seconds", "Time of one model call (a batch of texts).",
            [], LATENCY_BUCKETS,
        )  # fmt: skip
        self.task_runs = counter(
            "memoryd_background_runs", "Rounds of each background task, by outcome.",
            ["task", "outcome"],
        )  # fmt: skip
        self.task_last_success = gauge(
            "memoryd_background_last_success_timestamp_seconds",
            "When each background task last finished a round without error (Unix time); "
            "time() minus this is its lag.",
            ["task"], "max",
        )  # fmt: skip
        self.build_info = gauge(
            "memoryd_build_info", "Always 1; the labels say what runs.",
            ["version", "python", "grpc"], "max",
        )  # fmt: skip
        self.build_info.labels(__version__, platform.python_version(), grpc.__version__).set(1)


# The process's metrics and their registry once enable() ran; None: recording is off.
_metrics: Metrics | None = None
_registry: CollectorRegistry | None = None
_lock = threading.Lock()


def enable(settings: Settings) -> Metrics:
    """Start recording in this process (once; later calls return the same metrics).

    Under a supervisor (``settings.metrics_multiproc_dir``, PROMETHEUS_MULTIPROC_DIR
    set before prometheus_client was imported) values go to files there, which
    the supervisor adds up; otherwise they stay in this process, with its CPU
    and memory.
    """
    global _metrics, _registry  # noqa: PLW0603 - one set of series per process, as Prometheus expects
    with _lock:
        if _metrics is None:
            _registry = CollectorRegistry()
            if settings.metrics_multiproc_dir is None:
                ProcessCollector(registry=_registry)
            _metrics = Metrics(_registry)
        return _metrics


def current() -> Metrics | None:
    """The process's metrics, or None when recording is off."""
    return _metrics


def serve(settings: Settings) -> WSGIServer | None:
    """Serve /metrics on ``settings.metrics_addr`` (None when off or the port is taken).

    With ``settings.metrics_multiproc_dir`` (a supervisor of several workers),
    the endpoint adds up every worker's files there; otherwise it shows this
    process's series (and starts recording them). Call ``shutdown()`` on the
    result to stop it.
    """
    if settings.metrics_addr is None:
        return None
    host, _, port = settings.metrics_addr.rpartition(":")
    registry = CollectorRegistry()
    if settings.metrics_multiproc_dir is not None:
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=str(settings.metrics_multiproc_dir)
        )
    else:
        enable(settings)
        assert _registry is not None
        registry = _registry
    try:
        server, _thread = start_http_server(int(port), host.strip("[]"), registry=registry)
    except OSError as exc:
        # Metrics are for the operator; the API still serves, and this says why not.
        log.warning("metrics_not_served", addr=settings.metrics_addr, error=exc.strerror)
        return None
    log.info("metrics", addr=f"{host}:{server.server_port}", path="/metrics")
    return server


def clear_multiprocess_dir(path: Path) -> None:
    """Empty a multiprocess directory before workers start (a supervisor's first step)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()


def worker_exited(settings: Settings, pid: int) -> None:
    """Drop a dead worker's live gauges (in-flight calls, pools) from the sums."""
    if settings.metrics_multiproc_dir is not None:
        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            pid, str(settings.metrics_multiproc_dir)
        )


# --- recording, one call at each point that knows the value; no-ops when off ----------


def call_started(rpc: str) -> None:
    """An RPC's handler starts."""
    if _metrics is not None:
        _metrics.rpc_in_flight.labels(rpc).inc()


def call_finished(rpc: str, tenant: str | None, code: str, seconds: float) -> None:
    """An RPC ended with status ``code`` after ``seconds``."""
    if _metrics is not None:
        tenant = tenant or NO_TENANT
        _metrics.rpc_in_flight.labels(rpc).dec()
        _metrics.rpc_requests.labels(rpc, tenant, code).inc()
        _metrics.rpc_duration.labels(rpc, tenant).observe(seconds)


def checkout(pool: str, seconds: float) -> None:
    """A connection was checked out of ``pool`` after ``seconds``."""
    if _metrics is not None:
        _metrics.pool_checkout.labels(pool).observe(seconds)


def statement(query: Any, seconds: float) -> None:
    """A SQL statement ran for ``seconds``."""
    if _metrics is not None:
        _metrics.statement_duration.labels(operation_of(query)).observe(seconds)


def operation_of(query: Any) -> str:
    """A statement's first keyword, upper-case ("SELECT"); "SQL" for composed queries.

    An empty statement is "PING": the pool's liveness check of a connection.
    """
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    if not isinstance(query, str):
        return "SQL"  # psycopg.sql.Composed: rendering it needs the connection
    head = query.lstrip().split(None, 1)
    # "BEGIN; SELECT set_config(...)" is named BEGIN, not "BEGIN;".
    return head[0].rstrip(";").upper()[:16] if head else "PING"


def embedded(texts: int, seconds: float) -> None:
    """One model call embedded ``texts`` texts in ``seconds``."""
    if _metrics is not None:
        _metrics.embedding_batch_size.observe(texts)
        _metrics.embedding_duration.observe(seconds)


def task_ran(task: str, *, ok: bool) -> None:
    """A background task finished a round (``ok``: without error)."""
    if _metrics is not None:
        _metrics.task_runs.labels(task, "ok" if ok else "error").inc()
        if ok:
            _metrics.task_last_success.labels(task).set(time.time())


async def watch_pools(pools: Iterable[_Stats]) -> None:
    """Sample the pools' sizes into gauges until cancelled."""
    pools = list(pools)
    while True:
        if _metrics is not None:
            for pool in pools:
                stats = pool.get_stats()
                _metrics.pool_connections.labels(pool.name).set(stats.get("pool_size", 0))
                _metrics.pool_idle.labels(pool.name).set(stats.get("pool_available", 0))
                _metrics.pool_max.labels(pool.name).set(stats.get("pool_max", 0))
                _metrics.pool_waiting.labels(pool.name).set(stats.get("requests_waiting", 0))
        await asyncio.sleep(POOL_SAMPLE_SECONDS)
