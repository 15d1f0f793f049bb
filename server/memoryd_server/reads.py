"""Reads in one network round trip: tenant, settings and prepared statements in one message.

A read used to wait for a pool check, BEGIN, the tenant's set_config, each
query and COMMIT in turn. Here they go as one simple-protocol message, which
PostgreSQL runs as one implicit transaction, so transaction-local settings
(the tenant for row-level security, HNSW search settings) hold for the
statements and end with them. That protocol takes no bound parameters, so
each statement is prepared once per connection (``PREPARE``, in the message
of its first use there) and then run as ``EXECUTE name(literals)``, its
arguments quoted client-side by psycopg: the plan is cached as psycopg's own
prepared statements cached it, without a round trip of its own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import AsyncRowFactory, Row
from psycopg_pool import AsyncConnectionPool

from memoryd_server.availability import Pool
from memoryd_server.database import declarations
from memoryd_server.errors import Unavailable, map_pg_errors
from memoryd_server.telemetry import statement_of

if TYPE_CHECKING:
    import numpy as np

Statement = tuple[sql.Composable, Mapping[str, Any]]

_PREPARABLE = ("SELECT", "WITH")
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
# Statements each pooled connection has prepared (by name); forgotten with it.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
# Statements PostgreSQL could not prepare (a parameter of no inferable type):
# they are sent with their arguments inlined, planned each time.
_unpreparable: set[str] = set()


@dataclass(frozen=True)
class _Prepared:
    name: str
    prepare: str  # PREPARE name AS <the statement with $1, $2, ...>
    execute: str  # EXECUTE name(%(a)s, ...), for psycopg to fill in


@functools.lru_cache(maxsize=1024)
def _prepared_form(text: str) -> _Prepared:
    """``text`` (with ``%(name)s`` placeholders) as a named prepared statement."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(number, text)
    name = "memoryd_" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:20]
    arguments = ", ".join(f"%({n})s" for n in names)
    return _Prepared(name, f"PREPARE {name} AS {body}", f"EXECUTE {name}({arguments})")


def vector_literal(vector: np.ndarray[Any, Any]) -> str:
    """``vector`` in pgvector's text form, for ``read()``'s client-side binding.

    pgvector's own dumper formats element by element (about 0.3 ms for 384
    dimensions). Nine significant digits give back every float32 exactly, in
    one formatting call: 67 µs for 384 dimensions, against 170 µs for each
    float's repr (17 digits of the float64 it widens to).
    """
    values = vector.tolist()
    return _vector_format(len(values)) % tuple(values)


@functools.lru_cache(maxsize=16)
def _vector_format(dimension: int) -> str:
    return "[" + ",".join(["%.9g"] * dimension) + "]"


@functools.lru_cache(maxsize=4096)
def _declared(local: tuple[tuple[str, str], ...]) -> str:
    """The ``set_config`` statement for ``local``: the same few per tenant, so kept."""
    return declarations(dict(local)).as_string()


async def _read_on(
    conn: psycopg.AsyncConnection[Any],
    local: Mapping[str, str],
    statements: Sequence[Statement],
    row_factory: AsyncRowFactory[Row],
    *,
    retried: bool = False,
) -> list[list[Row]]:
    prepared = _prepared.setdefault(conn, set())
    cur = psycopg.AsyncClientCursor(conn, row_factory=row_factory)
    texts = [query.as_string(conn) for query, _ in statements]
    parts = [_declared(tuple(local.items()))]
    results: list[bool] = [False]  # whether each result of the message is a statement's
    new: list[str] = []
    for text, (_, params) in zip(texts, statements, strict=True):
        # PREPARE takes queries only (an EXPLAIN is sent as it is).
        if text in _unpreparable or not text.lstrip().upper().startswith(_PREPARABLE):
            parts.append(cur.mogrify(text, params))
        else:
            form = _prepared_form(text)
            if form.name not in prepared and form.name not in new:
                parts.append(form.prepare)
                results.append(False)
                new.append(form.name)
            parts.append(cur.mogrify(form.execute, params))
        results.append(True)
    if not conn.autocommit:  # pooled ones are (database.create_pool); others once
        await conn.set_autocommit(True)
    try:
        # Never prepared by psycopg: one message of several statements cannot be.
        # Traced and timed as one operation, by the statements' placeholder text.
        with statement_of(conn, "; ".join(texts)):
            await cur.execute("; ".join(parts), prepare=False)
    except psycopg.errors.IndeterminateDatatype:
        _unpreparable.update(texts)
        return await _read_on(conn, local, statements, row_factory)
    except psycopg.Error as exc:
        # PREPARE is not undone with a failed transaction: ask which exist.
        if not conn.broken:
            with contextlib.suppress(psycopg.Error):
                known = await conn.execute("SELECT name FROM pg_prepared_statements")
                _prepared[conn] = {str(name) for (name,) in await known.fetchall()}
        # Our record of a connection's statements can be wrong both ways:
        # psycopg clears its own prepared statements after a ROLLBACK, DROP or
        # ALTER on the connection with DEALLOCATE ALL, and so ours; and a read
        # cancelled (its deadline) after PostgreSQL ran its PREPARE never
        # recorded it, so the next read's PREPARE found it there (answered
        # INTERNAL under overload). Either way the set was just reread: again.
        if not retried and isinstance(
            exc,
            (psycopg.errors.InvalidSqlStatementName, psycopg.errors.DuplicatePreparedStatement),
        ):
            return await _read_on(conn, local, statements, row_factory, retried=True)
        raise
    prepared.update(new)
    rows = []
    for is_statement in results[1:]:
        cur.nextset()
        if is_statement:
            rows.append(await cur.fetchall())
    return rows


async def read(
    pool: AsyncConnectionPool,
    tenant_id: str | None,
    statements: Sequence[Statement],
    *,
    row_factory: AsyncRowFactory[Row],
    settings: Mapping[str, str] | None = None,
) -> list[list[Row]]:
    """The rows of each of the read-only ``statements``, in one network round trip.

    The tenant (for row-level security) and ``settings`` are declared in the
    same message, for these statements only, as ``database.transaction()``
    does. A pooled connection is not checked before use: one found broken
    (the database restarted since it was last used) is replaced and the read,
    which changes nothing, is sent again once the database answers.
    """
    local = dict(settings or {})
    if tenant_id is not None:
        local["memoryd.tenant"] = tenant_id
    for attempt in range(2):
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            with map_pg_errors():
                getconn = pool.getconn(check=False) if isinstance(pool, Pool) else pool.getconn()
                conn = await getconn
                try:
                    return await _read_on(conn, local, statements, row_factory)
                finally:
                    await pool.putconn(conn)
        except Unavailable as exc:
            if not (isinstance(pool, Pool) and isinstance(exc.__cause__, psycopg.Error)):
                raise
            # Down, or this connection alone broke: the probe tells which.
            if not await pool.availability.probe() or attempt or conn is None or not conn.broken:
                raise
            await pool.check()  # drop the other broken idle connections
    raise AssertionError("unreachable")
