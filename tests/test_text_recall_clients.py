"""The operator's and the typed clients' paths to text recall: no vector anywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from typing import Any

import memoryd
from tests.conftest import ServerThread, TenantKeys
from tests.test_grpcurl import _grpcurl_binary
from tests.test_server_embeddings import NOTES, embed_server, keys  # noqa: F401 - fixtures


def test_grpcurl_text_in_memories_out(
    embed_server: ServerThread,  # noqa: F811 - the fixture imported above
    keys: TenantKeys,  # noqa: F811
) -> None:
    """The operator path with no vector anywhere: store text, ask a question, get it back."""
    binary = _grpcurl_binary()
    header = f"authorization: Bearer {keys.member}"

    def call(method: str, body: dict[str, Any]) -> dict[str, Any]:
        result = subprocess.run(
            [
                binary,
                "-plaintext",
                "-H",
                header,
                "-d",
                json.dumps(body),
                embed_server.addr,
                f"memoryd.v1.MemoryService/{method}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        response: dict[str, Any] = json.loads(result.stdout)
        return response

    for note in NOTES:
        call("CreateMemory", {"memory": {"namespace": ["ops"], "content": note}})
    found = call("SearchMemories", {"query_text": "which pet did Ada adopt?", "topK": 1})
    assert found["mode"] == "SEARCH_MODE_HYBRID"
    assert found["results"][0]["memory"]["content"] == NOTES[0]
    assert "embedding" not in found["results"][0]["memory"]


def test_typed_clients_search_by_text_sync_and_async(
    embed_server: ServerThread,  # noqa: F811 - the fixture imported above
    keys: TenantKeys,  # noqa: F811
) -> None:
    """memoryd.Client and AsyncClient: text in, memories and messages out, modes by name."""
    with memoryd.Client(embed_server.addr, api_key=keys.member) as client:
        client.memories.create(memoryd.NewMemory(NOTES[0], namespace=["typed"]))
        created = client.memories.create(
            memoryd.NewMemory(
                NOTES[4], namespace=["typed"], occur_time=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            )
        )
        assert created.memory.occur_time == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        hits = client.memories.search(query_text="a dog at Ada's home", mode="vector", top_k=1)
        assert hits[0].memory.content == NOTES[0]
        assert hits[0].vector_rank == 1
        strict = client.memories.search(
            query_text="oat milk soup", mode="text", text_match="websearch"
        )
        assert strict == []
        client.conversations.append(
            "typed-chat", [memoryd.NewMessage("user", "I sold my bike")], create_if_missing=True
        )
        found = client.conversations.search(query_text="bike", mode="text", fusion="rrf")
        assert [h.message.content for h in found] == ["I sold my bike"]

    async def run() -> list[memoryd.SearchResult]:
        async with memoryd.AsyncClient(embed_server.addr, api_key=keys.member) as client:
            messages = await client.conversations.search(
                query_text="bicycle", mode="text", filter=memoryd.MessageFilter(roles=["user"])
            )
            assert messages == []  # no shared word: text mode finds nothing
            return await client.memories.search(
                query_text="coffee",
                filter=memoryd.MemoryFilter(occur_time_end=dt.datetime(2021, 1, 1, tzinfo=dt.UTC)),
            )

    old = asyncio.run(run())
    assert [h.memory.content for h in old] == [NOTES[4]]
