"""Memory vectors on write: a caller's checked against its model, or made by the server.

A memory's vector is of one registered model (``embedding_model``). A caller's
vector names its model (empty: the tenant's serving model) and must have that
model's dimension. A memory sent without a vector is embedded by the server,
from its content, when the tenant's serving model has an embedder; otherwise it
is stored without one and found by text only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.embeddings.service import Embeddings
from memoryd_server.errors import InvalidArgument
from memoryd_server.memories.models import NewMemory


def _checked(field: str, vector: Any, space: ModelSpace) -> None:
    if len(vector) != space.dimension:
        raise InvalidArgument(
            f"{field}.embedding",
            f"has {len(vector)} dimensions; model {space.name!r} makes {space.dimension}",
        )


async def complete(
    embeddings: Embeddings, tenant_id: str, fields: list[str], news: list[NewMemory]
) -> list[NewMemory]:
    """``news`` ready to store: every vector checked or made, its model named."""
    serving = await embeddings.registry.serving(tenant_id)
    done: list[NewMemory] = []
    missing: list[int] = []
    for i, (field, new) in enumerate(zip(fields, news, strict=True)):
        if new.embedding is None:
            done.append(dataclasses.replace(new, embedding_model=""))
            missing.append(i)
            continue
        space = serving
        if new.embedding_model and new.embedding_model != serving.name:
            space = await embeddings.registry.model(f"{field}.embedding_model", new.embedding_model)
        _checked(field, new.embedding, space)
        done.append(dataclasses.replace(new, embedding_model=space.name))
    if missing and embeddings.can_embed(serving):
        rows = await embeddings.embed(serving, [news[i].content for i in missing])
        for i, row in zip(missing, rows, strict=True):
            done[i] = dataclasses.replace(done[i], embedding=row, embedding_model=serving.name)
    return done


async def complete_update(
    embeddings: Embeddings, tenant_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """An UpdateMemory's changes with the vector (and its model) consistent."""
    changes = dict(changes)
    if "embedding" in changes:
        if changes["embedding"] is None:
            changes["embedding_model"] = ""
            return changes
        name = changes.get("embedding_model") or ""
        serving = await embeddings.registry.serving(tenant_id)
        space = (
            await embeddings.registry.model("memory.embedding_model", name)
            if name and name != serving.name
            else serving
        )
        _checked("memory", changes["embedding"], space)
        changes["embedding_model"] = space.name
        return changes
    if "embedding_model" in changes:
        raise InvalidArgument(
            "update_mask", "embedding_model changes only with embedding (it names its model)"
        )
    if "content" in changes:
        serving = await embeddings.registry.serving(tenant_id)
        if embeddings.can_embed(serving):
            (row,) = await embeddings.embed(serving, [changes["content"]])
            changes["embedding"] = row
            changes["embedding_model"] = serving.name
    return changes
