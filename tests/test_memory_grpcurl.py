"""The operator path for MemoryService: the real grpcurl binary, by reflection only."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import numpy as np
import pytest

from memoryd.v1 import memory_pb2 as pb
from tests.test_grpcurl import EXIT_OFFSET, Grpcurl, _grpcurl_binary

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["MemoryService"]
SERVICE = SERVICE_DESCRIPTOR.full_name
DIM = 384


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


def _embedding(seed: int) -> list[float]:
    """A unit vector whose values survive JSON (float32 values, printed exactly)."""
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return [float(v) for v in (vector / np.linalg.norm(vector)).astype(np.float32)]


def _call(grpcurl: Grpcurl, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """Call ``MemoryService/method`` with a JSON body; the parsed JSON response."""
    result: subprocess.CompletedProcess[str] = grpcurl(f"{SERVICE}/{method}", data=body)
    assert result.returncode == 0, (method, result.returncode, result.stderr)
    response: dict[str, Any] = json.loads(result.stdout)
    return response


def test_list_shows_the_memory_service_and_its_methods(grpcurl: Grpcurl) -> None:
    """``grpcurl list`` names MemoryService; ``list SERVICE`` shows exactly its RPCs."""
    services = grpcurl("list")
    assert services.returncode == 0, services.stderr
    assert SERVICE in services.stdout.split()
    methods = grpcurl("list", SERVICE)
    assert methods.returncode == 0, methods.stderr
    expected = {f"{SERVICE}.{method.name}" for method in SERVICE_DESCRIPTOR.methods}
    assert set(methods.stdout.split()) == expected
    assert len(expected) == 11


def test_describe_shows_every_rpc_and_the_memory_fields(grpcurl: Grpcurl) -> None:
    """``describe`` shows each RPC with its types, and Memory with all its fields."""
    result = grpcurl("describe", SERVICE)
    assert result.returncode == 0, result.stderr
    assert f"{SERVICE} is a service:" in result.stdout
    for method in SERVICE_DESCRIPTOR.methods:
        line = (
            f"rpc {method.name} ( .{method.input_type.full_name} )"
            f" returns ( .{method.output_type.full_name} );"
        )
        assert line in result.stdout, (line, result.stdout)
    memory = grpcurl("describe", "memoryd.v1.Memory")
    assert memory.returncode == 0, memory.stderr
    for field in pb.Memory.DESCRIPTOR.fields:
        assert f" {field.name} = {field.number};" in memory.stdout, field.name
    assert "repeated float embedding = 7;" in memory.stdout


def test_create_and_search_with_json_bodies(grpcurl: Grpcurl, uid: str) -> None:
    """A memory with a 384-float embedding is created from JSON and found by vector and text."""
    embedding = _embedding(1)
    namespace = ["grpcurl", uid]
    created = _call(
        grpcurl,
        "CreateMemory",
        {
            "memory": {
                "namespace": namespace,
                "key": "favourite-colour",
                "memoryType": "MEMORY_TYPE_USER_PROFILE",
                "content": "The operator's favourite colour is teal",
                "embedding": embedding,
                "importance": 7,
                "tags": ["colour"],
                "metadata": {"source": "grpcurl", "n": 1},
            },
            "ttl": "3600s",
        },
    )["memory"]
    assert created["namespace"] == namespace
    assert created["memory_type"] == "MEMORY_TYPE_USER_PROFILE"
    assert created["status"] == "MEMORY_STATUS_ACTIVE"
    assert created["tier"] == "MEMORY_TIER_HOT"
    assert created["version"] == "1"
    assert created["importance"] == 7
    assert created["confidence"] == 1
    assert created["metadata"] == {"source": "grpcurl", "n": 1}
    assert created["expire_time"].endswith("Z")
    assert len(created["embedding"]) == DIM
    assert np.allclose(created["embedding"], embedding, rtol=0, atol=1e-6)

    by_vector = _call(
        grpcurl,
        "SearchMemories",
        {"filter": {"namespacePrefix": namespace}, "queryEmbedding": embedding, "topK": 5},
    )["results"]
    assert [r["memory"]["id"] for r in by_vector] == [created["id"]]
    assert by_vector[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert by_vector[0]["similarity_score"] == pytest.approx(1.0, abs=1e-4)
    assert "embedding" not in by_vector[0]["memory"]

    by_text = _call(
        grpcurl,
        "SearchMemories",
        {"filter": {"namespace_prefix": namespace}, "query_text": "teal colour"},
    )["results"]
    assert [r["memory"]["id"] for r in by_text] == [created["id"]]
    assert by_text[0]["text_score"] > 0

    hybrid = _call(
        grpcurl,
        "SearchMemories",
        {
            "filter": {"namespace_prefix": namespace, "tags_all": ["colour"]},
            "query_embedding": embedding,
            "query_text": "teal",
            "weights": {"similarity": 1, "text": 1, "importance": 1},
        },
    )["results"]
    assert [r["memory"]["id"] for r in hybrid] == [created["id"]]
    assert hybrid[0]["importance_score"] == pytest.approx(0.7)


def test_update_with_a_json_field_mask_and_read_history(grpcurl: Grpcurl, uid: str) -> None:
    """A JSON FieldMask updates just its fields; the history shows both events."""
    created = _call(
        grpcurl, "CreateMemory", {"memory": {"namespace": ["grpcurl", uid], "content": "v1"}}
    )["memory"]
    updated = _call(
        grpcurl,
        "UpdateMemory",
        {
            "memory": {"id": created["id"], "content": "v2", "importance": 9, "subject": "no"},
            # grpcurl's JSON takes a FieldMask as an object, not the canonical "a,b" string.
            "updateMask": {"paths": ["content", "importance"]},
            "expectedVersion": "1",
            "reason": "from grpcurl",
        },
    )["memory"]
    assert updated["content"] == "v2"
    assert updated["importance"] == 9
    assert "subject" not in updated
    assert updated["version"] == "2"
    events = _call(grpcurl, "GetMemoryHistory", {"memory_id": created["id"]})["events"]
    assert [(e["seq"], e["event_type"]) for e in events] == [
        ("1", "MEMORY_EVENT_TYPE_CREATED"),
        ("2", "MEMORY_EVENT_TYPE_UPDATED"),
    ]
    assert events[1]["reason"] == "from grpcurl"
    assert events[1]["actor"] == "anonymous"


def test_wrong_dimension_shows_the_field_violation(grpcurl: Grpcurl, uid: str) -> None:
    """A wrong-dimension embedding is INVALID_ARGUMENT naming memory.embedding and 384."""
    result = grpcurl(
        f"{SERVICE}/CreateMemory",
        data={"memory": {"namespace": ["grpcurl", uid], "content": "x", "embedding": [1, 2, 3]}},
        flags=("-format-error",),
    )
    assert result.returncode == EXIT_OFFSET + 3, (result.returncode, result.stderr)
    status = json.loads(result.stderr)
    assert status["code"] == 3
    assert "384" in status["message"]
    details = {d["@type"].rsplit("/", 1)[-1]: d for d in status["details"]}
    assert details["google.rpc.ErrorInfo"]["reason"] == "InvalidArgument"
    violations = details["google.rpc.BadRequest"]["field_violations"]
    assert [v["field"] for v in violations] == ["memory.embedding"]
