"""MemorydStore's searches: langgraph's own vector-search test cases, ported, and filters.

From langgraph's libs/checkpoint/tests/test_store.py (test_vector_*,
test_embed_with_path, test_non_ascii). ``vector_store`` sends the test
embedder's vectors, as a store built with ``index={"embed": ...}`` does;
``store`` lets the server embed.
"""

from __future__ import annotations

from typing import Any

import pytest

from memoryd.integrations.langgraph import MemorydStore
from tests.integrations.fakes import FILTER_DOCS


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
