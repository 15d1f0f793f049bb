"""The log's writer thread: lines in order, whole, and dropped (and counted) only past its bound."""

from __future__ import annotations

import asyncio
import io
import json
import threading

from memoryd_server.log_writer import LineWriter


class StalledStream(io.StringIO):
    """A stream whose first write waits until released, as a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = threading.Event()
        self.release = threading.Event()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writing.set()
        assert self.release.wait(10)
        self.writes.append(text)
        return super().write(text)


def test_lines_past_the_bound_are_dropped_counted_and_the_rest_written_in_order():
    stream = StalledStream()
    writer = LineWriter(stream, max_queued=5)
    writer.info("line 0")
    assert stream.writing.wait(10)  # the thread holds line 0, stuck in write()
    for i in range(1, 21):
        writer.info(f"line {i}")
    stream.release.set()
    writer.close()
    # Five unwritten at most, line 0 (in the stalled write) among them.
    lines = stream.getvalue().splitlines()
    assert lines[:5] == [f"line {i}" for i in range(5)]
    dropped = json.loads(lines[5])
    assert dropped["event"] == "log_lines_dropped"
    assert dropped["count"] == 16
    assert len(lines) == 6


def test_batches_hold_whole_lines_within_a_pipes_atomic_write():
    stream = StalledStream()
    stream.release.set()
    writer = LineWriter(stream)
    long_line = "x" * 5000
    lines = [f"{i:04d} " + "y" * 100 for i in range(200)] + [long_line]
    for line in lines:
        writer.warning(line)
    writer.close()
    assert stream.getvalue().splitlines() == lines
    for chunk in stream.writes:
        assert chunk.endswith("\n")
        assert len(chunk) <= 4096 or chunk == long_line + "\n"


def test_the_event_loops_lines_go_over_in_batches_and_none_is_lost_when_it_ends():
    stream = StalledStream()
    stream.release.set()
    writer = LineWriter(stream)

    async def serve() -> None:
        for i in range(100):
            writer.info(f"served {i}")
        await asyncio.sleep(0.1)  # past the hand-over
        writer.info("stopped")  # its loop ends before the next hand-over

    asyncio.run(serve())
    writer.info("after the loop")  # no loop: at once
    writer.close()
    lines = stream.getvalue().splitlines()
    assert lines[:100] == [f"served {i}" for i in range(100)]
    assert lines[100:] == ["stopped", "after the loop"]
    assert len(stream.writes) <= 5  # not one write per line
