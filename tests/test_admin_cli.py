"""``memoryd tenants|keys|users``: the bootstrap against the database, the rest through the API."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

import memoryd
from memoryd_server.cli import main

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
    assert err == "memoryd: error: a admin key may not call ListTenants\n"
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
