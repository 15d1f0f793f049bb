"""The embedders themselves: the local model's output, the OpenAI-compatible client over
a real HTTP socket, and micro-batching."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest

from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd.v1 import search_pb2 as spb
from memoryd_server.config import Settings
from memoryd_server.embeddings.batcher import EmbeddingBatcher
from memoryd_server.embeddings.local import LocalEmbedder
from tests.conftest import ServerThread, assert_status

FAKE_DIM = 16
FAKE_KEY = "sk-test-" + "x" * 20


def fake_vector(text: str) -> list[float]:
    """A deterministic vector per text: texts sharing words get close vectors."""
    out = np.zeros(FAKE_DIM)
    for word in text.lower().split():
        digest = hashlib.sha256(word.encode()).digest()
        out[digest[0] % FAKE_DIM] += 1.0
    return [float(v) for v in out + 0.01]


class FakeEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings on a real socket; ``status`` forces failures."""

    requests: list[dict[str, Any]] = []  # noqa: RUF012 - shared by the test and the handler
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        if type(self).status != 200:
            self.send_response(type(self).status)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "nope"}}')
            return
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(t)}
            for i, t in enumerate(body["input"])
        ]
        payload = json.dumps({"object": "list", "data": data[::-1], "model": body["model"]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake_endpoint() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeEmbeddings)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def openai_server(
    test_settings: Settings, memoryd_server: ServerThread, fake_endpoint: str
) -> Iterator[ServerThread]:
    del memoryd_server  # migrated the database
    server = ServerThread(
        test_settings.replace(
            embedder="openai",
            embedding_model="fake-embed-16",
            embedding_dim=None,
            openai_base_url=fake_endpoint,
            openai_api_key=FAKE_KEY,
        )
    )
    yield server
    server.stop()


def test_local_model_matches_the_reference_implementation() -> None:
    """Cosines as sentence-transformers computes them for all-MiniLM-L6-v2."""
    embedder = LocalEmbedder(threads=1)
    texts = [
        "When did Caroline go to the support group?",
        "Caroline went to the LGBTQ support group on 7 May 2023.",
        "I like pizza",
    ]
    vectors = embedder.embed_batch(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = vectors @ vectors.T
    # Reference values from sentence-transformers 6.3 on the same weights.
    assert cosines[0, 1] == pytest.approx(0.7832, abs=2e-4)
    assert cosines[0, 2] == pytest.approx(0.1070, abs=2e-4)
    assert cosines[1, 2] == pytest.approx(0.1310, abs=2e-4)
    # Batching and input order change nothing; long, empty and non-ASCII input work.
    again = embedder.embed_batch([texts[2], "", "é 你好 " * 400, texts[0]])
    assert np.allclose(again[0], vectors[2], atol=1e-5)
    assert np.allclose(again[3], vectors[0], atol=1e-5)
    assert np.isfinite(again).all()


def test_batcher_shares_model_calls_between_concurrent_callers() -> None:
    class Counting:
        model, dimension = "counting", 2
        calls: list[int] = []  # noqa: RUF012

        def embed_batch(self, texts: list[str]) -> Any:
            type(self).calls.append(len(texts))
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    async def run() -> list[Any]:
        batcher = EmbeddingBatcher(Counting(), max_batch=64, max_wait=0.05)
        try:
            return await asyncio.gather(*(batcher.embed(["x" * i]) for i in range(1, 41)))
        finally:
            await batcher.close()

    results = asyncio.run(run())
    assert [r[0][0] for r in results] == list(range(1, 41))  # each caller its own row
    assert sum(Counting.calls) == 40
    assert len(Counting.calls) <= 3


def test_openai_compatible_endpoint_embeds_text_only_memories(openai_server: ServerThread) -> None:
    FakeEmbeddings.status = 200
    FakeEmbeddings.requests.clear()
    uid = uuid.uuid4().hex[:8]
    with grpc.insecure_channel(openai_server.addr) as channel:
        stub = memory_pb2_grpc.MemoryServiceStub(channel)
        for text in (f"red apples {uid}", f"blue ocean waves {uid}"):
            memory = pb.Memory(namespace=["fake", uid], content=text)
            created = stub.CreateMemory(pb.CreateMemoryRequest(memory=memory)).memory
            assert created.embedding_model == "fake-embed-16"
        found = stub.SearchMemories(
            pb.SearchMemoriesRequest(
                query_text="ocean waves",
                mode=spb.SEARCH_MODE_VECTOR,
                filter=pb.MemoryFilter(namespace_prefix=["fake", uid]),
            )
        )
    assert found.embedding_model == "fake-embed-16"
    assert found.results[0].memory.content == f"blue ocean waves {uid}"
    seen = FakeEmbeddings.requests
    assert {r["path"] for r in seen} == {"/v1/embeddings"}
    assert {r["auth"] for r in seen} == {f"Bearer {FAKE_KEY}"}
    assert {r["body"]["model"] for r in seen} == {"fake-embed-16"}


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, grpc.StatusCode.UNAVAILABLE),
        (429, grpc.StatusCode.UNAVAILABLE),
        (401, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_endpoint_failures_are_clear_statuses(
    openai_server: ServerThread, status: int, code: grpc.StatusCode
) -> None:
    FakeEmbeddings.status = status
    try:
        with grpc.insecure_channel(openai_server.addr) as channel:
            stub = memory_pb2_grpc.MemoryServiceStub(channel)
            memory = pb.Memory(namespace=["fake"], content="will not be stored")
            assert_status(
                lambda: stub.CreateMemory(pb.CreateMemoryRequest(memory=memory)),
                code,
                message="embedding service",
            )
            assert_status(
                lambda: stub.SearchMemories(
                    pb.SearchMemoriesRequest(query_text="anything", mode=spb.SEARCH_MODE_VECTOR)
                ),
                code,
            )
    finally:
        FakeEmbeddings.status = 200
