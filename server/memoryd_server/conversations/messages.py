"""SQL for messages: appends with gapless seqs, history pages, context windows, feedback."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from memoryd_server import idempotency, quotas
from memoryd_server.conversations.models import (
    OUTPUT_ROLES,
    ContextWindow,
    Conversation,
    Message,
    NewConversation,
    NewMessage,
)
from memoryd_server.conversations.store import (
    CONVERSATION_COLUMNS,
    get_conversation,
    insert_conversation,
    not_found,
    select_conversation,
)
from memoryd_server.database import transaction
from memoryd_server.errors import FailedPrecondition, NotFound, ResourceExhausted
from memoryd_server.ids import uuid7
from memoryd_server.reads import read

Conn = AsyncConnection[Any]

# At most this many SYSTEM messages are pinned into a context window.
MAX_PINNED_SYSTEM_MESSAGES = 100

MESSAGE_COLUMNS = sql.SQL(
    "id, conversation_id, seq, role, content, name, tool_calls, tool_call_id, token_count,"
    " model, metadata, feedback_rating, feedback_comment, feedback_time, create_time,"
    " created_by, created_by_name"
)


# The whole window in one statement, so in one snapshot: the conversation's
# message_count bounds the window (appends going on cannot make the window and
# its omitted count disagree); the newest %(limit)s messages come from a
# backward range scan of the messages primary key, whatever the conversation's
# length; with %(system)s the first SYSTEM messages are pinned. The token budget
# keeps the newest prefix whose running sum fits, counting pinned messages once:
# their tokens are taken off %(max_tokens)s and left out of the running sum.
# One row per message, oldest first, each with the conversation's count and
# summary; a conversation without messages gives one row of NULL messages,
# and none at all when it does not exist.
CONTEXT_WINDOW_QUERY = sql.SQL(sql.SQL(
    "WITH conv AS MATERIALIZED (SELECT message_count, summary FROM conversations"
    " WHERE tenant_id = %(tenant)s AND id = %(conversation)s),"
    " pinned AS MATERIALIZED (SELECT m.seq, m.token_count FROM messages m, conv"
    " WHERE %(system)s AND m.tenant_id = %(tenant)s AND m.conversation_id = %(conversation)s"
    " AND m.role = 'system' AND m.seq <= conv.message_count ORDER BY m.seq LIMIT %(pins)s),"
    " recent AS (SELECT m.seq, m.token_count FROM messages m, conv"
    " WHERE m.tenant_id = %(tenant)s AND m.conversation_id = %(conversation)s"
    " AND m.seq <= conv.message_count ORDER BY m.seq DESC LIMIT %(limit)s),"
    " running AS (SELECT r.seq, sum(CASE WHEN p.seq IS NULL THEN r.token_count ELSE 0 END)"
    " OVER (ORDER BY r.seq DESC ROWS UNBOUNDED PRECEDING) AS tokens"
    " FROM recent r LEFT JOIN pinned p USING (seq)),"
    " kept AS (SELECT seq FROM running WHERE %(max_tokens)s::bigint IS NULL"
    " OR tokens <= greatest(%(max_tokens)s::bigint"
    " - (SELECT coalesce(sum(token_count), 0) FROM pinned), 0)"
    " UNION SELECT seq FROM pinned)"
    " SELECT conv.message_count, conv.summary, {cols} FROM conv LEFT JOIN"
    " (SELECT m.* FROM kept JOIN messages m ON m.tenant_id = %(tenant)s"
    " AND m.conversation_id = %(conversation)s AND m.seq = kept.seq) m ON TRUE ORDER BY m.seq"
).format(cols=sql.SQL(", ").join(sql.SQL("m.") + sql.Identifier(c.strip())
                                 for c in MESSAGE_COLUMNS.as_string().split(",")))
    .as_string())  # fmt: skip


async def _select_messages(
    conn: Conn, tenant_id: str, conversation_id: str, ids: list[uuid.UUID]
) -> list[Message]:
    query = sql.SQL(
        "SELECT {cols} FROM messages WHERE tenant_id = %s AND conversation_id = %s"
        " AND id = ANY(%s) ORDER BY seq"
    ).format(cols=MESSAGE_COLUMNS)
    async with conn.cursor(row_factory=class_row(Message)) as cur:
        await cur.execute(query, (tenant_id, conversation_id, ids))
        return await cur.fetchall()


async def _advance(
    conn: Conn,
    tenant_id: str,
    conversation_id: str,
    messages: list[NewMessage],
    *,
    actor: str,
    actor_name: str,
) -> Conversation | None:
    """Lock the conversation row and move its counters past ``messages`` by ``actor``."""
    output = sum(m.token_count for m in messages if m.role in OUTPUT_ROLES)
    total = sum(m.token_count for m in messages)
    query = sql.SQL(
        "UPDATE conversations SET message_count = message_count + %(n)s,"
        " total_input_tokens = total_input_tokens + %(input)s,"
        " total_output_tokens = total_output_tokens + %(output)s,"
        " last_message_time = now(), last_activity_time = now(), update_time = now(),"
        " updated_by = %(actor)s, updated_by_name = %(actor_name)s,"
        " status = CASE WHEN status = 'idle' THEN 'active' ELSE status END"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s AND status <> 'closed'"
        " RETURNING {cols}"
    ).format(cols=CONVERSATION_COLUMNS)
    params = {
        "n": len(messages),
        "input": total - output,
        "output": output,
        "tenant": tenant_id,
        "id": conversation_id,
        "actor": actor,
        "actor_name": actor_name,
    }
    async with conn.cursor(row_factory=class_row(Conversation)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def append_messages(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    conversation_id: str,
    messages: list[NewMessage],
    request_id: str = "",
    request_hash: bytes = b"",
    create_if_missing: NewConversation | None = None,
    max_conversations: int = 0,
    embed_model: str | None = None,
) -> tuple[list[Message], Conversation]:
    """Append ``messages`` by ``actor`` (a key id) with gapless seqs, all or nothing.

    The UPDATE of the conversation row serialises concurrent appenders to one
    conversation (and only to it), so seqs are assigned without gaps. Creating
    the conversation is RESOURCE_EXHAUSTED when the tenant stores
    ``max_conversations`` (0: no limit). With ``embed_model``, messages with
    content are queued for the background embedder (conversations/embedding.py).
    """
    async with transaction(pool, tenant_id) as conn:
        if request_id:

            async def replay(_: str, ids: list[uuid.UUID]) -> tuple[list[Message], Conversation]:
                conversation = await select_conversation(conn, tenant_id, conversation_id)
                if conversation is None:
                    raise not_found(conversation_id)
                return await _select_messages(conn, tenant_id, conversation_id, ids), conversation

            replayed = await idempotency.claim_or_replay(
                conn,
                tenant_id=tenant_id,
                request_id=request_id,
                method="AppendMessages",
                request_hash=request_hash,
                resource_id=conversation_id,
                replay=replay,
                scope=conversation_id,  # "turn-1" once per conversation, not per tenant
            )
            if replayed is not None:
                return replayed
        conversation = await _advance(
            conn, tenant_id, conversation_id, messages, actor=actor, actor_name=actor_name
        )
        if conversation is None and create_if_missing is not None:
            try:
                await quotas.check_room(
                    conn, tenant_id=tenant_id, kind="conversations", adding=1,
                    limit=max_conversations,
                )  # fmt: skip
            except ResourceExhausted:
                # A CLOSED conversation exists: that is the error to report.
                if await select_conversation(conn, tenant_id, conversation_id) is None:
                    raise
            await insert_conversation(
                conn, tenant_id, create_if_missing, actor=actor, actor_name=actor_name,
                if_missing=True,
            )  # fmt: skip
            conversation = await _advance(
                conn, tenant_id, conversation_id, messages, actor=actor, actor_name=actor_name
            )
        if conversation is None:
            if await select_conversation(conn, tenant_id, conversation_id) is None:
                raise not_found(conversation_id)
            raise FailedPrecondition(
                f"conversation {conversation_id!r} is CLOSED; reopen it to append"
            )
        first_seq = conversation.message_count - len(messages) + 1
        ids = [uuid7() for _ in messages]
        query = sql.SQL(
            "INSERT INTO messages (tenant_id, conversation_id, seq, id, role, content, name,"
            " tool_calls, tool_call_id, token_count, model, metadata, created_by,"
            " created_by_name, embed_model)"
            " SELECT %(tenant)s, %(conversation)s, *, %(actor)s, %(actor_name)s,"
            " CASE WHEN content_ <> '' THEN %(embed_model)s::text END"
            " FROM unnest(%(seq)s::bigint[],"
            " %(id)s::uuid[], %(role)s::text[], %(content)s::text[], %(name)s::text[],"
            " %(tool_calls)s::jsonb[], %(tool_call_id)s::text[], %(token_count)s::int[],"
            " %(model)s::text[], %(metadata)s::jsonb[]) AS m(seq_, id_, role_, content_)"
            " RETURNING {cols}"
        ).format(cols=MESSAGE_COLUMNS)
        params = {
            "tenant": tenant_id,
            "conversation": conversation_id,
            "seq": list(range(first_seq, first_seq + len(messages))),
            "id": ids,
            "role": [m.role for m in messages],
            "content": [m.content for m in messages],
            "name": [m.name for m in messages],
            "tool_calls": [Jsonb(m.tool_calls) for m in messages],
            "tool_call_id": [m.tool_call_id for m in messages],
            "token_count": [m.token_count for m in messages],
            "model": [m.model for m in messages],
            "metadata": [Jsonb(m.metadata) for m in messages],
            "actor": actor,
            "actor_name": actor_name,
            "embed_model": embed_model,
        }
        async with conn.cursor(row_factory=class_row(Message)) as cur:
            await cur.execute(query, params)
            inserted = sorted(await cur.fetchall(), key=lambda m: m.seq)
        if request_id:
            await idempotency.record_items(
                conn, tenant_id=tenant_id, request_id=request_id, item_ids=ids,
                scope=conversation_id,
            )  # fmt: skip
        return inserted, conversation


async def list_messages(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    conversation_id: str,
    limit: int,
    newest_first: bool,
    from_seq: int | None,
) -> list[Message]:
    """Up to ``limit`` messages from ``from_seq`` (inclusive) in the given order."""
    if newest_first:
        bound, order = sql.SQL("AND seq <= %(from)s"), sql.SQL("DESC")
    else:
        bound, order = sql.SQL("AND seq >= %(from)s"), sql.SQL("ASC")
    query = sql.SQL(
        "SELECT {cols} FROM messages WHERE tenant_id = %(tenant)s"
        " AND conversation_id = %(conversation)s {bound} ORDER BY seq {order} LIMIT %(limit)s"
    ).format(
        cols=MESSAGE_COLUMNS, bound=bound if from_seq is not None else sql.SQL(""), order=order
    )
    params = {
        "tenant": tenant_id,
        "conversation": conversation_id,
        "from": from_seq,
        "limit": limit,
    }
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=class_row(Message))
    if not rows:  # the conversation's end, or no conversation: a second round trip tells
        await get_conversation(pool, tenant_id=tenant_id, conversation_id=conversation_id)
    return rows


async def get_context_window(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    conversation_id: str,
    max_messages: int,
    max_tokens: int | None,
    include_system_messages: bool,
) -> ContextWindow:
    """The newest messages within both limits, oldest first.

    One statement (CONTEXT_WINDOW_QUERY), so one round trip and one snapshot.
    """
    params = {
        "tenant": tenant_id,
        "conversation": conversation_id,
        "limit": max_messages,
        "max_tokens": max_tokens,
        "system": include_system_messages,
        "pins": MAX_PINNED_SYSTEM_MESSAGES,
    }
    [rows] = await read(pool, tenant_id, [(CONTEXT_WINDOW_QUERY, params)], row_factory=tuple_row)
    if not rows:
        raise not_found(conversation_id)
    last, summary = rows[0][0], rows[0][1]
    messages = [Message(*row[2:]) for row in rows if row[2] is not None]
    return ContextWindow(
        messages=messages,
        summary=summary,
        total_tokens=sum(m.token_count for m in messages),
        omitted_message_count=last - len(messages),
    )


async def set_message_feedback(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    conversation_id: str,
    message_id: uuid.UUID,
    rating: str,
    comment: str,
) -> Message:
    """Record feedback on a message of the conversation; NOT_FOUND otherwise."""
    query = sql.SQL(
        "UPDATE messages SET feedback_rating = %s, feedback_comment = %s, feedback_time = now()"
        " WHERE tenant_id = %s AND id = %s AND conversation_id = %s RETURNING {cols}"
    ).format(cols=MESSAGE_COLUMNS)
    async with (
        transaction(pool, tenant_id) as conn,
        conn.cursor(row_factory=class_row(Message)) as cur,
    ):
        await cur.execute(query, (rating, comment, tenant_id, message_id, conversation_id))
        updated = await cur.fetchone()
    if updated is None:
        raise NotFound(
            f"message {str(message_id)!r} does not exist in conversation {conversation_id!r}"
        )
    return updated
