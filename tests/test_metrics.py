"""Prometheus metrics: /metrics after real calls, per tenant, off, a taken port, several workers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server import metrics
from memoryd_server.config import ENVIRONMENT_VARIABLES, Settings
from tests.conftest import ServerThread, TenantKeys, assert_status
from tests.prometheus_scrape import scrape, scrape_after, total, value

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
GET = "/memoryd.v1.ConversationService/GetConversation"
CREATE = "/memoryd.v1.ConversationService/CreateConversation"


def _port(server: ServerThread) -> int:
    port = server.app.metrics_port
    assert port is not None
    return port


def test_rpc_counts_and_latency_move_by_status_code(memoryd_server: ServerThread) -> None:
    """Each finished call adds one to its method/tenant/code counter and its histogram."""
    port = _port(memoryd_server)
    before = scrape(port)
    with grpc.insecure_channel(memoryd_server.addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        conversation_id = f"metrics-{uuid.uuid4().hex[:8]}"
        stub.CreateConversation(
            pb.CreateConversationRequest(conversation_id=conversation_id, conversation={})
        )
        for _ in range(3):
            stub.GetConversation(pb.GetConversationRequest(conversation_id=conversation_id))
        assert_status(
            lambda: stub.GetConversation(pb.GetConversationRequest(conversation_id="nope-1")),
            grpc.StatusCode.NOT_FOUND,
        )
        assert_status(
            lambda: stub.GetConversation(pb.GetConversationRequest(conversation_id="ø" * 129)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    after = scrape_after(port, before, "memoryd_rpc_requests_total", 6)
    ok = {"rpc": GET, "tenant": "default", "code": "OK"}
    missing = {**ok, "code": "NOT_FOUND"}
    bad = {**ok, "code": "INVALID_ARGUMENT"}
    assert (
        value(after, "memoryd_rpc_requests_total", **ok)
        - value(before, "memoryd_rpc_requests_total", **ok)
        == 3
    )
    assert (
        value(after, "memoryd_rpc_requests_total", **missing)
        - value(before, "memoryd_rpc_requests_total", **missing)
        == 1
    )
    assert (
        value(after, "memoryd_rpc_requests_total", **bad)
        - value(before, "memoryd_rpc_requests_total", **bad)
        == 1
    )
    latency = {"rpc": GET, "tenant": "default"}
    count = "memoryd_rpc_duration_seconds_count"
    assert value(after, count, **latency) - value(before, count, **latency) == 5
    assert value(after, "memoryd_rpc_duration_seconds_sum", **latency) > value(
        before, "memoryd_rpc_duration_seconds_sum", **latency
    )
    # Finished calls leave the in-flight gauge where it was.
    assert value(after, "memoryd_rpc_in_flight", rpc=GET) == 0


def test_database_pool_statement_and_build_series(memoryd_server: ServerThread) -> None:
    """Statements are timed by keyword, checkouts timed, pools sampled, the build labelled."""
    port = _port(memoryd_server)
    before = scrape(port)
    with grpc.insecure_channel(memoryd_server.addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        stub.CreateConversation(
            pb.CreateConversationRequest(conversation_id=f"m-{uuid.uuid4().hex[:8]}")
        )
    time.sleep(metrics.POOL_SAMPLE_SECONDS + 0.5)  # one more round of the pool sampler
    after = scrape(port)
    statements = "memoryd_db_statement_duration_seconds_count"
    # CreateConversation runs its tenant setting, its insert, ...
    assert total(after, statements) - total(before, statements) >= 2
    operations = {dict(ls)["operation"] for (n, ls) in after if n == statements}
    assert {"SELECT", "INSERT"} <= operations, operations
    checkouts = "memoryd_db_pool_checkout_seconds_count"
    assert total(after, checkouts) > total(before, checkouts)
    pools = {dict(ls)["pool"] for (n, ls) in after if n == "memoryd_db_pool_connections"}
    assert len(pools) == 2, pools
    for pool in pools:
        assert value(after, "memoryd_db_pool_max_connections", pool=pool) >= 1
        assert value(after, "memoryd_db_pool_connections", pool=pool) >= 1
    assert value(after, "memoryd_db_pool_waiting", pool=next(iter(pools))) == 0
    build = [dict(ls) for (n, ls), v in after.items() if n == "memoryd_build_info" and v == 1]
    assert len(build) == 1
    assert build[0]["version"]
    assert build[0]["python"]
    assert build[0]["grpc"] == grpc.__version__
    assert total(after, "process_resident_memory_bytes") > 0


def test_background_tasks_report_runs(memoryd_server: ServerThread) -> None:
    """Expiry and the message embedder count their rounds and stamp their last success."""
    port = _port(memoryd_server)
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(port)
        runs = {
            dict(ls)["task"]
            for (n, ls), v in samples.items()
            if n == "memoryd_background_runs_total" and dict(ls)["outcome"] == "ok" and v > 0
        }
        if {"memory_expiry", "message_embedding", "idempotency_expiry"} <= runs:
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.5)
    stamp = value(
        samples, "memoryd_background_last_success_timestamp_seconds", task="memory_expiry"
    )
    assert time.time() - 60 < stamp <= time.time()


def test_tenants_are_labelled_apart(
    auth_server: ServerThread, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    """A tenant's calls count under its id only; a refused key under no tenant."""
    port = _port(auth_server)
    before = scrape(port)
    with grpc.insecure_channel(auth_server.addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        for _ in range(2):
            stub.CreateConversation(pb.CreateConversationRequest(), metadata=tenant.metadata())
        assert_status(
            lambda: stub.CreateConversation(
                pb.CreateConversationRequest(), metadata=(("authorization", "Bearer md_wrong-key"),)
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    after = scrape_after(port, before, "memoryd_rpc_requests_total", 3)

    def moved(**labels: str) -> float:
        name = "memoryd_rpc_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved(rpc=CREATE, tenant=tenant.tenant_id, code="OK") == 2
    assert moved(rpc=CREATE, tenant=other_tenant.tenant_id, code="OK") == 0
    assert moved(rpc=CREATE, tenant=metrics.NO_TENANT, code="UNAUTHENTICATED") == 1


def test_metrics_off_serves_nothing(test_settings: Settings) -> None:
    """MEMORYD_METRICS_ADDR=off: no endpoint (the API serves as usual)."""
    settings = Settings.from_env({"MEMORYD_METRICS_ADDR": "off"})
    assert settings.metrics_addr is None
    server = ServerThread(test_settings.replace(metrics_addr=None))
    try:
        assert server.app.metrics_port is None
    finally:
        server.stop()


def test_taken_port_is_reported_and_the_server_still_serves(
    test_settings: Settings, server_log: Path
) -> None:
    """A metrics port already in use logs ``metrics_not_served``; gRPC still answers."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        server = ServerThread(test_settings.replace(metrics_addr=addr))
        try:
            assert server.app.metrics_port is None
            with grpc.insecure_channel(server.addr) as channel:
                stub = pb_grpc.ConversationServiceStub(channel)
                stub.CreateConversation(pb.CreateConversationRequest())
        finally:
            server.stop()
    events = [json.loads(line) for line in server_log.read_text().splitlines()]
    assert any(e["event"] == "metrics_not_served" and e["addr"] == addr for e in events)


@pytest.mark.parametrize("text", ["localhost", "127.0.0.1:99999", ":9464", "ünïcode:port"])
def test_bad_metrics_addr_is_named(text: str) -> None:
    """A malformed MEMORYD_METRICS_ADDR stops the server with the variable's name."""
    with pytest.raises(ValueError, match="MEMORYD_METRICS_ADDR"):
        Settings.from_env({"MEMORYD_METRICS_ADDR": text})


def _serve_worker(pg_uri: str, multiproc: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(
        DATABASE_URL=pg_uri,
        MEMORYD_ADDR="127.0.0.1:0",
        MEMORYD_WORKERS="1",  # each is one worker; the test plays the supervisor
        MEMORYD_AUTH="off",
        MEMORYD_EMBEDDING_DIM="384",
        MEMORYD_LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    with log.open("wb") as stream:
        return subprocess.Popen(
            [sys.executable, "-m", "memoryd_server", "serve"], env=env, stdout=stream, stderr=stream
        )


def _serving_port(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "serving":
                return int(json.loads(line)["port"])
        time.sleep(0.2)
    raise AssertionError(f"no serving event: {log.read_text()}")


def test_several_worker_processes_show_in_one_scrape(
    pg_uri: str, memoryd_server: ServerThread, tmp_path: Path
) -> None:
    """Two server processes sharing PROMETHEUS_MULTIPROC_DIR add up in one /metrics."""
    del memoryd_server  # its migrations made the tables
    multiproc = tmp_path / "prometheus"
    metrics.clear_multiprocess_dir(multiproc)
    workers = [_serve_worker(pg_uri, multiproc, tmp_path / f"w{i}.log") for i in range(2)]
    supervisor = Settings(metrics_addr="127.0.0.1:0", metrics_multiproc_dir=multiproc)
    endpoint = None
    try:
        ports = [_serving_port(tmp_path / f"w{i}.log", w) for i, w in enumerate(workers)]
        for calls, port in zip((2, 3), ports, strict=True):
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.ConversationServiceStub(channel)
                for _ in range(calls):
                    stub.CreateConversation(pb.CreateConversationRequest())
        endpoint = metrics.serve(supervisor)
        assert endpoint is not None
        samples = scrape_after(endpoint.server_port, {}, "memoryd_rpc_requests_total", 5)
        ok = {"rpc": CREATE, "tenant": "default", "code": "OK"}
        assert value(samples, "memoryd_rpc_requests_total", **ok) == 5
        assert (
            value(samples, "memoryd_rpc_duration_seconds_count", rpc=CREATE, tenant="default") == 5
        )
        # Workers do not serve /metrics themselves: the supervisor does.
        for i in range(2):
            events = [
                json.loads(line)
                for line in (tmp_path / f"w{i}.log").read_text().splitlines()
                if line.startswith("{")
            ]
            assert not [e for e in events if e["event"] in {"metrics", "metrics_not_served"}]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
            metrics.worker_exited(supervisor, worker.pid)
        if endpoint is not None:
            endpoint.shutdown()
            endpoint.server_close()


def test_grafana_dashboard_names_only_real_series(memoryd_server: ServerThread) -> None:
    """Every memoryd_* series docs/grafana-dashboard.json queries is one the server serves."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in re.findall(r"\bmemoryd_\w+", expr)}
    port = _port(memoryd_server)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        families = {
            f.name: f.type for f in text_string_to_metric_families(response.read().decode())
        }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    served = {name + end for name, kind in families.items() for end in suffixes.get(kind, ())}
    assert used <= served, used - served
    covered = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert {
        "memoryd_rpc_requests",
        "memoryd_rpc_duration_seconds",
        "memoryd_rpc_in_flight",
        "memoryd_db_pool_waiting",
        "memoryd_db_pool_checkout_seconds",
        "memoryd_db_statement_duration_seconds",
        "memoryd_embedding_batch_size",
        "memoryd_background_last_success_timestamp_seconds",
        "memoryd_build_info",
    } <= covered


def test_in_flight_counts_a_call_held_by_a_lock(memoryd_server: ServerThread, pg_uri: str) -> None:
    """A call waiting on a table lock shows in memoryd_rpc_in_flight until it ends."""
    port = _port(memoryd_server)
    with psycopg.connect(pg_uri) as locker, grpc.insecure_channel(memoryd_server.addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        locker.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
        future = stub.CreateConversation.future(pb.CreateConversationRequest(), timeout=30)
        deadline = time.monotonic() + 10
        while value(scrape(port), "memoryd_rpc_in_flight", rpc=CREATE) < 1:
            assert time.monotonic() < deadline, "the held call never showed as in flight"
            time.sleep(0.05)
        assert not future.done()
        locker.rollback()  # releases the lock: the call goes on
        future.result()
    # The handler ends just after the client has its answer.
    while value(scrape(port), "memoryd_rpc_in_flight", rpc=CREATE) != 0:
        assert time.monotonic() < deadline + 10, "the finished call stayed in flight"
        time.sleep(0.05)
