"""Migrations with replicas (issue 12 item 10): a killed migrator's leftovers block nobody."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest

from memoryd_server import database
from memoryd_server.database import StartupError
from memoryd_server.migration_lock import LOCK_NAME
from tests.test_migrations import _memoryd, empty_database  # noqa: F401 - a fixture


def test_a_killed_migrators_leftovers_do_not_block_replicas(empty_database: str) -> None:  # noqa: F811
    """kill -9 a migrator holding the lock, with yoyo's lock row left behind too."""
    url = empty_database
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time, psycopg
                from memoryd_server.migration_lock import migration_lock
                url = {url!r}
                with psycopg.connect(url, autocommit=True) as conn:
                    # What an older memoryd's yoyo left when killed: its lock row.
                    conn.execute("CREATE TABLE yoyo_lock (locked INT DEFAULT 1,"
                                 " ctime TIMESTAMP, pid INT NOT NULL, PRIMARY KEY (locked))")
                    conn.execute("INSERT INTO yoyo_lock (ctime, pid) VALUES (now(), 424242)")
                with migration_lock(url):
                    print("locked", flush=True)
                    time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StartupError) as info:  # held: a replica waits, then says by whom
            database.apply_migrations(url, embedding_dim=8, lock_wait=0.5)
        message = str(info.value)
        assert "memoryd-migrate" in message
        assert "has held the migration lock" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    # The lock went with its holder's connection; the stale row is ignored.
    started = time.monotonic()
    result = _memoryd(url, "migrate")
    took = time.monotonic() - started
    print(f"\nmigrate after a kill -9 of the lock holder: {took:.1f} s")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("applied ")
    assert took < 10  # yoyo's lock made every replica wait 10 s, then die
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND objid = (hashtext(%s)::bigint & 4294967295)::oid",
            (LOCK_NAME,),
        ).fetchone()
    assert row == (0,)


def test_a_failing_migration_is_one_line_naming_it(empty_database: str) -> None:  # noqa: F811
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE conversations (x int)")  # in the way of 0001
    result = _memoryd(empty_database, "migrate")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        'memoryd: error: migration 0001.conversations failed: relation "conversations"'
        " already exists"
    ], result.stderr
