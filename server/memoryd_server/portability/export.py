"""``memoryd export``: one tenant as JSON lines, from one consistent snapshot.

Rows are read through server-side cursors in a single REPEATABLE READ READ ONLY
transaction working as ``memoryd_app`` with the tenant declared, so the export
is consistent, confined to the tenant by row-level security, and needs constant
memory. Each row is turned into JSON by PostgreSQL (timestamps in UTC, ISO 8601
with offset; embeddings as ``real[]``, whose shortest text round-trips float32
exactly) and written with sorted keys, so the same data exports byte-identically.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, TextIO

import psycopg
from psycopg import IsolationLevel, sql

from memoryd_server.database import APP_ROLE, redact
from memoryd_server.portability import END, FORMAT, KINDS, VERSION, Kind, PortabilityError

# Rows fetched per round trip of the server-side cursors.
FETCH_SIZE = 1000


def dump_line(obj: dict[str, Any]) -> str:
    """One line of the file: compact JSON with sorted keys, then a newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


def _select(kind: Kind) -> sql.Composed:
    """The query yielding each row of ``kind`` as one jsonb object, in file order."""
    pairs: list[sql.Composable] = []
    for column in kind.columns:
        value: sql.Composable = sql.Identifier(column)
        if column == "embedding":
            value = sql.SQL("{}::real[]").format(value)
        pairs.append(sql.SQL("{}, {}").format(sql.Literal(column), value))
    return sql.SQL("SELECT jsonb_build_object({}) FROM {} ORDER BY {}").format(
        sql.SQL(", ").join(pairs), sql.Identifier(kind.table), sql.SQL(kind.order_by)
    )


def export_tenant(url: str, tenant: str, out: TextIO) -> int:
    """Write the export of ``tenant`` to ``out``; returns the number of records.

    Raises PortabilityError when the database cannot be read.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                conn.execute("SELECT set_config('memoryd.tenant', %s, true)", (tenant,))
                conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
                out.write(
                    dump_line(
                        {
                            "type": FORMAT,
                            "version": VERSION,
                            "tenant": tenant,
                            "time": dt.datetime.now(dt.UTC).isoformat(),
                        }
                    )
                )
                records = 0
                for kind in KINDS:
                    with conn.cursor(name=f"export_{kind.name}") as cur:
                        cur.itersize = FETCH_SIZE
                        cur.execute(_select(kind))
                        for (data,) in cur:
                            out.write(dump_line({"kind": kind.name, "data": data}))
                            records += 1
                out.write(dump_line({"type": END, "records": records}))
    except psycopg.Error as exc:
        text = str(exc).strip()
        first = redact(text.splitlines()[0]) if text else type(exc).__name__
        raise PortabilityError(f"export failed: {first}") from None
    return records
