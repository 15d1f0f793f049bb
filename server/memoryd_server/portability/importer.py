"""``memoryd import``: load an export file into an empty tenant, resumably.

The file is read in batches of lines; each batch is written in one transaction
working as ``memoryd_app`` with the tenant declared, together with the tenant's
``import_progress`` row for the file (keyed by its SHA-256). An interrupted
import therefore loses at most the batch in flight, and running it again on the
same file skips the lines already committed. A malformed line fails its whole
batch before anything of it is written, and the error names the line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from memoryd_server.database import APP_ROLE, redact
from memoryd_server.portability import (
    END,
    FORMAT,
    KINDS,
    KINDS_BY_NAME,
    VERSION,
    Kind,
    PortabilityError,
)

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class ImportResult:
    """What one run of ``import_tenant`` did."""

    lines_done: int  # lines of the file committed so far, header included
    skipped: int  # lines committed by an earlier run and skipped by this one
    complete: bool  # False when stopped early (``stop_after_batches``)


@dataclass(frozen=True)
class _Record:
    line: int
    kind: Kind
    data: dict[str, Any]


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file's bytes: the identity under which progress is kept."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lines(stream: BinaryIO) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON object) for each line; malformed lines raise."""
    number = 0
    for number, raw in enumerate(stream, start=1):
        if not raw.endswith(b"\n"):
            raise PortabilityError(f"line {number}: truncated (the file ends mid-line)")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PortabilityError(f"line {number}: not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise PortabilityError(f"line {number}: expected a JSON object")
        yield number, obj
    raise PortabilityError(f"line {number + 1}: the file ends without its end record (truncated?)")


def _check_header(number: int, obj: dict[str, Any]) -> None:
    if obj.get("type") != FORMAT:
        raise PortabilityError(f"line {number}: not a memoryd export (header missing)")
    if obj.get("version") != VERSION:
        raise PortabilityError(
            f"line {number}: unsupported export version {obj.get('version')!r}"
            f" (this memoryd reads version {VERSION})"
        )


def _record(number: int, obj: dict[str, Any]) -> _Record:
    """The record on line ``number``, its kind and fields checked."""
    name = obj.get("kind")
    kind = KINDS_BY_NAME.get(name) if isinstance(name, str) else None
    if kind is None:
        raise PortabilityError(f"line {number}: unknown record kind {obj.get('kind')!r}")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise PortabilityError(f"line {number}: the {kind.name} record has no data object")
    for column, value in kind.added.items():
        data.setdefault(column, value)
    missing = [c for c in kind.columns if c not in data]
    if missing:
        raise PortabilityError(f"line {number}: {kind.name} lacks field {missing[0]!r}")
    extra = sorted(set(data) - set(kind.columns))
    if extra:
        raise PortabilityError(f"line {number}: {kind.name} has unknown field {extra[0]!r}")
    return _Record(number, kind, data)


def _insert(kind: Kind) -> sql.Composed:
    """INSERT of a jsonb array of ``kind`` rows into the declared tenant."""
    columns = sql.SQL(", ").join(map(sql.Identifier, kind.columns))
    return sql.SQL(
        "INSERT INTO {table} (tenant_id, {columns})"
        " SELECT current_setting('memoryd.tenant'), {columns}"
        " FROM jsonb_populate_recordset(NULL::{table}, %s)"
    ).format(table=sql.Identifier(kind.table), columns=columns)


def _write(conn: psycopg.Connection[Any], records: list[_Record]) -> None:
    """Insert ``records`` in file order, one statement per run of one kind."""
    start = 0
    while start < len(records):
        end = start
        while end < len(records) and records[end].kind is records[start].kind:
            end += 1
        rows = [r.data for r in records[start:end]]
        conn.execute(_insert(records[start].kind), (Jsonb(rows),))
        start = end


def _first_line(exc: psycopg.Error) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


def _locate_refused(conn: psycopg.Connection[Any], tenant: str, records: list[_Record]) -> str:
    """Replay a refused batch row by row (then roll it back) to name the failing line."""
    try:
        with conn.transaction(force_rollback=True):
            _declare(conn, tenant)
            for record in records:
                try:
                    with conn.transaction():
                        _write(conn, [record])
                except psycopg.Error as exc:
                    return f"line {record.line}: the database refused it: {_first_line(exc)}"
    except psycopg.Error as exc:
        return f"the database refused the batch: {_first_line(exc)}"
    return "the database refused the batch"


def _declare(conn: psycopg.Connection[Any], tenant: str) -> None:
    conn.execute("SELECT set_config('memoryd.tenant', %s, true)", (tenant,))


def _lines_done(conn: psycopg.Connection[Any], tenant: str, sha256: str) -> int:
    """Lines already committed from this file, or 0 on a fresh start (tenant empty)."""
    if conn.execute("SELECT to_regclass('import_progress')").fetchone() == (None,):
        raise PortabilityError("the database lacks import_progress: run 'memoryd migrate' first")
    with conn.transaction():
        _declare(conn, tenant)
        row = conn.execute(
            "SELECT lines_done FROM import_progress WHERE file_sha256 = %s", (sha256,)
        ).fetchone()
        if row is not None:
            return int(row[0])
        probes = sql.SQL(" OR ").join(
            sql.SQL("EXISTS (SELECT FROM {})").format(sql.Identifier(k.table)) for k in KINDS
        )
        (busy,) = conn.execute(sql.SQL("SELECT {}").format(probes)).fetchone() or (False,)
    if busy:
        raise PortabilityError(f"tenant {tenant} is not empty")
    return 0


def ensure_tenant(url: str, tenant: str, *, create: bool) -> None:
    """Check that ``tenant`` exists (or, with ``create``, create it) before an import.

    Data imported into a tenant with no record is out of every key's reach:
    keys belong to a tenant, and ``memoryd keys create --tenant`` needs it.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            if create:
                conn.execute(
                    "INSERT INTO tenants (tenant_id) VALUES (%(tenant)s) ON CONFLICT DO NOTHING",
                    {"tenant": tenant},
                )
                return
            found = conn.execute(
                "SELECT 1 FROM tenants WHERE tenant_id = %(tenant)s", {"tenant": tenant}
            ).fetchone()
    except psycopg.Error as exc:
        raise PortabilityError(f"cannot use tenant {tenant}: {_first_line(exc)}") from None
    if found is None:
        raise PortabilityError(
            f"tenant {tenant} does not exist: create it first"
            f" (memoryd tenants create {tenant}), or pass --create-tenant"
        )


def import_tenant(
    url: str,
    tenant: str,
    path: Path,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    stop_after_batches: int | None = None,
) -> ImportResult:
    """Import the export file ``path`` into ``tenant``, resuming an earlier run of it.

    ``progress(lines_done)`` is called after each committed batch;
    ``stop_after_batches`` stops early (a test hook simulating an interruption).
    Raises PortabilityError on malformed input or a refused write; the batches
    committed before it stay, and a rerun resumes after them.
    """
    if batch_size < 1:
        raise PortabilityError("--batch-size must be at least 1")
    sha256 = file_sha256(path)
    try:
        with (
            path.open("rb") as stream,
            psycopg.connect(url, autocommit=True, connect_timeout=10) as conn,
        ):
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
            lines = _lines(stream)
            number, header = next(lines)
            _check_header(number, header)
            done = _lines_done(conn, tenant, sha256)
            return _run(
                conn, tenant, sha256, lines,
                done=max(done, 1), skipped=done, batch_size=batch_size,
                progress=progress, stop_after_batches=stop_after_batches,
            )  # fmt: skip
    except psycopg.Error as exc:
        raise PortabilityError(f"import failed: {_first_line(exc)}") from None


def _run(
    conn: psycopg.Connection[Any],
    tenant: str,
    sha256: str,
    lines: Iterator[tuple[int, Any]],
    *,
    done: int,
    skipped: int,
    batch_size: int,
    progress: Callable[[int], None] | None,
    stop_after_batches: int | None,
) -> ImportResult:
    """The batch loop of ``import_tenant`` after the header (line ``done`` committed)."""
    batches = 0
    finished = False
    while not finished:
        if stop_after_batches is not None and batches >= stop_after_batches:
            return ImportResult(done, skipped, complete=False)
        records: list[_Record] = []
        last = done
        while last - done < batch_size:
            number, obj = next(lines)
            last = number
            if number <= done:  # committed by an earlier run
                finished = obj.get("type") == END
                if finished:
                    break
                continue
            if obj.get("type") == END:
                if obj.get("records") != number - 2:
                    raise PortabilityError(
                        f"line {number}: the end record counts {obj.get('records')!r} records"
                        f" but the file holds {number - 2}"
                    )
                finished = True
                break
            records.append(_record(number, obj))
        if last == done:
            break  # everything was committed by an earlier run
        try:
            with conn.transaction():
                _declare(conn, tenant)
                _write(conn, records)
                conn.execute(
                    "INSERT INTO import_progress (tenant_id, file_sha256, lines_done, update_time)"
                    " VALUES (%s, %s, %s, now()) ON CONFLICT (tenant_id, file_sha256)"
                    " DO UPDATE SET lines_done = excluded.lines_done, update_time = now()",
                    (tenant, sha256, last),
                )
        except psycopg.Error:
            raise PortabilityError(_locate_refused(conn, tenant, records)) from None
        done = last
        batches += 1
        if progress is not None:
            progress(done)
    return ImportResult(done, skipped, complete=True)
