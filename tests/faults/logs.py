"""Reading the access log that the session's in-process servers write."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class LogTail:
    """The JSON events appended to ``path`` since this object was made.

    A ``memoryd serve`` process writes its lines every 10 ms (log_writer.py):
    the tail starts once its file has not grown for ``quiet`` seconds, so
    that earlier calls' lines still on their way are not taken for new ones.
    """

    def __init__(self, path: Path, quiet: float = 0.0) -> None:
        self.path = path
        size, deadline = path.stat().st_size, time.monotonic() + 10
        while quiet and time.monotonic() < deadline:
            time.sleep(quiet)
            size, before = path.stat().st_size, size
            if size == before:
                break
        self.offset = size

    def events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        with self.path.open("rb") as stream:
            stream.seek(self.offset)
            lines = stream.read().decode().splitlines()
        found = []
        for line in lines:
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if event is not None and record.get("event") != event:
                continue
            if all(record.get(k) == v for k, v in match.items()):
                found.append(record)
        return found

    def wait_for(self, event: str, timeout: float = 5.0, **match: Any) -> list[dict[str, Any]]:
        """The matching events, waiting until there is one: a call's log line is
        written after its answer went out, so a fast client may look too early."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(event, **match)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.02)
