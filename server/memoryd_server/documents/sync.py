"""``memoryd docs sync DIR --namespace A/B``: keep a folder of markdown and text files in step.

A client of a running server (through the typed client, like ``import-peer``):
every file under DIR whose name ends in .md, .markdown or .txt (hidden files
and folders left out) is a document at (namespace, its path relative to DIR,
with "/"). A file whose SHA-256 equals the stored document's content hash is
not sent at all; a new or changed one is put (the server re-chunks it); a
document of the namespace whose file is gone is deleted (unless
``--keep-deleted``). Only the namespace itself is synced, not namespaces under it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

import memoryd

SUFFIXES = (".md", ".markdown", ".txt")


@dataclass
class SyncReport:
    """What one sync did, by file path."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people, then one line per failed file."""
        counts = (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.unchanged)}"
            f" unchanged, {len(self.deleted)} deleted, {len(self.failed)} failed"
        )
        return "\n".join([counts, *(f"  {path}: {why}" for path, why in self.failed)])


def local_files(root: Path) -> dict[str, Path]:
    """The files to sync under ``root``, by their "/"-joined path relative to it."""
    found = {}
    for file in root.rglob("*"):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if file.is_file() and file.suffix.lower() in SUFFIXES:
            found[relative.as_posix()] = file
    return found


def sync_folder(
    client: memoryd.Client,
    root: Path,
    namespace: Sequence[str],
    *,
    delete: bool = True,
    chunk_tokens: int = 0,
    progress: bool | None = None,
) -> SyncReport:
    """Make the documents of ``namespace`` the files under ``root``.

    ``progress``: a bar on stderr (None: only when stderr is a terminal).
    Raises ``memoryd.MemorydError`` when the server fails a call for a reason
    other than the file (a rerun resumes: unchanged files are skipped).
    """
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    ns = list(namespace)
    scope = memoryd.DocumentFilter(namespace_prefix=ns)
    remote = {d.path: d for d in client.documents.iter(filter=scope) if list(d.namespace) == ns}
    files = local_files(root)
    report = SyncReport()
    paths = sorted(files)
    hide = None if progress is None else not progress  # None: tqdm's own choice (a terminal)
    bar = tqdm(paths, desc="docs sync", unit="file", disable=hide, file=sys.stderr)  # fmt: skip
    for path in bar:
        data = files[path].read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            report.failed.append((path, f"not UTF-8 text (byte {err.start})"))
            continue
        stored = remote.get(path)
        digest = hashlib.sha256(data).hexdigest()
        same_chunking = not chunk_tokens or (
            stored is not None and stored.chunk_tokens == chunk_tokens
        )
        if stored is not None and stored.content_hash == digest and same_chunking:
            report.unchanged.append(path)
            continue
        try:
            result = client.documents.put(
                ns, path, text, source_uri=files[path].resolve().as_uri(),
                chunk_tokens=chunk_tokens, request_id=f"docs-sync:{digest[:32]}:{_key(ns, path)}",
            )  # fmt: skip
        except memoryd.InvalidArgument as err:
            report.failed.append((path, err.message))
            continue
        (report.added if result.created else report.updated).append(path)
    bar.close()
    if delete:
        for path in sorted(set(remote) - set(files)):
            try:
                client.documents.delete(remote[path].id, expected_version=remote[path].version)
            except (memoryd.NotFound, memoryd.Aborted) as err:
                # Deleted or changed by someone else meanwhile: theirs to keep.
                report.failed.append((path, f"not deleted: {err.message}"))
                continue
            report.deleted.append(path)
    return report


def _key(namespace: Sequence[str], path: str) -> str:
    return hashlib.sha256("\x1f".join([*namespace, path]).encode()).hexdigest()[:32]


# --- command line ---------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``memoryd docs sync``."""
    docs = commands.add_parser("docs", help="keep documents in step with files")
    actions = docs.add_subparsers(dest="docs_command", required=True)
    sync = actions.add_parser(
        "sync", help="put new and changed markdown/text files of DIR, delete the documents of"
        " removed ones",
    )  # fmt: skip
    sync.add_argument("dir", type=Path, metavar="DIR", help="the folder to sync")
    sync.add_argument("--namespace", required=True, metavar="A/B",
                      help="the documents' namespace, segments joined by '/'")  # fmt: skip
    sync.add_argument("--addr", default="localhost:50051", help="memoryd's host:port")
    sync.add_argument("--api-key", default=None, help="API key (default: MEMORYD_API_KEY)")
    sync.add_argument("--chunk-tokens", type=int, default=0, metavar="N",
                      help="chunk size in tokens (default: the server's, 256)")  # fmt: skip
    sync.add_argument("--keep-deleted", action="store_true",
                      help="keep documents whose files are gone")  # fmt: skip
    bar = sync.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None,
                     help="always show the progress bar (default: on a terminal)")  # fmt: skip
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run ``docs sync``; prints the summary; 0 when every file synced, 1 if some failed."""
    namespace = [s for s in args.namespace.split("/") if s]
    if not namespace:
        print("memoryd docs sync: error: --namespace needs at least one segment", file=sys.stderr)
        return 2
    api_key = args.api_key or environ.get("MEMORYD_API_KEY") or None
    try:
        with memoryd.Client(args.addr, api_key=api_key, default_timeout=120.0) as client:
            report = sync_folder(
                client, args.dir, namespace, delete=not args.keep_deleted,
                chunk_tokens=args.chunk_tokens, progress=args.progress,
            )  # fmt: skip
    except ValueError as err:
        print(f"memoryd docs sync: error: {err}", file=sys.stderr)
        return 2
    except memoryd.MemorydError as err:
        print(
            f"memoryd docs sync: error: the server failed the sync ({err.code.name}):"
            f" {err.message}; rerun the same command to resume",
            file=sys.stderr,
        )
        return 1
    print(report.summary())
    return 1 if report.failed else 0
