"""The embedded PostgreSQL after kill -9 of memoryd, or of both (issue 12 item 6)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server import crash_leftovers
from tests.test_startup import _wait_for, memoryd_serve

ROUNDS = 3


def _create(addr: str, uid: str) -> str:
    with grpc.insecure_channel(addr) as channel:
        return str(
            pb_grpc.ConversationServiceStub(channel)
            .CreateConversation(
                pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid)),
                timeout=10,
            )
            .conversation.id
        )


def _stopped(data_dir: Path) -> bool:
    return not crash_leftovers.postmaster_alive(data_dir)


def test_clean_stops_after_a_killed_memoryd_stop_the_database(tmp_path: Path, pg_dir: Path) -> None:
    """Before: the killed memoryd's handle stayed, and no later stop stopped PostgreSQL."""
    data_dir = pg_dir / "data"
    with memoryd_serve(data_dir, tmp_path / "killed.log") as server:
        server.wait_serving()
        server.process.kill()
        server.process.wait(30)
    for i in range(2):
        with memoryd_serve(data_dir, tmp_path / f"clean-{i}.log") as server:
            server.wait_serving()
            _create(server.addr, f"clean-{i}")
            assert server.stop(signal.SIGTERM) == 0
            # Checked before memoryd_serve's clean-up, which stops a leftover itself.
            stopped = _stopped(data_dir)
        assert stopped, f"PostgreSQL still running after clean stop {i + 1}"
        assert "stale_database_handles_removed" in [e["event"] for e in server.events()] or i


def test_start_after_memoryd_and_postgres_are_both_killed(tmp_path: Path, pg_dir: Path) -> None:
    """Before: the dead (zombie) postmaster looked alive and the restart was refused."""
    data_dir = pg_dir / "data"
    starts = []
    for i in range(ROUNDS):
        with memoryd_serve(data_dir, tmp_path / f"round-{i}.log") as server:
            began = time.monotonic()
            server.wait_serving()
            starts.append(time.monotonic() - began)
            _create(server.addr, f"round-{i}")
            pid = crash_leftovers.postmaster_pid(data_dir)
            assert pid is not None
            server.process.kill()
            os.kill(pid, signal.SIGKILL)
            server.process.wait(30)
            _wait_for(
                lambda pid=pid: not crash_leftovers.process_alive(pid),  # type: ignore[misc]
                10,
                "the postmaster to die",
            )
    with memoryd_serve(data_dir, tmp_path / "last.log") as server:
        began = time.monotonic()
        server.wait_serving()
        starts.append(time.monotonic() - began)
        _create(server.addr, "last")
        assert server.stop(signal.SIGTERM) == 0
        stopped = _stopped(data_dir)
    print(f"\n{ROUNDS} kills of both, then starts in {', '.join(f'{s:.1f}' for s in starts)} s")
    assert stopped
