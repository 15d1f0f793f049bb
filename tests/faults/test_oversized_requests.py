"""Oversized requests to a real ``memoryd serve`` (issue 12 item 9): refused before parsing."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc

from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import conversation_pb2_grpc as cpb_grpc
from memoryd.v1 import memory_pb2 as mpb
from memoryd.v1 import memory_pb2_grpc as mpb_grpc
from memoryd_server.request_size import SMALL_REQUEST_BYTES
from tests.test_startup import memoryd_serve

MIB = 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_oversized_single_item_request_is_refused_naming_the_limit(
    tmp_path: Path, pg_dir: Path, uid: str
) -> None:
    with memoryd_serve(pg_dir / "data", tmp_path / "memoryd.log") as server:
        server.wait_serving()
        pid = server.process.pid
        with grpc.insecure_channel(server.addr, options=OPTIONS) as channel:
            memories = mpb_grpc.MemoryServiceStub(channel)
            conversations = cpb_grpc.ConversationServiceStub(channel)
            small = mpb.CreateMemoryRequest(memory=mpb.Memory(namespace=[uid], content="warm up"))
            memories.CreateMemory(small, timeout=30)
            before = _rss_mb(pid)
            huge = mpb.CreateMemoryRequest(
                memory=mpb.Memory(namespace=[uid], content="x" * (60 * MIB))
            )
            codes = []
            for _ in range(3):
                try:
                    memories.CreateMemory(huge, timeout=60)
                    codes.append(("OK", ""))
                except grpc.RpcError as exc:
                    codes.append((exc.code().name, exc.details() or ""))
            after = _rss_mb(pid)
            # The batch methods keep the large limit: 6 messages of 1 MB, a 6 MB request.
            appended = conversations.AppendMessages(
                cpb.AppendMessagesRequest(
                    conversation_id=f"big-{uid}",
                    create_if_missing=True,
                    messages=[cpb.Message(role=cpb.MESSAGE_ROLE_USER, content="y" * 1_000_000)] * 6,
                ),
                timeout=60,
            )
        assert server.stop(signal.SIGTERM) == 0
    print(
        f"\n3 CreateMemory of 60 MiB: {sorted({c for c, _ in codes})}, RSS {before:.0f} MB"
        f" before, {after:.0f} MB after (+{after - before:.0f} MB); a 6 MB AppendMessages"
        f" stored {len(appended.messages)} messages"
    )
    assert {c for c, _ in codes} == {"RESOURCE_EXHAUSTED"}
    assert all(f"at most {SMALL_REQUEST_BYTES} bytes" in d for _, d in codes), codes
    assert len(appended.messages) == 6
    # gRPC's receive buffers and the bytes remain (210 to 250 MB here for the
    # three, up to 300 seen); parsing them (570 to 610 MB in all, before) does not happen.
    assert after - before < 400
