"""DocumentService: validate requests, chunk and embed, call the store, map records to protos."""

from __future__ import annotations

import asyncio
import codecs
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
from psycopg_pool import AsyncConnectionPool

from memoryd.v1 import document_pb2 as pb
from memoryd.v1 import document_pb2_grpc as pb_grpc
from memoryd_server import quotas, tenancy
from memoryd_server.config import Settings
from memoryd_server.documents import chunking, convert, listing, search, store
from memoryd_server.documents.models import NewChunk, NewDocument
from memoryd_server.embeddings.service import Embeddings
from memoryd_server.errors import InvalidArgument
from memoryd_server.ids import parse_uuid
from memoryd_server.memories import convert as memory_convert
from memoryd_server.memories.models import ns_path
from memoryd_server.pagination import PageTokens, invalid_token, page_size
from memoryd_server.protoconv import request_hash, to_timedelta
from memoryd_server.ranking import DEFAULT_HALF_LIFE, Weights
from memoryd_server.search_query import MODES_PB, resolve_query
from memoryd_server.validation import check_chars

Context = grpc.aio.ServicerContext[Any, Any]

# Chunking a document larger than this runs off the event loop.
_INLINE_CHUNKING_BYTES = 64 * 1024


class DocumentServicer(pb_grpc.DocumentServiceServicer):
    """The proto boundary of DocumentService."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: Settings,
        tokens: PageTokens,
        embeddings: Embeddings,
    ) -> None:
        self._pool = pool
        self._max_bytes = settings.max_document_bytes
        self._tokens = tokens
        self._embeddings = embeddings

    async def _server_chunks(self, tenant: str, new: NewDocument) -> tuple[list[NewChunk], str]:
        """The server's chunks of ``new``, embedded when the tenant's model can be."""

        def split() -> list[chunking.ChunkSpan]:
            return chunking.chunk(
                new.content,
                markdown=new.media_type == "text/markdown",
                chunk_tokens=new.chunk_tokens,
                overlap_tokens=new.overlap_tokens,
            )

        spans = (
            await asyncio.to_thread(split) if new.size_bytes > _INLINE_CHUNKING_BYTES else split()
        )
        chunks = [
            NewChunk(
                i, new.content[s.start : s.end], list(s.heading_path), s.start, s.end, s.token_count
            )
            for i, s in enumerate(spans)
        ]
        serving = await self._embeddings.registry.serving(tenant)
        if not chunks or not self._embeddings.can_embed(serving):
            return chunks, ""
        vectors = await self._embeddings.embed(
            serving, [chunking.embedding_text(c.heading_path, c.content) for c in chunks]
        )
        return [
            NewChunk(
                c.seq,
                c.content,
                c.heading_path,
                c.start_offset,
                c.end_offset,
                c.token_count,
                v,
                serving.name,
            )
            for c, v in zip(chunks, vectors, strict=True)
        ], serving.name

    async def _caller_chunks(
        self, tenant: str, request: pb.PutDocumentRequest, new: NewDocument
    ) -> tuple[list[NewChunk], str]:
        """The caller's chunks, their vectors checked against the model."""
        spans = convert.chunk_inputs("chunks", request.chunks, len(new.content))
        registry = self._embeddings.registry
        model = check_chars("embedding_model", request.embedding_model, 256)
        space = (
            await registry.model("embedding_model", model)
            if model
            else await registry.serving(tenant)
        )
        chunks = []
        any_vector = False
        for i, (start, end, headings, values) in enumerate(spans):
            vector = memory_convert.embedding(f"chunks[{i}].embedding", values, space.dimension)
            any_vector = any_vector or vector is not None
            text = new.content[start:end]
            chunks.append(
                NewChunk(
                    i,
                    text,
                    headings,
                    start,
                    end,
                    chunking.count_tokens(text),
                    vector,
                    space.name if vector is not None else "",
                )
            )
        return chunks, space.name if any_vector else ""

    async def _put(
        self, request: pb.PutDocumentRequest, context: Context, content: str | None = None
    ) -> store.PutResult:
        document = pb.Document()
        document.CopyFrom(request.document)
        if content is not None:
            document.content = content
        tenant = tenancy.tenant_of(context)
        if document.id and not document.path and not document.namespace:
            # By id alone: the stored name, so the path's defaults (media type,
            # title) are the document's own, not those of an empty path.
            stored = await listing.get_document(
                self._pool, tenant_id=tenant,
                document_id=parse_uuid("document.id", document.id), content=False,
            )  # fmt: skip
            document.namespace[:] = stored.namespace
            document.path = stored.path
        new = convert.new_document(
            "document", document, request.chunking, max_bytes=self._max_bytes
        )
        expected = request.expected_version if request.HasField("expected_version") else None
        if expected is not None and expected < 0:
            raise InvalidArgument("expected_version", "must not be negative")
        caller = bool(request.chunks)
        chunks: list[NewChunk] | None = None
        model = ""
        if caller:
            chunks, model = await self._caller_chunks(tenant, request, new)
        else:
            state = await store.stored_state(self._pool, tenant_id=tenant, new=new)
            if state is None or state != store.StoredState(
                new.content_hash, new.media_type, new.chunk_tokens, new.overlap_tokens
            ):
                chunks, model = await self._server_chunks(tenant, new)
        options: dict[str, Any] = {
            "tenant_id": tenant,
            "actor": tenancy.actor_of(context),
            "new": new,
            "request_id": check_chars("request_id", request.request_id, 128),
            "request_hash": request_hash(request)
            if content is None
            else request_hash(request) + new.content_hash,
            "expected_version": expected,
            "limits": quotas.current(),
        }
        try:
            return await store.put_document(
                self._pool, chunks=chunks, embedding_model=model, **options
            )
        except store.NeedChunks:
            # The stored content changed since it was read: chunk this content after all.
            chunks, model = await self._server_chunks(tenant, new)
            return await store.put_document(
                self._pool, chunks=chunks, embedding_model=model, **options
            )

    async def PutDocument(
        self, request: pb.PutDocumentRequest, context: Context
    ) -> pb.PutDocumentResponse:
        result = await self._put(request, context)
        return pb.PutDocumentResponse(
            document=convert.document_to_pb(result.document),
            changed=result.changed,
            created=result.created,
        )

    async def UploadDocument(
        self, request_iterator: AsyncIterator[pb.UploadDocumentRequest], context: Context
    ) -> pb.UploadDocumentResponse:
        header: pb.PutDocumentRequest | None = None
        decoder = codecs.getincrementaldecoder("utf-8")()
        pieces: list[str] = []
        size = 0
        async for message in request_iterator:
            if header is None:
                if not message.HasField("header"):
                    raise InvalidArgument("header", "the first message must carry the header")
                header = message.header
                if header.document.content:
                    raise InvalidArgument(
                        "header.document.content", "must be empty: the content follows in pieces"
                    )
            elif message.HasField("header"):
                raise InvalidArgument("header", "only the first message carries the header")
            size += len(message.content)
            if size > self._max_bytes:
                raise InvalidArgument(
                    "content",
                    f"is over {self._max_bytes} bytes; documents hold at most"
                    f" {self._max_bytes} bytes (MEMORYD_MAX_DOCUMENT_BYTES)",
                )
            try:
                pieces.append(decoder.decode(message.content))
            except UnicodeDecodeError as exc:
                raise InvalidArgument(
                    "content",
                    f"is not valid UTF-8 (at byte {size - len(message.content) + exc.start})",
                ) from None
        if header is None:
            raise InvalidArgument("header", "the stream was empty")
        try:
            pieces.append(decoder.decode(b"", final=True))
        except UnicodeDecodeError:
            raise InvalidArgument(
                "content", "is not valid UTF-8 (it ends inside a character)"
            ) from None
        result = await self._put(header, context, "".join(pieces))
        return pb.UploadDocumentResponse(
            document=convert.document_to_pb(result.document),
            changed=result.changed,
            created=result.created,
        )

    async def GetDocument(
        self, request: pb.GetDocumentRequest, context: Context
    ) -> pb.GetDocumentResponse:
        tenant = tenancy.tenant_of(context)
        by_path = bool(request.namespace or request.path)
        if request.document_id and by_path:
            raise InvalidArgument("document_id", "give document_id or namespace and path, not both")
        if request.HasField("version"):
            if request.version < 1:
                raise InvalidArgument("version", "must be 1 or more")
            if by_path:  # the id of the document now at that path
                found = await listing.get_document(
                    self._pool, tenant_id=tenant,
                    namespace=memory_convert.namespace("namespace", request.namespace),
                    path=convert.path("path", request.path), content=False,
                )  # fmt: skip
                document_id = found.id
            else:
                document_id = parse_uuid("document_id", request.document_id)
            doc = await listing.get_version(
                self._pool, tenant_id=tenant, document_id=document_id,
                version=request.version, content=not request.skip_content,
            )  # fmt: skip
        elif by_path:
            doc = await listing.get_document(
                self._pool,
                tenant_id=tenant,
                namespace=memory_convert.namespace("namespace", request.namespace),
                path=convert.path("path", request.path),
                content=not request.skip_content,
            )
        else:
            doc = await listing.get_document(
                self._pool,
                tenant_id=tenant,
                document_id=parse_uuid("document_id", request.document_id),
                content=not request.skip_content,
            )
        return pb.GetDocumentResponse(document=convert.document_to_pb(doc))

    async def ListDocuments(
        self, request: pb.ListDocumentsRequest, context: Context
    ) -> pb.ListDocumentsResponse:
        tenant = tenancy.tenant_of(context)
        filter_ = convert.document_filter("filter", request.filter)
        limit = page_size(request.page_size)
        query = {"tenant": tenant, **vars(filter_)}
        position = self._tokens.decode(request.page_token, "documents", query)
        after = None
        if position is not None:
            if len(position) != 2 or not all(isinstance(p, str) for p in position):
                raise invalid_token()
            after = (position[0], position[1])
        rows = await listing.list_documents(
            self._pool, tenant_id=tenant, filter=filter_, limit=limit + 1, after=after
        )
        rows, token = self._tokens.next_page(
            rows,
            limit,
            "documents",
            query,
            lambda d: [ns_path(d.namespace), d.path],
        )
        return pb.ListDocumentsResponse(
            documents=[convert.document_to_pb(d) for d in rows], next_page_token=token
        )

    async def DeleteDocument(
        self, request: pb.DeleteDocumentRequest, context: Context
    ) -> pb.DeleteDocumentResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        doc = await store.delete_document(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            document_id=parse_uuid("document_id", request.document_id),
            expected_version=expected,
        )
        return pb.DeleteDocumentResponse(document=convert.document_to_pb(doc))

    async def ListChunks(
        self, request: pb.ListChunksRequest, context: Context
    ) -> pb.ListChunksResponse:
        tenant = tenancy.tenant_of(context)
        document_id = parse_uuid("document_id", request.document_id)
        limit = page_size(request.page_size)
        query = {"tenant": tenant, "document": str(document_id)}
        position = self._tokens.decode(request.page_token, "chunks", query)
        after = -1
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], int):
                raise invalid_token()
            after = position[0]
        rows = await listing.list_chunks(
            self._pool, tenant_id=tenant, document_id=document_id, after_seq=after, limit=limit + 1
        )
        rows, token = self._tokens.next_page(rows, limit, "chunks", query, lambda c: [c.seq])
        return pb.ListChunksResponse(
            chunks=[convert.chunk_to_pb(c) for c in rows], next_page_token=token
        )

    async def SearchDocuments(
        self, request: pb.SearchDocumentsRequest, context: Context
    ) -> pb.SearchDocumentsResponse:
        tenant = tenancy.tenant_of(context)
        filter_ = convert.document_filter("filter", request.filter)
        if not 0 <= request.top_k <= search.MAX_TOP_K:
            raise InvalidArgument("top_k", f"must be 1 to {search.MAX_TOP_K}")
        if not 0 <= request.neighbor_chunks <= search.MAX_NEIGHBORS:
            raise InvalidArgument("neighbor_chunks", f"must be 0 to {search.MAX_NEIGHBORS}")
        weights = _weights(request.weights)
        query = await resolve_query(
            self._embeddings,
            tenant,
            query_text=request.query_text,
            query_embedding=request.query_embedding,
            embedding_model=request.embedding_model,
            mode=request.mode,
            text_match=request.text_match,
            fusion=request.fusion,
        )
        hits = await search.search_documents(
            self._pool,
            tenant_id=tenant,
            filter=filter_,
            query=query,
            top_k=request.top_k or search.DEFAULT_TOP_K,
            weights=weights,
            min_score=request.min_score,
            neighbors=request.neighbor_chunks,
            group_by_document=request.group_by_document,
        )
        return pb.SearchDocumentsResponse(
            results=[
                pb.DocumentSearchResult(
                    chunk=convert.chunk_to_pb(h.chunk),
                    document=convert.document_to_pb(h.document),
                    chunks_before=[convert.chunk_to_pb(c) for c in h.before],
                    chunks_after=[convert.chunk_to_pb(c) for c in h.after],
                    score=h.score.score,
                    similarity_score=h.score.similarity,
                    text_score=h.score.text,
                    recency_score=h.score.recency,
                    fusion_score=h.score.fusion,
                    vector_rank=h.vector_rank,
                    text_rank=h.text_rank,
                )
                for h in hits
            ],
            mode=MODES_PB[query.mode],
            embedding_model=query.model_name,
        )


def _weights(w: pb.DocumentRankingWeights) -> Weights:
    values = {"similarity": w.similarity, "text": w.text, "recency": w.recency}
    for name, value in values.items():
        if not (value >= 0 and value < float("inf")):
            raise InvalidArgument(f"weights.{name}", "must be a finite number >= 0")
    half_life = DEFAULT_HALF_LIFE
    if w.HasField("recency_half_life"):
        half_life = to_timedelta("weights.recency_half_life", w.recency_half_life)
        if half_life <= dt.timedelta(0):
            raise InvalidArgument("weights.recency_half_life", "must be positive")
    return Weights(half_life=half_life, **values)
