"""Chunks embedded by the server's embedder (the local model), and searched by meaning."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

import memoryd
from memoryd_server.config import LOCAL_MODEL, Settings
from tests.conftest import ADMIN_SECRET, ServerThread, create_tenant_keys

NOTES = """# Travel

## Flights

Ada's flight to Lisbon leaves on Friday morning.

## Meetings

The quarterly budget review moved to the blue meeting room.

## Food

Grace prefers oat milk in her coffee.
"""


@pytest.fixture(scope="module")
def embedding_client(
    test_settings: Settings, memoryd_server: ServerThread, pg_uri: str
) -> Iterator[memoryd.Client]:
    del memoryd_server  # it migrated the database
    server = ServerThread(
        test_settings.replace(
            embedder="local", auth="on", admin_key=ADMIN_SECRET, auth_failures_per_second=0
        )
    )
    try:
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            keys = create_tenant_keys(conn, f"de-{uuid.uuid4().hex[:12]}")
        with memoryd.Client(server.addr, api_key=keys.member) as client:
            yield client
    finally:
        server.stop()


def test_server_embeds_chunks_and_finds_them_by_meaning(embedding_client: memoryd.Client) -> None:
    put = embedding_client.documents.put(["notes"], "travel.md", NOTES)
    assert put.document.embedding_model == LOCAL_MODEL
    assert put.document.chunk_count == 3
    hits = embedding_client.documents.search(query_text="When does Ada fly to Portugal?", top_k=3)
    assert hits[0].chunk.heading_path == ("Travel", "Flights")
    assert hits[0].similarity_score > hits[1].similarity_score
    vector_only = embedding_client.documents.search(
        query_text="dairy alternatives for a hot drink", mode="vector", top_k=1
    )
    assert vector_only[0].chunk.heading_path == ("Travel", "Food")
    assert vector_only[0].vector_rank == 1
    # Unchanged content is not embedded again: the put writes nothing.
    assert not embedding_client.documents.put(["notes"], "travel.md", NOTES).changed
