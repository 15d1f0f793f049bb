"""The migration lock: a PostgreSQL session advisory lock, which dies with its holder.

yoyo's own lock is a row in ``yoyo_lock``: a migrator killed while holding it
leaves the row behind, and every replica starting afterwards waited 10 s and
died with a traceback. An advisory lock is released by PostgreSQL when the
holder's connection ends, however the holder ended.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import structlog

log = structlog.get_logger(__name__)

# One lock for every memoryd migrating this database (the key is hashtext of it).
LOCK_NAME = "memoryd.migrations"
# How long a replica waits for another's migrations (an HNSW index build may
# take minutes) before giving up with a message naming the holder.
WAIT_SECONDS = 900.0
# How often a waiting replica logs who it waits for.
LOG_EVERY_SECONDS = 10.0

_HOLDER = """
SELECT a.pid, coalesce(host(a.client_addr), 'local'), a.application_name,
       round(extract(epoch FROM now() - a.backend_start))::int
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.objid = (hashtext(%s)::bigint & 4294967295)::oid
"""


class LockTimeout(RuntimeError):
    """Another migrator held the lock for longer than the wait; the message names it."""


def _holder(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    row = conn.execute(_HOLDER, (LOCK_NAME,)).fetchone()
    if row is None:
        return "another migrator"
    pid, host, app, age = row
    return f"{app or 'a client'} (backend pid {pid}, from {host}, connected {age} s ago)"


@contextmanager
def migration_lock(url: str, *, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the migration lock of the database at ``url`` (blocking) for the ``with`` body."""
    with psycopg.connect(
        url, autocommit=True, connect_timeout=10, application_name="memoryd-migrate"
    ) as conn:
        until = time.monotonic() + wait
        next_log = time.monotonic()
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_NAME,)).fetchone()
            if row is not None and row[0]:
                break
            now = time.monotonic()
            if now >= until:
                raise LockTimeout(
                    f"{_holder(conn)} has held the migration lock for over {wait:g} s;"
                    " if it hangs, end that backend (pg_terminate_backend) and retry"
                )
            if now >= next_log:
                log.info("waiting_for_migration_lock", holder=_holder(conn))
                next_log = now + LOG_EVERY_SECONDS
            time.sleep(min(0.2, max(until - now, 0.0)))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (LOCK_NAME,))
