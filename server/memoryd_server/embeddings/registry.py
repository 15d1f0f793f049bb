"""Embedding models: registering one (with its indexes) and the server's view of them.

Every vector is stored with the name of its model, and each registered model
has a dimension and its own partial HNSW indexes (migration 0010). A tenant is
served by one model at a time: ``tenants.embedding_model`` when ``memoryd
reembed`` has moved it, else the server's configured model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import StartupError, transaction
from memoryd_server.errors import InvalidArgument

Provider = Literal["external", "local", "openai"]

# How long a server trusts its reading of a tenant's serving model: the bound on
# how late servers follow ``memoryd reembed``'s switch (it waits this long too).
SERVING_MODEL_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class ModelSpace:
    """A registered model: vectors of one name and dimension, compared only together."""

    name: str
    dimension: int
    provider: str
    endpoint: str


def ensure_model(
    conn: psycopg.Connection[object], *, name: str, dimension: int, provider: Provider,
    endpoint: str = "",
) -> ModelSpace:  # fmt: skip
    """Register ``name`` (and build its indexes) unless it is; refuse another dimension.

    ``conn`` is a connection of the tables' owner (index builds); blocking.
    """
    with conn.transaction():
        # Replicas starting together: one registers, the others see it.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('memoryd.embedding_models'))")
        conn.execute(
            "INSERT INTO embedding_models (name, dimension, provider, endpoint)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (name, dimension, provider, endpoint),
        )
        with conn.cursor(row_factory=class_row(ModelSpace)) as cur:
            cur.execute(
                "SELECT name, dimension, provider, endpoint FROM embedding_models WHERE name = %s",
                (name,),
            )
            space = cur.fetchone()
        assert space is not None
        if space.dimension != dimension:
            raise StartupError(
                f"embedding model {name!r} is registered with {space.dimension} dimensions,"
                f" but this server's make {dimension}; set MEMORYD_EMBEDDING_DIM back, or"
                " name the new model differently (MEMORYD_EMBEDDING_MODEL) and move the"
                " data with memoryd reembed"
            )
        if provider != "external" and (provider, endpoint) != (space.provider, space.endpoint):
            # The operator's latest configuration of the model is the one to use.
            conn.execute(
                "UPDATE embedding_models SET provider = %s, endpoint = %s WHERE name = %s",
                (provider, endpoint, name),
            )
        conn.execute("SELECT memoryd_create_embedding_indexes(%s)", (name,))
    if provider == "external":
        return space
    return ModelSpace(name, dimension, provider, endpoint)


class ModelRegistry:
    """Registered models and tenants' serving models, cached briefly."""

    def __init__(self, pool: AsyncConnectionPool, default: ModelSpace) -> None:
        self._pool = pool
        self.default = default
        self._models: dict[str, ModelSpace] = {default.name: default}
        self._serving: dict[str, tuple[ModelSpace | None, float]] = {}
        self._loaded_at = -SERVING_MODEL_TTL_SECONDS

    async def model(self, field: str, name: str) -> ModelSpace:
        """The registered model ``name``; INVALID_ARGUMENT naming ``field`` if unknown."""
        found = self._models.get(name)
        if found is None:
            await self._load()
            found = self._models.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in sorted(self._models)) or "none"
            raise InvalidArgument(
                field, f"model {name!r} is not registered on this server (known: {known})"
            )
        return found

    async def all(self) -> list[ModelSpace]:
        """Every registered model (read again at most every SERVING_MODEL_TTL_SECONDS)."""
        now = time.monotonic()
        if self._loaded_at + SERVING_MODEL_TTL_SECONDS < now:
            await self._load()
            self._loaded_at = now
        return list(self._models.values())

    async def _load(self) -> None:
        query = "SELECT name, dimension, provider, endpoint FROM embedding_models"
        async with (
            transaction(self._pool, None) as conn,
            conn.cursor(row_factory=class_row(ModelSpace)) as cur,
        ):
            await cur.execute(query)
            rows = await cur.fetchall()
        self._models = {m.name: m for m in rows} | {self.default.name: self.default}

    async def serving(self, tenant_id: str) -> ModelSpace:
        """The model ``tenant_id``'s memories are embedded with now.

        The tenant's choice and that model's definition (its endpoint may have
        been changed by ``memoryd reembed``) are read together.
        """
        cached = self._serving.get(tenant_id)
        now = time.monotonic()
        if cached is None or cached[1] < now:
            async with transaction(self._pool, tenant_id) as conn:
                cur = await conn.execute(
                    "SELECT m.name, m.dimension, m.provider, m.endpoint FROM tenants t"
                    " JOIN embedding_models m ON m.name = t.embedding_model"
                    " WHERE t.tenant_id = %s",
                    (tenant_id,),
                )
                row = await cur.fetchone()
            space = ModelSpace(*row) if row else None
            if space is not None:
                self._models[space.name] = space
            cached = (space, now + SERVING_MODEL_TTL_SECONDS)
            if len(self._serving) > 100_000:  # a bound for servers with very many tenants
                self._serving.clear()
            self._serving[tenant_id] = cached
        return self.default if cached[0] is None else cached[0]
