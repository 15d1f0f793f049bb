"""``memoryd serve`` with MEMORYD_WORKERS > 1: one supervisor, N server processes on one port.

One Python process saturates one core (the GIL); the database is rarely what
limits memoryd. The supervisor starts the embedded database once, then worker
processes that each run a whole server (its own event loop and pool) on the
same port with SO_REUSEPORT, so the kernel spreads connections over them.
Worker 0 starts first (it applies migrations and registers the embedding
model, as a lone server would) and alone runs the host-wide background work.
SIGTERM/SIGINT are forwarded: every worker drains as a lone server does, and
they stop gRPC together once all have drained; then the supervisor stops the
embedded database, last. A worker that dies is reported and replaced; one
that cannot start stops the whole server.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import structlog

from memoryd_server import metrics, tls
from memoryd_server.config import ConfigError, Settings
from memoryd_server.database import EmbeddedDatabase, StartupError, redact
from memoryd_server.welcome import print_welcome

log = structlog.get_logger("memoryd")

# A worker that has not reported within this long counts as failed to start
# (initdb, migrations and the local model's first load fit well within it).
START_SECONDS = 300.0
# More restarts than this within RESTART_WINDOW_SECONDS with no worker left
# serving: something is wrong with every worker (a bad setting, the machine),
# not with one; give up. While one serves, the others are retried, backing
# off up to MAX_BACKOFF_SECONDS (a database outage fails their starts).
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
# After the grace period, how long a worker may take to release everything.
EXIT_SECONDS = 15.0
# How often a drained worker looks whether every worker has drained.
RELEASE_POLL_SECONDS = 0.01
PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    pid: int


def _bind_port(addr: str) -> tuple[str, socket.socket]:
    """``addr`` with its port resolved, and a socket holding that port for the workers.

    Bound with SO_REUSEPORT (the workers' sockets join it) and never listening,
    so it takes no connections; it keeps port 0's choice for the whole run.
    """
    host, _, port = addr.rpartition(":")
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((bare if bare not in ("", "localhost") else "127.0.0.1", int(port)))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {addr}: {exc.strerror}") from None
    return f"{host}:{sock.getsockname()[1]}", sock


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to this process if the supervisor dies (Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _add_worker(index: int) -> Any:
    def add(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("worker", index)
        event_dict.setdefault("pid", os.getpid())
        return event_dict

    return add


def _stop_together(
    index: int, reports: Queue[tuple[str, int, str]], release: ProcessEvent
) -> Callable[[float], Awaitable[None]]:
    """A worker's wait, once drained, for the supervisor to let every worker stop gRPC."""
    import asyncio

    async def together(seconds: float) -> None:
        reports.put(("drained", index, ""))
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        # Polled: a process-shared event cannot be awaited, and the loop must go
        # on refusing new calls (UNAVAILABLE) meanwhile.
        while not release.is_set() and loop.time() < until:  # noqa: ASYNC110
            await asyncio.sleep(RELEASE_POLL_SECONDS)

    return together


def _worker_main(
    settings: Settings,
    index: int,
    reports: Queue[tuple[str, int, str]],
    release: ProcessEvent,
) -> None:
    """A worker process: one whole server, reporting "ready" or "failed", then "drained"."""
    import asyncio

    from memoryd_server.app import serve
    from memoryd_server.telemetry import configure_logging

    _die_with_parent()
    configure_logging(settings)
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[processors[0], _add_worker(index), *processors[1:]])
    try:
        together = _stop_together(index, reports, release)
        asyncio.run(
            serve(
                settings,
                lambda _: reports.put(("ready", index, "")),
                worker=index,
                together=together,
            )
        )
    except (ConfigError, StartupError) as exc:
        reports.put(("failed", index, str(exc)))
        sys.exit(2)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - reported, without a traceback's local values
        text = str(exc).strip()
        detail = redact(text.splitlines()[0]) if text else ""
        reports.put(("failed", index, f"worker {index}: {type(exc).__name__}: {detail}"))
        sys.exit(1)


class Supervisor:
    """``settings.worker_count`` workers until SIGTERM/SIGINT; ``run()`` gives the exit code."""

    def __init__(self, settings: Settings, *, welcome: bool = False) -> None:
        self.settings = settings
        # Print welcome.py's text once every worker serves (``memoryd serve --welcome``).
        self._welcome = welcome
        self._context = multiprocessing.get_context("spawn")  # no fork of gRPC's threads
        self._reports: Queue[tuple[str, int, str]] = self._context.Queue()
        self._stopping = threading.Event()
        self._workers: dict[int, _Worker] = {}
        self._restarts: list[float] = []
        self._ready: set[int] = set()
        # Workers that drained since SIGTERM, and the event that lets them all
        # stop gRPC at once (see _stop_workers).
        self._drained: set[int] = set()
        self._release = self._context.Event()
        self._signalled = False
        # When each dead worker was found dead (it restarts after a back-off).
        self._exited: dict[int, float] = {}
        self._failures: list[tuple[int, str]] = []
        self._worker_settings = settings

    def _on_signal(self, signum: int, _: Any) -> None:
        self._stopping.set()
        # SIGINT from a terminal reaches the workers already (one process group).
        if signum != signal.SIGINT:
            self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: signal.Signals) -> None:
        self._signalled = True
        for worker in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, sig)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker_main,
            args=(self._worker_settings, index, self._reports, self._release),
            name=f"memoryd-worker-{index}",
        )
        process.start()
        assert process.pid is not None
        self._workers[index] = _Worker(index, process, process.pid)

    def _await_first(self) -> None:
        """Wait for worker 0 to serve; StartupError with its reason if it cannot."""
        deadline = time.monotonic() + START_SECONDS
        process = self._workers[0].process
        while not self._stopping.is_set():
            if self._ready or self._failures:
                break
            if not process.is_alive():
                self._read_reports(wait=1.0)  # its reason may still be on the way
                if not self._failures:
                    message = f"worker 0 exited with code {process.exitcode} while starting"
                    raise StartupError(message)
                break
            if time.monotonic() > deadline:
                raise StartupError(f"worker 0 did not start within {START_SECONDS:.0f} s")
            self._read_reports(wait=0.2)
        if self._failures and not self._stopping.is_set():
            raise StartupError(self._failures[0][1])

    def _read_reports(self, wait: float) -> None:
        """Collect the workers' reports, waiting at most ``wait`` seconds for the first."""
        with contextlib.suppress(queue.Empty):
            while True:
                kind, index, message = self._reports.get(timeout=wait)
                wait = 0.0
                if kind == "ready":
                    self._ready.add(index)
                elif kind == "drained":
                    self._drained.add(index)
                else:
                    self._failures.append((index, message))
                    log.error("worker_failed", worker=index, error=message)

    def _replace_dead(self) -> None:
        """Report and restart workers that exited while not stopping.

        A worker that fails to start (the database went away meanwhile) is
        restarted the same way. Restarts back off (1, 2, 4, ... up to 30 s
        while they keep failing); the server gives up only when no worker
        is left serving and MAX_RESTARTS failed within RESTART_WINDOW_SECONDS.
        """
        self._read_reports(wait=0.0)
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_SECONDS]
        for index, worker in list(self._workers.items()):
            if worker.process.is_alive() or self._stopping.is_set():
                continue
            if index not in self._exited:
                self._exited[index] = now
                log.error("worker_exited", worker=index, pid=worker.pid,
                          code=worker.process.exitcode)  # fmt: skip
                metrics.worker_exited(self._worker_settings, worker.pid)
            if now < self._exited[index] + min(2 ** len(self._restarts), MAX_BACKOFF_SECONDS) - 1:
                continue
            alive = any(w.process.is_alive() for w in self._workers.values())
            if not alive and len(self._restarts) >= MAX_RESTARTS:
                raise StartupError(
                    f"workers died {MAX_RESTARTS} times within {RESTART_WINDOW_SECONDS:.0f} s"
                    " and none is serving; giving up"
                )
            self._restarts.append(now)
            del self._exited[index]
            self._start(index)
            log.info("worker_restarted", worker=index, pid=self._workers[index].pid)

    def _stop_workers(self) -> None:
        # Once: a worker that has finished may no longer handle SIGTERM.
        if not self._signalled:
            self._signal_all(signal.SIGTERM)
        grace_end = time.monotonic() + self.settings.shutdown_grace_seconds
        # Every worker stops gRPC when all have drained (or the grace is over).
        # One stopping alone sends its clients, reconnecting, to another that is
        # still draining, and that one's stop kills the calls of theirs it has
        # not yet handed out: clients see CANCELLED (issue 12).
        while time.monotonic() < grace_end:
            self._read_reports(wait=RELEASE_POLL_SECONDS)
            if all(
                index in self._drained or not worker.process.is_alive()
                for index, worker in self._workers.items()
                if index in self._ready
            ):
                break
        self._release.set()
        deadline = grace_end + EXIT_SECONDS
        for worker in self._workers.values():
            worker.process.join(max(deadline - time.monotonic(), 0.1))
            if worker.process.is_alive():
                log.error("worker_killed", worker=worker.index, pid=worker.pid)
                worker.process.kill()
                worker.process.join(5)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; 0 after a clean stop. Raises StartupError."""
        tls.server_credentials(self.settings)  # a bad file fails here, once, naming it
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        addr, holder = _bind_port(self.settings.addr)
        embedded: EmbeddedDatabase | None = None
        metrics_dir = self._metrics_dir()
        metrics_server = None
        try:
            url = self.settings.database_url
            if url is None:
                embedded = EmbeddedDatabase(self.settings.data_dir)
                url = embedded.start()
            # Workers reach the embedded database by URL; whether calls need a
            # key stays what it is for this (embedded) server.
            self._worker_settings = self.settings.replace(
                addr=addr,
                database_url=url,
                auth="on" if self.settings.auth_enabled else "off",
                metrics_multiproc_dir=metrics_dir,
            )
            # One /metrics for every worker: they record into metrics_dir.
            metrics_server = metrics.serve(self._worker_settings)
            log.info("supervisor", addr=addr, workers=self.settings.worker_count,
                     pid=os.getpid())  # fmt: skip
            self._start(0)
            self._await_first()
            for index in range(1, self.settings.worker_count):
                self._start(index)
            welcomed = not self._welcome
            while not self._stopping.wait(0.2):
                self._replace_dead()
                if not welcomed and len(self._ready) == self.settings.worker_count:
                    welcomed = True
                    port = int(addr.rpartition(":")[2])
                    metrics_port = None if metrics_server is None else metrics_server.server_port
                    print_welcome(self.settings, port, metrics_port)
            return 0
        finally:
            self._stopping.set()
            self._stop_workers()
            holder.close()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            if embedded is not None:
                embedded.stop()
            log.info("supervisor_stopped")

    def _metrics_dir(self) -> Path | None:
        """A fresh directory the workers record their metrics in (None: metrics off).

        prometheus_client picks its multiprocess mode when first imported, from
        the environment: the workers (spawned, so importing it anew) inherit it.
        """
        if self.settings.metrics_addr is None:
            return None
        path = Path(tempfile.mkdtemp(prefix="memoryd-metrics-"))
        metrics.clear_multiprocess_dir(path)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
        return path
