"""The server's embedders: one micro-batcher per model it can embed with.

The configured model (MEMORYD_EMBEDDER) is loaded at start. A tenant that
``memoryd reembed`` moved to another local or OpenAI-compatible model gets an
embedder for it on first use, so servers follow a switch without a restart.
Models of provider ``external`` (callers send vectors) cannot be embedded here.
"""

from __future__ import annotations

import asyncio

from memoryd_server.config import Settings
from memoryd_server.database import StartupError
from memoryd_server.embeddings.base import Embedder, Vectors
from memoryd_server.embeddings.batcher import EmbeddingBatcher
from memoryd_server.embeddings.openai import OpenAIEmbedder
from memoryd_server.embeddings.registry import ModelRegistry, ModelSpace, Provider
from memoryd_server.errors import FailedPrecondition


def create_embedder(
    settings: Settings, *, provider: str | None = None, model: str | None = None,
    endpoint: str | None = None,
) -> Embedder | None:  # fmt: skip
    """The embedder ``settings`` configure (or of the given model); blocking, seconds."""
    provider = provider or {"none": "external"}.get(settings.embedder, settings.embedder)
    if provider == "local":
        from memoryd_server.embeddings.local import LocalEmbedder, ModelUnavailable

        try:
            return LocalEmbedder(threads=settings.embed_threads)
        except ModelUnavailable as exc:
            raise StartupError(str(exc)) from None
    if provider == "openai":
        return OpenAIEmbedder(
            base_url=endpoint or settings.openai_base_url,
            model=model or settings.model_name,
            api_key=settings.openai_api_key,
            dimension=settings.embedding_dim if model is None else None,
        )
    return None


def provider_of(settings: Settings) -> Provider:
    """The registry's provider name for the configured embedder."""
    if settings.embedder == "local":
        return "local"
    return "openai" if settings.embedder == "openai" else "external"


class Embeddings:
    """Which model serves a tenant, and embedding texts with it."""

    def __init__(self, registry: ModelRegistry, settings: Settings,
                 default: EmbeddingBatcher | None) -> None:  # fmt: skip
        self.registry = registry
        self._settings = settings
        # By (model, endpoint): an operator may point a model at a new endpoint.
        self._batchers: dict[tuple[str, str], EmbeddingBatcher] = {}
        if default is not None:
            self._batchers[registry.default.name, registry.default.endpoint] = default
        self._lock = asyncio.Lock()

    def can_embed(self, space: ModelSpace) -> bool:
        """Whether the server can embed text into ``space``."""
        return (space.name, space.endpoint) in self._batchers or space.provider != "external"

    async def embeddable_models(self) -> list[str]:
        """The registered models this server can embed with."""
        return [m.name for m in await self.registry.all() if self.can_embed(m)]

    async def embed(self, space: ModelSpace, texts: list[str]) -> Vectors:
        """One vector of ``space`` per text; FAILED_PRECONDITION if it has no embedder."""
        batcher = self._batchers.get((space.name, space.endpoint))
        if batcher is None:
            batcher = await self._batcher(space)
        return await batcher.embed(texts)

    async def _batcher(self, space: ModelSpace) -> EmbeddingBatcher:
        if space.provider == "external":
            raise FailedPrecondition(
                f"model {space.name!r} takes vectors from callers; this server cannot embed"
                " text with it (send embeddings, or run the server with MEMORYD_EMBEDDER)"
            )
        async with self._lock:
            key = (space.name, space.endpoint)
            if key not in self._batchers:
                embedder = await asyncio.to_thread(
                    create_embedder, self._settings, provider=space.provider,
                    model=space.name, endpoint=space.endpoint,
                )  # fmt: skip
                assert embedder is not None
                self._batchers[key] = self.batcher(embedder, self._settings)
            return self._batchers[key]

    @staticmethod
    def batcher(embedder: Embedder, settings: Settings) -> EmbeddingBatcher:
        """A micro-batcher for ``embedder`` as ``settings`` size it."""
        return EmbeddingBatcher(
            embedder,
            max_batch=settings.embed_batch_size,
            max_wait=settings.embed_max_wait_ms / 1000,
            # HTTP embedders overlap requests; a local model already uses every core.
            workers=4 if isinstance(embedder, OpenAIEmbedder) else 1,
        )

    async def close(self) -> None:
        """Stop every batcher."""
        for batcher in self._batchers.values():
            await batcher.close()
