"""Requests and responses of DocumentService calls, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memoryd._client import convert
from memoryd._client import document_types as d
from memoryd._client import types as t
from memoryd._client.memory_calls import search_options
from memoryd.v1 import document_pb2 as pb

SERVICE = "/memoryd.v1.DocumentService/"

# RPC name -> client method name; tests check it covers the whole service.
RPC_METHODS: dict[str, str] = {
    "PutDocument": "put",
    "UploadDocument": "upload",
    "GetDocument": "get",
    "ListDocuments": "list",
    "DeleteDocument": "delete",
    "ListChunks": "list_chunks",
    "SearchDocuments": "search",
}

# put() sends larger content by UploadDocument (a gRPC client's default message limit).
PUT_MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024
# UploadDocument sends content in pieces of this many bytes.
UPLOAD_PIECE_BYTES = 1024 * 1024


def put_request(
    *,
    namespace: Sequence[str],
    path: str,
    content: str,
    document_id: str,
    title: str,
    source_uri: str,
    media_type: str,
    user_id: str,
    tags: Sequence[str],
    metadata: Mapping[str, Any] | None,
    chunk_tokens: int,
    overlap_tokens: int | None,
    chunks: Sequence[d.ChunkInput] | None,
    embedding_model: str,
    expected_version: int | None,
    request_id: str,
) -> pb.PutDocumentRequest:
    document = pb.Document(
        id=document_id,
        namespace=convert.strings(namespace),
        path=path,
        title=title,
        source_uri=source_uri,
        media_type=media_type,
        user_id=user_id,
        tags=convert.strings(tags),
        metadata=convert.struct(metadata),
        content=content,
    )
    chunking = pb.ChunkingOptions(chunk_tokens=chunk_tokens)
    if overlap_tokens is not None:
        chunking.overlap_tokens = overlap_tokens
    request = pb.PutDocumentRequest(
        document=document,
        chunking=chunking,
        embedding_model=embedding_model,
        request_id=request_id,
        chunks=[
            pb.ChunkInput(
                start_offset=c.start_offset,
                end_offset=c.end_offset,
                heading_path=convert.strings(c.heading_path),
                embedding=convert.floats(c.embedding),
            )
            for c in chunks or ()
        ],
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def upload_messages(request: pb.PutDocumentRequest) -> list[pb.UploadDocumentRequest]:
    """``request`` as an UploadDocument stream: the header, then the content in pieces."""
    data = request.document.content.encode()
    header = pb.PutDocumentRequest()
    header.CopyFrom(request)
    header.document.content = ""
    pieces = range(0, len(data), UPLOAD_PIECE_BYTES)
    return [pb.UploadDocumentRequest(header=header)] + [
        pb.UploadDocumentRequest(content=data[i : i + UPLOAD_PIECE_BYTES]) for i in pieces
    ]


def get_request(
    document_id: str,
    namespace: Sequence[str] | None,
    path: str,
    skip_content: bool,
    version: int | None = None,
) -> pb.GetDocumentRequest:
    request = pb.GetDocumentRequest(
        document_id=document_id,
        namespace=convert.strings(namespace or ()),
        path=path,
        skip_content=skip_content,
    )
    if version is not None:
        request.version = version
    return request


def filter_pb(f: d.DocumentFilter | None) -> pb.DocumentFilter | None:
    if f is None:
        return None
    return pb.DocumentFilter(
        namespace_prefix=convert.strings(f.namespace_prefix),
        path_prefix=f.path_prefix,
        tags_any=convert.strings(f.tags_any),
        tags_all=convert.strings(f.tags_all),
        user_id=f.user_id,
        metadata=convert.struct(f.metadata) if f.metadata else None,
        media_types=convert.strings(f.media_types),
        create_time_start=convert.timestamp(f.create_time_start),
        create_time_end=convert.timestamp(f.create_time_end),
        update_time_start=convert.timestamp(f.update_time_start),
        update_time_end=convert.timestamp(f.update_time_end),
    )


def search_request(
    *,
    query_text: str,
    query_embedding: t.Embedding | None,
    filter: d.DocumentFilter | None,
    top_k: int,
    min_score: float,
    weights: t.RankingWeights | None,
    mode: t.SearchMode | None,
    text_match: t.TextMatch | None,
    fusion: t.Fusion | None,
    embedding_model: str,
    neighbor_chunks: int,
    group_by_document: bool,
) -> pb.SearchDocumentsRequest:
    w = None
    if weights is not None:
        w = pb.DocumentRankingWeights(
            similarity=weights.similarity,
            text=weights.text,
            recency=weights.recency,
            recency_half_life=convert.duration(weights.recency_half_life),
        )
    return pb.SearchDocumentsRequest(
        filter=filter_pb(filter),
        query_embedding=convert.floats(query_embedding),
        query_text=query_text,
        top_k=top_k,
        min_score=min_score,
        weights=w,
        **search_options(mode, text_match, fusion),
        embedding_model=embedding_model,
        neighbor_chunks=neighbor_chunks,
        group_by_document=group_by_document,
    )


def document(p: pb.Document) -> d.Document:
    return d.Document(
        id=p.id,
        namespace=tuple(p.namespace),
        path=p.path,
        title=p.title,
        source_uri=p.source_uri,
        media_type=p.media_type,
        user_id=p.user_id,
        tags=tuple(p.tags),
        metadata=convert.from_struct(p.metadata),
        content=p.content,
        content_hash=p.content_hash,
        size_bytes=p.size_bytes,
        chunk_count=p.chunk_count,
        chunk_tokens=p.chunking.chunk_tokens,
        overlap_tokens=p.chunking.overlap_tokens,
        embedding_model=p.embedding_model,
        version=p.version,
        create_time=convert.from_timestamp(p, "create_time"),
        update_time=convert.from_timestamp(p, "update_time"),
    )


def chunk(p: pb.Chunk) -> d.Chunk:
    return d.Chunk(
        id=p.id,
        document_id=p.document_id,
        index=p.index,
        content=p.content,
        heading_path=tuple(p.heading_path),
        start_offset=p.start_offset,
        end_offset=p.end_offset,
        token_count=p.token_count,
        document_version=p.document_version,
    )


def put_result(p: pb.PutDocumentResponse | pb.UploadDocumentResponse) -> d.PutDocumentResult:
    return d.PutDocumentResult(document(p.document), p.changed, p.created)


def documents_page(r: pb.ListDocumentsResponse) -> t.Page[d.Document]:
    return t.Page(tuple(document(x) for x in r.documents), r.next_page_token)


def chunks_page(r: pb.ListChunksResponse) -> t.Page[d.Chunk]:
    return t.Page(tuple(chunk(x) for x in r.chunks), r.next_page_token)


def search_results(r: pb.SearchDocumentsResponse) -> list[d.DocumentSearchResult]:
    return [
        d.DocumentSearchResult(
            chunk=chunk(x.chunk),
            document=document(x.document),
            chunks_before=tuple(chunk(c) for c in x.chunks_before),
            chunks_after=tuple(chunk(c) for c in x.chunks_after),
            score=x.score,
            similarity_score=x.similarity_score,
            text_score=x.text_score,
            recency_score=x.recency_score,
            fusion_score=x.fusion_score,
            vector_rank=x.vector_rank,
            text_rank=x.text_rank,
        )
        for x in r.results
    ]
