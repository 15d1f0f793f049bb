"""memoryd reembed: a tenant moves to another model while it keeps serving and writing.

The tenant starts on embed_server's local model; the target is an
OpenAI-compatible model served by the fake endpoint of test_embedders (a real
HTTP socket). A writer thread keeps creating text memories through the server
for the whole move, and a reader keeps searching: every search finds
something, and afterwards every memory, old or written meanwhile, has the
target's vector.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import grpc
import psycopg

from memoryd.v1 import document_pb2, document_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import search_pb2 as spb
from memoryd_server.config import Settings
from memoryd_server.embeddings import reembed
from tests.conftest import REPO, ServerThread, create_tenant_keys
from tests.embedding_servers import LOCAL_MODEL, tenant_model
from tests.test_embedders import FAKE_DIM, fake_endpoint  # noqa: F401 - the fixture
from tests.test_server_embeddings import embed_server  # noqa: F401 - the fixture

TARGET = "fake-embed-16"


def test_reembed_under_concurrent_writes_loses_nothing(
    embed_server: ServerThread,  # noqa: F811
    fake_endpoint: str,  # noqa: F811
    pg_uri: str,
    test_settings: Settings,
) -> None:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        keys = create_tenant_keys(conn, f"r-{uuid.uuid4().hex[:12]}")
    metadata = keys.metadata()
    channel = grpc.insecure_channel(embed_server.addr)
    stub = memory_pb2_grpc.MemoryServiceStub(channel)

    def create(text: str) -> str:
        memory = pb.Memory(namespace=["move"], content=text)
        return stub.CreateMemory(pb.CreateMemoryRequest(memory=memory), metadata=metadata).memory.id

    ids = [create(f"note {i} about apples and ocean waves") for i in range(60)]
    documents = document_pb2_grpc.DocumentServiceStub(channel)
    doc = documents.PutDocument(
        document_pb2.PutDocumentRequest(
            document=document_pb2.Document(
                namespace=["move"], path="waves.md",
                content="# Sea\n\n## Waves\n\nOcean waves at dawn.\n\n## Apples\n\nRed apples.\n",
            )
        ),
        metadata=metadata,
    ).document  # fmt: skip
    assert doc.embedding_model == LOCAL_MODEL
    stop = threading.Event()
    written: list[str] = []
    empty_searches: list[str] = []
    errors: list[Exception] = []

    def write_and_read() -> None:
        i = 0
        while not stop.is_set():
            try:
                written.append(create(f"written during the move {i} ocean"))
                found = stub.SearchMemories(
                    pb.SearchMemoriesRequest(query_text="ocean waves", mode=spb.SEARCH_MODE_VECTOR),
                    metadata=metadata,
                )
                if not found.results:
                    empty_searches.append(found.embedding_model)
            except grpc.RpcError as exc:
                errors.append(exc)
            i += 1
            time.sleep(0.02)

    worker = threading.Thread(target=write_and_read)
    worker.start()
    try:
        target = test_settings.replace(
            embedder="openai",
            embedding_model=TARGET,
            embedding_dim=None,
            openai_base_url=fake_endpoint,
        )
        embedder, space = reembed.target_model(pg_uri, target)
        seen: list[tuple[int, int]] = []
        result = reembed.reembed_tenant(
            pg_uri,
            keys.tenant_id,
            embedder,
            space,
            batch=16,
            progress=lambda _tenant, done, total: seen.append((done, total)),
        )
        time.sleep(0.5)  # a few writes after the sweep, by servers that follow the switch
    finally:
        stop.set()
        worker.join()
    assert errors == []
    assert empty_searches == []
    assert result.staged >= 60
    assert seen[-1][0] == seen[-1][1]
    assert tenant_model(pg_uri, keys.tenant_id) == TARGET
    with psycopg.connect(pg_uri) as conn:
        rows = conn.execute(
            "SELECT id::text, embedding_model, vector_dims(embedding) FROM memories"
            " WHERE tenant_id = %s",
            (keys.tenant_id,),
        ).fetchall()
    by_id = {r[0]: (r[1], r[2]) for r in rows}
    assert set(by_id) == set(ids) | set(written)  # nothing lost, nothing extra
    assert len(written) > 10
    assert set(by_id.values()) == {(TARGET, FAKE_DIM)}
    found = stub.SearchMemories(
        pb.SearchMemoriesRequest(query_text="apples", mode=spb.SEARCH_MODE_VECTOR, top_k=5),
        metadata=metadata,
    )
    assert found.embedding_model == TARGET
    assert len(found.results) == 5
    # The document's chunks moved too, and are found by meaning in the new model.
    assert result.chunks == 2
    moved = documents.GetDocument(
        document_pb2.GetDocumentRequest(document_id=doc.id, skip_content=True), metadata=metadata
    ).document
    assert moved.embedding_model == TARGET
    hits = documents.SearchDocuments(
        document_pb2.SearchDocumentsRequest(query_text="waves", mode=spb.SEARCH_MODE_VECTOR),
        metadata=metadata,
    )
    assert hits.embedding_model == TARGET
    assert len(hits.results) == 2
    channel.close()


def test_reembed_command_refuses_without_a_target_and_for_unknown_tenants(
    embed_server: ServerThread,  # noqa: F811
    pg_uri: str,
) -> None:
    del embed_server
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": pg_uri}

    def memoryd(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memoryd_server", *args], env={**env, **extra_env},
            capture_output=True, text=True, cwd=REPO, check=False, timeout=120,
        )  # fmt: skip

    no_target = memoryd("reembed", "--all")
    assert no_target.returncode == 2
    assert "MEMORYD_EMBEDDER" in no_target.stderr
    unknown = memoryd("reembed", "--tenant", "no-such-tenant", MEMORYD_EMBEDDER="local")
    assert unknown.returncode == 2
    assert "tenant 'no-such-tenant' does not exist" in unknown.stderr
    listed = memoryd("models", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{LOCAL_MODEL}\t384\tlocal" in listed.stdout
    added = memoryd("models", "add", "m-768", "--dimension", "768")
    assert added.returncode == 0, added.stderr
    assert "registered m-768" in added.stdout
    clash = memoryd("models", "add", "m-768", "--dimension", "12")
    assert clash.returncode == 2
    assert "registered with 768 dimensions" in clash.stderr
