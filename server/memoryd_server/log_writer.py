"""Log lines written by a thread of their own: a stalled stderr never stops the server.

structlog's WriteLogger writes and flushes each line on the caller's thread,
which for the access log is the event loop's. Whoever reads stderr (a
terminal, a container runtime, a pipe into a log shipper) can stall; once
the pipe's buffer is full (64 KiB, a few hundred lines) every write blocks,
and with it every call the process serves. Here the loop only queues the
line; one thread writes what has queued, several lines per write. Past
``MAX_QUEUED_LINES`` unwritten lines new ones are dropped and counted, and
the count is logged once the stream takes lines again (``log_lines_dropped``).
What is queued is written before the process exits normally; a process
killed outright loses what was still queued, as it loses what it did not log
yet.
"""

from __future__ import annotations

import atexit
import json
import queue
import threading
import time
from typing import Any, TextIO

MAX_QUEUED_LINES = 10_000
# Workers share stderr. A write of at most PIPE_BUF bytes to a pipe is never
# interleaved with another process's, so batches stay within it (whole lines).
_ATOMIC_BYTES = 4096
_STOP = None


class LineWriter:
    """Queues lines (``msg`` and the level names, as structlog's loggers take them)."""

    def __init__(self, stream: TextIO, max_queued: int = MAX_QUEUED_LINES) -> None:
        self._stream = stream
        self._max_queued = max_queued
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="memoryd-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def msg(self, line: str) -> None:
        if self._lines.qsize() >= self._max_queued:
            with self._dropped_lock:
                self._dropped += 1
            return
        self._lines.put(line + "\n")

    debug = info = warning = warn = error = err = critical = exception = fatal = failure = msg

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread (at exit; at most ``timeout``)."""
        if self._thread.is_alive():
            self._lines.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            line = self._lines.get()
            batch: list[str] = []
            size = 0
            while line is not None:
                batch.append(line)
                size += len(line)
                if size >= _ATOMIC_BYTES:
                    break
                try:
                    line = self._lines.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
            if line is None:
                return

    def _write(self, batch: list[str]) -> None:
        chunks: list[str] = []
        for line in batch:
            # A line over the limit goes alone; others join the chunk that fits them.
            if chunks and len(chunks[-1]) + len(line) <= _ATOMIC_BYTES:
                chunks[-1] += line
            else:
                chunks.append(line)
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            chunks.append(_dropped_line(dropped))
        try:
            for chunk in chunks:
                self._stream.write(chunk)
            self._stream.flush()
        except (OSError, ValueError):  # stderr closed: nothing left to tell
            pass


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
