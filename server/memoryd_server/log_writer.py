"""Log lines written by a thread of their own: a stalled stderr never stops the server.

structlog's WriteLogger writes and flushes each line on the caller's thread,
which for the access log is the event loop's. Whoever reads stderr (a
terminal, a container runtime, a pipe into a log shipper) can stall; once
the pipe's buffer is full (64 KiB, a few hundred lines) every write blocks,
and with it every call the process serves. Here the loop only keeps the
line; every 10 ms what it kept goes to one thread, which writes it, several
lines per write. Past ``MAX_QUEUED_LINES`` unwritten lines new ones are
dropped and counted, and the count is logged once the stream takes lines
again (``log_lines_dropped``).
What is queued is written before the process exits normally; a process
killed outright loses what was still queued (at most about 10 ms of lines
while stderr is read), as it loses what it did not log yet.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import queue
import threading
import time
from typing import Any, TextIO

MAX_QUEUED_LINES = 10_000
HAND_OVER_SECONDS = 0.01
# Workers share stderr. A write of at most PIPE_BUF bytes to a pipe is never
# interleaved with another process's, so batches stay within it (whole lines).
_ATOMIC_BYTES = 4096


class LineWriter:
    """Queues lines (``msg`` and the level names, as structlog's loggers take them)."""

    def __init__(self, stream: TextIO, max_queued: int = MAX_QUEUED_LINES) -> None:
        self._stream = stream
        self._max_queued = max_queued
        self._batches: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._unwritten = 0  # lines handed to the thread, not written yet (under _lock)
        self._dropped = 0  # (under _lock)
        # The event loop's lines, handed to the thread every HAND_OVER_SECONDS:
        # waking the thread for each line (a futex call, then the GIL passed to
        # it and back) cost more CPU than writing the line had.
        self._pending: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="memoryd-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def msg(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not self._loop and (self._loop is None or not self._loop.is_running()):
            # A first loop, or none or another once the last one ended: what
            # that one left pending goes first, so the lines stay in order.
            self._hand_over_pending()
            self._loop = loop
        if len(self._pending) + self._unwritten >= self._max_queued:
            with self._lock:
                self._dropped += 1
        elif loop is None or loop is not self._loop:
            # No loop, or another thread's while the batching one runs: at once.
            self._hand_over([line + "\n"])
        else:
            if not self._pending:
                loop.call_later(HAND_OVER_SECONDS, self._hand_over_pending)
            self._pending.append(line + "\n")

    debug = info = warning = warn = error = err = critical = exception = fatal = failure = msg

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread (at exit; at most ``timeout``)."""
        if self._thread.is_alive():
            self._hand_over_pending()
            self._batches.put(None)
            self._thread.join(timeout)

    def _hand_over_pending(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._hand_over(batch)

    def _hand_over(self, batch: list[str]) -> None:
        with self._lock:
            self._unwritten += len(batch)
        self._batches.put(batch)

    def _run(self) -> None:
        while True:
            batch = self._batches.get()
            lines: list[str] = []
            while batch is not None:
                lines.extend(batch)
                try:
                    batch = self._batches.get_nowait()
                except queue.Empty:
                    break
            if lines:
                self._write(lines)
            if batch is None:
                return

    def _write(self, lines: list[str]) -> None:
        chunks: list[str] = []
        for line in lines:
            # A line over the limit goes alone; others join the chunk that fits them.
            if chunks and len(chunks[-1]) + len(line) <= _ATOMIC_BYTES:
                chunks[-1] += line
            else:
                chunks.append(line)
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            chunks.append(_dropped_line(dropped))
        try:
            for chunk in chunks:
                self._stream.write(chunk)
            self._stream.flush()
        except (OSError, ValueError):  # stderr closed: nothing left to tell
            pass
        with self._lock:
            self._unwritten -= len(lines)


_writers: dict[int, LineWriter] = {}


def writer_for(stream: TextIO) -> LineWriter:
    """The one writer of ``stream`` in this process (logging may be configured again)."""
    writer = _writers.get(id(stream))
    if writer is None:
        writer = _writers[id(stream)] = LineWriter(stream)
    return writer


def _dropped_line(count: int) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    event: dict[str, Any] = {
        "event": "log_lines_dropped",
        "count": count,
        "why": "stderr was not read fast enough",
        "level": "warning",
        "timestamp": f"{stamp}Z",
    }
    return json.dumps(event) + "\n"
