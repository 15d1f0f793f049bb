"""MemorydStore against langgraph's PostgresStore test cases (checkpoint-postgres tests).

Ported from libs/checkpoint-postgres/tests/test_store.py: batches mixing every
op, and the namespace-boundary cases that a dotted-text prefix gets wrong.
Each runs against a fresh tenant of a memoryd with its own embedder.
"""

from __future__ import annotations

import pytest
from langgraph.store.base import GetOp, Item, ListNamespacesOp, MatchCondition, PutOp, SearchOp

import memoryd
from memoryd.integrations.langgraph import MemorydStore


def test_batch_order(store: MemorydStore) -> None:
    store.put(("test", "foo"), "key1", {"data": "value1"})
    store.put(("test", "bar"), "key2", {"data": "value2"})
    results = store.batch(
        [
            GetOp(namespace=("test", "foo"), key="key1"),
            PutOp(namespace=("test", "bar"), key="key2", value={"data": "value2"}),
            SearchOp(namespace_prefix=("test",), filter={"data": "value1"}, limit=10, offset=0),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            GetOp(namespace=("test",), key="key3"),
        ]
    )
    assert isinstance(results[0], Item)
    assert (results[0].key, results[0].value) == ("key1", {"data": "value1"})
    assert results[1] is None
    assert [i.key for i in results[2]] == ["key1"]  # type: ignore[union-attr]
    assert sorted(results[3]) == [("test", "bar"), ("test", "foo")]  # type: ignore[type-var]
    assert results[4] is None

    reordered = store.batch(
        [
            SearchOp(namespace_prefix=("test",), filter=None, limit=5, offset=0),
            GetOp(namespace=("test", "bar"), key="key2"),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=5, offset=0),
            PutOp(namespace=("test",), key="key3", value={"data": "value3"}),
            GetOp(namespace=("test", "foo"), key="key1"),
        ]
    )
    assert len(reordered[0]) == 2  # type: ignore[arg-type]
    assert reordered[1].value == {"data": "value2"}  # type: ignore[union-attr]
    assert len(reordered[2]) == 2  # type: ignore[arg-type]
    assert reordered[3] is None
    assert reordered[4].value == {"data": "value1"}  # type: ignore[union-attr]
    assert store.get(("test",), "key3").value == {"data": "value3"}  # type: ignore[union-attr]


def test_batch_get_and_put_ops(store: MemorydStore) -> None:
    results = store.batch(
        [
            PutOp(namespace=("test",), key="key1", value={"data": "value1"}),
            PutOp(namespace=("test",), key="key2", value={"data": "value2"}),
            PutOp(namespace=("test",), key="key3", value=None),  # deleting what is not there
        ]
    )
    assert results == [None, None, None]
    got = store.batch(
        [GetOp(("test",), "key1"), GetOp(("test",), "key2"), GetOp(("test",), "key3")]
    )
    assert [None if r is None else r.key for r in got] == ["key1", "key2", None]  # type: ignore[union-attr]


def test_batch_search_ops(store: MemorydStore) -> None:
    for namespace, key, value in [
        (("test", "foo"), "key1", {"data": "value1", "tag": "a"}),
        (("test", "bar"), "key2", {"data": "value2", "tag": "a"}),
        (("test", "baz"), "key3", {"data": "value3", "tag": "b"}),
    ]:
        store.put(namespace, key, value)
    results = store.batch(
        [
            SearchOp(namespace_prefix=("test",), filter={"tag": "a"}, limit=10, offset=0),
            SearchOp(namespace_prefix=("test",), filter=None, limit=2, offset=0),
            SearchOp(namespace_prefix=("test", "foo"), filter=None, limit=10, offset=0),
        ]
    )
    assert sorted(i.key for i in results[0]) == ["key1", "key2"]  # type: ignore[union-attr]
    assert len(results[1]) == 2  # type: ignore[arg-type]
    assert [i.namespace for i in results[2]] == [("test", "foo")]  # type: ignore[union-attr]


def test_batch_list_namespaces_ops(store: MemorydStore) -> None:
    data = [
        (("test", "documents", "public"), "doc1", {"content": "public doc"}),
        (("test", "documents", "private"), "doc2", {"content": "private doc"}),
        (("test", "images", "public"), "img1", {"content": "public image"}),
        (("prod", "documents", "public"), "doc3", {"content": "prod doc"}),
    ]
    for namespace, key, value in data:
        store.put(namespace, key, value)
    results = store.batch(
        [
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
            ListNamespacesOp(match_conditions=None, max_depth=2, limit=10, offset=0),
            ListNamespacesOp(
                match_conditions=(MatchCondition("suffix", ("public",)),),
                max_depth=None,
                limit=10,
                offset=0,
            ),
        ]
    )
    assert len(results[0]) == len(data)  # type: ignore[arg-type]
    assert sorted(results[1]) == [  # type: ignore[type-var]
        ("prod", "documents"),
        ("test", "documents"),
        ("test", "images"),
    ]
    assert sorted(results[2]) == [  # type: ignore[type-var]
        ("prod", "documents", "public"),
        ("test", "documents", "public"),
        ("test", "images", "public"),
    ]


def namespaces_found(store: MemorydStore, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
    return {item.namespace for item in store.search(prefix, limit=100)}


def test_search_namespace_segment_boundary(store: MemorydStore) -> None:
    """A prefix stops at label boundaries: ("foo",) is not a prefix of ("foobar",)."""
    for namespace in [
        ("foo",),
        ("foo", "child"),
        ("foo", "child", "deep"),
        ("foobar",),
        ("foobar", "baz"),
        ("foo2",),
    ]:
        store.put(namespace, "k", {"v": 1})
    assert namespaces_found(store, ("foo",)) == {
        ("foo",),
        ("foo", "child"),
        ("foo", "child", "deep"),
    }
    assert namespaces_found(store, ("foobar",)) == {("foobar",), ("foobar", "baz")}
    assert namespaces_found(store, ("foo", "child")) == {("foo", "child"), ("foo", "child", "deep")}
    assert namespaces_found(store, ("foo2",)) == {("foo2",)}
    assert namespaces_found(store, ("fo",)) == set()
    assert len(namespaces_found(store, ())) == 6  # an empty prefix constrains nothing


def test_search_namespace_like_metacharacters(store: MemorydStore) -> None:
    """``_`` and ``%`` are labels like any other, not wildcards."""
    for namespace in [("user_1",), ("user_1", "child"), ("userX1",), ("a%b",), ("axxb",)]:
        store.put(namespace, "k", {"v": 1})
    assert namespaces_found(store, ("user_1",)) == {("user_1",), ("user_1", "child")}
    assert namespaces_found(store, ("a%b",)) == {("a%b",)}


def test_list_namespaces_segment_boundary(store: MemorydStore) -> None:
    for namespace in [
        ("foo",),
        ("foo", "child"),
        ("foobar",),
        ("foobar", "baz"),
        ("uid", "users", "alice"),
        ("uid", "users", "malice"),
        ("uid", "a", "b", "alice"),
    ]:
        store.put(namespace, "k", {"v": 1})
    assert set(store.list_namespaces(prefix=("foo",), limit=100)) == {("foo",), ("foo", "child")}
    assert set(store.list_namespaces(suffix=("alice",), limit=100)) == {
        ("uid", "users", "alice"),
        ("uid", "a", "b", "alice"),
    }
    assert set(store.list_namespaces(prefix=("uid", "*", "alice"), limit=100)) == {
        ("uid", "users", "alice")
    }
    assert len(store.list_namespaces(prefix=("uid",), limit=100)) == 3


def test_namespace_labels_with_control_characters_are_refused(store: MemorydStore) -> None:
    """PostgresStore stores a label ending in a newline; memoryd refuses control characters."""
    store.put(("users", "alice"), "k", {"v": 1})
    with pytest.raises(memoryd.InvalidArgument):
        store.put(("users", "alice\n"), "k", {"v": 2})
    assert store.list_namespaces(suffix=("alice",), limit=100) == [("users", "alice")]
