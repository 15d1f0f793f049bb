"""Fixtures of the framework adapter tests: a memoryd that embeds text itself, and its tenants.

The adapters are tested as their users run them: over a real channel to a real
server, with the server's own embedder (all-MiniLM-L6-v2 in process) unless a
test is about vectors the caller sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from memoryd.integrations.langgraph import MemorydStore
from memoryd_server.config import Settings
from tests.conftest import ADMIN_SECRET, ServerThread, TenantKeys, create_tenant_keys
from tests.integrations.fakes import CharacterEmbeddings


@pytest.fixture(scope="session")
def embedding_memoryd(
    test_settings: Settings, memoryd_server: ServerThread
) -> Iterator[ServerThread]:
    """memoryd with the local embedder and auth on, on the session database."""
    del memoryd_server  # it migrated the database
    server = ServerThread(
        test_settings.replace(
            embedder="local", auth="on", admin_key=ADMIN_SECRET, auth_failures_per_second=0
        )
    )
    yield server
    server.stop()


@pytest.fixture
def embed_tenant(pg_uri: str, embedding_memoryd: ServerThread) -> TenantKeys:
    """A fresh tenant (with keys of every role) of embedding_memoryd."""
    del embedding_memoryd
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"i-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(embedding_memoryd: ServerThread, embed_tenant: TenantKeys) -> Iterator[MemorydStore]:
    """A MemorydStore of a fresh tenant; the server embeds."""
    with MemorydStore(embedding_memoryd.addr, api_key=embed_tenant.member) as s:
        yield s


@pytest.fixture
def vector_store(auth_server: ServerThread, tenant: TenantKeys) -> Iterator[MemorydStore]:
    """A MemorydStore of a fresh tenant that sends langgraph's test embedder's vectors."""
    index: Any = {"dims": 384, "embed": CharacterEmbeddings(dims=384)}
    with MemorydStore(auth_server.addr, api_key=tenant.member, index=index) as s:
        yield s
