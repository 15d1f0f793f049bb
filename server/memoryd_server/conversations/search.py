"""SearchMessages: vector, full-text and hybrid search over a tenant's messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from memoryd_server import ranking
from memoryd_server.conversations.models import Message
from memoryd_server.memories.search import search_settings
from memoryd_server.ranking import Query
from memoryd_server.reads import read, vector_literal

_FIELDS = tuple(f.name for f in fields(Message))
_COLUMNS = sql.SQL(", ").join(sql.Identifier("m", name) for name in _FIELDS)


@dataclass(frozen=True)
class MessageFilter:
    """Which messages a search considers; empty values match everything."""

    conversation_ids: list[str] = field(default_factory=list)
    user_id: str = ""
    app_name: str = ""
    agent_id: str = ""
    roles: list[str] = field(default_factory=list)
    create_time_start: dt.datetime | None = None
    create_time_end: dt.datetime | None = None


@dataclass(frozen=True)
class ScoredMessage:
    """A result: the message, its score and the parts it came from."""

    message: Message
    score: ranking.Score
    vector_rank: int
    text_rank: int


def _condition(tenant_id: str, f: MessageFilter, params: dict[str, Any]) -> sql.Composable:
    params["tenant"] = tenant_id
    parts = ["m.tenant_id = %(tenant)s"]
    optional = {
        "m.conversation_id = ANY(%(conversations)s)": ("conversations", f.conversation_ids),
        "c.user_id = %(user_id)s": ("user_id", f.user_id),
        "c.app_name = %(app_name)s": ("app_name", f.app_name),
        "c.agent_id = %(agent_id)s": ("agent_id", f.agent_id),
        "m.role = ANY(%(roles)s)": ("roles", f.roles),
        "m.create_time >= %(start)s": ("start", f.create_time_start),
        "m.create_time < %(end)s": ("end", f.create_time_end),
    }
    for condition, (name, value) in optional.items():
        if value:
            parts.append(condition)
            params[name] = value
    return sql.SQL(" AND ".join(parts))  # type: ignore[arg-type,unused-ignore]


async def search_messages(
    pool: AsyncConnectionPool, *, tenant_id: str, filter: MessageFilter, query: Query, top_k: int
) -> list[ScoredMessage]:
    """The ``top_k`` best messages for ``query`` among those ``filter`` admits."""
    weights = ranking.Weights().resolved(query.mode, query.fusion)
    depth = max(2 * top_k, 20) if query.mode != "hybrid" else min(max(4 * top_k, 40), 400)
    q = None if query.vector is None else vector_literal(query.vector)
    params: dict[str, Any] = {"q": q, "text": query.text, "k": depth}
    where = _condition(tenant_id, filter, params)
    text_rank: sql.Composable = sql.SQL("0::float4")
    if query.text:
        text_rank = ranking.text_rank(query.text_match, sql.Identifier("m", "search_text"))
    distance: sql.Composable = sql.SQL("NULL::float8")
    settings = None
    space = query.space
    if space is not None and query.vector is not None:
        dim = sql.Literal(space.dimension)
        distance = sql.SQL("(m.embedding::vector({0}) <=> %(q)s::vector({0}))").format(dim)
        settings = search_settings(depth)  # fmt: skip
    select = sql.SQL(
        "SELECT {}, {} AS distance, {} AS text_rank, now() AS query_time FROM messages m"
        " JOIN conversations c ON c.tenant_id = m.tenant_id AND c.id = m.conversation_id"
        " WHERE {}"
    ).format(_COLUMNS, distance, text_rank, where)
    vector_condition = sql.SQL("m.embedding_model = {} AND m.embedding IS NOT NULL")
    statements: list[tuple[sql.Composable, dict[str, Any]]] = []
    vector = query.mode != "text" and space is not None
    if vector:
        assert space is not None
        condition = vector_condition.format(sql.Literal(space.name))
        statements.append(
            (
                sql.SQL("{} AND {} ORDER BY {} LIMIT %(k)s").format(select, condition, distance),
                params,
            )
        )
    if query.mode != "vector":
        text_query = sql.SQL(
            "{} AND m.search_text @@ {} ORDER BY text_rank DESC, m.create_time DESC, m.id"
            " LIMIT %(k)s"
        ).format(select, ranking.tsquery(query.text_match))
        statements.append((text_query, params))
    # Vector and text candidates together: one round trip (reads.py).
    found = await read(pool, tenant_id, statements, row_factory=dict_row, settings=settings)
    by_vector: list[dict[str, Any]] = found.pop(0) if vector else []
    by_text: list[dict[str, Any]] = found.pop(0) if found else []
    if vector and len(by_vector) < depth:  # as in memories/search.py: exact for small sets
        exact = sql.SQL("{} AND {} ORDER BY {} + 0 LIMIT %(k)s").format(select, condition, distance)
        [by_vector] = await read(
            pool, tenant_id, [(exact, params)], row_factory=dict_row, settings=settings
        )
    by_vector.sort(key=lambda r: (r["distance"], r["id"]))
    fused = ranking.fuse(
        by_vector, by_text, weights=weights, fusion=query.fusion, mode=query.mode,
        occur_time=lambda row: row["create_time"],
    )  # fmt: skip
    scored = [
        ScoredMessage(Message(**{n: f.row[n] for n in _FIELDS}), f.score, f.vector_rank,
                      f.text_rank)
        for f in fused
    ]  # fmt: skip
    scored.sort(key=lambda s: (-s.score.score, -s.message.create_time.timestamp(),
                               str(s.message.id)))  # fmt: skip
    return scored[:top_k]
