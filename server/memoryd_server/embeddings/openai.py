"""An embedder for any OpenAI-compatible ``/v1/embeddings`` endpoint.

OpenAI, Ollama, vLLM, Hugging Face TEI and LiteLLM all answer the same request
(``{"model": ..., "input": [...]}``) with ``data[i].embedding``. The API key is
sent as a bearer token when one is configured; it is never logged.
"""

from __future__ import annotations

import httpx
import numpy as np

from memoryd_server.embeddings.base import (
    EmbedderRefused,
    EmbedderUnavailable,
    Vectors,
    normalise,
)

# Providers cap inputs near 8,192 tokens; a token is at least a few characters.
MAX_INPUT_CHARS = 16_000
# One request carries at most this many inputs (OpenAI accepts 2,048).
MAX_INPUTS = 256


class OpenAIEmbedder:
    """Embeds through HTTP; safe to call from several threads at once."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        dimension: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.model = model
        self._url = base_url.rstrip("/") + "/embeddings"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        """The vectors' length: configured, or learnt from one probe request."""
        if self._dimension is None:
            self._dimension = int(self._request(["dimension probe"]).shape[1])
        return self._dimension

    def embed_batch(self, texts: list[str]) -> Vectors:
        """One unit-length row per text, in order."""
        parts = [self._request(texts[i : i + MAX_INPUTS]) for i in range(0, len(texts), MAX_INPUTS)]
        rows = np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float32)
        if self._dimension is not None and rows.shape[1] != self._dimension:
            raise EmbedderRefused(
                f"the embedding service returned {rows.shape[1]}-dimensional vectors for"
                f" model {self.model!r}; MEMORYD_EMBEDDING_DIM is {self._dimension}"
            )
        return rows

    def _request(self, texts: list[str]) -> Vectors:
        # An empty input is refused by some providers; a space embeds the same.
        inputs = [t[:MAX_INPUT_CHARS] or " " for t in texts]
        try:
            response = self._client.post(self._url, json={"model": self.model, "input": inputs})
        except httpx.HTTPError as exc:
            raise EmbedderUnavailable(
                f"the embedding service at {self._url} did not answer: {type(exc).__name__}"
            ) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EmbedderUnavailable(
                f"the embedding service answered {response.status_code}; retry later"
            )
        if response.status_code != 200:
            raise EmbedderRefused(
                f"the embedding service refused the request ({response.status_code}):"
                f" {response.text[:200]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            rows = np.array([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderRefused(
                "the embedding service's answer is not an embeddings list"
            ) from exc
        if rows.ndim != 2 or rows.shape[0] != len(inputs) or not np.isfinite(rows).all():
            raise EmbedderRefused("the embedding service returned malformed vectors")
        return normalise(rows)

    def close(self) -> None:
        """Close its HTTP connections."""
        self._client.close()
