"""Search ranking shared by SearchMemories and SearchMessages: the query, text matching, fusion.

Pure logic and SQL fragments; no I/O. A hybrid search ranks its candidates
twice (by vector distance, by text rank) and fuses the two rankings, either by
reciprocal-rank fusion or by a weighted mean of the normalised scores.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from psycopg import sql

from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.memories.models import Embedding

Mode = Literal["vector", "text", "hybrid"]
TextMatch = Literal["any", "websearch"]
Fusion = Literal["rrf", "weighted"]

# Reciprocal-rank fusion's constant (Cormack et al. 2009): rank r adds 1 / (60 + r).
RRF_K = 60
DEFAULT_HALF_LIFE = dt.timedelta(days=30)

# The tsquery of %(text)s. "any" ORs the query's lexemes: English stemming and
# stop words as in the text index, so "When did Caroline go to the support
# group?" becomes 'carolin' | 'go' | 'support' | 'group'. plainto_tsquery's
# own output is the safe way to get the lexemes quoted; its top-level " & "
# separators become " | ".
_TSQUERY = {
    "any": "replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')::tsquery",
    "websearch": "websearch_to_tsquery('english', %(text)s)",
}


def tsquery(match: TextMatch) -> sql.SQL:
    """The tsquery expression of ``%(text)s`` for ``match``."""
    return sql.SQL(_TSQUERY[match])  # type: ignore[arg-type,unused-ignore]


_SEARCH_TEXT = sql.Identifier("search_text")


def text_rank(match: TextMatch, column: sql.Composable = _SEARCH_TEXT) -> sql.Composed:
    """A text relevance in [0, 1) of ``column`` for ``%(text)s``.

    ts_rank counts how often each query lexeme occurs, normalised by the log
    of the text's length (1) and mapped to rank / (rank + 1) (32). Unlike
    ts_rank_cd it does not need the lexemes near each other, which a question
    and its answer seldom have.
    """
    return sql.SQL("ts_rank({}, {}, 33)").format(column, tsquery(match))


@dataclass(frozen=True)
class Weights:
    """How much each part of a score counts (normalised by their sum)."""

    similarity: float = 0.0
    text: float = 0.0
    recency: float = 0.0
    importance: float = 0.0
    half_life: dt.timedelta = DEFAULT_HALF_LIFE

    def resolved(self, mode: Mode, fusion: Fusion) -> Weights:
        """These weights, or the defaults for ``mode`` when all are zero."""
        if self.similarity or self.text or self.recency or self.importance:
            return self
        if mode == "vector":
            return Weights(similarity=1.0, half_life=self.half_life)
        if mode == "text":
            return Weights(text=1.0, half_life=self.half_life)
        similarity, text = (1.0, 1.0) if fusion == "rrf" else (0.7, 0.3)
        return Weights(similarity=similarity, text=text, half_life=self.half_life)


@dataclass(frozen=True)
class Query:
    """A resolved search: its mode, and what each part searches with."""

    mode: Mode
    text: str
    text_match: TextMatch
    fusion: Fusion
    # The vector part's model and query vector (modes vector and hybrid).
    space: ModelSpace | None = None
    vector: Embedding | None = None

    @property
    def model_name(self) -> str:
        """The model whose vectors the search compares ("" for a text search)."""
        return self.space.name if self.space is not None and self.mode != "text" else ""


# Signals, Score and Fused are made for every candidate of every search: named
# tuples, because a frozen dataclass's __init__ costs 3-4 times as much.
class Signals(NamedTuple):
    """What a search learnt about one candidate."""

    # Cosine distance to the query vector, if computed.
    distance: float | None
    # Text relevance in [0, 1).
    text: float
    # 1-based places in the vector and text rankings; 0: not found by that one.
    vector_rank: int
    text_rank: int
    # When the thing happened, and importance in [0, 1] (messages: 0).
    occur_time: dt.datetime
    importance: float = 0.0


class Score(NamedTuple):
    """A candidate's final score and its parts, each in [0, 1]."""

    score: float
    similarity: float
    text: float
    recency: float
    importance: float
    fusion: float


def similarity(distance: float | None) -> float:
    """Cosine distance mapped to a similarity in [0, 1]: (1 + cos) / 2."""
    return 0.0 if distance is None else min(max(1.0 - distance / 2.0, 0.0), 1.0)


def score(
    s: Signals,
    weights: Weights,
    fusion: Fusion,
    mode: Mode,
    now: dt.datetime,
    *,
    best_text: float = 0.0,
) -> Score:
    """The weighted mean of the parts (see RankingWeights in memory.proto).

    In a weighted hybrid the text part is scaled by ``best_text`` (the best
    text relevance among the candidates): raw ts_rank values sit near 0.01
    while similarities sit near 0.7, so unscaled the text weight did nothing.
    """
    sim = similarity(s.distance)
    age = max((now - s.occur_time).total_seconds(), 0.0)
    recency = math.pow(0.5, age / weights.half_life.total_seconds())
    relevance_weight = weights.similarity + weights.text
    fused = 0.0
    if mode == "hybrid" and fusion == "rrf":
        if relevance_weight:
            found = ((weights.similarity, s.vector_rank), (weights.text, s.text_rank))
            rrf = sum(w / (RRF_K + r) for w, r in found if r)
            fused = rrf / (relevance_weight / (RRF_K + 1))
        relevance = relevance_weight * fused
    elif mode == "hybrid" and best_text > 0:
        relevance = weights.similarity * sim + weights.text * s.text / best_text
    else:
        relevance = weights.similarity * sim + weights.text * s.text
    total = relevance_weight + weights.recency + weights.importance
    parts = relevance + weights.recency * recency + weights.importance * s.importance
    return Score(parts / total if total else 0.0, sim, s.text, recency, s.importance, fused)


class Fused(NamedTuple):
    """A candidate row with its score and its places in the two rankings."""

    row: dict[str, Any]
    score: Score
    vector_rank: int
    text_rank: int


def fuse(
    by_vector: list[dict[str, Any]],
    by_text: list[dict[str, Any]],
    *,
    weights: Weights,
    fusion: Fusion,
    mode: Mode,
    occur_time: Callable[[dict[str, Any]], dt.datetime],
    importance: Callable[[dict[str, Any]], float] = lambda _row: 0.0,
) -> list[Fused]:
    """Score the union of two candidate lists (rows with ``id``, ``distance``,
    ``text_rank`` and ``query_time``), unordered."""
    rows = {r["id"]: r for r in by_text} | {r["id"]: r for r in by_vector}
    if not rows:
        return []
    vector_ranks = {r["id"]: i for i, r in enumerate(by_vector, start=1)}
    text_ranks = {r["id"]: i for i, r in enumerate(by_text, start=1)}
    now: dt.datetime = next(iter(rows.values()))["query_time"]
    best_text = max(float(r["text_rank"] or 0.0) for r in rows.values())
    fused = []
    for row_id, row in rows.items():
        signals = Signals(
            distance=row["distance"],
            text=float(row["text_rank"] or 0.0),
            vector_rank=vector_ranks.get(row_id, 0),
            text_rank=text_ranks.get(row_id, 0),
            occur_time=occur_time(row),
            importance=importance(row),
        )
        result = score(signals, weights, fusion, mode, now, best_text=best_text)
        fused.append(Fused(row, result, signals.vector_rank, signals.text_rank))
    return fused
