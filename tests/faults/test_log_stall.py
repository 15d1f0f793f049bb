"""A stderr nobody reads does not stop the server: log lines wait in their own thread's queue."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import grpc

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from tests.test_startup import (
    EXIT_TIMEOUT,
    MEMORYD,
    SERVING,
    START_TIMEOUT,
    _env,
    _free_port,
    _health,
    _stop_leftover_postgres,
    _wait_for,
)

LIST = "/memoryd.v1.ConversationService/ListConversations"
# About 250 bytes of access log each: far past a pipe's 64 KiB buffer.
CALLS = 2000


def test_calls_are_served_while_nobody_reads_stderr() -> None:
    with tempfile.TemporaryDirectory(prefix="memoryd-test-", ignore_cleanup_errors=True) as tmp:
        data_dir, addr = Path(tmp) / "data", f"127.0.0.1:{_free_port()}"
        env = _env(MEMORYD_DATA_DIR=str(data_dir), MEMORYD_ADDR=addr, MEMORYD_WORKERS="1",
                   MEMORYD_LOG_FORMAT="json")  # fmt: skip
        process = subprocess.Popen(
            [*MEMORYD, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        try:
            _wait_for(lambda: _health(addr) == SERVING, START_TIMEOUT, "health SERVING")
            with grpc.insecure_channel(addr) as channel:
                stub = pb_grpc.ConversationServiceStub(channel)
                # A blocked write would hold the event loop: the calls would
                # time out one after another from the 300th or so.
                for _ in range(CALLS):
                    stub.ListConversations(pb.ListConversationsRequest(page_size=1), timeout=10)
            assert _health(addr) == SERVING

            # Reading again: every line was kept (far below the queue's bound).
            chunks: list[bytes] = []
            reader = threading.Thread(target=lambda: chunks.append(process.stderr.read()))
            reader.start()
            process.send_signal(signal.SIGTERM)
            assert process.wait(EXIT_TIMEOUT) == 0
            reader.join(EXIT_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)
            process.stderr.close()
            _stop_leftover_postgres(data_dir)
    events = [json.loads(line) for line in b"".join(chunks).splitlines() if line.startswith(b"{")]
    served = [e for e in events if e.get("event") == "rpc" and e.get("rpc") == LIST]
    assert len(served) == CALLS
    assert {e["code"] for e in served} == {"OK"}
    assert not [e for e in events if e.get("event") == "log_lines_dropped"]
    assert "stopped" in {e.get("event") for e in events}  # written before the process ended
