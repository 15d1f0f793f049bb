"""How LangGraph items, filters and namespaces map onto memoryd memories.

An item is a memory: its namespace is the memory's namespace, its key the
memory's key and its value the memory's metadata. The text that LangGraph would
index (``IndexConfig.fields``, or the whole value) is the memory's content, so
the server's embedder and full-text search see it. Store bookkeeping (no index,
the TTL to refresh) lives in tags, leaving the value untouched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import (
    Item,
    ListNamespacesOp,
    SearchItem,
    get_text_at_path,
    tokenize_path,
)

from memoryd._client import types as t

# Marks a memory written by this adapter, so other memories in a namespace can be told apart.
TAG = "langgraph"
# An item put with index=False: kept out of semantic search, as LangGraph promises.
NO_INDEX_TAG = "langgraph:no-index"
# An item's TTL in minutes, so that reads can push its expiry back.
TTL_TAG_PREFIX = "langgraph:ttl="

OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})


def index_text(value: Mapping[str, Any], fields: Sequence[str] | None) -> str:
    """The text to embed and match for ``value``: its ``fields`` (paths), or all of it."""
    if fields and list(fields) != ["$"]:
        parts: list[str] = []
        for path in fields:
            parts.extend(get_text_at_path(value, tokenize_path(path)))
        return "\n".join(part for part in parts if part.strip())
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def memory_tags(*, indexed: bool, ttl_minutes: float | None) -> list[str]:
    """The bookkeeping tags of an item."""
    tags = [TAG]
    if not indexed:
        tags.append(NO_INDEX_TAG)
    if ttl_minutes is not None:
        tags.append(f"{TTL_TAG_PREFIX}{ttl_minutes:g}")
    return tags


def ttl_of(memory: t.Memory) -> float | None:
    """The TTL (minutes) an item was put with, or None."""
    for tag in memory.tags:
        if tag.startswith(TTL_TAG_PREFIX):
            return float(tag.removeprefix(TTL_TAG_PREFIX))
    return None


def is_indexed(memory: t.Memory) -> bool:
    """Whether semantic search may return the item."""
    return NO_INDEX_TAG not in memory.tags


def is_expired(memory: t.Memory) -> bool:
    """Whether the item's expiry has passed (the server archives it shortly after)."""
    return memory.expire_time is not None and memory.expire_time <= datetime.now(UTC)


def json_value(value: Any) -> Any:
    """A Struct value as the JSON it was put as: whole floats back to ints."""
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return int(value)
    return value


def to_item(memory: t.Memory) -> Item:
    """A memory as a LangGraph item."""
    created, updated = _times(memory)
    return Item(
        value=json_value(memory.metadata),
        key=memory.key,
        namespace=memory.namespace,
        created_at=created,
        updated_at=updated,
    )


def to_search_item(memory: t.Memory, score: float | None = None) -> SearchItem:
    """A memory as a LangGraph search result."""
    created, updated = _times(memory)
    return SearchItem(
        namespace=memory.namespace,
        key=memory.key,
        value=json_value(memory.metadata),
        created_at=created,
        updated_at=updated,
        score=score,
    )


def _times(memory: t.Memory) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    created = memory.create_time or now
    return created, memory.update_time or created


def containment(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The part of a LangGraph filter the server can apply (JSON containment).

    Plain values and ``$eq`` on scalars are containment; the other operators
    are checked by ``matches`` on what the server returns.
    """
    if not filter:
        return None
    contained: dict[str, Any] = {}
    for key, wanted in filter.items():
        if isinstance(wanted, dict) and any(k.startswith("$") for k in wanted):
            eq = wanted.get("$eq")
            if eq is not None and not isinstance(eq, dict | list):
                contained[key] = eq
        else:
            contained[key] = wanted
    return contained or None


def needs_local_check(filter: Mapping[str, Any] | None) -> bool:
    """Whether ``filter`` has conditions that containment does not decide exactly.

    Containment equals LangGraph's comparison for scalars (plain or ``$eq``);
    for lists and objects it is looser, and other operators it cannot express.
    """
    for wanted in (filter or {}).values():
        if isinstance(wanted, dict) and any(k.startswith("$") for k in wanted):
            if set(wanted) != {"$eq"} or isinstance(wanted["$eq"], dict | list | None):
                return True
        elif isinstance(wanted, dict | list):
            return True
    return False


def matches(value: Mapping[str, Any], filter: Mapping[str, Any] | None) -> bool:
    """Whether an item's value satisfies a LangGraph filter (as InMemoryStore reads it)."""
    return all(_compare(value.get(key), wanted) for key, wanted in (filter or {}).items())


def _compare(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_apply(actual, op, operand) for op, operand in wanted.items())
        return isinstance(actual, dict) and all(
            _compare(actual.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(wanted)
            and all(_compare(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)


def _apply(actual: Any, operator: str, operand: Any) -> bool:
    if operator not in OPERATORS:
        raise ValueError(f"unsupported filter operator {operator!r}")
    if operator == "$eq":
        return bool(actual == operand)
    if operator == "$ne":
        return bool(actual != operand)
    if not isinstance(actual, int | float) or isinstance(actual, bool):
        return False
    number, bound = float(actual), float(operand)
    return {
        "$gt": number > bound,
        "$gte": number >= bound,
        "$lt": number < bound,
        "$lte": number <= bound,
    }[operator]


def namespace_matches(namespace: tuple[str, ...], op: ListNamespacesOp) -> bool:
    """Whether a namespace meets every prefix/suffix condition (``*`` matches any label)."""
    for condition in op.match_conditions or ():
        path = tuple(condition.path)
        if len(namespace) < len(path):
            return False
        pairs = (
            zip(namespace, path, strict=False)
            if condition.match_type == "prefix"
            else zip(reversed(namespace), reversed(path), strict=False)
        )
        if any(p not in ("*", n) for n, p in pairs):
            return False
    return True


def server_prefix(op: ListNamespacesOp) -> tuple[str, ...]:
    """The literal head of the op's prefix condition: what the server can narrow by."""
    for condition in op.match_conditions or ():
        if condition.match_type == "prefix":
            head: list[str] = []
            for label in condition.path:
                if label == "*":
                    break
                head.append(label)
            return tuple(head)
    return ()


def server_does_all(op: ListNamespacesOp) -> bool:
    """Whether the server's prefix and depth alone answer the op (no wildcard, no suffix)."""
    conditions = op.match_conditions or ()
    return all(c.match_type == "prefix" and "*" not in c.path for c in conditions) and (
        sum(c.match_type == "prefix" for c in conditions) <= 1
    )
