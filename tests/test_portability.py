"""``memoryd export`` / ``memoryd import``: lossless round trips, refusals, resumable batches."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from memoryd_server.config import ENVIRONMENT_VARIABLES
from memoryd_server.portability import KINDS, PortabilityError
from memoryd_server.portability.export import export_tenant
from memoryd_server.portability.importer import import_tenant
from tests.conftest import ServerThread

DIM = 384
TABLES = tuple(kind.table for kind in KINDS)


@pytest.fixture
def url(pg_uri: str, memoryd_server: ServerThread) -> str:
    """The session database, migrated by the session's server (import_progress included)."""
    del memoryd_server
    return pg_uri


def _seed(db: psycopg.Connection[Any], tenant: str, *, memories: int = 4) -> None:
    """A conversation with messages, memories (embeddings, history) written behind the API."""
    rng = np.random.default_rng(7)
    conversation = f"conv-{tenant}"
    db.execute(
        "INSERT INTO conversations (tenant_id, id, user_id, title, metadata, state, version,"
        " message_count, last_message_time, create_time, update_time)"
        " VALUES (%s, %s, 'u1', 'Tïtle \"quoted\"\nline', %s, %s, 3, 3,"
        " '2024-05-01 12:00:00.123456+02', '2024-05-01 09:00:00+00', '2024-05-01 10:00:00.5+00')",
        (tenant, conversation, Jsonb({"a": [1, 2.5, None], "é": "ü"}), Jsonb({"step": 2})),
    )
    for seq, role in enumerate(("system", "user", "assistant"), start=1):
        db.execute(
            "INSERT INTO messages (tenant_id, conversation_id, seq, id, role, content,"
            " tool_calls, token_count, feedback_rating, feedback_time, create_time)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            (
                tenant, conversation, seq, uuid.uuid4(), role, f"message {seq} \u2028 ✓",
                Jsonb([{"id": "t1", "args": {"x": 1}}] if role == "assistant" else []),
                seq * 10, "positive" if role == "assistant" else None,
                "2024-05-02 00:00:00+00" if role == "assistant" else None,
            ),
        )  # fmt: skip
    for i in range(memories):
        memory_id = uuid.uuid4()
        embedding = None if i == 0 else rng.standard_normal(DIM).astype(np.float32)
        if embedding is not None:
            embedding[0] = np.float32(0.1)  # not exact in binary: must survive unchanged
            embedding[1] = np.float32(1e-30)
        db.execute(
            "INSERT INTO memories (tenant_id, id, namespace, ns_path, key, content, embedding,"
            " confidence, tags, metadata, related_to, version, expire_time, create_time)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s::real[]::vector, 0.3, %s, %s, %s, 2,"
            " '2999-01-01 00:00:00+00', '2024-01-01 00:00:00.000001+00')",
            (
                tenant, memory_id, ["users", "u1"], "users\x1fu1", f"k{i}" if i % 2 else None,
                f"memory {i}", None if embedding is None else embedding.tolist(), ["t1", "t2"],
                Jsonb({"n": i, "nested": {"f": 0.1}}), [uuid.uuid4()],
            ),
        )  # fmt: skip
        if i % 2:  # search hits, kept beside the memory
            db.execute(
                "INSERT INTO memory_access (tenant_id, memory_id, access_count, last_access_time)"
                " VALUES (%s, %s, %s, '2025-06-01 12:00:00.5+00')",
                (tenant, memory_id, i * 3),
            )
        for version, event in ((1, "created"), (2, "updated")):
            db.execute(
                "INSERT INTO memory_events (tenant_id, memory_id, version, event_type, actor,"
                " event_time) VALUES (%s, %s, %s, %s, 'tester', now())",
                (tenant, memory_id, version, event),
            )
            db.execute(
                "INSERT INTO memory_snapshots (tenant_id, memory_id, version, state, reason)"
                " VALUES (%s, %s, %s, %s, %s)",
                (tenant, memory_id, version, Jsonb({"content": f"v{version}"}), "why"),
            )


def _export(url: str, tenant: str) -> list[str]:
    out = io.StringIO()
    export_tenant(url, tenant, out)
    text = out.getvalue()
    assert text.isascii()  # non-ASCII is escaped: no U+2028 a reader could split on
    return [line + "\n" for line in text.split("\n")[:-1]]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _counts(db: psycopg.Connection[Any], tenant: str) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        row = db.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", (tenant,)).fetchone()
        assert row is not None
        counts[table] = row[0]
    return counts


def _progress(db: psycopg.Connection[Any], tenant: str) -> list[int]:
    rows = db.execute(
        "SELECT lines_done FROM import_progress WHERE tenant_id = %s", (tenant,)
    ).fetchall()
    return [r[0] for r in rows]


def _expected_counts(lines: list[str]) -> dict[str, int]:
    """Rows per table that the record lines ``lines`` hold."""
    tables = {kind.name: kind.table for kind in KINDS}
    counts = dict.fromkeys(TABLES, 0)
    for line in lines:
        counts[tables[json.loads(line)["kind"]]] += 1
    return counts


def test_round_trip_is_lossless(
    url: str, db: psycopg.Connection[Any], uid: str, tmp_path: Path
) -> None:
    """export T -> import into U -> export U gives the same records; embeddings are bit-exact."""
    source, target = f"exp-{uid}", f"imp-{uid}"
    _seed(db, source)
    lines = _export(url, source)
    header = json.loads(lines[0])
    assert header["type"] == "memoryd-export"
    assert header["version"] == 1
    assert header["tenant"] == source
    assert json.loads(lines[-1]) == {"type": "memoryd-export-end", "records": len(lines) - 2}
    assert [json.loads(line)["kind"] for line in lines[1:5]] == ["conversation"] + ["message"] * 3
    assert _export(url, source)[1:] == lines[1:], "export is not deterministic"

    result = import_tenant(url, target, _write(tmp_path / "t.jsonl", lines), batch_size=5)
    assert result.complete
    assert result.lines_done == len(lines)
    again = _export(url, target)
    assert json.loads(again[0])["tenant"] == target
    assert again[1:] == lines[1:]
    assert _counts(db, target) == _counts(db, source)
    # Bit-exact vectors, and the generated search text rebuilt.
    rows = db.execute(
        "SELECT count(*) FROM memories a JOIN memories b ON a.id = b.id"
        " WHERE a.tenant_id = %s AND b.tenant_id = %s"
        " AND a.embedding IS NOT DISTINCT FROM b.embedding AND a.search_text = b.search_text",
        (source, target),
    ).fetchone()
    assert rows == (4,)
    first = next(json.loads(line)["data"] for line in lines if '"embedding":[' in line)
    assert first["embedding"][:2] == [0.1, 1e-30]  # float32 shortest text, exact
    assert len(first["embedding"]) == DIM


def test_import_refuses_a_non_empty_tenant(
    url: str, db: psycopg.Connection[Any], uid: str, tmp_path: Path
) -> None:
    """A tenant with rows is refused, whatever the file, and keeps its rows."""
    source, target = f"exp-{uid}", f"busy-{uid}"
    _seed(db, source, memories=1)
    _seed(db, target, memories=1)
    before = _counts(db, target)
    path = _write(tmp_path / "t.jsonl", _export(url, source))
    with pytest.raises(PortabilityError, match=f"tenant {target} is not empty"):
        import_tenant(url, target, path)
    assert _counts(db, target) == before


@pytest.mark.parametrize(
    "case",
    [
        ("truncate", "truncated"),
        ("json", "not valid JSON"),
        ("kind", "unknown record kind 'robot'"),
        ("field", "lacks field"),
        ("refused", "the database refused it"),
    ],
)
def test_bad_line_names_it_and_keeps_only_earlier_batches(
    url: str, db: psycopg.Connection[Any], uid: str, tmp_path: Path, case: tuple[str, str]
) -> None:
    """The error names the line; only the complete batches before it are committed."""
    damage, message = case
    source, target = f"exp-{uid}", f"imp-{uid}"
    _seed(db, source, memories=5)
    lines = _export(url, source)
    bad = 13  # 1-based; a memory_event or so, in the third batch of 5
    if damage == "truncate":
        lines = [*lines[: bad - 1], lines[bad - 1][: len(lines[bad - 1]) // 2]]
    elif damage == "json":
        lines[bad - 1] = lines[bad - 1][:20] + "\n"
    elif damage == "kind":
        lines[bad - 1] = json.dumps({"kind": "robot", "data": {}}) + "\n"
    elif damage == "field":
        record = json.loads(lines[bad - 1])
        record["data"].popitem()
        lines[bad - 1] = json.dumps(record) + "\n"
    else:
        record = json.loads(lines[bad - 1])
        record["data"]["version"] = "not a number"
        lines[bad - 1] = json.dumps(record) + "\n"
    path = _write(tmp_path / "t.jsonl", lines)
    batch = 5
    with pytest.raises(PortabilityError, match=rf"^line {bad}: .*{re.escape(message)}"):
        import_tenant(url, target, path, batch_size=batch)
    committed = 1 + (bad - 2) // batch * batch  # the header, then whole batches
    assert _progress(db, target) == [committed]
    assert _counts(db, target) == _expected_counts(lines[1:committed])


def test_missing_header_and_missing_end_are_refused(
    url: str, db: psycopg.Connection[Any], uid: str, tmp_path: Path
) -> None:
    """No header: nothing is written; no end record (cut at a line boundary): last batch lost."""
    source, target = f"exp-{uid}", f"imp-{uid}"
    _seed(db, source, memories=1)
    lines = _export(url, source)
    with pytest.raises(PortabilityError, match=r"^line 1: not a memoryd export"):
        import_tenant(url, target, _write(tmp_path / "a.jsonl", lines[1:]))
    with pytest.raises(PortabilityError, match=rf"^line {len(lines)}: .*without its end record"):
        import_tenant(url, target, _write(tmp_path / "b.jsonl", lines[:-1]), batch_size=4)
    committed = 1 + (len(lines) - 3) // 4 * 4
    assert _progress(db, target) == [committed]
    assert _counts(db, target) == _expected_counts(lines[1:committed])


def test_interrupted_import_resumes(
    url: str, db: psycopg.Connection[Any], uid: str, tmp_path: Path
) -> None:
    """A rerun on the same file skips the committed batches and ends like a clean import."""
    source, target = f"exp-{uid}", f"imp-{uid}"
    _seed(db, source, memories=6)
    lines = _export(url, source)
    path = _write(tmp_path / "t.jsonl", lines)
    first = import_tenant(url, target, path, batch_size=4, stop_after_batches=3)
    assert not first.complete
    assert first.lines_done == 13
    assert _progress(db, target) == [13]
    assert _counts(db, target) == _expected_counts(lines[1:13])

    seen: list[int] = []
    second = import_tenant(url, target, path, batch_size=4, progress=seen.append)
    assert second.complete
    assert (second.skipped, second.lines_done) == (13, len(lines))
    assert (seen[0], seen[-1]) == (17, len(lines))
    assert _export(url, target)[1:] == lines[1:]
    # A finished import run again is a no-op, not a "not empty" error.
    third = import_tenant(url, target, path, batch_size=4)
    assert third.complete
    assert third.skipped == len(lines)
    assert _export(url, target)[1:] == lines[1:]


def _memoryd(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "memoryd_server", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_export_and_import(
    url: str, db: psycopg.Connection[Any], uid: str, tmp_path: Path
) -> None:
    """``memoryd export --output`` and ``memoryd import``; errors exit 2 with a clear message."""
    source, target = f"exp-{uid}", f"imp-{uid}"
    _seed(db, source, memories=2)
    path = tmp_path / "t.jsonl"
    done = _memoryd(url, "export", "--tenant", source, "--output", str(path))
    assert done.returncode == 0, done.stderr
    records = len(path.read_text().splitlines()) - 2
    assert f"exported {records} records" in done.stderr
    stdout = _memoryd(url, "export", "--tenant", source)
    assert stdout.returncode == 0, stdout.stderr
    assert stdout.stdout.splitlines()[1:] == path.read_text().splitlines()[1:]

    absent = _memoryd(url, "import", "--tenant", target, str(path))
    assert absent.returncode == 2
    assert f"memoryd: error: tenant {target} does not exist" in absent.stderr
    assert "--create-tenant" in absent.stderr
    assert (
        db.execute("SELECT count(*) FROM memories WHERE tenant_id = %s", (target,)).fetchone()[0]
        == 0
    )
    bad = _memoryd(url, "import", "--tenant", "ünï-" + "x" * 64, "--create-tenant", str(path))
    assert bad.returncode == 2
    assert "memoryd: error: cannot use tenant ünï-" in bad.stderr

    done = _memoryd(
        url, "import", "--tenant", target, "--create-tenant", "--batch-size", "3", str(path)
    )
    assert done.returncode == 0, done.stderr
    assert (
        db.execute("SELECT count(*) FROM tenants WHERE tenant_id = %s", (target,)).fetchone()[0]
        == 1
    )
    assert "imported 4 lines" in done.stderr
    assert _export(url, target)[1:] == path.read_text().splitlines(keepends=True)[1:]

    refused = _memoryd(url, "import", "--tenant", source, "--create-tenant", str(path))
    assert refused.returncode == 2
    assert f"memoryd: error: tenant {source} is not empty" in refused.stderr
    missing = _memoryd(url, "import", "--tenant", f"x-{uid}", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2
    assert "memoryd: error: cannot read" in missing.stderr
