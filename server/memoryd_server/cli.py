"""The ``memoryd`` command: serve, migrate."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from memoryd_server import database
from memoryd_server.app import serve
from memoryd_server.config import ConfigError, Settings
from memoryd_server.database import EmbeddedDatabase, StartupError
from memoryd_server.telemetry import configure_logging

T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memoryd",
        description="gRPC memory server for AI agents. Configured by environment "
        "variables (see the README); with no DATABASE_URL it runs an embedded "
        "PostgreSQL in MEMORYD_DATA_DIR.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gRPC server until SIGTERM/SIGINT")
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
        embedded.stop()


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
            lambda url: database.apply_migrations(url, embedding_dim=settings.embedding_dim),
        )
        print(f"applied {len(applied)}: {' '.join(applied) or '-'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memoryd`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
        configure_logging(settings)
        if args.command == "serve":
            asyncio.run(serve(settings))
        else:
            _migrate(settings, args)
    except (ConfigError, StartupError) as exc:
        print(f"memoryd: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
