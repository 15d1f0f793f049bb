"""What every embedder provides, and the errors embedding can raise."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from memoryd_server.errors import FailedPrecondition, Unavailable

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """A sentence embedding model; ``embed_batch`` blocks and runs off the event loop."""

    @property
    def model(self) -> str:
        """The model's name as rows record it (``embedding_model``)."""
        ...

    @property
    def dimension(self) -> int:
        """The length of its vectors."""
        ...

    def embed_batch(self, texts: list[str]) -> Vectors:
        """One unit-length row per text, in order."""
        ...


class EmbedderUnavailable(Unavailable):
    """The embedding service did not answer, or answered with a server error; retry."""


class EmbedderRefused(FailedPrecondition):
    """The embedding service refused the server's request (key, model or endpoint wrong)."""


def normalise(rows: Vectors) -> Vectors:
    """``rows`` scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    scaled: Vectors = (rows / np.maximum(norms, 1e-12)).astype(np.float32)
    return scaled
