"""The operator path for DocumentService: the real grpcurl binary, by reflection only."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from memoryd.v1 import document_pb2 as pb
from tests.test_grpcurl import Grpcurl, _grpcurl_binary

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["DocumentService"]
SERVICE = SERVICE_DESCRIPTOR.full_name


@pytest.fixture(scope="module")
def grpcurl(grpc_addr: str) -> Grpcurl:
    binary = _grpcurl_binary()

    def run(*args: str, data: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        command = [binary, "-plaintext"]
        if data is not None:
            command += ["-d", json.dumps(data)]
        command += [grpc_addr, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    return run


def _call(grpcurl: Grpcurl, method: str, body: dict[str, Any]) -> dict[str, Any]:
    result: subprocess.CompletedProcess[str] = grpcurl(f"{SERVICE}/{method}", data=body)
    assert result.returncode == 0, (method, result.returncode, result.stderr)
    response: dict[str, Any] = json.loads(result.stdout)
    return response


def test_list_shows_the_document_service(grpcurl: Grpcurl) -> None:
    methods = grpcurl("list", SERVICE)
    assert methods.returncode == 0, methods.stderr
    assert set(methods.stdout.split()) == {
        f"{SERVICE}.{m.name}" for m in SERVICE_DESCRIPTOR.methods
    }


def test_readme_put_and_search(grpcurl: Grpcurl, uid: str) -> None:
    """The README's example: a markdown document, chunked by heading, found by a word."""
    put = _call(
        grpcurl,
        "PutDocument",
        {
            "document": {
                "namespace": ["acme", uid],
                "path": "faq.md",
                "content": "# FAQ\n\n## Refunds\n\nRefunds take five days.",
            }
        },
    )
    doc = put["document"]
    assert put["created"] is True
    assert doc["chunk_count"] == 1
    assert doc["media_type"] == "text/markdown"
    found = _call(
        grpcurl,
        "SearchDocuments",
        {"query_text": "refund", "filter": {"namespace_prefix": ["acme", uid]}},
    )
    (hit,) = found["results"]
    assert hit["chunk"]["heading_path"] == ["FAQ", "Refunds"]
    assert hit["document"]["path"] == "faq.md"
    assert found["mode"] == "SEARCH_MODE_TEXT"


def test_bad_media_type_names_the_field(grpcurl: Grpcurl) -> None:
    result = grpcurl(
        f"{SERVICE}/PutDocument",
        data={
            "document": {
                "namespace": ["x"],
                "path": "a.pdf",
                "content": "x",
                "media_type": "application/pdf",
            }
        },
    )
    assert result.returncode != 0
    assert "InvalidArgument" in result.stderr
    assert "document.media_type" in result.stderr
