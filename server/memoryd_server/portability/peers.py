"""Import the files users leave other memory stores with: ``memoryd import-peer``.

Three formats, all written through the typed client so they work against any memoryd:

``langgraph``
    LangGraph ``BaseStore`` items as ``store.search(...)``/``Item.dict()`` dump them, or
    ``PostgresStore`` rows: a JSON list, ``{"items": [...]}`` (the LangGraph SDK's
    ``search_items``) or JSON Lines of ``{"namespace": [...], "key": ..., "value": {...},
    "created_at": ..., "updated_at": ..., "score"?: ...}``. A row's dotted ``"prefix"``
    stands in for ``"namespace"``; ``"expires_at"`` becomes the memory's ``expire_time``.

``mem0``
    ``Memory.get_all()`` output: ``{"results": [...]}`` (with ``"relations"`` when the
    graph store is on; those are not imported) or a bare list (or JSON Lines) of
    ``{"id", "memory", "hash", "metadata", "categories", "user_id", "agent_id", "run_id",
    "actor_id", "role", "created_at", "updated_at", ...}``.

``langchain``
    LangChain ``Document`` objects (a document loader's or text splitter's output),
    imported as documents (DocumentService), not memories: see ``peer_documents``.

Every memory is SEMANTIC with source kind SYSTEM: it was written by a tool, not
extracted by memoryd from one of its conversations, so there is no conversation,
message or extraction model to point at. What the peer knew that memoryd has no
field for (its create/update times: memoryd assigns ``create_time`` itself; mem0's
hash, run and actor; LangGraph's score) is kept under ``metadata["langgraph"]`` or
``metadata["mem0"]``, and listed in ``ImportReport.metadata_only_fields``.

Idempotency: batches go through ``BatchCreateMemories`` with a ``request_id``
derived from the file's sha256, the import options and the batch's items, so
rerunning an interrupted (or finished) import replays the batches that committed
instead of writing them again. The server forgets request ids after 24 hours, and
a changed file has another digest: when a batch then fails because a key is
already taken, that batch is written item by item with ``create(upsert=True)``,
replacing the memory holding each key (counted as ``updated``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import memoryd
from memoryd_server.portability.peer_documents import import_langchain, items_of
from memoryd_server.portability.peer_formats import (
    _FIELD_INDEX,
    _MAPPERS,
    FORMATS,
    MAX_BATCH,
    ImportReport,
    PeerFormatError,
    _Candidate,
    _items,
    _load,
    _Skip,
)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


def _bad_index(err: memoryd.MemorydError) -> int | None:
    """The batch position an InvalidArgument names (``memories[i].field``), if any."""
    for violation in err.field_violations:
        match = _FIELD_INDEX.match(violation.field)
        if match:
            return int(match.group(1))
    return None


def _write_batch(
    client: memoryd.Client,
    batch: list[_Candidate],
    tag: str,
    batch_index: int,
    report: ImportReport,
) -> None:
    """Write one batch; skip items the server rejects; upsert when keys are taken."""
    while batch:
        indices = [c.index for c in batch]
        request_id = f"import-peer:{tag[:32]}:b{batch_index}:{_digest(tag, indices)[:24]}"
        try:
            client.memories.batch_create([c.memory for c in batch], request_id=request_id)
        except memoryd.InvalidArgument as err:
            bad = _bad_index(err)
            if bad is None or bad >= len(batch):
                raise
            report.skipped.append((batch[bad].index, f"rejected by the server: {err.message}"))
            batch = batch[:bad] + batch[bad + 1 :]
            continue
        except memoryd.AlreadyExists:
            _upsert_each(client, batch, tag, report)
            return
        report.imported += len(batch)
        return


def _upsert_each(
    client: memoryd.Client, batch: list[_Candidate], tag: str, report: ImportReport
) -> None:
    for candidate in batch:
        request_id = (
            f"import-peer:{tag[:32]}:i{candidate.index}:{_digest(tag, candidate.index)[:24]}"
        )
        try:
            result = client.memories.create(
                candidate.memory, upsert=bool(candidate.memory.key), request_id=request_id
            )
        except memoryd.InvalidArgument as err:
            report.skipped.append((candidate.index, f"rejected by the server: {err.message}"))
            continue
        except memoryd.AlreadyExists as err:
            report.skipped.append((candidate.index, f"already exists: {err.message}"))
            continue
        report.imported += 1
        report.updated += result.updated


def import_peer(
    path: str | Path,
    fmt: str,
    client: memoryd.Client,
    *,
    namespace_prefix: Sequence[str] = (),
    batch_size: int = 500,
) -> ImportReport:
    """Import a LangGraph or Mem0 export file (memories), or LangChain documents, into the
    memoryd behind ``client``.

    Raises PeerFormatError when the file cannot be read as ``fmt`` (the message
    names the problem), ValueError for bad options, and ``memoryd.MemorydError``
    when the server fails a call; items that cannot be mapped are skipped and
    listed in the report.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1 to {MAX_BATCH}, not {batch_size}")
    prefix = list(namespace_prefix)
    if any(not s for s in prefix):
        raise ValueError(f"namespace prefix {prefix} has an empty segment")
    file = Path(path)
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise PeerFormatError(f"{file}: cannot read: {err.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PeerFormatError(f"{file}: not UTF-8 text (byte {err.start})") from None
    if fmt == "langchain":
        documents = items_of(_load(text, str(file)), str(file))
        report = ImportReport(format=fmt, path=str(file), total=len(documents))
        return import_langchain(documents, client, report, prefix or ["langchain"])
    items, notes = _items(_load(text, str(file)), fmt, str(file))
    signature = {"langgraph": ("key", "value"), "mem0": ("memory",)}[fmt]
    if items and not any(isinstance(i, dict) and all(f in i for f in signature) for i in items):
        fields = " and ".join(repr(f) for f in signature)
        raise PeerFormatError(
            f"{file}: none of its {len(items)} items has {fields}: not a {fmt} export"
            f" (is --format right?)"
        )
    report = ImportReport(format=fmt, path=str(file), total=len(items))
    # Identifies this import: the same file with the same options gives the same ids.
    tag = _digest(hashlib.sha256(raw).hexdigest(), fmt, prefix, batch_size)
    mapper = _MAPPERS[fmt]
    now = datetime.now(UTC)
    seen: dict[tuple[tuple[str, ...], str], int] = {}
    candidates: list[_Candidate] = []
    for index, item in enumerate(items):
        try:
            memory = mapper(item, prefix, report, now)
        except _Skip as skip:
            report.skipped.append((index, str(skip)))
            continue
        if memory.key:
            where = (tuple(memory.namespace), memory.key)
            if where in seen:
                report.skipped.append(
                    (index, f"duplicate of item {seen[where]} (same namespace and key)")
                )
                continue
            seen[where] = index
        candidates.append(_Candidate(index, memory))
    report.notes = list(dict.fromkeys([*notes, *report.notes]))
    for batch_index, start in enumerate(range(0, len(candidates), batch_size)):
        _write_batch(client, candidates[start : start + batch_size], tag, batch_index, report)
    report.skipped.sort()
    return report


# --- command line ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``import-peer`` options, for a subcommand parser."""
    parser.add_argument("--format", required=True, choices=FORMATS, help="the file's format")
    parser.add_argument("file", metavar="FILE", help="the export file (JSON or JSON Lines)")
    parser.add_argument("--addr", default="localhost:50051", help="memoryd's host:port")
    parser.add_argument("--api-key", default=None, help="API key (default: MEMORYD_API_KEY)")
    parser.add_argument(
        "--namespace-prefix",
        default="",
        metavar="A/B",
        help="segments put before every imported namespace, joined by '/'",
    )
    parser.add_argument("--batch-size", type=int, default=500, help="memories per batch")


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run ``import-peer`` with parsed ``args``; prints the summary, returns the exit code."""
    env = environ if environ is not None else {}
    api_key = args.api_key or env.get("MEMORYD_API_KEY") or None
    prefix = [s for s in args.namespace_prefix.split("/") if s]
    try:
        with memoryd.Client(args.addr, api_key=api_key) as client:
            report = import_peer(
                args.file,
                args.format,
                client,
                namespace_prefix=prefix,
                batch_size=args.batch_size,
            )
    except (PeerFormatError, ValueError) as err:
        print(f"memoryd import-peer: error: {err}", file=sys.stderr)
        return 2
    except memoryd.MemorydError as err:
        print(
            f"memoryd import-peer: error: the server failed the import ({err.code.name}):"
            f" {err.message}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 1
    print(report.summary())
    return 0


def main_import_peer(argv: Iterable[str] | None = None) -> int:
    """A standalone ``import-peer`` entry point (``python -m`` style); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="memoryd import-peer",
        description="Import a LangGraph or Mem0 export, or LangChain documents.",
    )
    add_arguments(parser)
    return run(parser.parse_args(None if argv is None else list(argv)), os.environ)


__all__ = [
    "FORMATS",
    "ImportReport",
    "PeerFormatError",
    "add_arguments",
    "import_peer",
    "main_import_peer",
    "run",
]
