"""MemorydStore against a real memoryd: langgraph's own store test cases, ported.

The cases come from langgraph's libs/checkpoint/tests/test_store.py (written
for InMemoryStore); each runs against a fresh tenant, through the sync and the
async API. ``store`` lets the server embed; ``vector_store`` sends the test
embedder's vectors, as a store built with ``index={"embed": ...}`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.store.base import GetOp, InvalidNamespaceError, Item, PutOp, SearchOp

import memoryd
from memoryd.integrations.langgraph import MemorydStore
from tests.conftest import ServerThread, TenantKeys
from tests.integrations.fakes import CharacterEmbeddings


@pytest.fixture
def store(embedding_memoryd: ServerThread, embed_tenant: TenantKeys) -> Iterator[MemorydStore]:
    with MemorydStore(embedding_memoryd.addr, api_key=embed_tenant.member) as s:
        yield s


@pytest.fixture
def vector_store(auth_server: ServerThread, tenant: TenantKeys) -> Iterator[MemorydStore]:
    embeddings = CharacterEmbeddings(dims=384)
    index: Any = {"dims": 384, "embed": embeddings}
    with MemorydStore(auth_server.addr, api_key=tenant.member, index=index) as s:
        yield s


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


# --- search: langgraph's test_vector_* --------------------------------------------------


def test_vector_insert_with_auto_embedding(vector_store: MemorydStore) -> None:
    docs = [
        ("doc1", {"text": "short text"}),
        ("doc2", {"text": "longer text document"}),
        ("doc3", {"text": "longest text document here"}),
        ("doc4", {"description": "text in description field"}),
        ("doc5", {"content": "text in content field"}),
        ("doc6", {"body": "text in body field"}),
    ]
    for key, value in docs:
        vector_store.put(("test",), key, value)
    keys = [r.key for r in vector_store.search(("test",), query="long text")]
    assert "doc2" in keys
    assert "doc3" in keys


def test_vector_update_with_embedding(vector_store: MemorydStore) -> None:
    s = vector_store
    s.put(("test",), "doc1", {"text": "zany zebra Xerxes"})
    s.put(("test",), "doc2", {"text": "something about dogs"})
    s.put(("test",), "doc3", {"text": "text about birds"})
    initial = s.search(("test",), query="Zany Xerxes")
    assert initial[0].key == "doc1"
    initial_score = initial[0].score
    assert initial_score is not None

    s.put(("test",), "doc1", {"text": "new text about dogs"})
    after = s.search(("test",), query="Zany Xerxes")
    after_score = next((r.score for r in after if r.key == "doc1"), 0.0)
    assert after_score is not None
    assert after_score < initial_score
    for r in s.search(("test",), query="new text about dogs"):
        if r.key == "doc1":
            assert r.score is not None
            assert r.score > after_score

    s.put(("test",), "doc4", {"text": "new text about dogs"}, index=False)
    results = s.search(("test",), query="new text about dogs", limit=3)
    assert not any(r.key == "doc4" for r in results)
    assert s.get(("test",), "doc4") is not None


FILTER_DOCS = [
    ("doc1", {"text": "red apple", "color": "red", "score": 4.5}),
    ("doc2", {"text": "red car", "color": "red", "score": 3.0}),
    ("doc3", {"text": "green apple", "color": "green", "score": 4.0}),
    ("doc4", {"text": "blue car", "color": "blue", "score": 3.5}),
]


def test_vector_search_with_filters(vector_store: MemorydStore) -> None:
    for key, value in FILTER_DOCS:
        vector_store.put(("test",), key, value)
    results = vector_store.search(("test",), query="apple", filter={"color": "red"})
    assert [r.key for r in results][:1] == ["doc1"]
    assert len(results) == 2
    results = vector_store.search(("test",), query="car", filter={"color": "red"})
    assert [r.key for r in results][:1] == ["doc2"]
    assert len(results) == 2
    results = vector_store.search(("test",), query="bbbbluuu", filter={"score": {"$gt": 3.2}})
    assert len(results) == 3
    assert results[0].key == "doc4"
    results = vector_store.search(
        ("test",), query="apple", filter={"score": {"$gte": 4.0}, "color": "green"}
    )
    assert [r.key for r in results] == ["doc3"]


def test_filter_operators_without_query(store: MemorydStore) -> None:
    """Every operator LangGraph documents, on a listing (no query); others are refused."""
    for key, value in FILTER_DOCS:
        store.put(("test",), key, value)

    def keys(filter: dict[str, Any]) -> list[str]:
        return sorted(r.key for r in store.search(("test",), filter=filter))

    assert keys({"color": {"$eq": "red"}}) == ["doc1", "doc2"]
    assert keys({"color": {"$ne": "red"}}) == ["doc3", "doc4"]
    assert keys({"score": {"$gt": 3.5}}) == ["doc1", "doc3"]
    assert keys({"score": {"$gte": 3.5}}) == ["doc1", "doc3", "doc4"]
    assert keys({"score": {"$lt": 3.5}}) == ["doc2"]
    assert keys({"score": {"$lte": 3.5}}) == ["doc2", "doc4"]
    assert keys({"score": {"$gt": 3.0, "$lt": 4.5}, "color": {"$ne": "blue"}}) == ["doc3"]
    assert keys({"color": "red", "text": {"$eq": "red car"}}) == ["doc2"]
    with pytest.raises(ValueError, match=r"\$regex"):
        keys({"color": {"$regex": "r.*"}})


def test_vector_search_pagination(vector_store: MemorydStore) -> None:
    for i in range(5):
        vector_store.put(("test",), f"doc{i}", {"text": f"test document number {i}"})
    page1 = vector_store.search(("test",), query="test", limit=2)
    page2 = vector_store.search(("test",), query="test", limit=2, offset=2)
    assert len(page1) == 2
    assert len(page2) == 2
    assert page1[0].key != page2[0].key
    everything = vector_store.search(("test",), query="test", limit=10)
    assert [r.key for r in everything[2:4]] == [r.key for r in page2]


def test_embed_with_path(vector_store: MemorydStore) -> None:
    """``index=[paths]`` picks what is embedded; the value is stored whole."""
    doc = {"title": "zany zebra", "body": "about birds", "meta": {"tags": ["q", "r"]}}
    vector_store.put(("test",), "doc", doc, index=["title"])
    vector_store.put(("test",), "other", {"title": "birds of a feather", "body": "x"})
    result = vector_store.search(("test",), query="zany zebra", limit=1)
    assert [r.key for r in result] == ["doc"]
    assert result[0].value == doc


def test_non_ascii(store: MemorydStore) -> None:
    """Non-ASCII values, namespaces and keys survive; the server's embedder finds them."""
    store.put(("user_123", "memories"), "1", {"text": "这是中文"})
    store.put(("user_123", "memories"), "2", {"text": "これは日本語です"})
    store.put(("user_123", "memories"), "3", {"text": "이건 한국어야"})
    store.put(("user_123", "memories"), "4", {"text": "Это русский"})
    store.put(("user_123", "memories"), "5", {"text": "यह रूसी है"})
    store.put(("ユーザー", "記憶"), "鍵", {"text": "Ünïcödé ✓"})
    assert store.get(("ユーザー", "記憶"), "鍵").value == {"text": "Ünïcödé ✓"}  # type: ignore[union-attr]
    for query, key in [("这是中文", "1"), ("Это русский", "4")]:
        results = store.search(("user_123", "memories"), query=query)
        assert results[0].key == key


def test_server_embedder_recalls_by_meaning(store: MemorydStore) -> None:
    """Without ``index``, the server embeds: a question finds the fact by meaning."""
    ns = ("travel-agent", "user-7")
    store.put(ns, "seat", {"text": "Prefers a window seat on long flights"})
    store.put(ns, "food", {"text": "Is allergic to peanuts"})
    store.put(ns, "pet", {"text": "Has a golden retriever called Biscuit"})
    hits = store.search(("travel-agent",), query="Where does the user like to sit on a plane?")
    assert hits[0].key == "seat"
    assert hits[0].score is not None
    assert hits[0].score > 0


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
