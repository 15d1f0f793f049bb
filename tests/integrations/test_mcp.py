"""``memoryd mcp`` over both transports, driven by the MCP SDK's own client.

Each test starts the real command as a process (stdio: the client spawns it;
HTTP: it listens on a free port) against a real memoryd with a fresh tenant.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.conftest import ServerThread, TenantKeys

TOOLS = {"remember", "recall", "forget", "list_namespaces", "append_turn", "context_window"}


def command(addr: str) -> list[str]:
    return [sys.executable, "-m", "memoryd_server", "mcp", "--addr", addr]


def payload(result: Any) -> Any:
    """A tool result's JSON (structured content when the SDK gives it, else the text)."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content)
    return json.loads(result.content[0].text)


async def exercise(client: Client) -> None:
    """Every tool once, the way an agent would call them, and their errors."""
    tools = await client.list_tools()
    assert {tool.name for tool in tools.tools} == TOOLS
    assert all(len(tool.description or "") > 80 for tool in tools.tools)

    ns = ["travel-agent", "user-7", "preferences"]
    stored = payload(
        await client.call_tool(
            "remember",
            {"content": "Prefers a window seat on long flights", "namespace": ns, "key": "seat"},
        )
    )
    assert stored["replaced"] is False
    again = payload(
        await client.call_tool(
            "remember",
            {"content": "Prefers an aisle seat on long flights", "namespace": ns, "key": "seat"},
        )
    )
    assert again["replaced"] is True
    assert again["memory"]["id"] == stored["memory"]["id"]
    payload(
        await client.call_tool(
            "remember", {"content": "Is allergic to peanuts", "namespace": [*ns[:2], "health"]}
        )
    )
    hits = payload(
        await client.call_tool(
            "recall", {"query": "Where does the user like to sit on a plane?", "limit": 2}
        )
    )
    assert hits[0]["content"] == "Prefers an aisle seat on long flights"
    assert payload(await client.call_tool("list_namespaces", {"max_depth": 2})) == [
        ["travel-agent", "user-7"]
    ]
    forgotten = payload(await client.call_tool("forget", {"namespace": ns, "key": "seat"}))
    assert forgotten["status"] == "archived"
    hits = payload(await client.call_tool("recall", {"query": "window or aisle seat"}))
    assert all("seat" not in hit["content"] for hit in hits)

    for i, (role, text) in enumerate([("user", "Book Lisbon in May"), ("assistant", "Done ✓")]):
        turn = payload(
            await client.call_tool(
                "append_turn",
                {"conversation_id": "s-1", "role": role, "content": text, "token_count": 5},
            )
        )
        assert turn == {"seq": i + 1, "message_count": i + 1}
    window = payload(
        await client.call_tool("context_window", {"conversation_id": "s-1", "max_tokens": 5})
    )
    assert [m["content"] for m in window["messages"]] == ["Done ✓"]
    assert window["omitted_message_count"] == 1

    # Errors come back as tool errors naming memoryd's error, for the model to read.
    bad = await client.call_tool("remember", {"content": "x", "namespace": ["é" * 200]})
    assert bad.is_error
    assert "InvalidArgument" in bad.content[0].text
    missing = await client.call_tool(
        "forget", {"memory_id": "0190b7c2-0000-7000-8000-000000000000"}
    )
    assert missing.is_error
    assert "NotFound" in missing.content[0].text
    wrong_role = await client.call_tool(
        "append_turn", {"conversation_id": "s-1", "role": "wizard", "content": "x"}
    )
    assert wrong_role.is_error


def test_stdio(embedding_memoryd: ServerThread, embed_tenant: TenantKeys) -> None:
    params = StdioServerParameters(
        command=command(embedding_memoryd.addr)[0],
        args=command(embedding_memoryd.addr)[1:],
        env={**os.environ, "MEMORYD_API_KEY": embed_tenant.member},
    )

    async def run() -> None:
        async with Client(params) as client:
            await exercise(client)

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_mcp(embedding_memoryd: ServerThread, embed_tenant: TenantKeys) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [*command(embedding_memoryd.addr), "--transport", "http", "--port", str(port)],
        env={**os.environ, "MEMORYD_API_KEY": embed_tenant.member},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert process.poll() is None, "memoryd mcp exited"
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    process.terminate()
    process.wait(timeout=30)


def test_streamable_http(http_mcp: str) -> None:
    async def run() -> None:
        async with Client(http_mcp) as client:
            await exercise(client)

    asyncio.run(run())


def test_tools_see_only_their_tenant(
    embedding_memoryd: ServerThread, embed_tenant: TenantKeys, http_mcp: str, pg_uri: str
) -> None:
    """A memory remembered through one tenant's MCP server is invisible to another's."""
    import psycopg

    from tests.conftest import create_tenant_keys

    with psycopg.connect(pg_uri, autocommit=True) as conn:
        other = create_tenant_keys(conn, f"m2-{embed_tenant.tenant_id}")
    params = StdioServerParameters(
        command=sys.executable,
        args=command(embedding_memoryd.addr)[1:],
        env={**os.environ, "MEMORYD_API_KEY": other.member},
    )

    async def run() -> None:
        async with Client(http_mcp) as mine:
            payload(
                await mine.call_tool(
                    "remember", {"content": "The vault code is 4711", "namespace": ["s"]}
                )
            )
        async with Client(params) as theirs:
            assert payload(await theirs.call_tool("recall", {"query": "vault code"})) == []
            assert payload(await theirs.call_tool("list_namespaces", {})) == []

    asyncio.run(run())
