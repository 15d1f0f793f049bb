"""Deterministic embedders and shared data for the adapter tests (no model, no network).

``CharacterEmbeddings`` is the one langgraph's own store tests use
(libs/checkpoint/tests/embed_test_utils.py), so that their ported cases keep
their meaning: texts sharing characters are close.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter, defaultdict

from langchain_core.embeddings import Embeddings


class CharacterEmbeddings(Embeddings):
    """Character-frequency embeddings through fixed random projections."""

    def __init__(self, dims: int = 384, seed: int = 42) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - seeded test vectors, not secrets
        self.dims = dims
        self._projections: defaultdict[str, list[float]] = defaultdict(
            lambda: [self._rng.gauss(0, 1 / math.sqrt(self.dims)) for _ in range(self.dims)]
        )

    def _embed(self, text: str) -> list[float]:
        counts = Counter(text)
        total = sum(counts.values())
        vector = [0.0] * self.dims
        for char, count in counts.items():
            for i, p in enumerate(self._projections[char]):
                vector[i] += count / total * p
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


class HashEmbeddings(Embeddings):
    """A random unit vector per text (seeded by its hash): a spread-out vector space."""

    def __init__(self, dims: int = 384) -> None:
        self.dims = dims

    def _embed(self, text: str) -> list[float]:
        rng = random.Random(hashlib.sha256(text.encode()).digest())  # noqa: S311
        vector = [rng.gauss(0, 1) for _ in range(self.dims)]
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


# langgraph's filter test documents (test_vector_search_with_filters).
FILTER_DOCS = [
    ("doc1", {"text": "red apple", "color": "red", "score": 4.5}),
    ("doc2", {"text": "red car", "color": "red", "score": 3.0}),
    ("doc3", {"text": "green apple", "color": "green", "score": 4.0}),
    ("doc4", {"text": "blue car", "color": "blue", "score": 3.5}),
]
