"""``memoryd tenants|keys|users``: administer a running memoryd through its API.

Every command is a gRPC client of a running server (``--addr``, TLS options),
calling with ``--api-key``, else MEMORYD_API_KEY, else MEMORYD_ADMIN_KEY
(``tenants``, which only operator keys may call: MEMORYD_ADMIN_KEY first). The
exception is ``keys create --operator``, which writes the key straight into
the database: the way to a first operator key when none exists.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
from psycopg import sql
from psycopg.rows import class_row

import memoryd
from memoryd_server.admin import output
from memoryd_server.admin.models import MAX_KEY_NAME_CHARS, ApiKey
from memoryd_server.admin.store import INSERT_KEY
from memoryd_server.auth import keys
from memoryd_server.database import OPERATOR_ROLE, redact
from memoryd_server.ids import uuid7
from memoryd_server.validation import has_control_chars

# Quota options: flag -> (Quotas field, type).
QUOTA_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--requests-per-second": ("requests_per_second", float),
    "--burst": ("burst", int),
    "--max-memories": ("max_memories", int),
    "--max-conversations": ("max_conversations", int),
    "--max-content-bytes": ("max_content_bytes", int),
    "--max-documents": ("max_documents", int),
    "--max-document-bytes": ("max_document_bytes", int),
}
# Quota field -> its flag, for messages.
QUOTA_FLAGS = {field: flag for flag, (field, _) in QUOTA_OPTIONS.items()}
# The proto's int64 quotas: a larger number cannot even be sent.
MAX_QUOTA = 2**63 - 1
# --expires-in's bound: a century, well inside what datetime and Timestamp hold.
MAX_EXPIRES_IN_DAYS = 36500
# Who created the keys this command writes straight into the database.
CLI_CREATOR = "cli"
COMMANDS = ("tenants", "keys", "users")


class AdminError(RuntimeError):
    """An admin command failed; the message is safe to print (no secret, no password)."""


@dataclass(frozen=True)
class Bootstrapped:
    """An operator key written by the CLI, and its secret."""

    api_key: ApiKey
    secret: str


# -- arguments ------------------------------------------------------------------


def _client_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", default="localhost:50051", help="memoryd's host:port")
    common.add_argument(
        "--api-key",
        default=None,
        help="the key to call with (default: MEMORYD_API_KEY, else MEMORYD_ADMIN_KEY)",
    )
    common.add_argument("--tls", action="store_true", help="use TLS with the system's CAs")
    common.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="use TLS, trusting this CA certificate (PEM)"
    )
    common.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    return common


def _add_quotas(parser: argparse.ArgumentParser) -> None:
    for flag, (_, kind) in QUOTA_OPTIONS.items():
        parser.add_argument(
            flag, type=kind, metavar="N", help="0 is unlimited; unset: the server's default"
        )


def add_commands(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``tenants``, ``keys`` and ``users`` with ``add_parser`` (a subparsers' method)."""
    common = _client_options()
    tenants = add_parser("tenants", help="manage tenants (needs an operator key)")
    actions = tenants.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common], help="create a tenant")
    create.add_argument("tenant_id", metavar="ID")
    create.add_argument("--display-name", default="")
    _add_quotas(create)
    actions.add_parser("list", parents=[common], help="list every tenant")
    for name, text in (
        ("get", "show a tenant, its quotas and usage"),
        ("disable", "disable a tenant: its keys stop working, its data is kept"),
        ("enable", "enable a disabled tenant"),
    ):
        actions.add_parser(name, parents=[common], help=text).add_argument(
            "tenant_id", metavar="ID"
        )
    update = actions.add_parser("update", parents=[common], help="change a name or quotas")
    update.add_argument("tenant_id", metavar="ID")
    update.add_argument("--display-name", default=None)
    _add_quotas(update)
    update.add_argument(
        "--reset",
        action="append",
        default=[],
        choices=[field for field, _ in QUOTA_OPTIONS.values()],
        metavar="QUOTA",
        help="put this quota back to the server's default (repeatable)",
    )

    key_cmd = add_parser("keys", help="manage API keys")
    actions = key_cmd.add_subparsers(dest="action", required=True)
    create = actions.add_parser(
        "create",
        parents=[common],
        help="create a key and print its secret (once); --operator writes to the database",
    )
    create.add_argument("--name", required=True, help="who uses the key (1-200 characters)")
    create.add_argument("--tenant", default="", help="the key's tenant (default: the caller's)")
    create.add_argument("--role", choices=["viewer", "member", "admin"])
    create.add_argument(
        "--operator",
        action="store_true",
        help="an operator key, written straight into the database (DATABASE_URL)",
    )
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=float, metavar="DAYS", help="expire after DAYS")
    expiry.add_argument("--expire-time", metavar="ISO", help="expire at this time (ISO 8601)")
    listing = actions.add_parser("list", parents=[common], help="list keys (never secrets)")
    listing.add_argument("--tenant", default="", help="the tenant (default: the caller's)")
    listing.add_argument("--include-revoked", action="store_true")
    listing.add_argument("--operator", action="store_true", help="list the operator keys")
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key")
    revoke.add_argument("key_id", metavar="KEY_ID")

    users = add_parser("users", help="erase a user's data")
    actions = users.add_subparsers(dest="action", required=True)
    erase = actions.add_parser(
        "erase", parents=[common], help="erase a user's conversations, messages and memories"
    )
    erase.add_argument("--tenant", default="", help="the tenant (default: the caller's)")
    erase.add_argument("user_id", metavar="USER_ID")


def writes_database(args: argparse.Namespace) -> bool:
    """True for ``keys create --operator``, which needs the server's database settings."""
    return args.command == "keys" and args.action == "create" and bool(args.operator)


def expire_time(args: argparse.Namespace) -> datetime | None:
    """The expiry ``--expires-in`` or ``--expire-time`` asks for; naive times are UTC."""
    if args.expires_in is not None:
        if not 0 < args.expires_in <= MAX_EXPIRES_IN_DAYS:  # also refuses nan and inf
            raise AdminError(
                f"--expires-in: DAYS must be more than 0 and at most {MAX_EXPIRES_IN_DAYS}"
            )
        return datetime.now(UTC) + timedelta(days=args.expires_in)
    if args.expire_time is not None:
        try:
            when = datetime.fromisoformat(args.expire_time)
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
        except ValueError:
            raise AdminError(f"--expire-time: not an ISO 8601 time: {args.expire_time!r}") from None
        except OverflowError:  # an offset pushing year 1 or 9999 out of range
            raise AdminError(f"--expire-time: out of range: {args.expire_time!r}") from None
    return None


# -- the bootstrap: straight into the database -----------------------------------


def check_key_name(name: str) -> str:
    """``name`` if the server would take it as a key's name (the bootstrap bypasses it)."""
    if not 1 <= len(name) <= MAX_KEY_NAME_CHARS:
        raise AdminError(f"--name: must be 1 to {MAX_KEY_NAME_CHARS} characters")
    if has_control_chars(name):
        raise AdminError("--name: must not contain control characters")
    return name


def create_operator_key(url: str, *, name: str, expires: datetime | None) -> Bootstrapped:
    """Write a new operator key into the database at ``url``, as memoryd_operator."""
    check_key_name(name)
    secret = keys.new_secret()
    params = {
        "key_id": str(uuid7()),
        "tenant_id": None,
        "name": name,
        "role": "operator",
        "prefix": keys.prefix_of(secret),
        "secret_hash": keys.hash_secret(secret),
        "created_by": CLI_CREATOR,
        "expire_time": expires,
    }
    try:
        with psycopg.connect(url, connect_timeout=10) as conn, conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(OPERATOR_ROLE)))
            with conn.cursor(row_factory=class_row(ApiKey)) as cur:
                cur.execute(INSERT_KEY, params)
                row = cur.fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedObject):
        raise AdminError(
            "the database has no API keys yet: run `memoryd migrate` (or start the server) first"
        ) from None
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AdminError(f"cannot write the key at {redact(url)}: {redact(first)}") from None
    assert row is not None
    return Bootstrapped(row, secret)


def print_bootstrapped(created: Bootstrapped, *, as_json: bool) -> None:
    output.created_key(created.api_key, created.secret, as_json=as_json)


# -- commands through the API ----------------------------------------------------


def _credentials(args: argparse.Namespace) -> bool | grpc.ChannelCredentials:
    if args.tls_ca is None:
        return bool(args.tls)
    try:
        roots = args.tls_ca.read_bytes()
    except OSError as exc:
        raise AdminError(f"--tls-ca: cannot read {args.tls_ca}: {exc.strerror}") from None
    return grpc.ssl_channel_credentials(root_certificates=roots)


def _quotas(args: argparse.Namespace) -> memoryd.Quotas | None:
    """The quota options given, checked here: out of the proto's range they cannot be sent."""
    values = {field: getattr(args, field) for field in QUOTA_FLAGS}
    for field, value in values.items():
        if value is None:
            continue
        if isinstance(value, float):
            if not 0 <= value < math.inf:  # also refuses nan
                raise AdminError(f"{QUOTA_FLAGS[field]}: N must be 0 (unlimited) or more")
        elif not 0 <= value <= MAX_QUOTA:
            raise AdminError(f"{QUOTA_FLAGS[field]}: N must be from 0 (unlimited) to {MAX_QUOTA}")
    if all(v is None for v in values.values()):
        return None
    return memoryd.Quotas(**values)


def _tenant_update(args: argparse.Namespace) -> memoryd.Quotas | None:
    """The quotas ``tenants update`` sets, once its options are known to ask for something."""
    quotas = _quotas(args)
    for field in args.reset:
        if getattr(args, field) is not None:
            raise AdminError(f"{QUOTA_FLAGS[field]} and --reset {field}: set a quota or reset it")
    if args.display_name is None and quotas is None and not args.reset:
        raise AdminError(
            "nothing to update: pass --display-name, a quota option or --reset (see --help)"
        )
    return quotas


def _dispatch(client: memoryd.Client, args: argparse.Namespace) -> None:
    admin = client.admin
    as_json = args.json
    command = (args.command, args.action)
    if command == ("tenants", "create"):
        created = admin.create_tenant(
            args.tenant_id, display_name=args.display_name, quotas=_quotas(args)
        )
        output.tenants([created], as_json=as_json)
    elif command == ("tenants", "list"):
        output.tenants(list(admin.iter_tenants(page_size=1000)), as_json=as_json)
    elif command == ("tenants", "get"):
        details = admin.get_tenant(args.tenant_id)
        output.tenants([details.tenant], usage=details.usage, as_json=as_json)
    elif command == ("tenants", "update"):
        updated = admin.update_tenant(
            args.tenant_id,
            display_name=args.display_name,
            quotas=_tenant_update(args),
            reset_quotas=args.reset,
        )
        output.tenants([updated], as_json=as_json)
    elif command == ("tenants", "disable"):
        output.tenants([admin.disable_tenant(args.tenant_id)], as_json=as_json)
    elif command == ("tenants", "enable"):
        output.tenants([admin.enable_tenant(args.tenant_id)], as_json=as_json)
    elif command == ("keys", "create"):
        if args.role is None:
            raise AdminError("keys create: --role is required (or --operator)")
        made = admin.create_key(
            name=args.name, role=args.role, tenant_id=args.tenant, expire_time=expire_time(args)
        )
        output.created_key(made.api_key, made.secret, as_json=as_json)
    elif command == ("keys", "list"):
        found = admin.iter_keys(
            tenant_id=args.tenant,
            include_revoked=args.include_revoked,
            operator_keys=args.operator,
            page_size=1000,
        )
        output.api_keys(list(found), as_json=as_json)
    elif command == ("keys", "revoke"):
        output.api_keys([admin.revoke_key(args.key_id)], as_json=as_json)
    else:
        output.receipt(admin.erase_user(args.user_id, tenant_id=args.tenant), as_json=as_json)


def choose_key(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The key a command calls with, and where it came from, as error messages say it.

    ``tenants`` commands need an operator key, so MEMORYD_ADMIN_KEY comes before
    MEMORYD_API_KEY there: a tenant's key exported for an agent does not
    shadow it. Other commands (a tenant admin's ``keys``, ``users``) take
    MEMORYD_API_KEY first.
    """
    if args.api_key:
        return args.api_key, "the key of --api-key"
    order = ["MEMORYD_API_KEY", "MEMORYD_ADMIN_KEY"]
    if args.command == "tenants":
        order.reverse()
    for var in order:
        if environ.get(var):
            return environ[var], f"the key in {var}"
    return None, "no key (set MEMORYD_API_KEY or MEMORYD_ADMIN_KEY)"


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run an admin command against a running server; returns the exit code."""
    key, source = choose_key(args, environ)
    try:
        with memoryd.Client(args.addr, api_key=key, tls=_credentials(args)) as client:
            try:
                _dispatch(client, args)
            except (ValueError, OverflowError) as exc:
                # An argument the client cannot put into a request: a usage error.
                raise AdminError(f"invalid argument: {exc}") from None
    except AdminError as exc:
        print(f"memoryd: error: {exc}", file=sys.stderr)
        return 2
    except (memoryd.PermissionDenied, memoryd.Unauthenticated) as exc:
        # Which key was refused: with two in the environment, it is not obvious.
        print(f"memoryd: error: {exc.message} (called with {source})", file=sys.stderr)
        return 2
    except memoryd.MemorydError as exc:
        print(f"memoryd: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
