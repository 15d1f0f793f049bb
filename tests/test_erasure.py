"""EraseUser: one user's conversations, messages, memories and history content go.

Data of two users (A erased, B kept) in one tenant, and of user A in another
tenant, is written through the API of ``auth_server``. After the erasure every
table of the schema is scanned behind the API: nothing holds A's user id, A's
content or A's ids (but the history's tombstones, which hold ids and no
content, and B's memory that points at A's), B's rows are byte-identical, and
the other tenant is untouched.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from psycopg import sql

from memoryd.v1 import admin_pb2 as apb
from memoryd.v1 import admin_pb2_grpc, conversation_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import memory_pb2 as mpb
from memoryd_server.admin.erasure import ErasureReceipt, erase_user
from memoryd_server.errors import InvalidArgument
from tests.conftest import ADMIN_SECRET, ServerThread, TenantKeys, assert_status

Db = psycopg.Connection[Any]
Metadata = tuple[tuple[str, str], ...]
OPERATOR: Metadata = (("authorization", f"Bearer {ADMIN_SECRET}"),)
# Bookkeeping of the tenant itself, not of its users: keys are stamped when
# used and the usage counters follow every write.
HOUSEKEEPING = {"tenants", "api_keys", "tenant_usage"}


@dataclass
class Stubs:
    server: ServerThread
    conversations: conversation_pb2_grpc.ConversationServiceStub
    memories: memory_pb2_grpc.MemoryServiceStub
    admin: admin_pb2_grpc.AdminServiceStub


@pytest.fixture
def stubs(auth_server: ServerThread) -> Iterator[Stubs]:
    with grpc.insecure_channel(auth_server.addr) as channel:
        yield Stubs(
            auth_server,
            conversation_pb2_grpc.ConversationServiceStub(channel),
            memory_pb2_grpc.MemoryServiceStub(channel),
            admin_pb2_grpc.AdminServiceStub(channel),
        )


@dataclass
class Written:
    """What one user's writes created, and the strings that identify them."""

    user_id: str
    markers: list[str] = field(default_factory=list)  # content, user id, ids, request ids
    memory_ids: list[str] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0

    @property
    def content(self) -> list[str]:
        """The markers that are content or the user id (never in a tombstone)."""
        return self.markers[:2]


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def write_user(stubs: Stubs, md: Metadata, *, user_id: str, tag: str, uid: str) -> Written:
    """Two conversations with messages and memories with history, all idempotent writes."""
    secret = f"{tag}-secret-{uid}"
    out = Written(user_id, markers=[secret, user_id])
    conv1, conv2 = f"conv-{tag}1-{uid}", f"conv-{tag}2-{uid}"
    req = [f"req-{tag}{i}-{uid}" for i in range(4)]
    out.markers += [conv1, conv2, *req]

    stubs.conversations.CreateConversation(
        cpb.CreateConversationRequest(
            conversation_id=conv1,
            conversation=cpb.Conversation(user_id=user_id, title=f"title {secret}"),
            request_id=req[0],
        ),
        metadata=md,
    )
    appended = stubs.conversations.AppendMessages(
        cpb.AppendMessagesRequest(
            conversation_id=conv1,
            messages=[
                cpb.Message(role=cpb.MESSAGE_ROLE_USER, content=f"hello {secret} {i}")
                for i in range(3)
            ],
            request_id=req[1],
        ),
        metadata=md,
    )
    message_ids = [m.id for m in appended.messages]
    appended = stubs.conversations.AppendMessages(
        cpb.AppendMessagesRequest(
            conversation_id=conv2,
            create_if_missing=True,
            conversation=cpb.Conversation(user_id=user_id),
            messages=[
                cpb.Message(role=cpb.MESSAGE_ROLE_ASSISTANT, content=f"reply {secret} {i}")
                for i in range(2)
            ],
        ),
        metadata=md,
    )
    message_ids += [m.id for m in appended.messages]
    out.markers += message_ids
    out.conversations, out.messages = 2, 5

    namespace = ["erase", uid, tag]
    created = stubs.memories.CreateMemory(
        mpb.CreateMemoryRequest(
            memory=mpb.Memory(namespace=namespace, content=f"likes {secret}", user_id=user_id),
            request_id=req[2],
        ),
        metadata=md,
    ).memory
    for version in (2, 3):  # versions 2 and 3: three snapshots
        stubs.memories.UpdateMemory(
            mpb.UpdateMemoryRequest(
                memory=mpb.Memory(id=created.id, content=f"likes {secret} v{version}"),
                update_mask=mask("content"),
                reason=f"because {secret}",
            ),
            metadata=md,
        )
    batch = stubs.memories.BatchCreateMemories(
        mpb.BatchCreateMemoriesRequest(
            memories=[
                mpb.Memory(namespace=namespace, content=f"batch {secret} {i}", user_id=user_id)
                for i in range(2)
            ],
            request_id=req[3],
        ),
        metadata=md,
    )
    old = stubs.memories.CreateMemory(
        mpb.CreateMemoryRequest(
            memory=mpb.Memory(namespace=namespace, content=f"old {secret}", user_id=user_id)
        ),
        metadata=md,
    ).memory
    superseded = stubs.memories.SupersedeMemory(
        mpb.SupersedeMemoryRequest(
            memory_id=old.id,
            memory=mpb.Memory(content=f"new {secret}", user_id=user_id),
        ),
        metadata=md,
    )
    sourced = stubs.memories.CreateMemory(
        mpb.CreateMemoryRequest(
            memory=mpb.Memory(
                namespace=namespace,
                content=f"extracted {secret}",
                user_id=user_id,
                source=mpb.MemorySource(
                    kind=mpb.MEMORY_SOURCE_KIND_EXTRACTION,
                    conversation_id=conv1,
                    message_ids=message_ids[:2],
                ),
            )
        ),
        metadata=md,
    ).memory
    out.memory_ids = [
        created.id, *batch.memory_ids, old.id, superseded.memory.id, sourced.id
    ]  # fmt: skip
    out.markers += out.memory_ids
    # A search hit: the memory gets a memory_access row (flushed in the background).
    hits = stubs.memories.SearchMemories(
        mpb.SearchMemoriesRequest(
            query_text=secret, filter=mpb.MemoryFilter(user_id=user_id), top_k=10
        ),
        metadata=md,
    )
    assert hits.results
    return out


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def tables(db: Db) -> dict[str, bool]:
    """Every table of the schema, and whether it has a tenant_id column."""
    rows = db.execute(
        "SELECT t.table_name, EXISTS (SELECT FROM information_schema.columns c"
        " WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name"
        " AND c.column_name = 'tenant_id') FROM information_schema.tables t"
        " WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
    ).fetchall()
    return {name: bool(tenanted) for name, tenanted in rows}


def dump(db: Db, tenant_id: str) -> dict[str, list[str]]:
    """Every row of ``tenant_id`` in every table, as text, sorted (superuser: no RLS)."""
    result = {}
    for table, tenanted in tables(db).items():
        if tenanted:
            query = sql.SQL("SELECT t::text FROM {} t WHERE tenant_id = %s ORDER BY 1").format(
                sql.Identifier(table)
            )
            result[table] = [r[0] for r in db.execute(query, (tenant_id,)).fetchall()]
    return result


def dump_untenanted(db: Db) -> list[str]:
    """Every row of the tables without a tenant (server secrets, migration log)."""
    rows: list[str] = []
    for table, tenanted in tables(db).items():
        if not tenanted:
            query = sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))
            rows += [r[0] for r in db.execute(query).fetchall()]
    return rows


def without_keys(rows: dict[str, list[str]]) -> dict[str, list[str]]:
    """A dump without api_keys, whose last_used_time every call stamps."""
    return {table: r for table, r in rows.items() if table != "api_keys"}


def users_accessed(db: Db, tenant_id: str) -> int:
    """How many users' memories have an access count (written about once a second)."""
    row = db.execute(
        "SELECT count(DISTINCT m.user_id) FROM memory_access a JOIN memories m"
        " ON m.tenant_id = a.tenant_id AND m.id = a.memory_id WHERE a.tenant_id = %s",
        (tenant_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def mentions(row: str, markers: list[str]) -> bool:
    return any(m in row for m in markers)


def expected_counts(db: Db, tenant_id: str, user_id: str) -> tuple[int, int, int, int]:
    """(conversations, messages, memories, history snapshots) of the user, behind the API."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM conversations WHERE tenant_id = %(t)s AND user_id = %(u)s),"
        " (SELECT count(*) FROM messages m JOIN conversations c ON c.tenant_id = m.tenant_id"
        "  AND c.id = m.conversation_id WHERE c.tenant_id = %(t)s AND c.user_id = %(u)s),"
        " (SELECT count(*) FROM memories WHERE tenant_id = %(t)s AND user_id = %(u)s),"
        " (SELECT count(*) FROM memory_snapshots s WHERE s.tenant_id = %(t)s"
        "  AND (s.state ->> 'user_id' = %(u)s OR s.memory_id IN (SELECT id FROM memories"
        "  WHERE tenant_id = %(t)s AND user_id = %(u)s)))",
        {"t": tenant_id, "u": user_id},
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def counts(receipt: apb.ErasureReceipt | ErasureReceipt) -> tuple[int, int, int, int]:
    return (receipt.conversations, receipt.messages, receipt.memories, receipt.history_snapshots)


def erase_directly(server: ServerThread, tenant_id: str, user_id: str) -> ErasureReceipt:
    pool = server.app._pool  # the request pool, as the servicer uses it
    assert pool is not None
    return server.run(
        erase_user(pool, tenant_id=tenant_id, user_id=user_id, actor="test", actor_name="test")
    )


def history(stubs: Stubs, md: Metadata, memory_id: str) -> list[mpb.MemoryEvent]:
    return list(
        stubs.memories.GetMemoryHistory(
            mpb.GetMemoryHistoryRequest(memory_id=memory_id), metadata=md
        ).events
    )


def test_erase_user_leaves_nothing_of_the_user_and_touches_nobody_else(
    stubs: Stubs, tenant: TenantKeys, other_tenant: TenantKeys, db: Db, uid: str
) -> None:
    """A's rows go in every table; B's and the other tenant's stay byte for byte."""
    md, other_md = tenant.metadata("member"), other_tenant.metadata("member")
    user_a, user_b = f"user-a-{uid}", f"user-b-{uid}"
    a = write_user(stubs, md, user_id=user_a, tag="a", uid=uid)
    b = write_user(stubs, md, user_id=user_b, tag="b", uid=uid)
    a_elsewhere = write_user(stubs, other_md, user_id=user_a, tag="a", uid=uid)
    # B's memory points at A's memory and conversation: it holds only ids, and stays.
    b_ref = stubs.memories.CreateMemory(
        mpb.CreateMemoryRequest(
            memory=mpb.Memory(
                namespace=["erase", uid, "b"], content=f"b-secret-{uid} refers", user_id=user_b,
                related_to=[a.memory_ids[0]],
                source=mpb.MemorySource(kind=mpb.MEMORY_SOURCE_KIND_EXTRACTION,
                                        conversation_id=a.markers[2]),
            )
        ),
        metadata=md,
    ).memory  # fmt: skip
    wait_for(lambda: users_accessed(db, tenant.tenant_id) == 2)
    wait_for(lambda: users_accessed(db, other_tenant.tenant_id) == 1)

    assert expected_counts(db, tenant.tenant_id, user_a) == (2, 5, 6, 9)
    before = dump(db, tenant.tenant_id)
    other_before = dump(db, other_tenant.tenant_id)
    untenanted_before = dump_untenanted(db)
    assert any(mentions(r, a.markers) for r in before["idempotency_keys"])
    assert any(mentions(r, a.markers) for r in before["memory_access"])

    # Who may not: viewers, members, and another tenant's admin (NOT_FOUND here).
    request = apb.EraseUserRequest(user_id=user_a)
    assert_status(
        lambda: stubs.admin.EraseUser(request, metadata=tenant.metadata("viewer")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert_status(
        lambda: stubs.admin.EraseUser(request, metadata=tenant.metadata("member")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert_status(
        lambda: stubs.admin.EraseUser(
            apb.EraseUserRequest(tenant_id=tenant.tenant_id, user_id=user_a),
            metadata=other_tenant.metadata("admin"),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert_status(
        lambda: stubs.admin.EraseUser(apb.EraseUserRequest(), metadata=tenant.metadata("admin")),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="user_id",
    )
    assert without_keys(dump(db, tenant.tenant_id)) == without_keys(before)

    receipt = stubs.admin.EraseUser(request, metadata=tenant.metadata("admin")).receipt
    assert counts(receipt) == (2, 5, 6, 9)
    assert (receipt.tenant_id, receipt.user_id) == (tenant.tenant_id, user_a)
    assert receipt.erased_by == tenant.key_ids["admin"]
    erase_time = receipt.erase_time.ToDatetime(tzinfo=None)
    assert abs(time.time() - erase_time.timestamp()) < 60

    after = dump(db, tenant.tenant_id)
    for table, rows in after.items():
        # Neither A's user id nor A's content is anywhere in the tenant.
        assert not [r for r in rows if mentions(r, a.content)], table
        if table in HOUSEKEEPING:
            continue
        if table == "memory_events":
            # The history keeps every event and gains one PURGED tombstone per memory.
            new = sorted(set(rows) - set(before[table]))
            assert set(before[table]) <= set(rows)
            assert len(new) == len(a.memory_ids)
            for memory_id in a.memory_ids:
                (tomb,) = [r for r in new if memory_id in r]
                assert "purged" in tomb
                assert tenant.key_ids["admin"] in tomb
            continue
        # Everything else of A is gone; everything else is unchanged, byte for byte.
        kept = [r for r in before[table] if not mentions(r, a.markers) or b_ref.id in r]
        assert rows == kept, table
    assert [r for r in after["memories"] if b_ref.id in r] == [
        r for r in before["memories"] if b_ref.id in r
    ]
    assert [m for m in b.markers if not any(m in r for rows in after.values() for r in rows)] == []
    assert dump_untenanted(db) == untenanted_before

    # The other tenant's user A is untouched (its keys were used: last_used_time).
    assert without_keys(dump(db, other_tenant.tenant_id)) == without_keys(other_before)

    # Through the API: gone, with a history of tombstones without content.
    member = tenant.metadata("member")
    for memory_id in a.memory_ids:
        with pytest.raises(grpc.RpcError) as info:
            stubs.memories.GetMemory(mpb.GetMemoryRequest(memory_id=memory_id), metadata=member)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    events = history(stubs, member, a.memory_ids[0])
    assert [e.event_type for e in events] == [
        mpb.MEMORY_EVENT_TYPE_CREATED, mpb.MEMORY_EVENT_TYPE_UPDATED,
        mpb.MEMORY_EVENT_TYPE_UPDATED, mpb.MEMORY_EVENT_TYPE_PURGED,
    ]  # fmt: skip
    assert not any(e.HasField("before") or e.HasField("after") or e.reason for e in events)
    assert (events[-1].actor, events[-1].actor_name) == (
        tenant.key_ids["admin"], f"admin of {tenant.tenant_id}"
    )  # fmt: skip
    assert_status(
        lambda: stubs.memories.GetMemoryAt(
            mpb.GetMemoryAtRequest(memory_id=a.memory_ids[0], time=events[1].event_time),
            metadata=member,
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert_status(
        lambda: stubs.conversations.GetConversation(
            cpb.GetConversationRequest(conversation_id=a.markers[2]), metadata=member
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    listed = stubs.memories.ListMemories(
        mpb.ListMemoriesRequest(filter=mpb.MemoryFilter(user_id=user_a)), metadata=member
    )
    assert not listed.memories
    b_first = mpb.GetMemoryRequest(memory_id=b.memory_ids[0])
    b_memory = stubs.memories.GetMemory(b_first, metadata=member).memory
    assert b_memory.content == f"likes b-secret-{uid} v3"

    # Again: nothing left. By an operator naming the tenant, and directly.
    again = stubs.admin.EraseUser(
        apb.EraseUserRequest(tenant_id=tenant.tenant_id, user_id=user_a), metadata=OPERATOR
    ).receipt
    assert counts(again) == (0, 0, 0, 0)
    assert counts(erase_directly(stubs.server, tenant.tenant_id, user_a)) == (0, 0, 0, 0)

    # The other tenant's admin erases its own user A, and only there.
    erased_here = dump(db, tenant.tenant_id)
    receipt = stubs.admin.EraseUser(request, metadata=other_tenant.metadata("admin")).receipt
    assert receipt.tenant_id == other_tenant.tenant_id
    assert counts(receipt) == (a_elsewhere.conversations, a_elsewhere.messages, 6, 9)
    assert dump(db, tenant.tenant_id)["memories"] == erased_here["memories"]


def test_erase_user_purges_snapshots_of_memories_handed_to_another_user(
    stubs: Stubs, tenant: TenantKeys, db: Db, uid: str, server_log: Path
) -> None:
    """An upsert by key gives A's memory to B: B keeps it, A's earlier versions go."""
    md = tenant.metadata("member")
    user_a, user_b = f"user-a-{uid}", f"user-b-{uid}"
    namespace = ["erase", uid]

    def put(user_id: str, content: str) -> mpb.Memory:
        return stubs.memories.CreateMemory(
            mpb.CreateMemoryRequest(
                memory=mpb.Memory(namespace=namespace, key="profile", content=content,
                                  user_id=user_id),
                upsert=True,
            ),
            metadata=md,
        ).memory  # fmt: skip

    first = put(user_a, f"a-secret-{uid}")
    handed = put(user_b, f"b-kept-{uid}")
    assert (handed.id, handed.user_id, handed.version) == (first.id, user_b, 2)

    receipt = stubs.admin.EraseUser(
        apb.EraseUserRequest(user_id=user_a), metadata=tenant.metadata("admin")
    ).receipt
    assert counts(receipt) == (0, 0, 0, 1)
    states = db.execute(
        "SELECT version, state::text FROM memory_snapshots WHERE tenant_id = %s"
        " AND memory_id = %s ORDER BY version",
        (tenant.tenant_id, first.id),
    ).fetchall()
    assert [v for v, _ in states] == [2]
    assert f"b-kept-{uid}" in states[0][1]
    assert f"a-secret-{uid}" not in states[0][1]
    kept = stubs.memories.GetMemory(mpb.GetMemoryRequest(memory_id=first.id), metadata=md)
    assert kept.memory.content == f"b-kept-{uid}"
    events = history(stubs, md, first.id)
    assert [e.HasField("after") for e in events] == [False, True]
    assert not events[1].HasField("before")

    # The log names the tenant and the counts, never the user.
    logged = [json.loads(line) for line in server_log.read_text().splitlines() if line.strip()]
    (event,) = [e for e in logged if e.get("event") == "user_erased"
                and e.get("tenant") == tenant.tenant_id]  # fmt: skip
    assert (event["memories"], event["history_snapshots"]) == (0, 1)
    assert event["erased_by"] == tenant.key_ids["admin"]
    assert user_a not in json.dumps(event)


def test_erase_user_is_all_or_nothing(stubs: Stubs, tenant: TenantKeys, db: Db, uid: str) -> None:
    """A failure after the conversations went (at the snapshots) rolls everything back."""
    user_a = f"user-a-{uid}"
    write_user(stubs, tenant.metadata("member"), user_id=user_a, tag="a", uid=uid)
    before = without_keys(dump(db, tenant.tenant_id))
    trigger = f"erasure_fails_{uid}"
    db.execute(
        sql.SQL(
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF OLD.tenant_id = {tenant} THEN RAISE EXCEPTION 'injected'; END IF;"
            " RETURN OLD; END $$;"
            " CREATE TRIGGER {tr} BEFORE DELETE ON memory_snapshots"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()"
        ).format(
            fn=sql.Identifier(trigger), tr=sql.Identifier(trigger),
            tenant=sql.Literal(tenant.tenant_id),
        )
    )  # fmt: skip
    try:
        with pytest.raises(psycopg.errors.RaiseException, match="injected"):
            erase_directly(stubs.server, tenant.tenant_id, user_a)
    finally:
        db.execute(
            sql.SQL("DROP TRIGGER {0} ON memory_snapshots; DROP FUNCTION {0}()").format(
                sql.Identifier(trigger)
            )
        )
    assert without_keys(dump(db, tenant.tenant_id)) == before
    assert counts(erase_directly(stubs.server, tenant.tenant_id, user_a)) == (2, 5, 6, 9)


def test_erase_user_waits_for_a_concurrent_update_and_erases_its_version(
    stubs: Stubs, tenant: TenantKeys, db: Db, pg_uri: str, uid: str
) -> None:
    """An update holding A's memory when the erasure starts: its new version goes too."""
    user_a = f"user-a-{uid}"
    memory = stubs.memories.CreateMemory(
        mpb.CreateMemoryRequest(
            memory=mpb.Memory(namespace=["erase", uid], content="v1", user_id=user_a)
        ),
        metadata=tenant.metadata("member"),
    ).memory
    with psycopg.connect(pg_uri) as writer:  # what an UpdateMemory does, held open
        writer.execute(
            "UPDATE memories SET content = 'v2', version = 2 WHERE tenant_id = %s AND id = %s",
            (tenant.tenant_id, memory.id),
        )
        writer.execute(
            "INSERT INTO memory_events (tenant_id, memory_id, version, event_type, actor,"
            " event_time) VALUES (%s, %s, 2, 'updated', 'test', clock_timestamp())",
            (tenant.tenant_id, memory.id),
        )
        writer.execute(
            "INSERT INTO memory_snapshots (tenant_id, memory_id, version, state)"
            ' VALUES (%s, %s, 2, \'{"content": "v2"}\')',
            (tenant.tenant_id, memory.id),
        )
        pool = stubs.server.app._pool
        assert pool is not None
        erasing = asyncio.run_coroutine_threadsafe(
            erase_user(pool, tenant_id=tenant.tenant_id, user_id=user_a, actor="t",
                       actor_name="t"),
            stubs.server.loop,
        )  # fmt: skip
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%%FROM memories%%'"
        )
        wait_for(lambda: db.execute(waiting).fetchone() == (1,))
        writer.commit()
    receipt = erasing.result(timeout=30)
    assert counts(receipt) == (0, 0, 1, 2)
    left = db.execute(
        "SELECT count(*) FROM memory_snapshots WHERE tenant_id = %s AND memory_id = %s",
        (tenant.tenant_id, memory.id),
    ).fetchone()
    assert left == (0,)
    tomb = db.execute(
        "SELECT version FROM memory_events WHERE tenant_id = %s AND memory_id = %s"
        " AND event_type = 'purged'",
        (tenant.tenant_id, memory.id),
    ).fetchone()
    assert tomb == (3,)


def test_erase_user_of_ten_thousand_memories(
    stubs: Stubs, tenant: TenantKeys, db: Db, uid: str
) -> None:
    """Set-based: a user's 10,000 memories go in a few statements, not one per row."""
    user_a = f"user-a-{uid}"
    stubs.memories.BatchCreateMemories(
        mpb.BatchCreateMemoriesRequest(
            memories=[
                mpb.Memory(namespace=["erase", uid], content=f"m{i}", user_id=user_a)
                for i in range(10_000)
            ]
        ),
        metadata=tenant.metadata("member"),
    )
    started = time.monotonic()
    receipt = erase_directly(stubs.server, tenant.tenant_id, user_a)
    elapsed = time.monotonic() - started
    assert counts(receipt) == (0, 0, 10_000, 10_000)
    assert elapsed < 20, elapsed
    purged = db.execute(
        "SELECT count(*) FROM memory_events WHERE tenant_id = %s AND event_type = 'purged'",
        (tenant.tenant_id,),
    ).fetchone()
    assert purged == (10_000,)


def test_erase_user_requires_a_user_id(auth_server: ServerThread, tenant: TenantKeys) -> None:
    """An empty user_id would mean every row nobody claimed: refused before any SQL."""
    with pytest.raises(InvalidArgument) as info:
        erase_directly(auth_server, tenant.tenant_id, "")
    assert info.value.field == "user_id"


def test_erasure_receipt_is_the_proto_receipt() -> None:
    """The receipt's fields are the proto's, so the servicer can copy them one to one."""
    names = {f.name for f in apb.ErasureReceipt.DESCRIPTOR.fields}
    assert names == set(ErasureReceipt.__dataclass_fields__)
