"""MEMORYD_WORKERS: one ``memoryd serve`` supervising server processes that share a port."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import grpc

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server import crash_leftovers
from tests import test_startup
from tests.prometheus_scrape import scrape_after, total
from tests.test_startup import Memoryd, _free_port, _wait_for, memoryd_serve

# test_startup's fixture: a data directory outside pytest's tmp tree.
pg_dir = test_startup.pg_dir
WORKERS = "2"
# Connections the kernel spreads over the workers at random: the chance that
# this many all land on one of two is 2 * 2**-40.
MAX_CHANNELS = 40


def _create(addr: str, title: str) -> pb.Conversation:
    """CreateConversation on a fresh connection (a channel of its own)."""
    # A local subchannel pool: a new TCP connection, not one shared with earlier channels.
    with grpc.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return (
            pb_grpc.ConversationServiceStub(channel)
            .CreateConversation(
                pb.CreateConversationRequest(conversation=pb.Conversation(title=title)), timeout=30
            )
            .conversation
        )


def _rpc_pids(server: Memoryd) -> set[int]:
    return {e["pid"] for e in server.events() if e["event"] == "rpc"}


def _worker_pids(server: Memoryd) -> dict[int, int]:
    """Each worker's latest pid, from its "serving" events."""
    return {e["worker"]: e["pid"] for e in server.events() if e["event"] == "serving"}


def _logged_creates(server: Memoryd) -> int:
    events = server.events()
    return sum(1 for e in events if e["event"] == "rpc" and "CreateConversation" in e["rpc"])


def _serve_on_every_worker(server: Memoryd) -> set[int]:
    """Calls on fresh connections until every worker answered one; their pids."""
    workers = set(_worker_pids(server).values())
    seen: set[int] = set()
    before = _logged_creates(server)
    for i in range(MAX_CHANNELS):
        created = _create(server.addr, f"wörker call {i}")
        assert created.title == f"wörker call {i}"
        # A worker writes its lines every 10 ms (log_writer.py): this call's first.
        _wait_for(lambda: _logged_creates(server) > before + i, 5, "the call's log line")  # noqa: B023
        seen = _rpc_pids(server) & workers
        if seen == workers:
            break
    return seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


def test_two_workers_serve_on_one_port_and_stop_together(tmp_path: Path, pg_dir: Path) -> None:
    """Both workers answer on the shared port; SIGTERM drains both, then the database stops."""
    data_dir = pg_dir / "data"
    with memoryd_serve(data_dir, tmp_path / "memoryd.log", MEMORYD_WORKERS=WORKERS) as server:
        server.wait_serving()
        _wait_for(lambda: len(_worker_pids(server)) == 2, 60, "two workers serving")
        workers = _worker_pids(server)
        assert server.process.pid not in workers.values()
        assert _serve_on_every_worker(server) == set(workers.values())
        assert server.stop(signal.SIGTERM) == 0
        events = server.events()
    stopped = {e["worker"] for e in events if e["event"] == "stopped"}
    drained = [e for e in events if e["event"] == "drained"]
    assert stopped == {0, 1}
    assert [d["finished"] for d in drained] == [True, True]
    assert events[-1]["event"] == "supervisor_stopped"
    assert not any(_alive(pid) for pid in workers.values())
    assert not crash_leftovers.postmaster_alive(data_dir)


def test_killed_worker_is_reported_and_replaced(tmp_path: Path, pg_dir: Path) -> None:
    """kill -9 of a worker: the supervisor logs it, starts another, and calls keep working."""
    with memoryd_serve(
        pg_dir / "data", tmp_path / "memoryd.log", MEMORYD_WORKERS=WORKERS
    ) as server:
        server.wait_serving()
        _wait_for(lambda: len(_worker_pids(server)) == 2, 60, "two workers serving")
        victim = _worker_pids(server)[1]
        os.kill(victim, signal.SIGKILL)
        _wait_for(lambda: _worker_pids(server)[1] != victim, 60, "worker 1 replaced")
        exited = [e for e in server.events() if e["event"] == "worker_exited"]
        assert [(e["worker"], e["pid"], e["code"]) for e in exited] == [
            (1, victim, -signal.SIGKILL)
        ]
        replacement = _worker_pids(server)[1]
        assert _alive(replacement)
        assert _serve_on_every_worker(server) == {_worker_pids(server)[0], replacement}
        assert server.stop(signal.SIGTERM) == 0


def test_background_work_runs_in_worker_zero_only(tmp_path: Path, pg_dir: Path) -> None:
    """Expired memories are swept by worker 0 alone (once per host, not once per worker)."""
    from memoryd.v1 import memory_pb2, memory_pb2_grpc

    with memoryd_serve(
        pg_dir / "data",
        tmp_path / "memoryd.log",
        MEMORYD_WORKERS=WORKERS,
        MEMORYD_EXPIRY_INTERVAL_SECONDS="0.2",
        MEMORYD_EMBEDDING_DIM="3",
    ) as server:
        server.wait_serving()
        _wait_for(lambda: len(_worker_pids(server)) == 2, 60, "two workers serving")
        soon = int(time.time()) + 1
        for i in range(MAX_CHANNELS // 4):
            with grpc.insecure_channel(
                server.addr, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as channel:
                memory_pb2_grpc.MemoryServiceStub(channel).CreateMemory(
                    memory_pb2.CreateMemoryRequest(
                        memory=memory_pb2.Memory(
                            namespace=["w"], content=f"expires {i}",
                            expire_time={"seconds": soon},
                        )
                    ),
                    timeout=30,
                )  # fmt: skip

        def swept() -> bool:
            expired = [e for e in server.events() if e["event"] == "memories_expired"]
            return sum(e["count"] for e in expired) == MAX_CHANNELS // 4

        _wait_for(swept, 30, "the expired memories swept")
        sweepers: set[Any] = {
            e["worker"] for e in server.events() if e["event"] == "memories_expired"
        }
        assert sweepers == {0}
        assert server.stop(signal.SIGTERM) == 0


def test_one_scrape_counts_every_workers_calls_and_the_welcome_waits_for_all(
    tmp_path: Path, pg_dir: Path
) -> None:
    """The supervisor's /metrics adds up both workers; --welcome prints once, when both serve."""
    metrics_port = _free_port()
    with memoryd_serve(
        pg_dir / "data",
        tmp_path / "memoryd.log",
        welcome=True,
        MEMORYD_WORKERS=WORKERS,
        MEMORYD_METRICS_ADDR=f"127.0.0.1:{metrics_port}",
    ) as server:
        server.wait_serving()
        _wait_for(lambda: len(_worker_pids(server)) == 2, 60, "two workers serving")
        _wait_for(lambda: "memoryd is serving on" in server.log.read_text(), 30, "the welcome")
        workers = set(_worker_pids(server).values())
        assert _serve_on_every_worker(server) == workers
        calls = sum(
            1 for e in server.events() if e["event"] == "rpc" and "CreateConversation" in e["rpc"]
        )
        create = "/memoryd.v1.ConversationService/CreateConversation"
        samples = scrape_after(metrics_port, {}, "memoryd_rpc_requests_total", calls)
        assert total(samples, "memoryd_rpc_requests_total", rpc=create, code="OK") == calls
        text = server.log.read_text()
        assert text.count("memoryd is serving on") == 1
        assert f"metrics: http://127.0.0.1:{metrics_port}/metrics" in text
        assert server.stop(signal.SIGTERM) == 0
