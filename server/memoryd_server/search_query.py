"""A search request's query fields resolved into what the search runs with.

Shared by SearchMemories and SearchMessages: which mode (vector, text, hybrid),
which model's vectors, the query vector (the caller's, or query_text embedded
by the server), and how text matches and rankings fuse.
"""

from __future__ import annotations

from collections.abc import Sequence

from memoryd.v1 import search_pb2 as spb
from memoryd_server.embeddings.service import Embeddings
from memoryd_server.errors import FailedPrecondition, InvalidArgument
from memoryd_server.memories import convert
from memoryd_server.ranking import Fusion, Mode, Query, TextMatch
from memoryd_server.validation import check_chars, check_enum

MAX_QUERY_CHARS = 4096

_MODES: dict[int, Mode | None] = {
    spb.SEARCH_MODE_UNSPECIFIED: None, spb.SEARCH_MODE_VECTOR: "vector",
    spb.SEARCH_MODE_TEXT: "text", spb.SEARCH_MODE_HYBRID: "hybrid",
}  # fmt: skip
MODES_PB = {"vector": spb.SEARCH_MODE_VECTOR, "text": spb.SEARCH_MODE_TEXT,
            "hybrid": spb.SEARCH_MODE_HYBRID}  # fmt: skip
_MATCHES: dict[int, TextMatch] = {
    spb.TEXT_MATCH_UNSPECIFIED: "any", spb.TEXT_MATCH_ANY: "any",
    spb.TEXT_MATCH_WEBSEARCH: "websearch",
}  # fmt: skip
# The default fusion: the weighted mean measured as good as reciprocal-rank
# fusion at recall@10 and better at 5 and 25 on the retrieval benchmark
# (docs/benchmarks.md).
_FUSIONS: dict[int, Fusion] = {
    spb.FUSION_UNSPECIFIED: "weighted", spb.FUSION_RRF: "rrf", spb.FUSION_WEIGHTED: "weighted",
}  # fmt: skip


async def resolve_query(
    embeddings: Embeddings,
    tenant_id: str,
    *,
    query_text: str,
    query_embedding: Sequence[float],
    embedding_model: str,
    mode: int,
    text_match: int,
    fusion: int,
) -> Query:
    """The query to run; INVALID_ARGUMENT or FAILED_PRECONDITION naming the field."""
    text = check_chars("query_text", query_text.strip(), MAX_QUERY_CHARS)
    wanted = _MODES[check_enum("mode", mode, spb.SearchMode.DESCRIPTOR)]
    match = _MATCHES[check_enum("text_match", text_match, spb.TextMatch.DESCRIPTOR)]
    fused = _FUSIONS[check_enum("fusion", fusion, spb.Fusion.DESCRIPTOR)]
    model = check_chars("embedding_model", embedding_model, 256)
    if not query_embedding and not text:
        raise InvalidArgument("query_embedding", "give query_embedding, query_text or both")
    if wanted in {"text", "hybrid"} and not text:
        raise InvalidArgument("query_text", f"is required for a {wanted.upper()} search")
    if wanted == "text":
        return Query(mode="text", text=text, text_match=match, fusion=fused)
    registry = embeddings.registry
    space = (
        await registry.model("embedding_model", model)
        if model
        else await registry.serving(tenant_id)
    )
    if query_embedding:
        vector = convert.embedding("query_embedding", query_embedding, space.dimension)
    elif embeddings.can_embed(space):
        vector = (await embeddings.embed(space, [text]))[0]
    elif wanted is None:
        return Query(mode="text", text=text, text_match=match, fusion=fused)
    else:
        raise FailedPrecondition(
            f"a {wanted.upper()} search without query_embedding needs the server to embed"
            f" query_text, and model {space.name!r} takes vectors from callers"
            " (send query_embedding, or run the server with MEMORYD_EMBEDDER)"
        )
    resolved: Mode = wanted or ("hybrid" if text else "vector")
    return Query(mode=resolved, text=text if resolved != "vector" else "", text_match=match,
                 fusion=fused, space=space, vector=vector)  # fmt: skip
