"""``client.documents`` of ``AsyncClient``: typed async methods for every DocumentService RPC."""

from __future__ import annotations

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline of the call, not an asyncio timeout.
import builtins
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from memoryd._client import document_calls as calls
from memoryd._client import document_types as d
from memoryd._client import types as t
from memoryd._client.document_calls import SERVICE
from memoryd._client.transport import AsyncTransport
from memoryd.v1 import document_pb2 as pb


class AsyncDocuments:
    """Documents and their chunks, on an asyncio channel."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def put(
        self,
        namespace: Sequence[str] = (),
        path: str = "",
        content: str = "",
        *,
        document_id: str = "",
        title: str = "",
        source_uri: str = "",
        media_type: str = "",
        user_id: str = "",
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        chunk_tokens: int = 0,
        overlap_tokens: int | None = None,
        chunks: Sequence[d.ChunkInput] | None = None,
        embedding_model: str = "",
        expected_version: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> d.PutDocumentResult:
        """Create or replace the document at (``namespace``, ``path``) (or ``document_id``).

        Unchanged content is a no-op (``changed`` False); changed content
        replaces every chunk at once. Content over 4 MiB goes by ``upload``.
        Retried safely. Megabytes take the server seconds to chunk, embed and
        store: give such puts a ``timeout`` beyond the client's default.
        """
        request = calls.put_request(
            namespace=namespace,
            path=path,
            content=content,
            document_id=document_id,
            title=title,
            source_uri=source_uri,
            media_type=media_type,
            user_id=user_id,
            tags=tags,
            metadata=metadata,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            chunks=chunks,
            embedding_model=embedding_model,
            expected_version=expected_version,
            request_id=request_id or str(uuid.uuid4()),
        )
        if len(content.encode()) > calls.PUT_MAX_BYTES and not chunks:
            response: Any = await self._t.call(
                SERVICE + "UploadDocument",
                calls.upload_messages(request),
                pb.UploadDocumentResponse,
                retryable=True,
                timeout=timeout,
                stream=True,
            )
        else:
            response = await self._t.call(
                SERVICE + "PutDocument",
                request,
                pb.PutDocumentResponse,
                retryable=True,
                timeout=timeout,
            )
        return calls.put_result(response)

    async def upload(
        self,
        namespace: Sequence[str],
        path: str,
        content: str,
        *,
        title: str = "",
        source_uri: str = "",
        media_type: str = "",
        user_id: str = "",
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        chunk_tokens: int = 0,
        overlap_tokens: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> d.PutDocumentResult:
        """``put`` by a client stream, for documents of any size up to the server's limit."""
        request = calls.put_request(
            namespace=namespace,
            path=path,
            content=content,
            document_id="",
            title=title,
            source_uri=source_uri,
            media_type=media_type,
            user_id=user_id,
            tags=tags,
            metadata=metadata,
            chunk_tokens=chunk_tokens,
            overlap_tokens=overlap_tokens,
            chunks=None,
            embedding_model="",
            expected_version=None,
            request_id=request_id or str(uuid.uuid4()),
        )
        response = await self._t.call(
            SERVICE + "UploadDocument",
            calls.upload_messages(request),
            pb.UploadDocumentResponse,
            retryable=True,
            timeout=timeout,
            stream=True,
        )
        return calls.put_result(response)

    async def get(
        self,
        document_id: str = "",
        *,
        namespace: Sequence[str] | None = None,
        path: str = "",
        skip_content: bool = False,
        version: int | None = None,
        timeout: float | None = None,
    ) -> d.Document:
        """A document with its content, by id or by ``namespace`` and ``path``, now or at a
        past ``version``; NotFound if none."""
        response = await self._t.call(
            SERVICE + "GetDocument",
            calls.get_request(document_id, namespace, path, skip_content, version),
            pb.GetDocumentResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.document(response.document)

    async def list(
        self,
        *,
        filter: d.DocumentFilter | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[d.Document]:
        """One page of documents (without content) in namespace and path order."""
        request = pb.ListDocumentsRequest(
            filter=calls.filter_pb(filter), page_size=page_size, page_token=page_token
        )
        response = await self._t.call(
            SERVICE + "ListDocuments",
            request,
            pb.ListDocumentsResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.documents_page(response)

    async def iter(
        self,
        *,
        filter: d.DocumentFilter | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[d.Document]:
        """Every document matching ``filter``, fetching pages as needed."""
        token = ""
        while True:
            page = await self.list(
                filter=filter, page_size=page_size, page_token=token, timeout=timeout
            )
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    async def delete(
        self,
        document_id: str,
        *,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> d.Document:
        """Delete a document, its chunks and history; returns it (without content)."""
        request = pb.DeleteDocumentRequest(document_id=document_id)
        if expected_version is not None:
            request.expected_version = expected_version
        response = await self._t.call(
            SERVICE + "DeleteDocument",
            request,
            pb.DeleteDocumentResponse,
            retryable=False,
            timeout=timeout,
        )
        return calls.document(response.document)

    async def list_chunks(
        self,
        document_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[d.Chunk]:
        """One page of a document's chunks, in document order."""
        request = pb.ListChunksRequest(
            document_id=document_id, page_size=page_size, page_token=page_token
        )
        response = await self._t.call(
            SERVICE + "ListChunks",
            request,
            pb.ListChunksResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.chunks_page(response)

    async def search(
        self,
        *,
        query_text: str = "",
        query_embedding: t.Embedding | None = None,
        filter: d.DocumentFilter | None = None,
        top_k: int = 0,
        min_score: float = 0.0,
        weights: t.RankingWeights | None = None,
        mode: t.SearchMode | None = None,
        text_match: t.TextMatch | None = None,
        fusion: t.Fusion | None = None,
        embedding_model: str = "",
        neighbor_chunks: int = 0,
        group_by_document: bool = False,
        timeout: float | None = None,
    ) -> builtins.list[d.DocumentSearchResult]:
        """The best chunks for a text, an embedding or both, best first (as
        ``memories.search``; ``weights.importance`` does not apply)."""
        request = calls.search_request(
            query_text=query_text,
            query_embedding=query_embedding,
            filter=filter,
            top_k=top_k,
            min_score=min_score,
            weights=weights,
            mode=mode,
            text_match=text_match,
            fusion=fusion,
            embedding_model=embedding_model,
            neighbor_chunks=neighbor_chunks,
            group_by_document=group_by_document,
        )
        response = await self._t.call(
            SERVICE + "SearchDocuments",
            request,
            pb.SearchDocumentsResponse,
            retryable=True,
            timeout=timeout,
        )
        return calls.search_results(response)
