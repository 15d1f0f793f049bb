"""SQL for conversations, with their transaction boundaries (messages: messages.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from memoryd_server import idempotency, quotas
from memoryd_server.conversations.models import (
    Conversation,
    ConversationFilter,
    NewConversation,
)
from memoryd_server.database import transaction
from memoryd_server.errors import Aborted, AlreadyExists, NotFound
from memoryd_server.reads import read

Conn = AsyncConnection[Any]

CONVERSATION_COLUMNS = sql.SQL(
    "id, user_id, agent_id, app_name, title, status, summary, metadata, state, version,"
    " message_count, total_input_tokens, total_output_tokens, last_message_time,"
    " last_activity_time, create_time, update_time, created_by, created_by_name, updated_by,"
    " updated_by_name"
)


_SELECT_CONVERSATION = sql.SQL(
    sql.SQL("SELECT {cols} FROM conversations WHERE tenant_id = %(tenant)s AND id = %(id)s")
    .format(cols=CONVERSATION_COLUMNS)
    .as_string()
)


def not_found(conversation_id: str) -> NotFound:
    return NotFound(f"conversation {conversation_id!r} does not exist")


async def insert_conversation(
    conn: Conn,
    tenant_id: str,
    new: NewConversation,
    *,
    actor: str,
    actor_name: str,
    if_missing: bool = False,
) -> Conversation | None:
    query = sql.SQL(
        "INSERT INTO conversations"
        " (tenant_id, id, user_id, agent_id, app_name, title, metadata, state, created_by,"
        " created_by_name, updated_by, updated_by_name)"
        " VALUES (%(tenant)s, %(id)s, %(user_id)s, %(agent_id)s, %(app_name)s, %(title)s,"
        " %(metadata)s, %(state)s, %(actor)s, %(actor_name)s, %(actor)s, %(actor_name)s)"
        " {conflict} RETURNING {cols}"
    ).format(
        conflict=sql.SQL("ON CONFLICT DO NOTHING" if if_missing else ""),
        cols=CONVERSATION_COLUMNS,
    )
    params = {
        "tenant": tenant_id,
        "id": new.id,
        "user_id": new.user_id,
        "agent_id": new.agent_id,
        "app_name": new.app_name,
        "title": new.title,
        "metadata": Jsonb(new.metadata),
        "state": Jsonb(new.state),
        "actor": actor,
        "actor_name": actor_name,
    }
    async with conn.cursor(row_factory=class_row(Conversation)) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def select_conversation(
    conn: Conn,
    tenant_id: str,
    conversation_id: str,
) -> Conversation | None:
    async with conn.cursor(row_factory=class_row(Conversation)) as cur:
        await cur.execute(_SELECT_CONVERSATION, {"tenant": tenant_id, "id": conversation_id})
        return await cur.fetchone()


async def create_conversation(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    new: NewConversation,
    request_id: str = "",
    request_hash: bytes = b"",
    max_conversations: int = 0,
) -> Conversation:
    """Insert a conversation by ``actor`` (a key id); ALREADY_EXISTS when its id is taken.

    RESOURCE_EXHAUSTED when the tenant stores ``max_conversations`` (0: no limit).
    """
    async with transaction(pool, tenant_id) as conn:
        if request_id:

            async def replay(stored_id: str, _: list[uuid.UUID]) -> Conversation:
                found = await select_conversation(conn, tenant_id, stored_id)
                if found is None:
                    raise not_found(stored_id)
                return found

            replayed = await idempotency.claim_or_replay(
                conn,
                tenant_id=tenant_id,
                request_id=request_id,
                method="CreateConversation",
                request_hash=request_hash,
                resource_id=new.id,
                replay=replay,
            )
            if replayed is not None:
                return replayed
        exists = await select_conversation(conn, tenant_id, new.id)
        if exists is not None:
            raise AlreadyExists(f"conversation {new.id!r} already exists")
        await quotas.check_room(
            conn, tenant_id=tenant_id, kind="conversations", adding=1, limit=max_conversations
        )
        created = await insert_conversation(
            conn, tenant_id, new, actor=actor, actor_name=actor_name
        )
        assert created is not None
        return created


async def get_conversation(
    pool: AsyncConnectionPool, *, tenant_id: str, conversation_id: str
) -> Conversation:
    """The conversation, or NOT_FOUND."""
    query = _SELECT_CONVERSATION
    params = {"tenant": tenant_id, "id": conversation_id}
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=class_row(Conversation))
    if not rows:
        raise not_found(conversation_id)
    return rows[0]


async def list_conversations(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    filter: ConversationFilter,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> list[Conversation]:
    """Up to ``limit`` conversations after the keyset position ``after``."""
    conditions: list[sql.Composable] = [sql.SQL("tenant_id = %(tenant)s")]
    params: dict[str, Any] = {"tenant": tenant_id, "limit": limit}
    for column in ("user_id", "agent_id", "app_name", "status"):
        value = getattr(filter, column)
        if value:
            conditions.append(
                sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
            )
            params[column] = value
    if after is not None:
        conditions.append(sql.SQL("(last_activity_time, id) < (%(after_time)s, %(after_id)s)"))
        params["after_time"], params["after_id"] = after
    query = sql.SQL(
        "SELECT {cols} FROM conversations WHERE {where}"
        " ORDER BY last_activity_time DESC, id DESC LIMIT %(limit)s"
    ).format(cols=CONVERSATION_COLUMNS, where=sql.SQL(" AND ").join(conditions))
    [rows] = await read(pool, tenant_id, [(query, params)], row_factory=class_row(Conversation))
    return rows


async def update_conversation(
    pool: AsyncConnectionPool,
    *,
    tenant_id: str,
    actor: str,
    actor_name: str,
    conversation_id: str,
    changes: dict[str, Any],
    expected_version: int | None,
) -> Conversation:
    """Replace the fields in ``changes``; ABORTED when ``expected_version`` is stale."""
    assignments = [
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
        for name in sorted(changes)
    ]
    params: dict[str, Any] = {
        name: Jsonb(value) if isinstance(value, dict) else value for name, value in changes.items()
    }
    params.update(
        tenant=tenant_id,
        id=conversation_id,
        expected=expected_version,
        actor=actor,
        actor_name=actor_name,
    )
    query = sql.SQL(
        "UPDATE conversations SET {sets}, version = version + 1, update_time = now(),"
        " updated_by = %(actor)s, updated_by_name = %(actor_name)s"
        " WHERE tenant_id = %(tenant)s AND id = %(id)s"
        " AND (%(expected)s::bigint IS NULL OR version = %(expected)s::bigint)"
        " RETURNING {cols}"
    ).format(sets=sql.SQL(", ").join(assignments), cols=CONVERSATION_COLUMNS)
    async with transaction(pool, tenant_id) as conn:
        async with conn.cursor(row_factory=class_row(Conversation)) as cur:
            await cur.execute(query, params)
            updated = await cur.fetchone()
        if updated is not None:
            return updated
        current = await select_conversation(conn, tenant_id, conversation_id)
    if current is None:
        raise not_found(conversation_id)
    raise Aborted(
        f"conversation {conversation_id!r} is at version {current.version}, not"
        f" {expected_version}; re-read it and retry"
    )


async def delete_conversation(
    pool: AsyncConnectionPool, *, tenant_id: str, conversation_id: str
) -> int:
    """Delete a conversation with its messages; returns how many messages went."""
    async with transaction(pool, tenant_id) as conn:
        cur = await conn.execute(
            "DELETE FROM conversations WHERE tenant_id = %s AND id = %s RETURNING message_count",
            (tenant_id, conversation_id),
        )
        row = await cur.fetchone()
        if row is None:
            raise not_found(conversation_id)
        await idempotency.forget_resource(conn, tenant_id=tenant_id, resource_id=conversation_id)
        return int(row[0])
