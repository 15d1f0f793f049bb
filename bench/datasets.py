"""Deterministic clustered embedding data sets with filterable attributes, and exact search.

Vectors are unit-length float32 points scattered around random cluster centres
(gaussian noise, then normalised), the shape real text embeddings have: dense
topics, sparse space between them. Cluster membership is random, so filters on
the attributes below are independent of where a vector lies; a filter keeps its
share of every cluster, which is the hard case for filtered HNSW search.

Row ``i`` carries ``user_id = f"u{i % 100}"`` (a filter on one user keeps 1% of
rows) and ``tags = [f"t{i % 10}", f"p{i // 100 % 4}"]`` (one ``t`` tag keeps 10%,
one ``p`` tag 25%, independently of the user). Queries are drawn around the
same centres, so they are near the data but never equal to a data point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

# How many distinct values each attribute takes; a filter on one value keeps 1/n.
USERS = 100
TOPICS = 10
PHASES = 4


@dataclass(frozen=True)
class Dataset:
    """Rows (``vectors`` and their attributes) and query vectors near them."""

    vectors: Vectors
    queries: Vectors
    centres: Vectors
    cluster_of: npt.NDArray[np.int64]

    @property
    def size(self) -> int:
        """The number of rows."""
        return int(self.vectors.shape[0])

    def user_ids(self) -> list[str]:
        """Each row's user id."""
        return [user_id(i) for i in range(self.size)]

    def tags(self) -> list[list[str]]:
        """Each row's tags."""
        return [tags(i) for i in range(self.size)]


def user_id(i: int) -> str:
    """Row ``i``'s user: 100 users, so one user's filter keeps 1% of rows."""
    return f"u{i % USERS}"


def tags(i: int) -> list[str]:
    """Row ``i``'s tags: ``t0``..``t9`` keep 10% of rows each, ``p0``..``p3`` 25%.

    The ``p`` tag depends on ``i // USERS``, so it is independent of the user.
    """
    return [f"t{i % TOPICS}", f"p{i // USERS % PHASES}"]


def user_mask(n: int, user: str) -> Mask:
    """Which of ``n`` rows belong to ``user``."""
    return np.array([user_id(i) == user for i in range(n)], dtype=np.bool_)


def tags_any_mask(n: int, wanted: Sequence[str]) -> Mask:
    """Which of ``n`` rows carry at least one of ``wanted``."""
    want = set(wanted)
    return np.array([not want.isdisjoint(tags(i)) for i in range(n)], dtype=np.bool_)


def normalise(x: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length, as float32."""
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(
    n: int,
    dim: int,
    *,
    queries: int = 50,
    clusters: int = 100,
    spread: float = 1.0,
    query_spread: float | None = None,
    seed: int = 0,
) -> Dataset:
    """``n`` unit vectors of ``dim`` around ``clusters`` centres, and ``queries`` near them.

    ``spread`` is the noise's expected norm relative to a centre's (1.0: a point's
    cosine to its centre is about 0.7); queries use ``query_spread`` (default
    ``spread``). The same arguments give the same data (for a given numpy:
    NEP 19 allows its random streams to change between releases).
    """
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((clusters, dim)))
    cluster_of = rng.integers(0, clusters, size=n)
    sigma = spread / np.sqrt(dim)
    vectors = normalise(centres[cluster_of] + sigma * rng.standard_normal((n, dim)))
    q_sigma = (spread if query_spread is None else query_spread) / np.sqrt(dim)
    q_cluster = rng.integers(0, clusters, size=queries)
    query_vectors = normalise(centres[q_cluster] + q_sigma * rng.standard_normal((queries, dim)))
    return Dataset(vectors=vectors, queries=query_vectors, centres=centres, cluster_of=cluster_of)


def brute_force_top_k(
    data: Vectors, queries: Vectors, k: int, mask: Mask | None = None
) -> npt.NDArray[np.int64]:
    """Row indices of each query's ``k`` most cosine-similar rows, best first (exact).

    With ``mask``, only rows where it is true count; a query gets fewer than
    ``k`` indices when fewer rows match.
    """
    rows = np.arange(data.shape[0]) if mask is None else np.flatnonzero(mask)
    if rows.size == 0:
        return np.empty((queries.shape[0], 0), dtype=np.int64)
    candidates = data[rows].astype(np.float64)
    candidates /= np.linalg.norm(candidates, axis=1, keepdims=True)
    q = queries.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    similarity = q @ candidates.T
    k = min(k, rows.size)
    top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return rows[np.take_along_axis(top, order, axis=1)].astype(np.int64)


def recall(found: Sequence[int], exact: Sequence[int]) -> float:
    """The share of ``exact`` that ``found`` holds (1.0 when ``exact`` is empty)."""
    if len(exact) == 0:
        return 1.0
    return len(set(found) & set(exact)) / len(exact)
