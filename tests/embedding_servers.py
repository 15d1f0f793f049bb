"""Servers with an embedder, shared by the embedding and search tests."""

from __future__ import annotations

import psycopg

from memoryd_server.config import LOCAL_MODEL
from memoryd_server.database import owner_connection
from memoryd_server.embeddings.registry import ensure_model

# A registered model whose vectors callers send (no embedder), of the local
# model's dimension: the case where mixing would be easiest and must not happen.
EXTERNAL_MODEL = "test-external-384"
DIM = 384

__all__ = ["DIM", "EXTERNAL_MODEL", "LOCAL_MODEL", "register_external_model"]


def register_external_model(pg_uri: str) -> None:
    """Register EXTERNAL_MODEL (idempotent), as ``memoryd models add`` does."""
    with owner_connection(pg_uri) as conn:
        ensure_model(conn, name=EXTERNAL_MODEL, dimension=DIM, provider="external")


def tenant_model(pg_uri: str, tenant_id: str) -> str | None:
    """A tenant's serving model as stored (None: the server's configured one)."""
    with psycopg.connect(pg_uri) as conn:
        row = conn.execute(
            "SELECT embedding_model FROM tenants WHERE tenant_id = %s", (tenant_id,)
        ).fetchone()
    return None if row is None else row[0]
