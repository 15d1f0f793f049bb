"""``memoryd import-peer --format langchain``: LangChain documents into DocumentService.

The file holds LangChain ``Document`` objects as ``doc.model_dump()`` or
``{"page_content", "metadata", "id"}`` dicts write them, or as
``langchain_core.load.dumpd(doc)`` writes them (``{"lc": 1, "kwargs": {...}}``):
a JSON list, ``{"documents": [...]}`` or JSON Lines. Text splitters cut files
into many such documents, so they are grouped back by ``metadata["source"]``:
the pieces of one source become one memoryd document at path = the source, put
together by ``metadata["start_index"]`` when every piece has one (overlaps
merged), else joined by blank lines in file order; the server chunks (and
embeds) it again. A piece without a source is a document of its own, at its
``id`` or ``item-N``. The first piece's metadata (without source and
start_index) becomes the document's; the pieces' ids and count go under
``metadata["langchain"]``. Puts are idempotent by content (no request_id is
needed), so a rerun changes nothing that is already there and reports it so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import memoryd
from memoryd_server.portability.peer_formats import ImportReport, PeerFormatError, _describe, _Skip

MAX_PATH_CHARS = 1024


@dataclass
class _Source:
    path: str
    source_uri: str
    pieces: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


def _piece(item: Any) -> tuple[str, dict[str, Any], str]:
    """(page_content, metadata, id) of one LangChain document; _Skip if it is none."""
    if isinstance(item, dict) and item.get("lc") == 1 and isinstance(item.get("kwargs"), dict):
        item = item["kwargs"]
    if not isinstance(item, dict) or not isinstance(item.get("page_content"), str):
        raise _Skip("not a LangChain document (no page_content string)")
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _Skip("its metadata is not an object")
    doc_id = item.get("id")
    return item["page_content"], metadata, doc_id if isinstance(doc_id, str) else ""


def items_of(doc: Any, path: str) -> list[Any]:
    """The LangChain documents of a parsed file."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("documents"), list):
        return list(doc["documents"])
    if isinstance(doc, dict) and ("page_content" in doc or doc.get("lc") == 1):
        return [doc]
    raise PeerFormatError(
        f'{path}: expected LangChain documents: a list, {{"documents": [...]}} or JSON Lines;'
        f" got {_describe(doc)}"
    )


def _merged(pieces: list[tuple[int, str, dict[str, Any]]]) -> str:
    """The source's text: by start_index when all pieces have one (overlaps merged, gaps
    left as newlines), else the pieces joined by blank lines."""
    starts = [m.get("start_index") for _, _, m in pieces]
    placed = [(s, c) for s, (_, c, _) in zip(starts, pieces, strict=True) if isinstance(s, int)]
    if len(placed) < len(pieces) or any(s < 0 for s, _ in placed):
        return "\n\n".join(content for _, content, _ in pieces)
    text = ""
    for start, content in sorted(placed, key=lambda p: p[0]):
        if text and start > len(text):
            text += "\n" * (start - len(text))
        text += content[max(len(text) - start, 0) :]
    return text


def _group(items: list[Any], report: ImportReport) -> list[_Source]:
    sources: dict[str, _Source] = {}
    for index, item in enumerate(items):
        try:
            content, metadata, doc_id = _piece(item)
        except _Skip as skip:
            report.skipped.append((index, str(skip)))
            continue
        source = metadata.get("source")
        if isinstance(source, str) and source.strip():
            path = source.removeprefix("file://")[-MAX_PATH_CHARS:]
            uri = source
        else:
            path, uri = doc_id or f"item-{index}", ""
        path = "".join(ch if ch.isprintable() else "?" for ch in path)
        group = sources.setdefault(path, _Source(path, uri))
        group.pieces.append((index, content, metadata))
        if doc_id:
            group.ids.append(doc_id)
    return list(sources.values())


def import_langchain(
    items: list[Any], client: memoryd.Client, report: ImportReport, namespace: Sequence[str]
) -> ImportReport:
    """Put the documents of ``items`` (already read from the file) under ``namespace``."""
    groups = _group(items, report)
    pieces = sum(len(g.pieces) for g in groups)
    if pieces:
        report.notes.append(f"{pieces} pieces grouped into {len(groups)} documents by source")
    for group in groups:
        first = group.pieces[0][2]
        metadata = {k: v for k, v in first.items() if k not in {"source", "start_index"}}
        metadata["langchain"] = {"pieces": len(group.pieces), "ids": group.ids[:100]}
        content = _merged(group.pieces)
        try:
            result = client.documents.put(
                list(namespace), group.path, content, source_uri=group.source_uri[:2048],
                metadata=metadata,
            )  # fmt: skip
        except memoryd.InvalidArgument as err:
            for index, _, _ in group.pieces:
                report.skipped.append((index, f"rejected by the server: {err.message}"))
            continue
        if result.changed:
            report.imported += len(group.pieces)
            report.updated += 0 if result.created else len(group.pieces)
        else:
            report.notes.append(f"{group.path}: already stored, unchanged")
    report.skipped.sort()
    return report
