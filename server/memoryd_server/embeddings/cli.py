"""The ``memoryd reembed`` and ``memoryd models`` commands (they work on the database)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from memoryd_server.config import MAX_EMBEDDING_DIM, ConfigError, Settings
from memoryd_server.database import owner_connection
from memoryd_server.embeddings import reembed
from memoryd_server.embeddings.registry import ensure_model

COMMANDS = frozenset({"reembed", "models"})
T = TypeVar("T")
WithDatabase = Callable[[Callable[[str], T]], T]


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the commands to the ``memoryd`` parser."""
    move = add_parser(
        "reembed",
        help="move a tenant (or all) to the model MEMORYD_EMBEDDER configures, while serving",
    )
    which = move.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", help="the tenant to move")
    which.add_argument("--all", action="store_true", help="every tenant")
    move.add_argument(
        "--batch-size", type=int, default=reembed.DEFAULT_BATCH, metavar="N",
        help=f"memories embedded per batch (default {reembed.DEFAULT_BATCH})",
    )  # fmt: skip
    models = add_parser("models", help="list or register embedding models")
    sub = models.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="the registered models: name, dimension, provider")
    add = sub.add_parser("add", help="register a model whose vectors callers send")
    add.add_argument("name", help="the model's name, as memories' embedding_model gives it")
    add.add_argument("--dimension", type=int, required=True, help="its vectors' length")


def run(settings: Settings, args: argparse.Namespace, with_database: WithDatabase[Any]) -> None:
    """Run ``args.command`` against the database."""
    if args.command == "reembed":
        _reembed(settings, args, with_database)
    elif args.models_command == "list":
        for name, dimension, provider in with_database(_list_models):
            print(f"{name or '(unnamed)'}\t{dimension}\t{provider}")
    else:
        if not 1 <= args.dimension <= MAX_EMBEDDING_DIM:
            raise ConfigError(f"--dimension: must be 1 to {MAX_EMBEDDING_DIM}")
        if not args.name or len(args.name) > 256:
            raise ConfigError("NAME: 1 to 256 characters")

        def add(url: str) -> None:
            with owner_connection(url) as conn:
                ensure_model(conn, name=args.name, dimension=args.dimension, provider="external")

        with_database(add)
        print(f"registered {args.name} ({args.dimension} dimensions)")


def _list_models(url: str) -> list[tuple[str, int, str]]:
    with owner_connection(url) as conn:
        rows = conn.execute(
            "SELECT name, dimension, provider FROM embedding_models ORDER BY name"
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _reembed(
    settings: Settings, args: argparse.Namespace, with_database: WithDatabase[Any]
) -> None:
    if args.batch_size < 1:
        raise ConfigError("--batch-size: must be at least 1")
    end = "\r" if sys.stderr.isatty() else "\n"

    def progress(tenant: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "." * (width - filled)
        print(f"{tenant}: [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    def move(url: str) -> list[reembed.ReembedResult]:
        embedder, space = reembed.target_model(url, settings)
        tenants = reembed.tenant_ids(url) if args.all else [args.tenant]
        results = []
        for tenant in tenants:
            result = reembed.reembed_tenant(
                url, tenant, embedder, space, batch=args.batch_size, progress=progress
            )
            if end == "\r":
                print(file=sys.stderr)
            print(
                f"{tenant}: now {space.name}: {result.staged} memories embedded, "
                f"{result.swept} caught up after the switch, {result.messages} messages queued, "
                f"{result.chunks} document chunks embedded",
                file=sys.stderr,
            )
            results.append(result)
        return results

    with_database(move)
