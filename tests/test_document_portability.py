"""Documents in ``memoryd export``/``import`` (a lossless round trip, searchable after)
and in EraseUser (a user's documents, chunks and history go; others' stay)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

import memoryd
from memoryd_server.portability.export import export_tenant
from memoryd_server.portability.importer import import_tenant
from tests.conftest import ServerThread, TenantKeys

DIM = 384
DOC = "# Title\n\nFirst part with ünïcode.\n\n## Second\n\nSecond part, zebra.\n"


def _vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    v[0] = np.float32(0.1)  # not exact in binary: must survive unchanged
    return [float(x) for x in v]


def _export(url: str, tenant: str) -> list[str]:
    out = io.StringIO()
    export_tenant(url, tenant, out)
    return [line + "\n" for line in out.getvalue().split("\n")[:-1]]


@pytest.fixture
def client(auth_server: ServerThread, tenant: TenantKeys) -> Any:
    with memoryd.Client(auth_server.addr, api_key=tenant.member) as c:
        yield c


def test_documents_round_trip_through_export_and_import(
    client: memoryd.Client,
    tenant: TenantKeys,
    pg_uri: str,
    tmp_path: Path,
    db: psycopg.Connection[Any],
) -> None:
    client.documents.put(["docs"], "a.md", DOC, tags=["t"], metadata={"k": [1, 2.5]})
    client.documents.put(["docs"], "a.md", DOC + "\nMore.\n")  # a second version
    chunks = [
        memoryd.ChunkInput(0, 5, ("H",), _vector(1)),
        memoryd.ChunkInput(6, 11, (), _vector(2)),
    ]
    client.documents.put(["docs"], "v.txt", "hello world", chunks=chunks)
    lines = _export(pg_uri, tenant.tenant_id)
    kinds = [json.loads(line).get("kind") for line in lines[1:-1]]
    assert kinds.count("document") == 2
    assert kinds.count("document_chunk") == 4
    assert kinds.count("document_version") == 3

    target = f"imp-{tenant.tenant_id}"
    path = tmp_path / "export.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    assert import_tenant(pg_uri, target, path, batch_size=3).complete
    assert _export(pg_uri, target)[1:] == lines[1:]
    same = db.execute(
        "SELECT count(*) FROM document_chunks a JOIN document_chunks b ON a.id = b.id"
        " WHERE a.tenant_id = %s AND b.tenant_id = %s AND a.search_text = b.search_text"
        " AND a.embedding IS NOT DISTINCT FROM b.embedding",
        (tenant.tenant_id, target),
    ).fetchone()
    assert same == (4,)
    usage = db.execute(
        "SELECT kind, sum(n) FROM tenant_usage WHERE tenant_id = %s"
        " AND kind LIKE 'document%%' GROUP BY kind ORDER BY kind",
        (target,),
    ).fetchall()
    size = len((DOC + "\nMore.\n").encode()) + len(b"hello world")
    assert usage == [("document_bytes", size), ("documents", 2)]


def test_erase_user_takes_the_users_documents_only(
    auth_server: ServerThread, tenant: TenantKeys, uid: str, db: psycopg.Connection[Any]
) -> None:
    user, other = f"u-{uid}", f"o-{uid}"
    with (
        memoryd.Client(auth_server.addr, api_key=tenant.member) as c,
        memoryd.Client(auth_server.addr, api_key=tenant.admin) as admin,
    ):
        mine = c.documents.put(["e", uid], "mine.md", DOC, user_id=user).document
        c.documents.put(["e", uid], "mine.md", DOC + "v2", user_id=user)
        theirs = c.documents.put(["e", uid], "theirs.md", DOC, user_id=other).document
        # A document handed from the user to another keeps the user's old version.
        handed = c.documents.put(["e", uid], "handed.md", "secret of the user", user_id=user)
        c.documents.put(["e", uid], "handed.md", "now another's", user_id=other)
        receipt = admin.admin.erase_user(user)
        assert receipt.documents == 1
        with pytest.raises(memoryd.NotFound):
            c.documents.get(mine.id)
        assert c.documents.get(theirs.id).content == DOC
        assert c.documents.get(handed.document.id).content == "now another's"
    left = db.execute(
        "SELECT count(*) FROM document_chunks WHERE tenant_id = %s AND document_id = %s",
        (tenant.tenant_id, mine.id),
    ).fetchone()
    assert left == (0,)
    versions = db.execute(
        "SELECT version, content FROM document_versions WHERE tenant_id = %s"
        " AND document_id = %s ORDER BY version",
        (tenant.tenant_id, handed.document.id),
    ).fetchall()
    assert versions == [(2, "now another's")]
