"""The polyglot proof: a Node.js client, built at run time from proto/ alone, against the server.

``tests/node/client.mjs`` loads the protos with ``@grpc/proto-loader`` (no generated
code), drives a conversation, memories and a failing call through ``@grpc/grpc-js``,
and prints one JSON line of what it saw. Its dependencies are pinned in
``tests/node/package-lock.json`` and installed by ``./dev`` (``npm ci``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import REPO, ServerThread, TenantKeys, create_tenant_keys

NODE_DIR = REPO / "tests" / "node"
CLIENT = NODE_DIR / "client.mjs"
TIMEOUT = 120
NOT_FOUND = 5


def _node() -> str:
    """The ``node`` binary; the test fails (it does not skip) without it or its packages."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the Node.js client test needs Node.js 18+ and npm")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs"):
        if not (NODE_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(
                f"{package} is not installed in tests/node; run `./dev test`"
                " (or `npm ci --prefix tests/node`)"
            )
    return node


def _run_client(addr: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``node tests/node/client.mjs ADDR args...``; its parsed JSON line."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    environment.update(env or {})
    result = subprocess.run(
        [_node(), str(CLIENT), addr, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=REPO,
        env=environment,
    )
    assert result.returncode == 0, (result.returncode, result.stderr, result.stdout)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    output: dict[str, Any] = json.loads(lines[0])
    assert output["ok"] is True
    return output


@pytest.fixture(scope="module")
def node_tenant(pg_uri: str, auth_server: ServerThread) -> TenantKeys:
    """A tenant of the server with auth on, with keys for the Node.js client."""
    del auth_server  # its migrations made the tables
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"node-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def node_result(auth_server: ServerThread, node_tenant: TenantKeys) -> dict[str, Any]:
    """One run of the Node.js client against the server with auth on, with a member key."""
    return _run_client(auth_server.addr, node_tenant.member)


def test_appends_get_gapless_seqs_and_idempotent_retries(node_result: dict[str, Any]) -> None:
    """create_if_missing creates it; seqs are 1..N; a retried request_id appends nothing."""
    conversation = node_result["conversation"]
    assert conversation["id"].startswith("node-")
    # int64 fields arrive as strings (longs: String), as in the proto3 JSON mapping.
    assert conversation["append_seqs"] == ["1", "2", "3"]
    assert conversation["retry_seqs"] == ["1", "2", "3"]
    assert conversation["retry_same_ids"] is True
    assert conversation["second_seqs"] == ["4"]
    assert conversation["message_count"] == "4"
    assert conversation["total_input_tokens"] == "9"
    assert conversation["total_output_tokens"] == "5"


def test_context_window_contents_and_budget(node_result: dict[str, Any]) -> None:
    """The window is every message oldest first with enum names; a budget keeps the newest."""
    window = node_result["conversation"]["window"]
    assert window["seqs"] == ["1", "2", "3", "4"]
    assert window["roles"] == [
        "MESSAGE_ROLE_SYSTEM",
        "MESSAGE_ROLE_USER",
        "MESSAGE_ROLE_ASSISTANT",
        "MESSAGE_ROLE_USER",
    ]
    assert window["contents"] == ["be brief", "hello from node", "hi, node", "and one more"]
    assert window["total_tokens"] == "14"
    assert window["omitted_message_count"] == "0"
    budget = node_result["conversation"]["budget_window"]
    assert budget == {"seqs": ["3", "4"], "total_tokens": "9", "omitted_message_count": "2"}


def test_memory_is_found_first_by_embedding_and_by_text(node_result: dict[str, Any]) -> None:
    """A 384-float embedding round-trips; both searches rank the memory above the other one."""
    memories = node_result["memories"]
    assert memories["embedding_length"] == 384
    assert memories["memory_type"] == "MEMORY_TYPE_USER_PROFILE"
    created, other = memories["created_id"], memories["other_id"]
    assert created != other
    assert memories["by_embedding"]["ids"][0] == created
    assert set(memories["by_embedding"]["ids"]) == {created, other}
    assert memories["by_embedding"]["similarity_score"] == pytest.approx(1.0, abs=1e-4)
    assert memories["by_text"]["ids"] == [created]
    assert memories["by_text"]["text_score"] > 0


def test_documents_put_uploaded_as_a_stream_and_found(node_result: dict[str, Any]) -> None:
    """A Node client puts a document, streams another (a piece ending inside a character)
    and finds both by a word, with heading paths and code-point offsets."""
    docs = node_result["documents"]
    assert docs["chunk_count"] == 3
    assert docs["uploaded_size"] == str(
        len("# Upload\n\nUploaded café notes about quinces.\n".encode())
    )
    assert sorted(docs["found_paths"]) == ["guide.md", "upload.md"]
    assert docs["heading_path"] == ["Guide", "Setup"]
    assert docs["neighbours"] == [1, 1]


def test_not_found_has_code_and_readable_details(node_result: dict[str, Any]) -> None:
    """The failing call is NOT_FOUND (5), and grpc-status-details-bin decodes to ErrorInfo."""
    error = node_result["not_found"]
    assert error["code"] == NOT_FOUND
    assert error["code_name"] == "NOT_FOUND"
    assert "missing-" in error["details"]
    status = error["status"]
    assert status["code"] == NOT_FOUND
    assert status["message"] == error["details"]
    assert status["details"]["google.rpc.ErrorInfo"] == {
        "reason": "NotFound",
        "domain": "memoryd",
        "metadata": {},
    }


def test_api_key_from_the_environment_is_sent_and_accepted(
    auth_server: ServerThread, node_tenant: TenantKeys
) -> None:
    """MEMORYD_API_KEY goes out as ``authorization: Bearer`` and the server accepts it."""
    output = _run_client(auth_server.addr, env={"MEMORYD_API_KEY": node_tenant.member})
    assert output["authorization_sent"] is True
    assert output["conversation"]["append_seqs"] == ["1", "2", "3"]


@pytest.mark.parametrize("key", ["", "mdk_not-a-real-key"])
def test_calls_without_a_valid_key_are_unauthenticated(auth_server: ServerThread, key: str) -> None:
    """Without a key, or with an unknown one, the first call fails with UNAUTHENTICATED."""
    result = subprocess.run(
        [_node(), str(CLIENT), auth_server.addr],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=REPO,
        env={**os.environ, "MEMORYD_API_KEY": key},
    )
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert "UNAUTHENTICATED" in result.stderr, result.stderr


def test_a_viewer_key_may_not_write(auth_server: ServerThread, node_tenant: TenantKeys) -> None:
    """The Node.js client's first write with a viewer key fails with PERMISSION_DENIED."""
    result = subprocess.run(
        [_node(), str(CLIENT), auth_server.addr, node_tenant.viewer],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=REPO,
        env=dict(os.environ),
    )
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "PERMISSION_DENIED" in result.stderr, result.stderr


def test_client_exits_non_zero_when_the_server_is_unreachable() -> None:
    """Any failure is a non-zero exit with the reason on stderr, and no JSON line."""
    result = subprocess.run(
        [_node(), str(CLIENT), "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=REPO,
        env={**os.environ, "MEMORYD_API_KEY": "", "MEMORYD_DEADLINE_MS": "1000"},
    )
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert "memoryd node client" in result.stderr
