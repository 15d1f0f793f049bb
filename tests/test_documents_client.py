"""``client.documents`` (sync and async) against the auth server: the typed path of
every DocumentService RPC, typed errors, tenant isolation and document quotas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

import memoryd

from .conftest import ServerThread, TenantKeys

DOC = "# Guide\n\nIntro words.\n\n## Setup\n\nInstall the kiwi package.\n\n## Use\n\nCall it.\n"


@pytest.fixture
def client(auth_server: ServerThread, tenant: TenantKeys) -> Iterator[memoryd.Client]:
    with memoryd.Client(auth_server.addr, api_key=tenant.member) as c:
        yield c


def test_sync_client_covers_the_service(client: memoryd.Client, uid: str) -> None:
    put = client.documents.put(["docs", uid], "guide.md", DOC, tags=["x"])
    assert put.created
    assert put.document.chunk_count == 3
    again = client.documents.put(["docs", uid], "guide.md", DOC, tags=["x"])
    assert not again.changed
    doc = client.documents.get(namespace=["docs", uid], path="guide.md")
    assert doc.content == DOC
    assert doc.id == put.document.id
    chunks = client.documents.list_chunks(doc.id).items
    assert [c.heading_path for c in chunks] == [("Guide",), ("Guide", "Setup"), ("Guide", "Use")]
    assert all(DOC[c.start_offset : c.end_offset] == c.content for c in chunks)
    hits = client.documents.search(
        query_text="kiwi",
        filter=memoryd.DocumentFilter(namespace_prefix=["docs", uid]),
        neighbor_chunks=1,
    )
    assert [h.chunk.heading_path for h in hits] == [("Guide", "Setup")]
    assert [c.index for c in hits[0].chunks_before] == [0]
    assert [c.index for c in hits[0].chunks_after] == [2]
    client.documents.put(["docs", uid], "other.txt", "plain")
    listed = list(
        client.documents.iter(
            filter=memoryd.DocumentFilter(namespace_prefix=["docs", uid]), page_size=1
        )
    )
    assert [d.path for d in listed] == ["guide.md", "other.txt"]
    deleted = client.documents.delete(doc.id)
    assert deleted.path == "guide.md"
    with pytest.raises(memoryd.NotFound):
        client.documents.get(doc.id)
    with pytest.raises(memoryd.InvalidArgument) as info:
        client.documents.put(["docs", uid], "bad", "x", media_type="image/png")
    assert info.value.field_violations[0].field == "document.media_type"


def test_large_content_goes_by_upload(client: memoryd.Client, uid: str) -> None:
    """Content over a gRPC message's default size is streamed without the caller asking."""
    content = "".join(f"## Part {i}\n\n" + "lorem ipsum dolor sit amet. " * 2000 for i in range(90))
    assert len(content) > 4 * 1024 * 1024
    # Megabytes are chunked and stored in seconds, more on a loaded machine: a deadline
    # to match, as the client's docs advise.
    result = client.documents.put(["docs", uid], "big.md", content, timeout=120)
    assert result.created
    assert result.document.size_bytes == len(content)
    assert client.documents.get(result.document.id).content == content


def test_async_client(auth_server: ServerThread, tenant: TenantKeys, uid: str) -> None:
    async def run() -> None:
        async with memoryd.AsyncClient(auth_server.addr, api_key=tenant.member) as c:
            put = await c.documents.put(["docs", uid], "a.md", DOC)
            uploaded = await c.documents.upload(["docs", uid], "b.md", DOC)
            assert uploaded.document.content_hash == put.document.content_hash
            got = await c.documents.get(put.document.id)
            assert got.content == DOC
            page = await c.documents.list(
                filter=memoryd.DocumentFilter(namespace_prefix=["docs", uid])
            )
            assert [d.path for d in page.items] == ["a.md", "b.md"]
            paths = [
                d.path
                async for d in c.documents.iter(
                    filter=memoryd.DocumentFilter(namespace_prefix=["docs", uid])
                )
            ]
            assert paths == ["a.md", "b.md"]
            chunks = await c.documents.list_chunks(put.document.id)
            assert len(chunks.items) == 3
            hits = await c.documents.search(query_text="kiwi", group_by_document=True)
            assert sorted(h.document.path for h in hits) == ["a.md", "b.md"]
            await c.documents.delete(put.document.id)
            with pytest.raises(memoryd.NotFound):
                await c.documents.delete(put.document.id)

    asyncio.run(run())


def test_other_tenants_never_see_documents(
    auth_server: ServerThread, tenant: TenantKeys, other_tenant: TenantKeys, uid: str
) -> None:
    with (
        memoryd.Client(auth_server.addr, api_key=tenant.member) as mine,
        memoryd.Client(auth_server.addr, api_key=other_tenant.admin) as theirs,
    ):
        doc = mine.documents.put(
            ["docs", uid], "secret.md", "# Secret\n\nplatypus codes\n"
        ).document
        with pytest.raises(memoryd.NotFound):
            theirs.documents.get(doc.id)
        with pytest.raises(memoryd.NotFound):
            theirs.documents.get(namespace=["docs", uid], path="secret.md")
        with pytest.raises(memoryd.NotFound):
            theirs.documents.list_chunks(doc.id)
        with pytest.raises(memoryd.NotFound):
            theirs.documents.delete(doc.id)
        with pytest.raises(memoryd.NotFound):
            theirs.documents.put(document_id=doc.id, content="overwrite")
        assert theirs.documents.search(query_text="platypus") == []
        assert theirs.documents.list().items == ()
        # The same path in the other tenant is its own document.
        own = theirs.documents.put(["docs", uid], "secret.md", "# Mine\n\nplatypus too\n")
        assert own.created
        assert mine.documents.get(doc.id).content == "# Secret\n\nplatypus codes\n"


def test_viewer_reads_but_cannot_write(
    auth_server: ServerThread, tenant: TenantKeys, uid: str
) -> None:
    with (
        memoryd.Client(auth_server.addr, api_key=tenant.member) as member,
        memoryd.Client(auth_server.addr, api_key=tenant.viewer) as viewer,
    ):
        doc = member.documents.put(["docs", uid], "r.md", DOC).document
        assert viewer.documents.get(doc.id).content == DOC
        with pytest.raises(memoryd.PermissionDenied):
            viewer.documents.put(["docs", uid], "w.md", DOC)
        with pytest.raises(memoryd.PermissionDenied):
            viewer.documents.delete(doc.id)


def test_document_quotas(
    auth_server: ServerThread, tenant: TenantKeys, pg_uri: str, uid: str
) -> None:
    """max_documents and max_document_bytes refuse a put beyond them; replacing within
    them works, and usage follows puts and deletes."""
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(
            "UPDATE tenants SET max_documents = 2, max_document_bytes = 1000 WHERE tenant_id = %s",
            (tenant.tenant_id,),
        )
    with (
        memoryd.Client(auth_server.addr, api_key=tenant.member) as c,
        memoryd.Client(auth_server.addr, api_key=tenant.admin) as admin,
    ):
        # The limits were set before either key was first used: no cache holds older ones.
        first = c.documents.put(["q", uid], "1.txt", "a" * 400)
        c.documents.put(["q", uid], "2.txt", "b" * 400)
        with pytest.raises(memoryd.ResourceExhausted, match="documents"):
            c.documents.put(["q", uid], "3.txt", "c")
        with pytest.raises(memoryd.ResourceExhausted, match="document_bytes"):
            c.documents.put(["q", uid], "1.txt", "a" * 700)
        c.documents.put(["q", uid], "1.txt", "a" * 500)  # 900 bytes in all
        usage = admin.admin.get_tenant(tenant.tenant_id).usage
        assert (usage.documents, usage.document_bytes) == (2, 900)
        c.documents.delete(first.document.id)
        c.documents.put(["q", uid], "3.txt", "c" * 500)
        usage = admin.admin.get_tenant(tenant.tenant_id).usage
        assert (usage.documents, usage.document_bytes) == (2, 900)
