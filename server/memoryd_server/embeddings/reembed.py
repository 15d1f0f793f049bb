"""``memoryd reembed``: move a tenant (or every tenant) to another embedding model.

The target is the model the command's own settings configure (MEMORYD_EMBEDDER
and friends). Per tenant:

1. The target's vectors are computed for every memory with content, in
   batches, into ``memory_reembed`` (keyed by the memory's version), while the
   old vectors keep serving searches.
2. One transaction swaps them in for every memory still at that version and
   sets the tenant's serving model; from then on servers embed new text with
   the target (they re-read it within SERVING_MODEL_TTL_SECONDS).
3. After that delay, a sweep embeds whatever changed or arrived meanwhile, so
   no memory is left behind in the old model, and the tenant's messages are
   queued for the servers' background embedder.
4. Then every document chunk not in the target model is embedded (its
   headings and text, as the servers embed chunks). Until its turn, a chunk
   is found by text only: chunks are not staged before the switch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from memoryd_server.config import Settings
from memoryd_server.database import MAINTENANCE_ROLE, StartupError, owner_connection
from memoryd_server.documents.chunking import embedding_text
from memoryd_server.embeddings.base import Embedder
from memoryd_server.embeddings.registry import SERVING_MODEL_TTL_SECONDS, ModelSpace, ensure_model
from memoryd_server.embeddings.service import create_embedder, provider_of

DEFAULT_BATCH = 256
# The tenant's memories with content whose vector is not the target's (or is missing).
_COUNT_STALE = (
    "SELECT count(*) FROM memories m WHERE m.tenant_id = %(tenant)s AND m.content <> ''"
    " AND (m.embedding IS NULL OR m.embedding_model <> %(model)s)"
)
# The same, at versions not yet staged.
_UNSTAGED = (
    "SELECT m.id, m.version, m.content FROM memories m WHERE m.tenant_id = %(tenant)s"
    " AND m.content <> '' AND (m.embedding IS NULL OR m.embedding_model <> %(model)s)"
    " AND NOT EXISTS (SELECT FROM memory_reembed r WHERE r.tenant_id = m.tenant_id"
    " AND r.model = %(model)s AND r.memory_id = m.id AND r.version = m.version)"
    " ORDER BY m.id LIMIT %(batch)s"
)
_NEXT_STALE = (
    "SELECT m.id, m.version, m.content FROM memories m WHERE m.tenant_id = %(tenant)s"
    " AND m.content <> '' AND (m.embedding IS NULL OR m.embedding_model <> %(model)s)"
    " LIMIT %(batch)s"
)


@dataclass(frozen=True)
class ReembedResult:
    """What one tenant's move did."""

    tenant_id: str
    staged: int  # vectors computed before the switch
    swept: int  # memories embedded after it (changed or created meanwhile)
    messages: int  # messages queued for the servers' embedder
    chunks: int = 0  # document chunks embedded after the switch


Progress = Callable[[str, int, int], None]


def _connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(MAINTENANCE_ROLE)))
    register_vector(conn)
    return conn


def target_model(url: str, settings: Settings) -> tuple[Embedder, ModelSpace]:
    """The configured embedder and its model, registered (with indexes) if new."""
    embedder = create_embedder(settings)
    if embedder is None:
        raise StartupError("reembed needs a model to move to: set MEMORYD_EMBEDDER=local or openai")
    with owner_connection(url) as conn:
        space = ensure_model(
            conn, name=embedder.model, dimension=embedder.dimension,
            provider=provider_of(settings),
            endpoint=settings.embedding_endpoint,
        )  # fmt: skip
    return embedder, space


def tenant_ids(url: str) -> list[str]:
    """Every tenant, in order."""
    with _connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT tenant_id FROM tenants ORDER BY tenant_id")]


def reembed_tenant(
    url: str,
    tenant_id: str,
    embedder: Embedder,
    space: ModelSpace,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    follow_seconds: float = SERVING_MODEL_TTL_SECONDS + 1.0,
) -> ReembedResult:
    """Move ``tenant_id`` to ``space`` (see the module docstring); blocking."""
    params = {"tenant": tenant_id, "model": space.name}
    with _connect(url) as conn:
        if (
            conn.execute("SELECT FROM tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
            is None
        ):
            raise StartupError(f"tenant {tenant_id!r} does not exist")
        row = conn.execute(_COUNT_STALE, params).fetchone()
        total = row[0] if row else 0
        staged = 0
        while True:
            rows = conn.execute(_UNSTAGED, {**params, "batch": batch}).fetchall()
            if not rows:
                break
            vectors = embedder.embed_batch([r[2] for r in rows])
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO memory_reembed (tenant_id, model, memory_id, version, embedding)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, model, memory_id)"
                    " DO UPDATE SET version = EXCLUDED.version, embedding = EXCLUDED.embedding",
                    [
                        (tenant_id, space.name, r[0], r[1], v)
                        for r, v in zip(rows, vectors, strict=True)
                    ],
                )
            staged += len(rows)
            if progress:
                progress(tenant_id, min(staged, total), total)
        with conn.transaction():
            conn.execute(
                "UPDATE memories m SET embedding = r.embedding, embedding_model = r.model"
                " FROM memory_reembed r WHERE r.tenant_id = %(tenant)s AND r.model = %(model)s"
                " AND m.tenant_id = r.tenant_id AND m.id = r.memory_id AND m.version = r.version",
                params,
            )
            conn.execute(
                "UPDATE tenants SET embedding_model = %(model)s WHERE tenant_id = %(tenant)s",
                params,
            )
            conn.execute(
                "DELETE FROM memory_reembed WHERE tenant_id = %(tenant)s AND model = %(model)s",
                params,
            )
        # Servers embed with the old model until they re-read the tenant's.
        time.sleep(follow_seconds)
        swept = _sweep(conn, params, embedder, batch)
        messages = conn.execute(
            "UPDATE messages SET embed_model = %(model)s WHERE tenant_id = %(tenant)s"
            " AND content <> '' AND embedding_model <> %(model)s",
            params,
        ).rowcount
        chunks = _sweep_chunks(conn, params, embedder, batch)
    return ReembedResult(tenant_id, staged, swept, messages, chunks)


def _sweep(conn: psycopg.Connection[Any], params: dict[str, Any], embedder: Embedder,
           batch: int) -> int:  # fmt: skip
    """Embed, version-checked, every memory still not in the target model."""
    swept = 0
    while True:
        rows = conn.execute(_NEXT_STALE, {**params, "batch": batch}).fetchall()
        if not rows:
            return swept
        vectors = embedder.embed_batch([r[2] for r in rows])
        with conn.cursor() as cur:
            # A memory changed meanwhile keeps its version check failing and
            # comes back in the next round with its new content.
            cur.executemany(
                "UPDATE memories SET embedding = %s, embedding_model = %s"
                " WHERE tenant_id = %s AND id = %s AND version = %s",
                [(v, params["model"], params["tenant"], r[0], r[1])
                 for r, v in zip(rows, vectors, strict=True)],
            )  # fmt: skip
        swept += len(rows)


_STALE_CHUNKS = (
    "SELECT id, heading_path, content FROM document_chunks WHERE tenant_id = %(tenant)s"
    " AND (embedding IS NULL OR embedding_model <> %(model)s) ORDER BY id LIMIT %(batch)s"
)
# A document's model follows its chunks once all of them are in the target's.
_DOCUMENTS_FOLLOW = (
    "UPDATE documents d SET embedding_model = %(model)s WHERE d.tenant_id = %(tenant)s"
    " AND d.embedding_model <> %(model)s AND NOT EXISTS (SELECT FROM document_chunks c"
    " WHERE c.tenant_id = d.tenant_id AND c.document_id = d.id AND c.embedding_model <> %(model)s)"
)


def _sweep_chunks(conn: psycopg.Connection[Any], params: dict[str, Any], embedder: Embedder,
                  batch: int) -> int:  # fmt: skip
    """Embed every document chunk of the tenant still not in the target model.

    A chunk replaced meanwhile (a new document version) is gone and its update
    writes nothing; the new version's chunks come in a later round.
    """
    done = 0
    while True:
        rows = conn.execute(_STALE_CHUNKS, {**params, "batch": batch}).fetchall()
        if not rows:
            conn.execute(_DOCUMENTS_FOLLOW, params)
            return done
        vectors = embedder.embed_batch([embedding_text(r[1], r[2]) for r in rows])
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE document_chunks SET embedding = %s, embedding_model = %s"
                " WHERE tenant_id = %s AND id = %s",
                [(v, params["model"], params["tenant"], r[0])
                 for r, v in zip(rows, vectors, strict=True)],
            )  # fmt: skip
        done += len(rows)
