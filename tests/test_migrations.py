"""Migrations up and down on an empty database, through the ``memoryd migrate`` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from memoryd_server.config import ENVIRONMENT_VARIABLES
from tests.conftest import REPO

MIGRATIONS = REPO / "migrations"
TABLES = ("conversations", "messages", "idempotency_keys", "server_secrets")


def _migration_ids() -> list[str]:
    """The ids of the migrations in the repository, in the order they apply."""
    return sorted(p.name.removesuffix(".sql") for p in _forward_files())


def _forward_files() -> list[Path]:
    return [p for p in MIGRATIONS.glob("*.sql") if not p.name.endswith(".rollback.sql")]


def _database_uri(pg_uri: str, name: str) -> str:
    """``pg_uri`` (a ``/postgres`` URI) pointing at database ``name`` instead."""
    parts = urlsplit(pg_uri)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def empty_database(db: psycopg.Connection[Any], pg_uri: str, uid: str) -> Iterator[str]:
    """The URI of a new, empty database in the session's PostgreSQL; dropped afterwards."""
    name = f"memoryd_migrations_{uid}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _database_uri(pg_uri, name)
    finally:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


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


def _migrate(url: str, *args: str) -> str:
    """Run ``memoryd migrate ARGS``, assert it succeeded, return its stdout."""
    result = _memoryd(url, "migrate", *args)
    assert result.returncode == 0, (args, result.returncode, result.stderr)
    return result.stdout


def _states(url: str) -> list[tuple[str, str]]:
    """``memoryd migrate --list`` as (id, "applied" | "pending") pairs, in order."""
    states = []
    for line in _migrate(url, "--list").splitlines():
        state, migration_id = line.split()
        states.append((migration_id, state))
    return states


def _count(output: str, verb: str) -> list[str]:
    """The ids in an "applied N: ids" / "rolled back N: ids" line (checking N)."""
    match = re.fullmatch(rf"{verb} (\d+): (.*)", output.strip())
    assert match is not None, output
    ids = [] if match[2] == "-" else match[2].split()
    assert int(match[1]) == len(ids), output
    return ids


def _relations(url: str) -> set[str]:
    """Tables, views and sequences in ``public``, except yoyo's own bookkeeping."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        ).fetchall()
    return {name for (name,) in rows if not name.lstrip("_").startswith("yoyo")}


def _has_vector(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() == (
            1,
        )


def test_every_migration_has_a_rollback() -> None:
    """Migrations are numbered NNNN.name.sql, in sequence, each with its rollback.

    Two series run in sequence: 0001 on, and 0100 on (kept for work done in
    parallel with the first, so the two never take the same number).
    """
    forward = sorted(p.name for p in _forward_files())
    assert forward, "no migrations"
    rollbacks = sorted(p.name for p in MIGRATIONS.glob("*.rollback.sql"))
    assert rollbacks == [name.removesuffix(".sql") + ".rollback.sql" for name in forward]
    numbers = [name.split(".", 1)[0] for name in forward]
    assert all(re.fullmatch(r"\d{4}", n) for n in numbers), numbers
    low = [int(n) for n in numbers if int(n) < 100]
    high = [int(n) for n in numbers if int(n) >= 100]
    assert low == list(range(1, len(low) + 1))
    assert high == list(range(100, 100 + len(high)))


def test_migrate_up_down_and_up_again(empty_database: str) -> None:
    """Apply all, roll back, apply again; a second apply is a no-op."""
    url = empty_database
    ids = _migration_ids()

    assert _states(url) == [(i, "pending") for i in ids]
    assert _relations(url) == set()

    assert _count(_migrate(url), "applied") == ids
    assert _states(url) == [(i, "applied") for i in ids]
    created = _relations(url)
    assert set(TABLES) <= created
    assert _has_vector(url)

    assert _count(_migrate(url, "--rollback"), "rolled back") == ids[-1:]
    assert _states(url) == [(i, "applied") for i in ids[:-1]] + [(ids[-1], "pending")]
    if len(ids) > 1:
        undone = _count(_migrate(url, "--rollback", str(len(ids) - 1)), "rolled back")
        assert undone == ids[-2::-1]
    assert _states(url) == [(i, "pending") for i in ids]
    # Every rollback undoes its migration completely.
    assert _relations(url) == set()

    assert _count(_migrate(url), "applied") == ids
    assert _relations(url) == created
    assert _count(_migrate(url), "applied") == []
    assert _states(url) == [(i, "applied") for i in ids]


def test_rollback_count_must_be_positive(empty_database: str) -> None:
    """``--rollback 0`` is refused with a clear message, touching nothing."""
    result = _memoryd(empty_database, "migrate", "--rollback", "0")
    assert result.returncode == 2, result.stderr
    assert "memoryd: error: --rollback: N must be at least 1" in result.stderr
    assert _relations(empty_database) == set()


def test_concurrent_migrate_applies_each_migration_once(empty_database: str) -> None:
    """Replicas starting together on an empty database all succeed; each migration applies once.

    This covers ``prepare_database`` (CREATE EXTENSION) as well as yoyo's lock.
    """
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env["DATABASE_URL"] = empty_database
    command = [sys.executable, "-m", "memoryd_server", "migrate"]
    applied: list[str] = []
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
            for _ in range(4)
        ]
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            applied += _count(out, "applied")
    assert sorted(applied) == _migration_ids()
    assert _states(empty_database) == [(i, "applied") for i in _migration_ids()]
