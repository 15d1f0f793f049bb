"""``memoryd tenants|keys|users``: the bootstrap against the database, the rest through the API."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

import memoryd
from memoryd_server.admin import cli as admin_cli
from memoryd_server.cli import main
from memoryd_server.config import Settings

from .conftest import ADMIN_SECRET, ServerThread, TenantKeys

NO_KEYS = ("MEMORYD_API_KEY", "MEMORYD_ADMIN_KEY")


def memoryd_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real entry point, in its own process (it configures logging for itself)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    return subprocess.run(
        [sys.executable, "-m", "memoryd_server", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def cli(
    auth_server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """Runs ``memoryd ARGS --addr <auth_server>`` in-process: (exit code, stdout, stderr)."""
    for name in NO_KEYS:
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, key: str | None = None) -> tuple[int, str, str]:
        if key is None:
            monkeypatch.delenv("MEMORYD_API_KEY", raising=False)
        else:
            monkeypatch.setenv("MEMORYD_API_KEY", key)
        code = main([*args, "--addr", auth_server.addr])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_bootstrap_then_manage_a_tenant(
    cli: Any, auth_server: ServerThread, pg_uri: str, db: psycopg.Connection[Any], uid: str
) -> None:
    made = memoryd_command(
        "keys", "create", "--operator", "--name", f"ops-{uid}", env={"DATABASE_URL": pg_uri}
    )
    assert made.returncode == 0, made.stderr
    operator = made.stdout.strip()
    assert made.stdout == operator + "\n"  # the secret alone: KEY=$(memoryd keys create ...)
    assert operator.startswith("mdk_")
    assert "will not be shown again" in made.stderr
    row = db.execute(
        "SELECT tenant_id, role, prefix, secret_hash, created_by FROM api_keys WHERE name = %s",
        (f"ops-{uid}",),
    ).fetchone()
    assert row == (
        None,
        "operator",
        operator[:12],
        hashlib.sha256(operator.encode()).digest(),
        "cli",
    )

    tid = f"cli-{uid}"
    code, out, err = cli(
        "tenants", "create", tid, "--display-name", "CLI team", "--max-memories", "5", key=operator
    )
    assert code == 0, err
    header, line = out.splitlines()
    assert header.split()[:3] == ["TENANT", "STATE", "DISPLAY"]
    assert line.startswith(tid)
    assert "5*" in line.split()

    code, out, err = cli(
        "keys", "create", "--tenant", tid, "--name", "bot", "--role", "member", key=operator
    )
    assert code == 0, err
    member = out.strip()
    assert out == member + "\n"
    assert "will not be shown again" in err
    with memoryd.Client(auth_server.addr, api_key=member) as client:
        client.conversations.create(user_id="u1")
        who = client.admin.whoami()
        assert (who.role, who.tenant_id, who.key_name) == ("member", tid, "bot")

    code, out, err = cli("keys", "list", "--tenant", tid, "--json", key=operator)
    assert code == 0, err
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert listed["prefix"] == member[:12]
    assert listed["key_id"] == who.key_id
    assert listed["last_used_time"] is not None
    code, table, err = cli("keys", "list", "--tenant", tid, key=operator)
    assert code == 0, err
    assert member[:12] in table
    assert member not in out + table

    code, out, err = cli("tenants", "get", tid, key=operator)
    assert code == 0, err
    assert out.splitlines()[0].split()[-2:] == ["MEMORIES", "CONVERSATIONS"]
    assert out.splitlines()[1].split()[-2:] == ["0", "1"]
    code, out, err = cli(
        "tenants", "update", tid, "--burst", "3", "--reset", "max_memories", "--json", key=operator
    )
    assert code == 0, err
    updated = json.loads(out)
    assert updated["quotas"]["burst"] == 3
    assert updated["quotas"]["max_memories"] is None
    code, out, err = cli("tenants", "list", key=operator)
    assert code == 0, err
    assert tid in [line.split()[0] for line in out.splitlines()[1:]]
    code, out, err = cli("tenants", "disable", tid, key=operator)
    assert code == 0, err
    assert "disabled" in out.splitlines()[1].split()
    code, out, err = cli("tenants", "enable", tid, key=operator)
    assert code == 0, err
    assert "active" in out.splitlines()[1].split()

    code, out, err = cli("users", "erase", "--tenant", tid, "u1", "--json", key=operator)
    assert code == 0, err
    receipt = json.loads(out)
    assert (receipt["conversations"], receipt["erased_by"]) == (1, listed["created_by"])

    code, out, err = cli("keys", "revoke", who.key_id, key=operator)
    assert code == 0, err
    assert who.key_id in out
    with (
        memoryd.Client(auth_server.addr, api_key=member) as client,
        pytest.raises(memoryd.Unauthenticated),
    ):
        client.conversations.list()

    code, out, err = cli("keys", "list", "--operator", "--json", key=operator)
    assert code == 0, err
    operators = [json.loads(line) for line in out.splitlines()]
    mine = [k for k in operators if k["name"] == f"ops-{uid}"]
    assert mine[0]["created_by"] == "cli"
    assert all(k["tenant_id"] == "" for k in operators)


def test_errors_are_one_line_with_exit_code_2(cli: Any, tenant: TenantKeys) -> None:
    code, out, err = cli("tenants", "list")
    assert (code, out) == (2, "")
    assert err.startswith("memoryd: error: this call needs an API key")
    code, _, err = cli("tenants", "get", "nx-none", key=ADMIN_SECRET)
    assert (code, err) == (2, "memoryd: error: tenant nx-none not found\n")
    code, _, err = cli("tenants", "list", key=tenant.admin)
    assert code == 2
    assert err == (
        "memoryd: error: a admin key may not call ListTenants"
        " (called with the key in MEMORYD_API_KEY)\n"
    )
    code, _, err = cli("keys", "create", "--name", "x", key=tenant.admin)
    assert (code, err) == (2, "memoryd: error: keys create: --role is required (or --operator)\n")
    code, _, err = cli("tenants", "create", "Bad", key=ADMIN_SECRET)
    assert code == 2
    assert err.startswith("memoryd: error: tenant.tenant_id: must be 1 to 64 characters")
    wrong = memoryd_command("keys", "create", "--operator", "--name", "x", "--tenant", "t", env={})
    assert wrong.returncode == 2
    assert "operator keys take no --tenant or --role" in wrong.stderr


def test_admin_key_is_the_fallback_and_keys_print_only_the_secret(
    cli: Any,
    auth_server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    tenant: TenantKeys,
) -> None:
    monkeypatch.setenv("MEMORYD_ADMIN_KEY", ADMIN_SECRET)
    code, out, err = cli("keys", "list", "--tenant", tenant.tenant_id)
    assert code == 0, err
    assert len(out.splitlines()) == 4  # a header and the tenant's three keys
    # A tenant admin's own tenant needs no --tenant; MEMORYD_API_KEY wins over the admin key.
    code, out, err = cli("keys", "create", "--name", "ci", "--role", "viewer", key=tenant.admin)
    assert code == 0, err
    with memoryd.Client(auth_server.addr, api_key=out.strip()) as client:
        assert client.admin.whoami().tenant_id == tenant.tenant_id


def test_tenants_commands_take_the_admin_key_before_a_member_key(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tenant: TenantKeys
) -> None:
    """With an agent's key exported too, ``tenants`` still calls with MEMORYD_ADMIN_KEY."""
    monkeypatch.setenv("MEMORYD_ADMIN_KEY", ADMIN_SECRET)
    code, out, err = cli("tenants", "get", tenant.tenant_id, key=tenant.member)
    assert code == 0, err
    assert tenant.tenant_id in out
    # keys commands still take MEMORYD_API_KEY first (a tenant admin's own keys),
    # and a refusal says which key was used.
    code, _, err = cli("keys", "list", "--tenant", tenant.tenant_id, key=tenant.member)
    assert code == 2
    assert err.endswith("(called with the key in MEMORYD_API_KEY)\n"), err
    monkeypatch.delenv("MEMORYD_ADMIN_KEY")
    code, _, err = cli("tenants", "list", "--api-key", "mdk_wrong_key")
    assert code == 2
    assert err.endswith("(called with the key of --api-key)\n"), err


def test_entry_point_in_a_shell_substitution(auth_server: ServerThread, tenant: TenantKeys) -> None:
    made = memoryd_command(
        "keys",
        "create",
        "--tenant",
        tenant.tenant_id,
        "--name",
        "sub",
        "--role",
        "viewer",
        "--expires-in",
        "1",
        "--addr",
        auth_server.addr,
        env={"MEMORYD_ADMIN_KEY": ADMIN_SECRET},
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n"
    with memoryd.Client(auth_server.addr, api_key=secret) as client:
        assert client.admin.whoami().role == "viewer"


KEY = ("keys", "create", "--name", "x", "--role", "viewer")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((*KEY, "--expires-in", "1e10"), "--expires-in: DAYS must be more than 0 and at most 365"),
        ((*KEY, "--expires-in", "nan"), "--expires-in: DAYS must be more than 0"),
        ((*KEY, "--expires-in", "inf"), "--expires-in: DAYS must be more than 0"),
        ((*KEY, "--expires-in", "0"), "--expires-in: DAYS must be more than 0"),
        ((*KEY, "--expire-time", "9999-12-31T23:00:00-05:00"), "--expire-time: out of range"),
        (
            ("tenants", "update", "t", "--max-memories", "99999999999999999999"),
            "--max-memories: N must be from 0 (unlimited) to 9223372036854775807",
        ),
        (("tenants", "create", "t", "--burst", "-1"), "--burst: N must be from 0 (unlimited)"),
        (
            ("tenants", "update", "t", "--requests-per-second", "nan"),
            "--requests-per-second: N must be 0 (unlimited) or more",
        ),
        (
            ("tenants", "create", "t", "--requests-per-second", "inf"),
            "--requests-per-second: N must be 0 (unlimited) or more",
        ),
        (
            ("tenants", "update", "t", "--burst", "5", "--reset", "burst"),
            "--burst and --reset burst: set a quota or reset it",
        ),
        (
            ("tenants", "update", "t"),
            "nothing to update: pass --display-name, a quota option or --reset (see --help)",
        ),
        # What the client cannot encode: a lone surrogate from an undecodable argv byte.
        (("tenants", "get", "\udcff"), "invalid argument: 'utf-8' codec can't encode"),
    ],
)
def test_bad_arguments_exit_2_without_a_traceback(
    cli: Any, args: tuple[str, ...], message: str
) -> None:
    code, out, err = cli(*args, key=ADMIN_SECRET)
    assert (code, out) == (2, "")
    assert err.startswith(f"memoryd: error: {message}"), err
    assert len(err.splitlines()) == 1


def test_conflicting_update_changes_nothing(cli: Any, uid: str) -> None:
    tid = f"cli-{uid}"
    assert cli("tenants", "create", tid, "--burst", "7", key=ADMIN_SECRET)[0] == 0
    code, _, _ = cli("tenants", "update", tid, "--burst", "5", "--reset", "burst", key=ADMIN_SECRET)
    assert code == 2
    code, out, err = cli("tenants", "get", tid, "--json", key=ADMIN_SECRET)
    assert code == 0, err
    assert json.loads(out)["quotas"]["burst"] == 7


def test_bootstrap_refuses_bad_arguments(pg_uri: str) -> None:
    for args, message in [
        (("--expires-in", "1e10"), "--expires-in: DAYS must be more than 0 and at most 36500"),
        (("--expires-in", "nan"), "--expires-in: DAYS must be more than 0"),
        (("--name", "a\nb"), "--name: must not contain control characters"),
    ]:
        made = memoryd_command(
            "keys", "create", "--operator", "--name", "ops", *args, env={"DATABASE_URL": pg_uri}
        )
        assert made.returncode == 2, made.stderr
        assert made.stderr.startswith(f"memoryd: error: {message}"), made.stderr
        assert len(made.stderr.splitlines()) == 1


def test_interrupt_exits_130_without_a_traceback(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(admin_cli, "_dispatch", interrupted)
    assert cli("tenants", "list", key=ADMIN_SECRET) == (130, "", "")


def test_tables_escape_control_characters_of_old_rows(
    cli: Any, db: psycopg.Connection[Any], tenant: TenantKeys
) -> None:
    """Rows stored before the server refused them cannot forge lines or send escapes."""
    forged = "evil\n" + "0" * 36 + "  other  admin\x1b[2K\x9b"
    db.execute(
        "UPDATE api_keys SET name = %s WHERE key_id = %s", (forged, tenant.key_ids["viewer"])
    )
    db.execute(
        "UPDATE tenants SET display_name = %s WHERE tenant_id = %s",
        ("a\tb\rc", tenant.tenant_id),
    )
    code, out, err = cli("keys", "list", "--tenant", tenant.tenant_id, key=ADMIN_SECRET)
    assert code == 0, err
    assert len(out.splitlines()) == 4
    assert "evil\\n000" in out
    assert "admin\\x1b[2K\\x9b" in out
    assert out.isascii()
    code, out, err = cli("tenants", "get", tenant.tenant_id, key=ADMIN_SECRET)
    assert code == 0, err
    assert "a\\tb\\rc" in out.splitlines()[1]
    code, out, err = cli("keys", "list", "--tenant", tenant.tenant_id, "--json", key=ADMIN_SECRET)
    assert code == 0, err
    assert forged in [json.loads(line)["name"] for line in out.splitlines()]


@pytest.fixture
def empty_database(db: psycopg.Connection[Any], pg_uri: str, uid: str) -> Iterator[str]:
    """The URI of a new, empty database in the session's PostgreSQL; dropped afterwards."""
    name = f"memoryd_bootstrap_{uid}"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(pg_uri)._replace(path=f"/{name}").geturl()
    finally:
        db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_bootstrap_migrates_a_new_database(empty_database: str, server_log: Path) -> None:
    del server_log  # the server below logs there
    env = {"DATABASE_URL": empty_database, "MEMORYD_EMBEDDING_DIM": "384"}
    bootstrap = ("keys", "create", "--operator", "--name", "first")
    refused = memoryd_command(*bootstrap, env={**env, "MEMORYD_MIGRATE_ON_START": "false"})
    assert refused.returncode == 2
    assert "run `memoryd migrate`" in refused.stderr

    made = memoryd_command(*bootstrap, env=env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    server = ServerThread(
        Settings(addr="127.0.0.1:0", database_url=empty_database, auth="on", embedding_dim=384)
    )
    try:
        with memoryd.Client(server.addr, api_key=secret) as client:
            assert client.admin.whoami().key_name == "first"
            assert client.admin.create_tenant("acme").state == "active"
    finally:
        server.stop()
