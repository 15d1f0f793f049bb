"""Reading LangGraph and Mem0 export files and mapping their items onto memories.

The formats and what is kept where are described in ``portability.peers``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import memoryd

Format = Literal["langgraph", "mem0", "langchain"]
# langchain (documents, not memories) is read by peer_documents.py.
FORMATS: tuple[Format, ...] = ("langgraph", "mem0", "langchain")

MAX_BATCH = 10_000
MAX_NAMESPACE_DEPTH = 16
MAX_SEGMENT_CHARS = 128
MAX_KEY_CHARS = 256
MAX_ID_CHARS = 256
MAX_TAGS = 32
MAX_TAG_CHARS = 128

# Value fields that hold a LangGraph item's text, in order of preference.
_CONTENT_FIELDS = ("content", "text", "memory", "data")
# Mem0 item fields mapped to memoryd fields (everything else goes to metadata["mem0"]).
_MEM0_MAPPED = ("memory", "user_id", "agent_id", "categories", "metadata")
_MEM0_KEPT = ("id", "hash", "created_at", "updated_at", "run_id", "actor_id", "role")
_LANGGRAPH_MAPPED = ("namespace", "prefix", "key", "value", "expires_at")
_FIELD_INDEX = re.compile(r"^memories\[(\d+)\]")


class PeerFormatError(ValueError):
    """The file is not in the format asked for; the message names the problem."""


@dataclass
class ImportReport:
    """What an import did: counts, skipped items with reasons, fields kept only in metadata."""

    format: str
    path: str
    total: int = 0
    imported: int = 0
    updated: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    metadata_only_fields: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """A few lines for people: counts, then each skipped item and why."""
        lines = [
            f"{self.path} ({self.format}): {self.total} items, {self.imported} imported"
            + (f" ({self.updated} replaced existing keys)" if self.updated else "")
            + f", {self.skipped_count} skipped"
        ]
        if self.metadata_only_fields:
            kept = ", ".join(sorted(self.metadata_only_fields))
            lines.append(f"kept only in metadata[{self.format!r}]: {kept}")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.extend(f"skipped item {index}: {reason}" for index, reason in self.skipped)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Candidate:
    index: int
    memory: memoryd.NewMemory


class _Skip(Exception):
    """An item that cannot be imported; the message is the reason."""


# --- reading ------------------------------------------------------------------------


def _load(text: str, path: str) -> Any:
    """The JSON document in ``text``, or a list of its JSON Lines."""
    if not text.strip():
        raise PeerFormatError(f"{path}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise PeerFormatError(
                f"{path}: not JSON ({whole.msg} at line {whole.lineno} column {whole.colno})"
            ) from None
        items = []
        for number, line in lines:
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise PeerFormatError(
                    f"{path}: neither JSON nor JSON Lines (line {number}: {err.msg}"
                    f" at column {err.colno})"
                ) from None
        return items


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:8])
        return f"an object with keys [{keys}]"
    return f"a JSON {type(value).__name__}".replace("dict", "object").replace("str", "string")


def _items(doc: Any, fmt: Format, path: str) -> tuple[list[Any], list[str]]:
    """The items of a parsed file and notes on what else it held."""
    notes: list[str] = []
    if isinstance(doc, list):
        return doc, notes
    if isinstance(doc, dict):
        if fmt == "mem0" and isinstance(doc.get("results"), list):
            relations = doc.get("relations")
            if relations:
                notes.append(
                    f"{len(relations)} graph relations were not imported"
                    " (memoryd has no graph store)"
                )
            return list(doc["results"]), notes
        if fmt == "langgraph" and isinstance(doc.get("items"), list):
            return list(doc["items"]), notes
        if fmt == "langgraph" and "key" in doc and ("namespace" in doc or "prefix" in doc):
            return [doc], notes  # a single item (or JSON Lines of one line)
        if fmt == "mem0" and "memory" in doc and "id" in doc:
            return [doc], notes
    expected = {
        "langgraph": 'a list of LangGraph store items, {"items": [...]} or JSON Lines',
        "mem0": 'Mem0 get_all() output: {"results": [...]}, a list or JSON Lines',
    }[fmt]
    raise PeerFormatError(f"{path}: expected {expected}; got {_describe(doc)}")


# --- checks shared by both formats ----------------------------------------------------


def _text(name: str, value: Any, max_chars: int, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise _Skip(f"{name} is missing")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _Skip(f"{name} is {_describe(value)}, not a string")
    text = str(value)
    if len(text) > max_chars:
        raise _Skip(f"{name} is {len(text)} characters; memoryd allows {max_chars}")
    if "\x00" in text:
        raise _Skip(f"{name} contains a NUL character")
    return text


def _namespace(prefix: Sequence[str], segments: Any, name: str) -> list[str]:
    if not isinstance(segments, list | tuple):
        raise _Skip(f"{name} is {_describe(segments)}, not a list of strings")
    path = [*prefix, *segments]
    if not path:
        raise _Skip(f"{name} is empty (give --namespace-prefix to place such items)")
    if len(path) > MAX_NAMESPACE_DEPTH:
        raise _Skip(
            f"{name} has {len(path)} segments with the prefix; memoryd allows {MAX_NAMESPACE_DEPTH}"
        )
    for i, segment in enumerate(path):
        where = f"{name} segment {i - len(prefix)}" if i >= len(prefix) else "prefix"
        if not isinstance(segment, str) or not segment:
            raise _Skip(f"{where} is {_describe(segment)}; segments are non-empty strings")
        if len(segment) > MAX_SEGMENT_CHARS:
            raise _Skip(f"{where} is over {MAX_SEGMENT_CHARS} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in segment):
            raise _Skip(f"{where} contains control characters")
    return path


def _content(value: str) -> str:
    if not value.strip():
        raise _Skip("content is blank")
    if "\x00" in value:
        raise _Skip("content contains a NUL character")
    return value


def _json_safe(value: Any) -> bool:
    """True if ``value`` fits a protobuf Struct and jsonb (finite numbers, no NUL)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all("\x00" not in str(k) and _json_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_safe(v) for v in value)
    return True


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    if not _json_safe(data):
        raise _Skip("metadata holds NaN, Infinity or NUL characters, which memoryd rejects")
    return data


def _compact(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _time(value: Any) -> datetime | None:
    """An ISO 8601 time (naive: UTC), or None if ``value`` is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_SOURCE = memoryd.MemorySource(kind="system")


# --- LangGraph ------------------------------------------------------------------------


def _langgraph_content(value: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The content of an item's value and the rest of the value (its metadata)."""
    metadata = dict(value)
    for name in _CONTENT_FIELDS:
        candidate = value.get(name)
        # LangMem's {"kind": "Memory", "content": {"content": "..."}}.
        if isinstance(candidate, dict) and set(candidate) == {"content"}:
            candidate = candidate["content"]
        if isinstance(candidate, str) and candidate.strip():
            del metadata[name]
            return candidate, metadata
    return _compact(value), metadata


def _langgraph_expiry(expires_at: Any, now: datetime) -> datetime | None:
    if expires_at is None:
        return None
    expire_time = _time(expires_at)
    if expire_time is None:
        raise _Skip(f"expires_at {expires_at!r} is not an ISO 8601 time")
    if expire_time <= now:
        raise _Skip(f"expired at {expires_at}")
    return expire_time


def _langgraph(
    item: Any, prefix: Sequence[str], report: ImportReport, now: datetime
) -> memoryd.NewMemory:
    if not isinstance(item, dict):
        raise _Skip(f"item is {_describe(item)}, not a LangGraph store item")
    if "namespace" in item:
        namespace = _namespace(prefix, item["namespace"], "namespace")
    elif isinstance(item.get("prefix"), str):  # a PostgresStore row: "a.b.c"
        namespace = _namespace(prefix, item["prefix"].split("."), "prefix")
    else:
        raise _Skip("item has no namespace")
    key = _text("key", item.get("key"), MAX_KEY_CHARS, required=True)
    value = item.get("value")
    if isinstance(value, str):  # PostgresStore's jsonb read as text
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = {"content": value}
    if not isinstance(value, dict):
        raise _Skip(f"value is {_describe(value)}, not an object")
    if not value:
        raise _Skip("value is empty: no content to import")
    content, metadata = _langgraph_content(value)
    expire_time = _langgraph_expiry(item.get("expires_at"), now)
    extra = {k: v for k, v in item.items() if k not in _LANGGRAPH_MAPPED and v is not None}
    if extra:
        if "langgraph" in metadata:
            metadata["langgraph_value"] = metadata.pop("langgraph")
        metadata["langgraph"] = extra
        report.metadata_only_fields.update(extra)
    return memoryd.NewMemory(
        content=_content(content),
        namespace=namespace,
        key=key,
        memory_type="semantic",
        source=_SOURCE,
        metadata=_metadata(metadata),
        expire_time=expire_time,
        # When the peer stored it: recency and occur_time filters see its age.
        occur_time=_time(item.get("created_at")),
    )


# --- Mem0 -----------------------------------------------------------------------------


def _mem0(
    item: Any, prefix: Sequence[str], report: ImportReport, now: datetime
) -> memoryd.NewMemory:
    del now
    if not isinstance(item, dict):
        raise _Skip(f"item is {_describe(item)}, not a Mem0 memory")
    text = item.get("memory")
    if not isinstance(text, str) or not text.strip():
        raise _Skip("memory (the text) is missing or blank")
    user_id = _text("user_id", item.get("user_id"), MAX_ID_CHARS)
    agent_id = _text("agent_id", item.get("agent_id"), MAX_ID_CHARS)
    run_id = _text("run_id", item.get("run_id"), MAX_SEGMENT_CHARS)
    owner = user_id or agent_id or run_id or "shared"
    namespace = _namespace(prefix, ["mem0", owner], "namespace")
    key = _text("id", item.get("id"), MAX_KEY_CHARS)
    if not key:
        report.notes.append(
            "items without an id have no key: importing the file again after 24 hours"
            " would duplicate them"
        )
    metadata_in = item.get("metadata")
    if metadata_in is not None and not isinstance(metadata_in, dict):
        raise _Skip(f"metadata is {_describe(metadata_in)}, not an object")
    metadata = dict(metadata_in or {})
    categories = item.get("categories") or []
    if not isinstance(categories, list):
        categories = [categories]
    tags = [
        c
        for c in dict.fromkeys(categories)
        if isinstance(c, str) and c.strip() and len(c) <= MAX_TAG_CHARS and "\x00" not in c
    ]
    extra = {k: v for k, v in item.items() if k not in _MEM0_MAPPED and v is not None}
    if len(tags) != len(categories) or len(tags) > MAX_TAGS:
        extra["categories"] = categories  # the full list, since tags cannot hold it
        tags = tags[:MAX_TAGS]
    if extra:
        if "mem0" in metadata:
            metadata["mem0_metadata"] = metadata.pop("mem0")
        metadata["mem0"] = extra
        report.metadata_only_fields.update(k for k in extra if k != "id")
    return memoryd.NewMemory(
        content=_content(text),
        namespace=namespace,
        key=key,
        memory_type="semantic",
        source=_SOURCE,
        user_id=user_id,
        agent_id=agent_id,
        tags=tags,
        metadata=_metadata(metadata),
        occur_time=_time(item.get("created_at")),
    )


_MAPPERS: dict[str, Callable[[Any, Sequence[str], ImportReport, datetime], memoryd.NewMemory]] = {
    "langgraph": _langgraph,
    "mem0": _mem0,
}


# --- writing --------------------------------------------------------------------------
