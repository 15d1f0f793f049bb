"""EraseUser: everything of one user of a tenant, gone in one transaction."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from psycopg_pool import AsyncConnectionPool

from memoryd_server.database import transaction
from memoryd_server.errors import InvalidArgument

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure removed, per kind."""

    tenant_id: str
    user_id: str
    conversations: int
    messages: int
    memories: int
    history_snapshots: int
    erase_time: dt.datetime
    erased_by: str
    documents: int = 0


# The user's rows are locked first, in id order (the access recorder's order),
# in a statement of their own: the deletes that follow then start from a
# snapshot taken after every concurrent write to those rows has committed, so
# a racing update can neither add a history snapshot nor an appended message
# that the deletes miss.
_LOCK = (
    "SELECT (SELECT count(*) FROM (SELECT FROM conversations WHERE tenant_id = %(tenant)s"
    "  AND user_id = %(user)s ORDER BY id FOR UPDATE) c),"
    " (SELECT count(*) FROM (SELECT FROM memories WHERE tenant_id = %(tenant)s"
    "  AND user_id = %(user)s ORDER BY id FOR UPDATE) m),"
    " (SELECT count(*) FROM (SELECT FROM documents WHERE tenant_id = %(tenant)s"
    "  AND user_id = %(user)s ORDER BY id FOR UPDATE) d)"
)

# Messages are deleted by name rather than by the foreign key's cascade, so
# they can be counted. The idempotency keys of those conversations (creates and
# appends: resource_id is the conversation) go too: they hold the ids and a
# hash of the content, and a retry must not replay a result that is gone.
_ERASE_CONVERSATIONS = (
    "WITH gone AS (DELETE FROM conversations WHERE tenant_id = %(tenant)s"
    "  AND user_id = %(user)s RETURNING id),"
    " gone_messages AS (DELETE FROM messages WHERE tenant_id = %(tenant)s"
    "  AND conversation_id IN (SELECT id FROM gone) RETURNING 1),"
    " gone_keys AS (DELETE FROM idempotency_keys WHERE tenant_id = %(tenant)s"
    "  AND resource_id IN (SELECT id FROM gone))"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_messages)"
)

# Documents go whole: their chunks and versions by cascade, and the
# idempotency keys of their puts (resource_id is the document). Versions of
# other documents that belonged to this user then (a put may change user_id)
# go too, as memory snapshots do.
_ERASE_DOCUMENTS = (
    "WITH gone AS (DELETE FROM documents WHERE tenant_id = %(tenant)s"
    "  AND user_id = %(user)s RETURNING id),"
    " gone_versions AS (DELETE FROM document_versions WHERE tenant_id = %(tenant)s"
    "  AND state ->> 'user_id' = %(user)s),"
    " gone_keys AS (DELETE FROM idempotency_keys WHERE tenant_id = %(tenant)s"
    "  AND resource_id IN (SELECT id::text FROM gone))"
    " SELECT count(*) FROM gone"
)

# As a purge (history.purge), for every memory at once: the row goes (its
# access counts with it, by cascade), a PURGED tombstone is appended after the
# memory's last event, and the snapshots, which hold the content, are deleted.
# Snapshots of other memories that show this user_id go too: an upsert by key
# may have handed a memory of this user to another, and its earlier versions
# are still this user's content. Idempotency keys that name an erased memory
# (CreateMemory's resource_id, BatchCreateMemories' item_ids) are dropped,
# even when a batch also created memories of other users.
_ERASE_MEMORIES = (
    "WITH gone AS (DELETE FROM memories WHERE tenant_id = %(tenant)s"
    "  AND user_id = %(user)s RETURNING id, version),"
    " tombstones AS (INSERT INTO memory_events"
    "  (tenant_id, memory_id, version, event_type, actor, actor_name, event_time)"
    "  SELECT %(tenant)s, g.id, greatest(g.version, last.version) + 1, 'purged', %(actor)s,"
    "  %(actor_name)s, greatest(clock_timestamp(), last.event_time + interval '1 microsecond')"
    "  FROM gone g CROSS JOIN LATERAL (SELECT max(e.version) AS version,"
    "  max(e.event_time) AS event_time FROM memory_events e"
    "  WHERE e.tenant_id = %(tenant)s AND e.memory_id = g.id) last"
    "  RETURNING event_time),"
    " gone_snapshots AS (DELETE FROM memory_snapshots WHERE tenant_id = %(tenant)s"
    "  AND (memory_id IN (SELECT id FROM gone) OR state ->> 'user_id' = %(user)s) RETURNING 1),"
    " gone_keys AS (DELETE FROM idempotency_keys WHERE tenant_id = %(tenant)s"
    "  AND (resource_id IN (SELECT id::text FROM gone)"
    "  OR item_ids && ARRAY(SELECT id FROM gone)))"
    " SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM gone_snapshots),"
    " greatest(clock_timestamp(), (SELECT max(event_time) FROM tombstones))"
)


async def erase_user(
    pool: AsyncConnectionPool, *, tenant_id: str, user_id: str, actor: str, actor_name: str
) -> ErasureReceipt:
    """Delete ``user_id``'s conversations, messages, memories and documents in ``tenant_id``.

    One transaction, a few set-based statements whatever the user's size. The
    history keeps one PURGED tombstone per erased memory (ids, versions,
    ``actor`` and ``actor_name``, times: no content) and loses every snapshot
    of it. Left alone, because they belong to other users and hold only ids:
    other users' memories whose ``related_to``, ``contradicts`` or
    ``superseded_by`` name an erased memory, or whose source conversation and
    messages are erased ones. Writes for the user that commit after the
    erasure has started are not erased.
    """
    if not user_id:  # "" is every row nobody claimed, never one user
        raise InvalidArgument("user_id", "is required")
    params = {"tenant": tenant_id, "user": user_id, "actor": actor, "actor_name": actor_name}
    async with transaction(pool, tenant_id) as conn:
        await conn.execute(_LOCK, params)
        cur = await conn.execute(_ERASE_CONVERSATIONS, params)
        row = await cur.fetchone()
        assert row is not None
        conversations, messages = int(row[0]), int(row[1])
        cur = await conn.execute(_ERASE_MEMORIES, params)
        row = await cur.fetchone()
        assert row is not None
        memories, snapshots, erase_time = int(row[0]), int(row[1]), row[2]
        cur = await conn.execute(_ERASE_DOCUMENTS, params)
        row = await cur.fetchone()
        assert row is not None
        documents = int(row[0])
    # The user id is personal data: the log says who erased, not whom.
    log.info(
        "user_erased",
        tenant=tenant_id,
        conversations=conversations,
        messages=messages,
        memories=memories,
        history_snapshots=snapshots,
        documents=documents,
        erased_by=actor,
        erased_by_name=actor_name,
    )
    return ErasureReceipt(
        tenant_id=tenant_id,
        user_id=user_id,
        conversations=conversations,
        messages=messages,
        memories=memories,
        history_snapshots=snapshots,
        erase_time=erase_time,
        erased_by=actor,
        documents=documents,
    )
