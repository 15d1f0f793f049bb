"""The background embedder of messages: appends stay fast, vectors follow shortly.

AppendMessages records in each message with content the model to embed it
with (``embed_model``: the tenant's serving model, when the server has an
embedder for it); this task embeds them in batches, oldest first, across
tenants. Replicas share the work (FOR UPDATE SKIP LOCKED), each taking the
models it can embed with.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.embeddings.service import Embeddings

# Messages embedded per round: one model batch.
BATCH = 64


async def embed_pending_messages(pool: AsyncConnectionPool, embeddings: Embeddings) -> int:
    """Embed up to BATCH pending messages; returns how many were embedded.

    ``pool`` is the maintenance pool (its role may read and update every
    tenant's messages).
    """
    models = await embeddings.embeddable_models()
    if not models:
        return 0
    async with transaction(pool, None) as conn:
        cur = await conn.execute(
            "SELECT embed_model, tenant_id, conversation_id, seq, content FROM messages"
            " WHERE embed_model IS NOT NULL AND embed_model = ANY(%s)"
            " ORDER BY create_time LIMIT %s FOR UPDATE SKIP LOCKED",
            (models, BATCH),
        )
        pending = await cur.fetchall()
        by_model: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for row in pending:
            by_model[row[0]].append(row)
        for model, rows in by_model.items():
            space = await embeddings.registry.model("embed_model", model)
            vectors = list(await embeddings.embed(space, [r[4] for r in rows]))
            await conn.execute(
                "UPDATE messages m SET embedding = v.e, embedding_model = %(model)s,"
                " embed_model = NULL FROM unnest(%(tenant)s::text[], %(conv)s::text[],"
                " %(seq)s::bigint[], %(emb)s::vector[]) AS v(t, c, s, e)"
                " WHERE m.tenant_id = v.t AND m.conversation_id = v.c AND m.seq = v.s",
                {"model": model, "tenant": [r[1] for r in rows], "conv": [r[2] for r in rows],
                 "seq": [r[3] for r in rows], "emb": vectors},
            )  # fmt: skip
    return len(pending)
