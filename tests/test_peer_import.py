"""Importing LangGraph store dumps and Mem0 exports through the typed client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import memoryd
from memoryd_server.portability import peers
from memoryd_server.portability.peers import PeerFormatError, import_peer

from .conftest import ServerThread

DATA = Path(__file__).parent / "data" / "peers"
LANGGRAPH = DATA / "langgraph_store.json"
MEM0 = DATA / "mem0_memories.json"


@pytest.fixture
def client(memoryd_server: ServerThread) -> Iterator[memoryd.Client]:
    with memoryd.Client(memoryd_server.addr, api_key="test-key") as c:
        yield c


def _all(client: memoryd.Client, prefix: list[str]) -> list[memoryd.Memory]:
    return list(client.memories.iter(filter=memoryd.MemoryFilter(namespace_prefix=prefix)))


def _by_key(memories: list[memoryd.Memory]) -> dict[str, memoryd.Memory]:
    return {m.key: m for m in memories}


def test_langgraph_import(client: memoryd.Client, uid: str) -> None:
    report = import_peer(LANGGRAPH, "langgraph", client, namespace_prefix=["lg", uid])

    assert (report.total, report.imported, report.skipped_count) == (8, 5, 3)
    reasons = dict(report.skipped)
    assert "value is empty" in reasons[4]
    assert "namespace segment 1" in reasons[5]
    assert "non-empty" in reasons[5]
    assert "expired at 2024-06-04" in reasons[7]
    assert report.metadata_only_fields == {"created_at", "updated_at", "score"}
    assert "5 imported" in report.summary()
    assert "skipped item 4: value is empty" in report.summary()

    memories = _by_key(_all(client, ["lg", uid]))
    assert set(memories) == {
        "3f6c1a52-8e0b-4c1e-9d0a-5b7f2e4c9a11",
        "coffee",
        "profile",
        "refund-flow",
        "allergy",
    }
    langmem = memories["3f6c1a52-8e0b-4c1e-9d0a-5b7f2e4c9a11"]
    assert langmem.namespace == ("lg", uid, "memories", "user-123")
    assert langmem.content == "User prefers dark mode in every editor and terminal."
    assert langmem.memory_type == "semantic"
    assert langmem.source is not None
    assert langmem.source.kind == "system"
    assert langmem.metadata == {
        "kind": "Memory",
        "langgraph": {
            "created_at": "2025-03-14T09:26:53.589793+00:00",
            "updated_at": "2025-03-14T09:26:53.589793+00:00",
        },
    }
    # The peer's creation time is when the memory occurred.
    assert langmem.occur_time == datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
    coffee = memories["coffee"]
    assert coffee.namespace == ("lg", uid, "memories", "user-123", "preferences")
    assert coffee.content == "Drinks oat-milk flat whites, never before 10am."
    assert coffee.metadata["source"] == "onboarding"
    assert coffee.metadata["langgraph"]["score"] == pytest.approx(0.8734)
    profile = memories["profile"]
    assert json.loads(profile.content) == {
        "name": "Alice Moreau",
        "timezone": "Europe/Berlin",
        "languages": ["en", "de", "fr"],
    }
    assert profile.metadata["timezone"] == "Europe/Berlin"
    # A PostgresStore row: its dotted prefix is the namespace.
    assert memories["allergy"].namespace == ("lg", uid, "memories", "user-456")

    hits = client.memories.search(
        query_text="refunds escalate",
        filter=memoryd.MemoryFilter(namespace_prefix=["lg", uid, "agents"]),
    )
    assert [h.memory.key for h in hits] == ["refund-flow"]
    assert hits[0].memory.metadata["kind"] == "Procedure"


def test_mem0_import(client: memoryd.Client, uid: str) -> None:
    report = import_peer(MEM0, "mem0", client, namespace_prefix=["m0", uid])

    assert (report.total, report.imported, report.skipped_count) == (7, 5, 2)
    reasons = dict(report.skipped)
    assert "blank" in reasons[5]
    assert "not a Mem0 memory" in reasons[6]
    assert any("1 graph relations were not imported" in n for n in report.notes)
    assert {"hash", "created_at", "actor_id", "role"} <= report.metadata_only_fields
    assert "id" not in report.metadata_only_fields  # it is the key

    memories = _by_key(_all(client, ["m0", uid]))
    assert len(memories) == 5
    veg = memories["892db2ae-06d9-49e5-8b3e-585ef9b85b8e"]
    assert veg.namespace == ("m0", uid, "mem0", "alice")
    assert veg.content == "Is a vegetarian and avoids mushrooms"
    assert (veg.user_id, veg.agent_id) == ("alice", "")
    assert veg.tags == ("food", "user_preferences")
    assert veg.metadata["source"] == "chat"
    assert veg.metadata["mem0"] == {
        "id": "892db2ae-06d9-49e5-8b3e-585ef9b85b8e",
        "hash": "0f0a8e5bdfbc1e4ba7b6cd5e7e4e3f51",
        "created_at": "2025-01-12T18:36:07.612143-08:00",
        "updated_at": "2025-02-03T10:01:55.104301-08:00",
        "actor_id": "alice",
        "role": "user",
    }
    assert veg.occur_time == datetime.fromisoformat("2025-01-12T18:36:07.612143-08:00")
    agent = memories["c0a5e1f2-93b8-4d6e-a7c1-8f4b2e9d0a73"]
    assert agent.namespace == ("m0", uid, "mem0", "travel-agent")
    assert (agent.user_id, agent.agent_id) == ("", "travel-agent")
    run = memories["5e7d3c2a-1b0f-4e9d-8c7b-6a5f4e3d2c1b"]
    assert run.namespace == ("m0", uid, "mem0", "session-7f3a")
    assert run.metadata["mem0"]["run_id"] == "session-7f3a"
    shared = memories["f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"]
    assert shared.namespace == ("m0", uid, "mem0", "shared")

    alice = client.memories.list(
        filter=memoryd.MemoryFilter(
            namespace_prefix=["m0", uid], user_id="alice", tags_any=["travel"]
        )
    )
    assert [m.content for m in alice.items] == ["Planning a trip to Kyoto in April"]
    hits = client.memories.search(
        query_text="vegetarian",
        filter=memoryd.MemoryFilter(
            namespace_prefix=["m0", uid], metadata={"mem0": {"role": "user"}}
        ),
    )
    assert [h.memory.key for h in hits] == ["892db2ae-06d9-49e5-8b3e-585ef9b85b8e"]


def test_rerun_does_not_duplicate(client: memoryd.Client, uid: str) -> None:
    first = import_peer(MEM0, "mem0", client, namespace_prefix=["again", uid], batch_size=2)
    second = import_peer(MEM0, "mem0", client, namespace_prefix=["again", uid], batch_size=2)
    assert first.imported == second.imported == 5
    assert second.updated == 0  # replayed by request_id, nothing rewritten
    assert len(_all(client, ["again", uid])) == 5


def test_changed_file_upserts_by_key(client: memoryd.Client, uid: str, tmp_path: Path) -> None:
    """A different file (new digest, so new request ids) replaces memories by key."""
    import_peer(MEM0, "mem0", client, namespace_prefix=["edit", uid])
    doc = json.loads(MEM0.read_text())
    doc["results"][1]["memory"] = "Planning a trip to Kyoto and Osaka in April"
    doc["results"].append({"id": "new-1", "memory": "Prefers window seats", "user_id": "alice"})
    changed = tmp_path / "mem0.json"
    changed.write_text(json.dumps(doc))

    report = import_peer(changed, "mem0", client, namespace_prefix=["edit", uid])
    assert report.imported == 6
    assert report.updated == 5
    memories = _by_key(_all(client, ["edit", uid]))
    assert len(memories) == 6
    assert memories["2b1f5c7e-7a4d-4f0e-bc58-1d2a9e6f3c40"].content.endswith("Osaka in April")


def test_jsonl_and_duplicates(client: memoryd.Client, uid: str, tmp_path: Path) -> None:
    items = json.loads(LANGGRAPH.read_text())[:2]
    lines = [json.dumps(i) for i in [*items, items[1]]]
    path = tmp_path / "store.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = import_peer(path, "langgraph", client, namespace_prefix=["jsonl", uid])
    assert report.imported == 2
    assert report.skipped == [(2, "duplicate of item 1 (same namespace and key)")]


def test_server_rejection_skips_only_that_item(
    client: memoryd.Client, uid: str, tmp_path: Path, memoryd_server: ServerThread
) -> None:
    big = "x" * (memoryd_server.settings.max_content_bytes + 1)
    path = tmp_path / "mem0.json"
    path.write_text(
        json.dumps(
            [
                {"id": "a", "memory": "fits", "user_id": "u"},
                {"id": "b", "memory": big, "user_id": "u"},
                {"id": "c", "memory": "fits too", "user_id": "u"},
            ]
        )
    )
    report = import_peer(path, "mem0", client, namespace_prefix=["big", uid])
    assert report.imported == 2
    assert report.skipped[0][0] == 1
    assert "rejected by the server" in report.skipped[0][1]
    assert set(_by_key(_all(client, ["big", uid]))) == {"a", "c"}


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("", "mem0", "the file is empty"),
        ("{not json", "mem0", "not JSON (Expecting property name"),
        ('{"id": 1}\n{oops}\n', "langgraph", "neither JSON nor JSON Lines (line 2"),
        ('{"memories": []}', "mem0", 'expected Mem0 get_all() output: {"results": [...]}'),
        ('"hello"', "langgraph", "got a JSON string"),
        ('{"results": []}', "langgraph", "got an object with keys [results]"),
        ('[{"id": "1", "text": "hi"}]', "mem0", "none of its 1 items has 'memory'"),
        ('[{"memory": "hi"}]', "langgraph", "has 'key' and 'value': not a langgraph export"),
    ],
)
def test_malformed_files(
    client: memoryd.Client, tmp_path: Path, text: str, fmt: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PeerFormatError) as info:
        import_peer(path, fmt, client)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_bad_options(client: memoryd.Client, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format must be one of langgraph, mem0"):
        import_peer(MEM0, "zep", client)
    with pytest.raises(ValueError, match="batch_size must be 1 to 10000"):
        import_peer(MEM0, "mem0", client, batch_size=0)
    with pytest.raises(PeerFormatError, match="cannot read"):
        import_peer(tmp_path / "missing.json", "mem0", client)


def test_command_line(
    memoryd_server: ServerThread, uid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = peers.main_import_peer(
        [
            "--format",
            "mem0",
            str(MEM0),
            "--addr",
            memoryd_server.addr,
            "--namespace-prefix",
            f"cli/{uid}",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "7 items, 5 imported, 2 skipped" in out.out
    assert "skipped item 6:" in out.out

    code = peers.main_import_peer(
        ["--format", "langgraph", str(MEM0), "--addr", memoryd_server.addr]
    )
    assert code == 2
    assert "expected a list of LangGraph store items" in capsys.readouterr().err
