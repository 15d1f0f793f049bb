"""``memoryd docs sync``: a folder kept in step (new, changed, unchanged, deleted files),
through the real command against the auth server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import memoryd
from tests.conftest import ServerThread, TenantKeys


def _sync(addr: str, key: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMORYD_API_KEY": key}
    command = [sys.executable, "-m", "memoryd_server", "docs", "sync", str(folder), "--addr",
               addr, *args]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_sync_puts_changes_and_deletes(
    auth_server: ServerThread, tenant: TenantKeys, tmp_path: Path, uid: str
) -> None:
    folder = tmp_path / "notes"
    (folder / "guides").mkdir(parents=True)
    (folder / "readme.md").write_text("# Readme\n\nHello.\n", encoding="utf-8")
    (folder / "guides" / "install.md").write_text("# Install\n\nRun it. ✓\n", encoding="utf-8")
    (folder / "todo.txt").write_text("buy kiwis\n", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG")  # not a document
    (folder / ".hidden.md").write_text("# Hidden\n", encoding="utf-8")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    ns = f"sync/{uid}"

    first = _sync(auth_server.addr, tenant.member, folder, "--namespace", ns, "--progress")
    assert first.returncode == 1, first.stderr  # the Latin-1 file failed
    assert first.stdout.startswith("3 added, 0 updated, 0 unchanged, 0 deleted, 1 failed")
    assert "latin1.txt: not UTF-8 text (byte 3)" in first.stdout
    assert "docs sync" in first.stderr  # the progress bar
    assert "4/4" in first.stderr

    (folder / "latin1.txt").unlink()
    (folder / "todo.txt").write_text("buy kiwis and figs\n", encoding="utf-8")
    (folder / "readme.md").unlink()
    (folder / "new.markdown").write_text("New file.\n", encoding="utf-8")
    second = _sync(auth_server.addr, tenant.member, folder, "--namespace", ns, "--no-progress")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "1 added, 1 updated, 1 unchanged, 1 deleted, 0 failed"
    assert second.stderr == ""

    with memoryd.Client(auth_server.addr, api_key=tenant.member) as client:
        docs = list(
            client.documents.iter(filter=memoryd.DocumentFilter(namespace_prefix=["sync", uid]))
        )
        assert [d.path for d in docs] == ["guides/install.md", "new.markdown", "todo.txt"]
        todo = client.documents.get(namespace=["sync", uid], path="todo.txt")
        assert todo.content == "buy kiwis and figs\n"
        assert todo.version == 2
        assert todo.source_uri == (folder / "todo.txt").resolve().as_uri()
        assert docs[1].media_type == "text/markdown"

    third = _sync(auth_server.addr, tenant.member, folder, "--namespace", ns, "--no-progress")
    assert third.stdout.strip() == "0 added, 0 updated, 3 unchanged, 0 deleted, 0 failed"


def test_sync_refuses_a_viewer_and_a_missing_folder(
    auth_server: ServerThread, tenant: TenantKeys, tmp_path: Path
) -> None:
    (tmp_path / "a.md").write_text("# A\n", encoding="utf-8")
    denied = _sync(auth_server.addr, tenant.viewer, tmp_path, "--namespace", "x")
    assert denied.returncode == 1
    assert "PERMISSION_DENIED" in denied.stderr
    missing = _sync(auth_server.addr, tenant.member, tmp_path / "nope", "--namespace", "x")
    assert missing.returncode == 2
    assert "is not a directory" in missing.stderr
