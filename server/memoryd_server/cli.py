"""The ``memoryd`` command: serve, migrate, export, import(-peer), docs, mcp, tenants, keys,
users."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from memoryd.integrations.mcp import command as mcp_command
from memoryd_server import __version__, config, database
from memoryd_server.admin import cli as admin_cli
from memoryd_server.app import serve
from memoryd_server.config import DEFAULT_EMBEDDING_DIM, ConfigError, Settings
from memoryd_server.database import EmbeddedDatabase, StartupError
from memoryd_server.documents import sync as docs_sync
from memoryd_server.embeddings import cli as embeddings_cli
from memoryd_server.portability import PortabilityError, peers
from memoryd_server.portability.export import export_tenant
from memoryd_server.portability.importer import (
    DEFAULT_BATCH_SIZE,
    ImportResult,
    ensure_tenant,
    import_tenant,
)
from memoryd_server.supervisor import Supervisor
from memoryd_server.telemetry import configure_logging
from memoryd_server.welcome import print_welcome

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memoryd",
        description="gRPC memory server for AI agents. Configured by environment "
        "variables (see the README); with no DATABASE_URL it runs an embedded "
        "PostgreSQL in MEMORYD_DATA_DIR.",
    )
    parser.add_argument("--version", action="version", version=f"memoryd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    settings_help = "\n".join(f"  {var:<36} {default}" for var, default in config.defaults())
    serve_parser = commands.add_parser(
        "serve",
        help="run the gRPC server until SIGTERM/SIGINT",
        description="Run the gRPC server until SIGTERM/SIGINT. Every setting is an "
        "environment variable (the README's table says what each does).",
        epilog=f"settings (environment variables) and their defaults:\n{settings_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_parser.add_argument(
        "--welcome",
        action="store_true",
        help="once serving, print where, with which data and auth, and commands to try",
    )
    migrate = commands.add_parser("migrate", help="apply, list or roll back migrations")
    group = migrate.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list migrations and their state")
    group.add_argument(
        "--rollback",
        nargs="?",
        type=int,
        const=1,
        metavar="N",
        help="roll back the last N applied migrations (default 1)",
    )
    export = commands.add_parser("export", help="write one tenant's data as JSON lines")
    export.add_argument("--tenant", required=True, help="the tenant to export")
    export.add_argument(
        "--output", default="-", metavar="FILE", help="the file to write ('-', the default: stdout)"
    )
    load = commands.add_parser(
        "import", help="load an export file into an empty tenant (resumes an interrupted run)"
    )
    load.add_argument("--tenant", required=True, help="the tenant to import into")
    load.add_argument(
        "--create-tenant",
        action="store_true",
        help="create the tenant if it does not exist (otherwise that is an error)",
    )
    load.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"lines per transaction (default {DEFAULT_BATCH_SIZE})",
    )
    load.add_argument("file", type=Path, metavar="FILE", help="a file written by memoryd export")
    peer = commands.add_parser(
        "import-peer",
        help="import a LangGraph store dump, a Mem0 export or LangChain documents through the API",
    )
    peers.add_arguments(peer)
    mcp_command.add_arguments(
        commands.add_parser("mcp", help="serve memoryd's tools to MCP clients (stdio or HTTP)")
    )
    docs_sync.add_commands(commands)
    admin_cli.add_commands(commands.add_parser)
    embeddings_cli.add_commands(commands.add_parser)
    return parser


def _with_database(settings: Settings, action: Callable[[str], T]) -> T:
    """Run ``action(url)`` against DATABASE_URL or a temporarily started embedded server."""
    if settings.database_url is not None:
        database.prepare_database(settings.database_url)
        return action(settings.database_url)
    embedded = EmbeddedDatabase(settings.data_dir)
    url = embedded.start()
    try:
        database.prepare_database(url)
        return action(url)
    finally:
        if not embedded.attached:  # a running memoryd's database stays up
            embedded.stop()


def _dimension(settings: Settings) -> int:
    """The vector length a new database's first migrations are told about."""
    return settings.known_dimension or DEFAULT_EMBEDDING_DIM


def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    if args.list:
        for state in _with_database(settings, database.list_migrations):
            print(f"{'applied' if state.applied else 'pending'}  {state.id}")
    elif args.rollback is not None:
        if args.rollback < 1:
            raise ConfigError("--rollback: N must be at least 1")
        undone = _with_database(
            settings, lambda url: database.rollback_migrations(url, args.rollback)
        )
        print(f"rolled back {len(undone)}: {' '.join(undone) or '-'}")
    else:
        applied = _with_database(
            settings,
            lambda url: database.apply_migrations(url, embedding_dim=_dimension(settings)),
        )
        print(f"applied {len(applied)}: {' '.join(applied) or '-'}")


def _export(settings: Settings, args: argparse.Namespace) -> None:
    if args.output == "-":
        records = _with_database(settings, lambda url: export_tenant(url, args.tenant, sys.stdout))
    else:
        output = Path(args.output)
        try:
            with output.open("w", encoding="utf-8", newline="\n") as stream:
                records = _with_database(
                    settings, lambda url: export_tenant(url, args.tenant, stream)
                )
        except OSError as exc:
            raise PortabilityError(f"cannot write {output}: {exc.strerror}") from None
    print(f"exported {records} records of tenant {args.tenant}", file=sys.stderr)


def _import(settings: Settings, args: argparse.Namespace) -> None:
    path: Path = args.file
    if not path.is_file():
        raise PortabilityError(f"cannot read {path}: no such file")
    end = "\r" if sys.stderr.isatty() else "\n"

    def progress(lines: int) -> None:
        print(f"imported {lines} lines", end=end, file=sys.stderr, flush=True)

    def run(url: str) -> ImportResult:
        ensure_tenant(url, args.tenant, create=args.create_tenant)
        return import_tenant(url, args.tenant, path, batch_size=args.batch_size, progress=progress)

    result = _with_database(settings, run)
    if end == "\r":
        print(file=sys.stderr)
    resumed = f" (resumed after line {result.skipped})" if result.skipped else ""
    print(
        f"imported {path} into tenant {args.tenant}: {result.lines_done} lines{resumed}",
        file=sys.stderr,
    )


def _create_operator_key(settings: Settings, args: argparse.Namespace) -> None:
    if args.tenant or args.role:
        raise ConfigError("keys create --operator: operator keys take no --tenant or --role")
    admin_cli.check_key_name(args.name)  # before migrating anything
    expires = admin_cli.expire_time(args)

    def bootstrap(url: str) -> admin_cli.Bootstrapped:
        # Suggested before the first `serve`: migrate first, as serve would.
        if settings.migrate_on_start:
            database.apply_migrations(url, embedding_dim=_dimension(settings))
        return admin_cli.create_operator_key(url, name=args.name, expires=expires)

    created = _with_database(settings, bootstrap)
    admin_cli.print_bootstrapped(created, as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memoryd`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    clients = {"import-peer": peers.run, "mcp": mcp_command.run, "docs": docs_sync.run}
    if args.command in clients:  # clients of a running server: no server settings
        return clients[args.command](args, os.environ)
    if args.command in admin_cli.COMMANDS and not admin_cli.writes_database(args):
        return admin_cli.run(args, os.environ)
    try:
        settings = Settings.from_env(os.environ)
        configure_logging(settings)
        if args.command == "serve" and settings.worker_count > 1:
            return Supervisor(settings, welcome=args.welcome).run()
        if args.command == "serve":
            welcome = (
                (lambda app: print_welcome(app.settings, app.port, app.metrics_port))
                if args.welcome
                else None
            )
            asyncio.run(serve(settings, welcome))
        elif args.command == "export":
            _export(settings, args)
        elif args.command == "import":
            _import(settings, args)
        elif args.command == "keys":
            _create_operator_key(settings, args)
        elif args.command in embeddings_cli.COMMANDS:
            embeddings_cli.run(settings, args, lambda action: _with_database(settings, action))
        else:
            _migrate(settings, args)
    except (ConfigError, StartupError, PortabilityError, admin_cli.AdminError) as exc:
        print(f"memoryd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
