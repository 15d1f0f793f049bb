"""The grpcurl examples of docs/operators.md ("Tenants and API keys"), run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import memoryd

from .conftest import ADMIN_SECRET, REPO, ServerThread
from .test_grpcurl import EXIT_OFFSET, _grpcurl_binary

DOCS = REPO / "docs" / "operators.md"
# The key id the RevokeApiKey example shows; the test puts the created key's there.
EXAMPLE_KEY_ID = "0196a1f2-7c1e-7b3a-9f00-3d5e8c2a4b61"
UNAUTHENTICATED = 16


def doc_commands() -> list[str]:
    """The grpcurl commands of the section's bash blocks, continuation lines joined."""
    section = DOCS.read_text().split("\n## Tenants and API keys\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("grpcurl "):
                commands.append(line.strip())
    return commands


def run_example(command: str, addr: str) -> subprocess.CompletedProcess[str]:
    """``command`` in bash, as a reader would paste it, against ``addr``."""
    grpcurl_dir = str(Path(_grpcurl_binary()).parent)
    env = {
        **os.environ,
        "MEMORYD_ADMIN_KEY": ADMIN_SECRET,
        "PATH": f"{grpcurl_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        ["bash", "-c", command.replace("localhost:50051", addr)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_operator_grpcurl_examples_work(auth_server: ServerThread, uid: str) -> None:
    commands = doc_commands()
    methods = [c.rsplit("/", 1)[-1] for c in commands]
    assert methods == ["CreateTenant", "CreateApiKey", "ListApiKeys", "RevokeApiKey"]
    tenant_id = f"grpcurl-{uid}"
    replies: dict[str, dict[str, Any]] = {}
    key_id = EXAMPLE_KEY_ID
    for method, command in zip(methods, commands, strict=True):
        mine = command.replace('"acme"', f'"{tenant_id}"').replace(EXAMPLE_KEY_ID, key_id)
        result = run_example(mine, auth_server.addr)
        assert result.returncode == 0, (method, result.returncode, result.stderr)
        replies[method] = json.loads(result.stdout)
        if method == "CreateApiKey":
            key_id = replies[method]["api_key"]["key_id"]

    tenant = replies["CreateTenant"]["tenant"]
    assert tenant["tenant_id"] == tenant_id
    assert tenant["quotas"] == {"max_memories": "100000"}  # int64 is a string in JSON
    assert tenant["state"] == "TENANT_STATE_ACTIVE"
    created = replies["CreateApiKey"]
    secret = created["secret"]
    assert created["api_key"]["role"] == "ROLE_MEMBER"
    assert created["api_key"]["prefix"] == secret[:12]
    listed = replies["ListApiKeys"]["api_keys"]
    assert [k["key_id"] for k in listed] == [key_id]
    assert secret not in json.dumps(replies["ListApiKeys"])
    assert "revoke_time" in replies["RevokeApiKey"]["api_key"]
    # The last example revoked the key.
    with (
        memoryd.Client(auth_server.addr, api_key=secret) as client,
        pytest.raises(memoryd.Unauthenticated),
    ):
        client.admin.whoami()


def test_grpcurl_without_the_header_is_unauthenticated(auth_server: ServerThread) -> None:
    (create, *_) = doc_commands()
    without = re.sub(r'-H "[^"]*" ', "", create)
    result = run_example(without, auth_server.addr)
    assert result.returncode == EXIT_OFFSET + UNAUTHENTICATED, result.stderr
    assert "this call needs an API key" in result.stderr
