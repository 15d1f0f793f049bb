"""MemorydStore against a real memoryd: langgraph's own store test cases, ported.

The cases come from langgraph's libs/checkpoint/tests/test_store.py (written
for InMemoryStore); each runs against a fresh tenant (conftest's ``store``),
through the sync and the async API. Its search cases are in
test_langgraph_search.py.
"""

from __future__ import annotations

import asyncio

import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, Item, PutOp, SearchOp

import memoryd
from memoryd.integrations.langgraph import MemorydStore
from tests.conftest import ServerThread, TenantKeys
from tests.integrations.fakes import FILTER_DOCS


def put_all(store: MemorydStore, namespaces: list[tuple[str, ...]]) -> None:
    store.batch(
        [PutOp(ns, f"id_{i}", {"data": f"value_{i:02d}"}) for i, ns in enumerate(namespaces)]
    )


def test_put_get_delete_round_trip(store: MemorydStore) -> None:
    """An item comes back as put (value, key, namespace, times); delete makes it None."""
    value = {"text": "Prefers a window seat", "n": 3, "tags": ["a", "b"], "nested": {"x": 1.5}}
    store.put(("users", "u1"), "seat", value)
    item = store.get(("users", "u1"), "seat")
    assert isinstance(item, Item)
    assert (item.namespace, item.key, item.value) == (("users", "u1"), "seat", value)
    assert item.created_at <= item.updated_at
    store.put(("users", "u1"), "seat", {"text": "Prefers an aisle seat"})
    again = store.get(("users", "u1"), "seat")
    assert again is not None
    assert again.value == {"text": "Prefers an aisle seat"}
    assert again.updated_at > item.updated_at
    store.delete(("users", "u1"), "seat")
    assert store.get(("users", "u1"), "seat") is None
    assert store.get(("users", "u1"), "never-put") is None


def test_delete_keeps_history_in_memoryd(
    store: MemorydStore, embedding_memoryd: ServerThread, embed_tenant: TenantKeys
) -> None:
    """A deleted item is archived, not erased: memoryd's history still has every value."""
    store.put(("users", "u1"), "city", {"text": "Lives in Lisbon"})
    with memoryd.Client(embedding_memoryd.addr, api_key=embed_tenant.member) as client:
        memory_id = client.memories.get(namespace=("users", "u1"), key="city").id
        store.put(("users", "u1"), "city", {"text": "Lives in Porto"})
        store.delete(("users", "u1"), "city")
        events = list(client.memories.iter_history(memory_id))
    assert [e.event_type for e in events] == ["created", "updated", "archived"]
    assert events[0].after is not None
    assert events[0].after.metadata == {"text": "Lives in Lisbon"}


def test_batch_reads_before_writes(store: MemorydStore) -> None:
    """In one batch, reads see the store before its writes; the last write to a key wins."""
    store.put(("a",), "k", {"v": 1})
    results = store.batch(
        [
            PutOp(("a",), "k", {"v": 2}),
            GetOp(("a",), "k"),
            PutOp(("a",), "k", {"v": 3}),
            SearchOp(("a",)),
        ]
    )
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], Item)
    assert results[1].value == {"v": 1}
    assert [i.value for i in results[3]] == [{"v": 1}]  # type: ignore[union-attr]
    assert store.get(("a",), "k").value == {"v": 3}  # type: ignore[union-attr]


def test_tenants_see_only_their_items(
    embedding_memoryd: ServerThread, embed_tenant: TenantKeys, pg_uri: str
) -> None:
    """Two stores with two tenants' keys share nothing, not even namespaces."""
    import psycopg

    from tests.conftest import create_tenant_keys

    with psycopg.connect(pg_uri, autocommit=True) as conn:
        other = create_tenant_keys(conn, f"i2-{embed_tenant.tenant_id}")
    with (
        MemorydStore(embedding_memoryd.addr, api_key=embed_tenant.member) as mine,
        MemorydStore(embedding_memoryd.addr, api_key=other.member) as theirs,
    ):
        mine.put(("shared", "ns"), "k", {"text": "mine alone"})
        assert theirs.get(("shared", "ns"), "k") is None
        assert theirs.search(("shared",), query="mine alone") == []
        assert theirs.list_namespaces() == []
        assert mine.list_namespaces() == [("shared", "ns")]


def test_errors_are_typed(store: MemorydStore, auth_server: ServerThread) -> None:
    """LangGraph's namespace rules hold; memoryd's limits and a bad key raise its errors."""
    with pytest.raises(InvalidNamespaceError):
        store.put((), "k", {"a": 1})
    with pytest.raises(InvalidNamespaceError):
        store.put(("langgraph", "x"), "k", {"a": 1})
    with pytest.raises(TypeError, match="unknown store operation"):
        store.batch([GetOp(("ns",), "k"), object()])  # type: ignore[list-item]
    with pytest.raises(memoryd.InvalidArgument):
        store.put(("é" * 200,), "k", {"a": 1})  # a segment longer than 128 characters
    with pytest.raises(memoryd.InvalidArgument):
        store.put(("ns",), "ключ" * 100, {"a": 1})  # a key longer than 256 characters
    with (
        MemorydStore(auth_server.addr, api_key="not-a-key") as stranger,
        pytest.raises(memoryd.Unauthenticated),
    ):
        stranger.get(("ns",), "k")


# --- list_namespaces: langgraph's test_list_namespaces_* --------------------------------


def test_list_namespaces_basic(store: MemorydStore) -> None:
    namespaces = [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
        ("a", "c", "f"),
        ("b", "a", "f"),
        ("users", "123"),
        ("users", "456", "settings"),
        ("admin", "users", "789"),
    ]
    put_all(store, namespaces)
    assert sorted(store.list_namespaces(prefix=("a", "b"))) == [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
    ]
    assert sorted(store.list_namespaces(suffix=("f",))) == [
        ("a", "b", "f"),
        ("a", "c", "f"),
        ("b", "a", "f"),
    ]
    assert sorted(store.list_namespaces(prefix=("a",), suffix=("f",))) == [
        ("a", "b", "f"),
        ("a", "c", "f"),
    ]
    assert sorted(store.list_namespaces(prefix=("a", "b"), max_depth=3)) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "b", "f"),
    ]
    assert store.list_namespaces(prefix=("a", "b"), limit=2) == [
        ("a", "b", "c"),
        ("a", "b", "d", "e"),
    ]
    assert store.list_namespaces(prefix=("a", "b"), offset=2) == [
        ("a", "b", "d", "i"),
        ("a", "b", "f"),
    ]
    assert sorted(store.list_namespaces(prefix=("a", "*", "f"))) == [
        ("a", "b", "f"),
        ("a", "c", "f"),
    ]
    assert sorted(store.list_namespaces(suffix=("*", "f"))) == [
        ("a", "b", "f"),
        ("a", "c", "f"),
        ("b", "a", "f"),
    ]
    assert store.list_namespaces(prefix=("nonexistent",)) == []
    assert store.list_namespaces(prefix=("users", "123")) == [("users", "123")]


def test_list_namespaces_with_wildcards(store: MemorydStore) -> None:
    put_all(
        store,
        [
            ("users", "123"),
            ("users", "456"),
            ("users", "789", "settings"),
            ("admin", "users", "789"),
            ("guests", "123"),
            ("guests", "456", "preferences"),
        ],
    )
    assert sorted(store.list_namespaces(prefix=("users", "*"))) == [
        ("users", "123"),
        ("users", "456"),
        ("users", "789", "settings"),
    ]
    assert store.list_namespaces(suffix=("*", "preferences")) == [("guests", "456", "preferences")]
    assert store.list_namespaces(prefix=("*", "users"), suffix=("*", "settings")) == []


def test_list_namespaces_pagination(store: MemorydStore) -> None:
    put_all(store, [("namespace", f"sub_{i:02d}") for i in range(20)])
    for offset in (0, 5, 15):
        assert store.list_namespaces(prefix=("namespace",), limit=5, offset=offset) == [
            ("namespace", f"sub_{i:02d}") for i in range(offset, offset + 5)
        ]


def test_list_namespaces_max_depth_and_no_conditions(store: MemorydStore) -> None:
    assert store.list_namespaces() == []
    put_all(store, [("a", "b", "c", "d"), ("a", "b", "c", "e"), ("a", "b", "f"), ("a", "g")])
    store.put(("h", "i", "j", "k"), "x", {"data": "y"})
    assert sorted(store.list_namespaces(max_depth=2)) == [("a", "b"), ("a", "g"), ("h", "i")]
    assert len(store.list_namespaces()) == 5
    store.delete(("h", "i", "j", "k"), "x")
    assert sorted(store.list_namespaces(max_depth=2)) == [("a", "b"), ("a", "g")]


def test_ttl_expires_and_reads_refresh(store: MemorydStore) -> None:
    """An item put with a TTL is gone after it; a read pushes its expiry back.

    Margins are 1.5 s either side, so a slow call on a loaded machine does not
    decide the outcome.
    """
    import time

    store.put(("t",), "short", {"text": "fleeting"}, ttl=1 / 60)  # one second
    store.put(("t",), "kept", {"text": "kept"}, ttl=6 / 60)  # six seconds
    time.sleep(1.5)
    assert store.get(("t",), "short") is None
    assert [r.key for r in store.search(("t",))] == ["kept"]  # refreshed: until ~7.5 s
    time.sleep(3.0)
    assert store.get(("t",), "kept") is not None  # refreshed again: until ~10.5 s
    time.sleep(4.5)
    # Past its first expiry (6 s), alive only through the refreshes.
    assert store.get(("t",), "kept", refresh_ttl=False) is not None
    time.sleep(3.0)
    assert store.get(("t",), "kept") is None


def test_async_api(embedding_memoryd: ServerThread, embed_tenant: TenantKeys) -> None:
    """The async methods (langgraph's test_async_* cases) on the asyncio client."""

    async def run() -> None:
        store = MemorydStore(embedding_memoryd.addr, api_key=embed_tenant.member)
        await asyncio.gather(
            *(store.aput(("docs",), key, value) for key, value in FILTER_DOCS),
        )
        item = await store.aget(("docs",), "doc3")
        assert item is not None
        assert item.value == FILTER_DOCS[2][1]
        results = await store.asearch(("docs",), query="red fruit", filter={"color": "red"})
        assert [r.key for r in results] == ["doc1", "doc2"]
        results = await store.asearch(("docs",), filter={"score": {"$gt": 3.2}})
        assert sorted(r.key for r in results) == ["doc1", "doc3", "doc4"]
        assert await store.alist_namespaces() == [("docs",)]
        await store.adelete(("docs",), "doc3")
        assert await store.aget(("docs",), "doc3") is None
        searches = await asyncio.gather(
            *(store.asearch(("docs",), query=q) for q in ("apple", "car", "blue"))
        )
        assert all(len(hits) == 3 for hits in searches)
        await store.aclose()

    asyncio.run(run())


def test_bulk_puts_new_and_existing_keys(store: MemorydStore) -> None:
    """A batch of new keys goes in one BatchCreateMemories; one with a taken key still lands."""
    store.batch([PutOp(("bulk",), f"k{i}", {"n": i}) for i in range(600)])  # two chunks
    assert len(store.search(("bulk",), limit=1000)) == 600
    store.batch(
        [
            PutOp(("bulk",), "k0", {"n": "replaced"}),
            PutOp(("bulk",), "fresh", {"n": "new"}, ttl=60),
            PutOp(("bulk",), "k1", None),
        ]
    )
    assert store.get(("bulk",), "k0").value == {"n": "replaced"}  # type: ignore[union-attr]
    assert store.get(("bulk",), "fresh").value == {"n": "new"}  # type: ignore[union-attr]
    assert store.get(("bulk",), "k1") is None
    assert len(store.search(("bulk",), limit=1000)) == 600
