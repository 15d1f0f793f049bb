"""DocumentService through the generated stubs: put, re-put, replace, upload, get, list,
delete, chunks and search.

Each test keeps to its own namespace ``["d", uid]``; the session server has no
embedder, so vectors come from the test (caller-made chunks) and server-made
chunks are found by text.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from google.protobuf import struct_pb2

from memoryd.v1 import document_pb2 as pb
from memoryd.v1 import document_pb2_grpc
from memoryd.v1 import search_pb2 as spb
from memoryd_server.config import Settings
from tests.conftest import ServerThread, assert_status

DIM = 384
Stub = document_pb2_grpc.DocumentServiceStub
Db = psycopg.Connection[Any]

MARKDOWN = """# Handbook

Welcome to the handbook.

## Install

Run the installer. Then restart the machine.

## Usage

### Search

Search finds chunks by meaning and by words: zebra crossing.
"""


@pytest.fixture(scope="module")
def stub(grpc_create_channel: Callable[..., grpc.Channel]) -> Iterator[Stub]:
    with grpc_create_channel() as channel:
        yield document_pb2_grpc.DocumentServiceStub(channel)


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


def put(
    stub: Stub, uid: str, path: str = "guide.md", content: str = MARKDOWN, **fields: Any
) -> pb.PutDocumentResponse:
    chunking = fields.pop("chunking", None)
    chunks = fields.pop("chunks", None)
    request_id = fields.pop("request_id", "")
    doc = pb.Document(namespace=["d", uid], path=path, content=content, **fields)
    response: pb.PutDocumentResponse = stub.PutDocument(
        pb.PutDocumentRequest(document=doc, chunking=chunking, chunks=chunks, request_id=request_id)
    )
    return response


def chunks_of(stub: Stub, document_id: str) -> list[pb.Chunk]:
    return list(stub.ListChunks(pb.ListChunksRequest(document_id=document_id)).chunks)


# -- put, chunking -------------------------------------------------------------


def test_put_chunks_markdown_by_heading_with_paths_and_offsets(stub: Stub, uid: str) -> None:
    """Each heading starts a chunk; a title with no body joins its first section; every
    chunk is content[start:end] and carries its heading path."""
    response = put(stub, uid, tags=["a", "b"], source_uri="file:///guide.md")
    doc = response.document
    assert response.created
    assert response.changed
    assert doc.version == 1
    assert doc.media_type == "text/markdown"
    assert doc.title == "Handbook"
    assert doc.size_bytes == len(MARKDOWN.encode())
    assert len(doc.content_hash) == 64
    assert doc.content == ""  # responses of puts carry no content
    chunks = chunks_of(stub, doc.id)
    assert doc.chunk_count == len(chunks) == 3
    assert [list(c.heading_path) for c in chunks] == [
        ["Handbook"],
        ["Handbook", "Install"],
        ["Handbook", "Usage", "Search"],
    ]
    for i, c in enumerate(chunks):
        assert c.index == i
        assert c.document_version == 1
        assert MARKDOWN[c.start_offset : c.end_offset] == c.content
    assert chunks[0].content.startswith("# Handbook")
    assert "Welcome" in chunks[0].content
    assert chunks[2].content.startswith("## Usage")


def test_token_budget_splits_with_overlap(stub: Stub, uid: str) -> None:
    """A section over the budget becomes several chunks, each within it, overlapping."""
    words = " ".join(f"w{i}" for i in range(300))
    doc = put(
        stub,
        uid,
        "long.txt",
        words,
        chunking=pb.ChunkingOptions(chunk_tokens=50, overlap_tokens=10),
    ).document
    assert doc.media_type == "text/plain"
    chunks = chunks_of(stub, doc.id)
    assert len(chunks) == 8  # 300 tokens, a step of 40
    assert all(c.token_count <= 50 and not c.heading_path for c in chunks)
    for a, b in itertools.pairwise(chunks):
        assert a.content.split()[-10:] == b.content.split()[:10]
    assert chunks[0].start_offset == 0
    assert chunks[-1].end_offset == len(words)
    no_overlap = put(
        stub,
        uid,
        "long2.txt",
        words,
        chunking=pb.ChunkingOptions(chunk_tokens=50, overlap_tokens=0),
    ).document
    assert [c.token_count for c in chunks_of(stub, no_overlap.id)] == [50] * 6


def test_offsets_count_code_points_not_bytes(stub: Stub, uid: str) -> None:
    content = "# Überblick\n\n漢字とかなの文章。🙂 emoji\n\n# Zweiter Teil\n\nnoch ein Satz\n"
    doc = put(stub, uid, "unicode.md", content).document
    chunks = chunks_of(stub, doc.id)
    assert [c.content for c in chunks] == [content[c.start_offset : c.end_offset] for c in chunks]
    assert chunks[1].start_offset == content.index("# Zweiter")


def test_reput_unchanged_is_a_no_op(stub: Stub, uid: str, db: Db) -> None:
    first = put(stub, uid).document
    ids = [c.id for c in chunks_of(stub, first.id)]
    again = put(stub, uid)
    assert not again.changed
    assert not again.created
    assert again.document.version == 1
    assert again.document.update_time == first.update_time
    assert [c.id for c in chunks_of(stub, first.id)] == ids
    versions = db.execute(
        "SELECT count(*) FROM document_versions WHERE document_id = %s", (first.id,)
    ).fetchone()
    assert versions == (1,)


def test_changed_fields_only_keep_the_chunks(stub: Stub, uid: str) -> None:
    first = put(stub, uid).document
    ids = [c.id for c in chunks_of(stub, first.id)]
    changed = put(stub, uid, tags=["new"], title="Another title")
    assert changed.changed
    assert changed.document.version == 2
    assert list(changed.document.tags) == ["new"]
    assert changed.document.title == "Another title"
    assert [c.id for c in chunks_of(stub, first.id)] == ids


def test_changed_content_replaces_every_chunk(stub: Stub, uid: str, db: Db) -> None:
    first = put(stub, uid).document
    old_ids = {c.id for c in chunks_of(stub, first.id)}
    second = put(stub, uid, content="# New\n\nOnly one section now.\n")
    assert second.changed
    assert not second.created
    assert second.document.id == first.id
    assert second.document.version == 2
    chunks = chunks_of(stub, first.id)
    assert len(chunks) == 1
    assert chunks[0].document_version == 2
    assert not old_ids & {c.id for c in chunks}
    rows = db.execute(
        "SELECT version, content FROM document_versions WHERE document_id = %s ORDER BY version",
        (first.id,),
    ).fetchall()
    assert [r[0] for r in rows] == [1, 2]
    assert rows[0][1] == MARKDOWN


def test_put_by_id_and_expected_version(stub: Stub, uid: str) -> None:
    doc = put(stub, uid).document
    by_id = stub.PutDocument(
        pb.PutDocumentRequest(
            document=pb.Document(id=doc.id, content="replaced by id"), expected_version=1
        )
    )
    assert by_id.document.version == 2
    assert by_id.document.path == "guide.md"
    assert by_id.document.media_type == "text/markdown"  # the stored path's, not an empty one's
    assert_status(
        lambda: stub.PutDocument(
            pb.PutDocumentRequest(
                document=pb.Document(id=doc.id, content="stale"), expected_version=1
            )
        ),
        grpc.StatusCode.ABORTED,
    )
    assert_status(
        lambda: stub.PutDocument(
            pb.PutDocumentRequest(
                document=pb.Document(namespace=["d", uid], path="new.md", content="x"),
                expected_version=3,
            )
        ),
        grpc.StatusCode.ABORTED,
    )
    missing = "01900000-0000-7000-8000-000000000000"
    assert_status(
        lambda: stub.PutDocument(
            pb.PutDocumentRequest(document=pb.Document(id=missing, content="x"))
        ),
        grpc.StatusCode.NOT_FOUND,
    )


def test_request_id_replays(stub: Stub, uid: str) -> None:
    first = put(stub, uid, request_id=f"put-{uid}")
    again = put(stub, uid, request_id=f"put-{uid}")
    assert again.document.id == first.document.id
    assert again.document.version == 1
    assert_status(
        lambda: put(stub, uid, content="other", request_id=f"put-{uid}"),
        grpc.StatusCode.ALREADY_EXISTS,
    )


def test_caller_chunks_with_vectors_are_searched_by_vector(stub: Stub, uid: str) -> None:
    content = "alpha part. beta part. gamma part."
    spans = [(0, 11), (12, 22), (23, 34)]
    chunks = [
        pb.ChunkInput(start_offset=s, end_offset=e, heading_path=["H"], embedding=unit(1000 + i))
        for i, (s, e) in enumerate(spans)
    ]
    doc = put(stub, uid, "vec.txt", content, chunks=chunks).document
    stored = chunks_of(stub, doc.id)
    assert [c.content for c in stored] == ["alpha part.", "beta part.", "gamma part."]
    response = stub.SearchDocuments(
        pb.SearchDocumentsRequest(
            query_embedding=unit(1001),
            filter=pb.DocumentFilter(namespace_prefix=["d", uid]),
            top_k=3,
            neighbor_chunks=1,
        )
    )
    assert response.mode == spb.SEARCH_MODE_VECTOR
    best = response.results[0]
    assert best.chunk.content == "beta part."
    assert best.vector_rank == 1
    assert best.similarity_score == pytest.approx(1.0, abs=1e-4)
    assert best.document.id == doc.id
    assert best.document.path == "vec.txt"
    assert [c.content for c in best.chunks_before] == ["alpha part."]
    assert [c.content for c in best.chunks_after] == ["gamma part."]


def test_text_search_with_heading_path_and_group_by_document(stub: Stub, uid: str) -> None:
    put(stub, uid, "a.md")
    put(stub, uid, "b.md", "# Zebra\n\nzebra zebra zebra crossing\n\n# Other\n\nzebra again\n")
    response = stub.SearchDocuments(
        pb.SearchDocumentsRequest(
            query_text="zebra", filter=pb.DocumentFilter(namespace_prefix=["d", uid])
        )
    )
    assert response.mode == spb.SEARCH_MODE_TEXT
    assert len(response.results) == 3
    assert response.results[0].document.path == "b.md"
    grouped = stub.SearchDocuments(
        pb.SearchDocumentsRequest(
            query_text="zebra",
            filter=pb.DocumentFilter(namespace_prefix=["d", uid]),
            group_by_document=True,
        )
    )
    assert sorted(r.document.path for r in grouped.results) == ["a.md", "b.md"]
    handbook = next(r for r in grouped.results if r.document.path == "a.md")
    assert list(handbook.chunk.heading_path) == ["Handbook", "Usage", "Search"]


def test_get_list_delete(stub: Stub, uid: str) -> None:
    a = put(
        stub,
        uid,
        "a.md",
        metadata=struct_pb2.Struct(fields={"team": struct_pb2.Value(string_value="x")}),
    ).document
    put(stub, uid, "b.txt", "plain text", tags=["t1"])
    put(stub, uid, "sub/c.md", "# C\n\ncee")
    got = stub.GetDocument(pb.GetDocumentRequest(document_id=a.id)).document
    assert got.content == MARKDOWN
    assert got.version == 1
    by_path = stub.GetDocument(
        pb.GetDocumentRequest(namespace=["d", uid], path="a.md", skip_content=True)
    ).document
    assert by_path.id == a.id
    assert by_path.content == ""
    ns = pb.DocumentFilter(namespace_prefix=["d", uid])
    listed = stub.ListDocuments(pb.ListDocumentsRequest(filter=ns, page_size=2))
    assert [d.path for d in listed.documents] == ["a.md", "b.txt"]
    assert listed.next_page_token
    rest = stub.ListDocuments(
        pb.ListDocumentsRequest(filter=ns, page_size=2, page_token=listed.next_page_token)
    )
    assert [d.path for d in rest.documents] == ["sub/c.md"]
    assert not rest.next_page_token

    def paths(**f: Any) -> list[str]:
        fl = pb.DocumentFilter(namespace_prefix=["d", uid], **f)
        return [d.path for d in stub.ListDocuments(pb.ListDocumentsRequest(filter=fl)).documents]

    assert paths(path_prefix="sub/") == ["sub/c.md"]
    assert paths(tags_any=["t1"]) == ["b.txt"]
    assert paths(media_types=["text/plain"]) == ["b.txt"]
    assert paths(
        metadata=struct_pb2.Struct(fields={"team": struct_pb2.Value(string_value="x")})
    ) == ["a.md"]
    deleted = stub.DeleteDocument(pb.DeleteDocumentRequest(document_id=a.id))
    assert deleted.document.id == a.id
    assert_status(
        lambda: stub.GetDocument(pb.GetDocumentRequest(document_id=a.id)), grpc.StatusCode.NOT_FOUND
    )
    assert_status(
        lambda: stub.ListChunks(pb.ListChunksRequest(document_id=a.id)), grpc.StatusCode.NOT_FOUND
    )
    assert_status(
        lambda: stub.DeleteDocument(pb.DeleteDocumentRequest(document_id=a.id)),
        grpc.StatusCode.NOT_FOUND,
    )


def test_upload_streams_a_large_document(stub: Stub, uid: str) -> None:
    """UploadDocument takes content in pieces, even split inside a character."""
    section = "## Part {}\n\n" + "Ünïcödé words and more words. " * 400 + "\n\n"
    content = "# Big\n\n" + "".join(section.format(i) for i in range(60))
    data = content.encode()
    assert len(data) > 4 * 1024 * 1024 - 3_500_000  # several pieces of 64 KiB

    def messages() -> Iterator[pb.UploadDocumentRequest]:
        yield pb.UploadDocumentRequest(
            header=pb.PutDocumentRequest(document=pb.Document(namespace=["d", uid], path="big.md"))
        )
        for i in range(0, len(data), 65_537):  # odd pieces end inside characters
            yield pb.UploadDocumentRequest(content=data[i : i + 65_537])

    response = stub.UploadDocument(messages())
    assert response.created
    assert response.document.size_bytes == len(data)
    got = stub.GetDocument(pb.GetDocumentRequest(document_id=response.document.id)).document
    assert got.content == content
    assert response.document.chunk_count > 60


def test_search_sees_one_version_while_a_document_is_replaced(stub: Stub, uid: str) -> None:
    """Searches running during replacements find every chunk of one version only."""

    def version_text(v: int) -> str:
        return "\n\n".join(f"# S{i}\n\nversion{v} shared words here" for i in range(20))

    doc = put(stub, uid, "race.md", version_text(0)).document
    stop = threading.Event()

    def replace() -> None:
        v = 1
        while not stop.is_set():
            put(stub, uid, "race.md", version_text(v))
            v += 1

    writer = threading.Thread(target=replace)
    writer.start()
    try:
        seen = 0
        for _ in range(40):
            response = stub.SearchDocuments(
                pb.SearchDocumentsRequest(
                    query_text="shared words",
                    top_k=100,
                    neighbor_chunks=2,
                    filter=pb.DocumentFilter(namespace_prefix=["d", uid]),
                )
            )
            versions = {r.chunk.document_version for r in response.results}
            versions |= {
                c.document_version
                for r in response.results
                for c in [*r.chunks_before, *r.chunks_after]
            }
            assert len(versions) == 1, versions
            assert len(response.results) == 20
            assert {r.document.version for r in response.results} == versions
            seen += 1
    finally:
        stop.set()
        writer.join()
    assert seen == 40
    final = stub.GetDocument(pb.GetDocumentRequest(document_id=doc.id, skip_content=True))
    assert final.document.version > 2


# -- bad input -----------------------------------------------------------------


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (pb.Document(namespace=["d"], path="x.md", content=""), "document.content"),
        (pb.Document(namespace=["d"], path="x.md", content=" \n\t"), "document.content"),
        (pb.Document(namespace=["d"], path="", content="x"), "document.path"),
        (pb.Document(namespace=[], path="x.md", content="x"), "document.namespace"),
        (pb.Document(namespace=["d"], path="x\n.md", content="x"), "document.path"),
        (pb.Document(namespace=["d"], path="ü" * 1025, content="x"), "document.path"),
        (
            pb.Document(namespace=["d"], path="x", content="x", media_type="application/pdf"),
            "document.media_type",
        ),
        (pb.Document(namespace=["d"], path="x", content="a\x00b"), "document.content"),
        (pb.Document(namespace=["d"], path="x", content="x", title="ß" * 1025), "document.title"),
        (pb.Document(namespace=["d"], path="x", content="x", id="not-a-uuid"), "document.id"),
    ],
)
def test_bad_documents(stub: Stub, document: pb.Document, field: str) -> None:
    assert_status(
        lambda: stub.PutDocument(pb.PutDocumentRequest(document=document)), INVALID, field=field
    )


def test_bad_chunking_and_chunks(stub: Stub, uid: str) -> None:
    doc = pb.Document(namespace=["d", uid], path="x.txt", content="äöü text")
    for options, field in [
        (pb.ChunkingOptions(chunk_tokens=8), "chunking.chunk_tokens"),
        (pb.ChunkingOptions(chunk_tokens=4096), "chunking.chunk_tokens"),
        (pb.ChunkingOptions(chunk_tokens=64, overlap_tokens=33), "chunking.overlap_tokens"),
    ]:
        assert_status(
            lambda o=options: stub.PutDocument(pb.PutDocumentRequest(document=doc, chunking=o)),
            INVALID,
            field=field,
        )
    for chunk, field in [
        (pb.ChunkInput(start_offset=0, end_offset=9), "chunks[0].end_offset"),
        (pb.ChunkInput(start_offset=3, end_offset=3), "chunks[0].end_offset"),
        (pb.ChunkInput(start_offset=0, end_offset=2, embedding=[0.5] * 3), "chunks[0].embedding"),
        (
            pb.ChunkInput(start_offset=0, end_offset=2, embedding=[float("nan")] * DIM),
            "chunks[0].embedding",
        ),
    ]:
        assert_status(
            lambda c=chunk: stub.PutDocument(pb.PutDocumentRequest(document=doc, chunks=[c])),
            INVALID,
            field=field,
        )


def test_upload_bad_streams(stub: Stub, uid: str) -> None:
    header = pb.UploadDocumentRequest(
        header=pb.PutDocumentRequest(document=pb.Document(namespace=["d", uid], path="u.md"))
    )
    bad_utf8 = [header, pb.UploadDocumentRequest(content=b"ok \xff\xfe not utf-8")]
    assert_status(lambda: stub.UploadDocument(iter(bad_utf8)), INVALID, field="content")
    cut = [header, pb.UploadDocumentRequest(content="é".encode()[:1])]
    assert_status(lambda: stub.UploadDocument(iter(cut)), INVALID, field="content")
    assert_status(
        lambda: stub.UploadDocument(iter([pb.UploadDocumentRequest(content=b"x")])),
        INVALID,
        field="header",
    )
    assert_status(lambda: stub.UploadDocument(iter([header, header])), INVALID, field="header")
    assert_status(lambda: stub.UploadDocument(iter([])), INVALID, field="header")
    assert_status(lambda: stub.UploadDocument(iter([header])), INVALID, field="document.content")


def test_bad_searches(stub: Stub) -> None:
    for request, field in [
        (pb.SearchDocumentsRequest(), "query_embedding"),
        (pb.SearchDocumentsRequest(query_text="x", top_k=101), "top_k"),
        (pb.SearchDocumentsRequest(query_text="x", neighbor_chunks=6), "neighbor_chunks"),
        (pb.SearchDocumentsRequest(query_embedding=[1.0, 2.0]), "query_embedding"),
        (
            pb.SearchDocumentsRequest(query_text="x", weights=pb.DocumentRankingWeights(text=-1)),
            "weights.text",
        ),
        (pb.SearchDocumentsRequest(query_text="ö" * 4097), "query_text"),
    ]:
        assert_status(lambda r=request: stub.SearchDocuments(r), INVALID, field=field)
    assert_status(
        lambda: stub.SearchDocuments(
            pb.SearchDocumentsRequest(query_text="x", mode=spb.SEARCH_MODE_VECTOR)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_limits_hold_in_bytes(stub: Stub) -> None:
    """A namespace and path within their character limits but over the index's bytes."""
    namespace = ["漢" * 128] * 16
    assert_status(
        lambda: stub.PutDocument(
            pb.PutDocumentRequest(
                document=pb.Document(namespace=namespace, path="字" * 1024, content="x")
            )
        ),
        INVALID,
        field="document.namespace",
    )


@pytest.fixture(scope="module")
def small_server(test_settings: Settings, memoryd_server: ServerThread) -> Iterator[Stub]:
    """A server whose documents hold at most 1,000 bytes."""
    del memoryd_server  # it migrated the database
    server = ServerThread(test_settings.replace(max_document_bytes=1000))
    try:
        with grpc.insecure_channel(server.addr) as channel:
            yield document_pb2_grpc.DocumentServiceStub(channel)
    finally:
        server.stop()


def test_document_size_limit_counts_utf8_bytes(small_server: Stub, uid: str) -> None:
    ok = pb.Document(namespace=["d", uid], path="fits.txt", content="é" * 500)  # 1,000 bytes
    assert small_server.PutDocument(pb.PutDocumentRequest(document=ok)).created
    over = pb.Document(namespace=["d", uid], path="over.txt", content="é" * 500 + "x")
    err = assert_status(
        lambda: small_server.PutDocument(pb.PutDocumentRequest(document=over)),
        INVALID,
        field="document.content",
    )
    assert "1001 bytes" in (err.details() or "")

    def stream() -> Iterator[pb.UploadDocumentRequest]:
        yield pb.UploadDocumentRequest(
            header=pb.PutDocumentRequest(document=pb.Document(namespace=["d", uid], path="u.txt"))
        )
        for _ in range(100):  # stops at the first piece past the limit
            yield pb.UploadDocumentRequest(content=b"0123456789" * 30)

    err = assert_status(lambda: small_server.UploadDocument(stream()), INVALID, field="content")
    assert "MEMORYD_MAX_DOCUMENT_BYTES" in (err.details() or "")


def test_windows_end_at_paragraphs_then_sentences(stub: Stub, uid: str) -> None:
    """Over the budget, a chunk ends after the last blank line in its second half, else
    after the last sentence end there, else at the budget."""
    paragraph = " ".join(f"p{i}" for i in range(24)) + " end."  # 26 tokens
    content = "\n\n".join([paragraph] * 4)
    options = pb.ChunkingOptions(chunk_tokens=40, overlap_tokens=0)
    doc = put(stub, uid, "paras.txt", content, chunking=options).document
    chunks = chunks_of(stub, doc.id)
    assert [c.content for c in chunks] == [paragraph] * 4
    sentences = " ".join(f"s{i}." if i % 10 == 9 else f"s{i}" for i in range(60))
    doc = put(stub, uid, "sentences.txt", sentences, chunking=options).document
    first = chunks_of(stub, doc.id)[0]
    assert first.content.endswith("s29.")  # the last sentence end within 40 tokens
    assert first.token_count == 33  # 30 words and the 3 "." tokens after s9, s19, s29


def test_get_a_past_version(stub: Stub, uid: str) -> None:
    """Every version's fields and content stay readable until the document is deleted."""
    first = put(stub, uid, "h.md", tags=["v1"]).document
    put(stub, uid, "h.md", "# Second\n\nnew text\n", tags=["v2"])
    old = stub.GetDocument(pb.GetDocumentRequest(document_id=first.id, version=1)).document
    assert old.content == MARKDOWN
    assert list(old.tags) == ["v1"]
    assert old.version == 1
    assert old.content_hash == first.content_hash
    assert old.update_time == first.update_time
    by_path = stub.GetDocument(
        pb.GetDocumentRequest(namespace=["d", uid], path="h.md", version=2, skip_content=True)
    ).document
    assert by_path.title == "Second"
    assert by_path.content == ""
    assert_status(
        lambda: stub.GetDocument(pb.GetDocumentRequest(document_id=first.id, version=3)),
        grpc.StatusCode.NOT_FOUND,
        message="no version 3",
    )
    assert_status(
        lambda: stub.GetDocument(pb.GetDocumentRequest(document_id=first.id, version=0)),
        INVALID,
        field="version",
    )
    stub.DeleteDocument(pb.DeleteDocumentRequest(document_id=first.id))
    assert_status(
        lambda: stub.GetDocument(pb.GetDocumentRequest(document_id=first.id, version=1)),
        grpc.StatusCode.NOT_FOUND,
    )


def test_an_upload_cut_off_midway_writes_nothing(stub: Stub, uid: str) -> None:
    """A client that goes away mid-stream (its call cancelled) leaves no document."""
    sent = threading.Event()
    release = threading.Event()

    def stream() -> Iterator[pb.UploadDocumentRequest]:
        yield pb.UploadDocumentRequest(
            header=pb.PutDocumentRequest(document=pb.Document(namespace=["d", uid], path="cut.md"))
        )
        yield pb.UploadDocumentRequest(content=b"# Cut\n\nthe first half")
        sent.set()
        release.wait(30)  # the client stalls here until the test has cancelled the call
        yield pb.UploadDocumentRequest(content=b" and the rest")

    future = stub.UploadDocument.future(stream())
    assert sent.wait(30)
    future.cancel()
    release.set()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    assert_status(
        lambda: stub.GetDocument(pb.GetDocumentRequest(namespace=["d", uid], path="cut.md")),
        grpc.StatusCode.NOT_FOUND,
    )
