"""Per-tenant quotas: request rate, stored memories and conversations, content size.

The API tests run against ``auth_server`` with a fresh ``tenant`` each; its
quotas are set behind the API (UPDATE tenants) and the server's key cache is
told to forget the tenant, as UpdateTenant does. The counters are checked
against count(*) through ``db``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from psycopg import sql

import memoryd
from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import conversation_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as mpb
from memoryd_server import quotas
from memoryd_server.auth.interceptor import AuthInterceptor
from memoryd_server.auth.principal import ADMIN_KEY, ANONYMOUS
from memoryd_server.auth.verifier import TenantRecord, Verified
from memoryd_server.config import Settings
from memoryd_server.database import transaction
from memoryd_server.errors import ResourceExhausted, to_status
from memoryd_server.quotas import Limits
from memoryd_server.ratelimit import MAX_WAIT_SECONDS, RateLimiter

from .conftest import ServerThread, TenantKeys, assert_status

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
INVALID = grpc.StatusCode.INVALID_ARGUMENT

Db = psycopg.Connection[Any]
Memories = memory_pb2_grpc.MemoryServiceStub
Conversations = conversation_pb2_grpc.ConversationServiceStub


# -- helpers ----------------------------------------------------------------------


@pytest.fixture
def channel(auth_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(auth_server.addr) as ch:
        yield ch


@pytest.fixture
def memories(channel: grpc.Channel) -> Memories:
    return memory_pb2_grpc.MemoryServiceStub(channel)


@pytest.fixture
def conversations(channel: grpc.Channel) -> Conversations:
    return conversation_pb2_grpc.ConversationServiceStub(channel)


def set_quotas(db: Db, server: ServerThread, tenant_id: str, **values: Any) -> None:
    """Set a tenant's quota columns, and make the server see them at once."""
    sets = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values
    )
    db.execute(
        sql.SQL("UPDATE tenants SET {} WHERE tenant_id = %(tenant)s").format(sets),
        {**values, "tenant": tenant_id},
    )

    async def forget() -> None:
        assert server.app.keys is not None
        server.app.keys.forget(tenant_id=tenant_id)

    server.run(forget())


def create_memory(
    stub: Memories, tenant: TenantKeys, content: str = "a memory", *, upsert: bool = False,
    **fields: Any,
) -> mpb.Memory:  # fmt: skip
    fields.setdefault("namespace", ["quota"])
    request = mpb.CreateMemoryRequest(memory=mpb.Memory(content=content, **fields), upsert=upsert)
    return stub.CreateMemory(request, metadata=tenant.metadata()).memory


def batch(stub: Memories, tenant: TenantKeys, n: int) -> list[str]:
    request = mpb.BatchCreateMemoriesRequest(
        memories=[mpb.Memory(namespace=["quota"], content=f"batch {i}") for i in range(n)]
    )
    return list(stub.BatchCreateMemories(request, metadata=tenant.metadata()).memory_ids)


def purge(stub: Memories, tenant: TenantKeys, memory_id: str) -> None:
    stub.DeleteMemory(
        mpb.DeleteMemoryRequest(memory_id=memory_id, purge=True), metadata=tenant.metadata()
    )


def new_conversation(stub: Conversations, tenant: TenantKeys) -> str:
    created = stub.CreateConversation(cpb.CreateConversationRequest(), metadata=tenant.metadata())
    return created.conversation.id


def first_turn(stub: Conversations, tenant: TenantKeys, conversation_id: str) -> Any:
    return stub.AppendMessages(
        cpb.AppendMessagesRequest(
            conversation_id=conversation_id,
            create_if_missing=True,
            messages=[cpb.Message(role=cpb.MESSAGE_ROLE_USER, content="hello")],
        ),
        metadata=tenant.metadata(),
    )


def counted(db: Db, tenant_id: str) -> dict[str, int]:
    """The counters' sums by kind."""
    rows = db.execute(
        "SELECT kind, sum(n) FROM tenant_usage WHERE tenant_id = %s GROUP BY kind", (tenant_id,)
    ).fetchall()
    return {"memories": 0, "conversations": 0} | {kind: int(n) for kind, n in rows}


def stored(db: Db, tenant_id: str) -> dict[str, int]:
    """count(*) of each kind."""
    row = db.execute(
        "SELECT (SELECT count(*) FROM memories WHERE tenant_id = %(t)s),"
        " (SELECT count(*) FROM conversations WHERE tenant_id = %(t)s)",
        {"t": tenant_id},
    ).fetchone()
    assert row is not None
    return {"memories": row[0], "conversations": row[1]}


def retry_delay(err: grpc.RpcError) -> float:
    """The RetryInfo's delay in seconds (fails without one)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo detail")


# -- the token bucket -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_admits_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(Settings(), clock=clock)
    assert [limiter.take("t", rate=2.0, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("t", rate=2.0, burst=3) == pytest.approx(0.5)
    clock.now += 0.25
    assert limiter.take("t", rate=2.0, burst=3) == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.take("t", rate=2.0, burst=3) == 0.0
    assert limiter.take("t", rate=2.0, burst=3) == pytest.approx(0.5)
    # A long quiet period refills up to the burst, not beyond.
    clock.now += 3600
    assert [limiter.take("t", rate=2.0, burst=3) for _ in range(4)][-1] > 0


def test_refused_calls_take_no_token() -> None:
    clock = Clock()
    limiter = RateLimiter(Settings(), clock=clock)
    limiter.take("t", rate=1.0, burst=1)
    for _ in range(10):
        assert limiter.take("t", rate=1.0, burst=1) > 0
    clock.now += 1.0
    assert limiter.take("t", rate=1.0, burst=1) == 0.0


@pytest.mark.parametrize("rate", [1e-4, 1e-12, 1e-20, 5e-324])
def test_tiny_rates_ask_for_at_most_an_hour(rate: float) -> None:
    """A near-zero rate still gives a finite RetryInfo a Duration can hold."""
    limiter = RateLimiter(Settings(), clock=Clock())
    limits = Limits(rate, 1, 0, 0, 0)
    limiter.check("t", limits)
    with pytest.raises(ResourceExhausted) as info:
        limiter.check("t", limits)
    assert info.value.retry_after == MAX_WAIT_SECONDS
    code, _, details = to_status(info.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert status_pb2.Status.FromString(details).details


def test_tenants_have_separate_buckets_and_zero_is_unlimited() -> None:
    limiter = RateLimiter(Settings(), clock=Clock())
    limiter.take("a", rate=1.0, burst=1)
    assert limiter.take("a", rate=1.0, burst=1) > 0
    assert limiter.take("b", rate=1.0, burst=1) == 0.0
    assert all(limiter.take("c", rate=0.0, burst=1) == 0.0 for _ in range(100))
    assert all(limiter.take("d", rate=1.0, burst=0) == 0.0 for _ in range(100))
    assert len(limiter) == 2  # unlimited tenants need no bucket


def test_buckets_are_bounded_least_recently_used_first() -> None:
    limiter = RateLimiter(Settings(), clock=Clock(), max_tenants=3)
    for tenant in ("a", "b", "c"):
        limiter.take(tenant, rate=1.0, burst=1)
    limiter.take("a", rate=1.0, burst=1)  # "a" used again: "b" is the oldest
    limiter.take("d", rate=1.0, burst=1)
    assert len(limiter) == 3
    assert limiter.take("a", rate=1.0, burst=1) > 0  # kept: still empty
    assert limiter.take("b", rate=1.0, burst=1) == 0.0  # dropped: a full bucket again


def test_a_lowered_burst_caps_the_tokens_held() -> None:
    limiter = RateLimiter(Settings(), clock=Clock())
    limiter.take("t", rate=1.0, burst=10)
    takes = [limiter.take("t", rate=1.0, burst=2) for _ in range(3)]
    assert takes == [0.0, 0.0, pytest.approx(1.0)]


def test_check_raises_resource_exhausted_with_retry_info() -> None:
    limiter = RateLimiter(Settings(), clock=Clock())
    limits = quotas.Limits(4.0, 1, 0, 0, 0)
    limiter.check("acme", limits)
    with pytest.raises(ResourceExhausted) as info:
        limiter.check("acme", limits)
    assert info.value.retry_after == pytest.approx(0.25)
    assert "tenant acme exceeded its rate of 4 requests per second; retry in 0.250 s" in str(
        info.value
    )
    code, _, details = to_status(info.value)
    assert code == EXHAUSTED
    status = status_pb2.Status.FromString(details)
    error_info = error_details_pb2.ErrorInfo()
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(error_info)
    assert error_info.reason == "ResourceExhausted"
    assert status.details[1].Unpack(retry)
    assert retry.retry_delay.ToTimedelta().total_seconds() == pytest.approx(0.25)


def test_quota_errors_carry_no_retry_info() -> None:
    _, _, details = to_status(ResourceExhausted("tenant t stores 3 memories"))
    status = status_pb2.Status.FromString(details)
    assert len(status.details) == 1


def test_operators_and_auth_off_have_no_limits() -> None:
    limiter = RateLimiter(Settings(quota_requests_per_second=1.0, quota_burst=1))
    interceptor = AuthInterceptor(None, limiter)
    for _ in range(5):
        assert interceptor._limits(Verified(ANONYMOUS, None)) is quotas.UNLIMITED
        assert interceptor._limits(Verified(ADMIN_KEY, None)) is quotas.UNLIMITED
    assert len(limiter) == 0
    tenant = Verified(ANONYMOUS, TenantRecord("acme", "active", max_memories=7))
    assert interceptor._limits(tenant).max_memories == 7
    with pytest.raises(ResourceExhausted):
        interceptor._limits(tenant)


def test_effective_content_limit_never_exceeds_the_servers() -> None:
    settings = Settings(max_content_bytes=1000)
    assert quotas.effective_limits(settings, None).max_content_bytes == 1000
    for own, expected in ((None, 1000), (0, 1000), (10, 10), (5000, 1000)):
        record = TenantRecord("t", "active", max_content_bytes=own)
        assert quotas.effective_limits(settings, record).max_content_bytes == expected


# -- request rate over the API --------------------------------------------------


def test_rate_limit_refuses_beyond_the_burst_then_recovers(
    db: Db,
    auth_server: ServerThread,
    conversations: Conversations,
    tenant: TenantKeys,
    other_tenant: TenantKeys,
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, requests_per_second=2.0, burst=3)
    set_quotas(db, auth_server, other_tenant.tenant_id, requests_per_second=2.0, burst=3)

    def call(who: TenantKeys) -> Any:
        return conversations.ListConversations(
            cpb.ListConversationsRequest(), metadata=who.metadata("viewer")
        )

    for _ in range(3):
        call(tenant)
    err = assert_status(
        lambda: call(tenant),
        EXHAUSTED,
        message=f"tenant {tenant.tenant_id} exceeded its rate of 2 requests per second; retry in",
    )
    delay = retry_delay(err)
    assert 0 < delay <= 0.5
    # The other tenant has its own bucket; the refused call took no token.
    for _ in range(3):
        call(other_tenant)
    time.sleep(delay)
    call(tenant)
    assert_status(lambda: call(tenant), EXHAUSTED)


def test_typed_client_waits_out_the_rate_limit(
    db: Db, auth_server: ServerThread, tenant: TenantKeys
) -> None:
    """memoryd.Client retries a refused read after the RetryInfo delay, and it then passes."""
    set_quotas(db, auth_server, tenant.tenant_id, requests_per_second=4, burst=1)
    with memoryd.Client(auth_server.addr, api_key=tenant.viewer) as client:
        client.conversations.list()  # takes the only token
        started = time.monotonic()
        page = client.conversations.list()  # refused once, retried after about 0.25 s
        waited = time.monotonic() - started
    assert page.items == ()
    assert 0.15 < waited < 5
    # A rate-limit refusal comes before the handler: even a write that is
    # never retried otherwise (a delete has no request_id) is.
    with memoryd.Client(auth_server.addr, api_key=tenant.member) as client:
        client.conversations.create(conversation_id=f"rl-{tenant.tenant_id}")
        client.conversations.delete(f"rl-{tenant.tenant_id}")
        with pytest.raises(memoryd.NotFound):
            client.conversations.get(f"rl-{tenant.tenant_id}")


def test_unlimited_rate(
    db: Db, auth_server: ServerThread, conversations: Conversations, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, requests_per_second=0, burst=1)
    for _ in range(20):
        conversations.ListConversations(cpb.ListConversationsRequest(), metadata=tenant.metadata())


# -- stored memories ------------------------------------------------------------


def test_max_memories_refuses_then_admits_after_a_purge(
    db: Db, auth_server: ServerThread, memories: Memories, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_memories=3)
    made = [create_memory(memories, tenant, f"m{i}") for i in range(3)]
    assert_status(
        lambda: create_memory(memories, tenant, "one too many"),
        EXHAUSTED,
        message=f"tenant {tenant.tenant_id} stores 3 memories, its limit of 3 reached",
    )
    # Archived memories are still stored: only a purge makes room.
    memories.DeleteMemory(mpb.DeleteMemoryRequest(memory_id=made[0].id), metadata=tenant.metadata())
    assert_status(lambda: create_memory(memories, tenant, "still too many"), EXHAUSTED)
    purge(memories, tenant, made[0].id)
    create_memory(memories, tenant, "fits again")
    assert stored(db, tenant.tenant_id)["memories"] == 3


def test_upsert_at_the_limit_replaces_but_adds_nothing(
    db: Db, auth_server: ServerThread, memories: Memories, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_memories=2)
    create_memory(memories, tenant, "first", key="k1")
    create_memory(memories, tenant, "second", key="k2")
    replaced = create_memory(memories, tenant, "second, again", key="k2", upsert=True)
    assert replaced.content == "second, again"
    assert_status(
        lambda: create_memory(memories, tenant, "new key", key="k3", upsert=True), EXHAUSTED
    )


def test_supersede_at_the_limit_is_refused(
    db: Db, auth_server: ServerThread, memories: Memories, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_memories=1)
    old = create_memory(memories, tenant, "old")
    assert_status(
        lambda: memories.SupersedeMemory(
            mpb.SupersedeMemoryRequest(memory_id=old.id, memory=mpb.Memory(content="new")),
            metadata=tenant.metadata(),
        ),
        EXHAUSTED,
    )
    current = memories.GetMemory(mpb.GetMemoryRequest(memory_id=old.id), metadata=tenant.metadata())
    assert current.memory.status == mpb.MEMORY_STATUS_ACTIVE
    # At the limit, a missing or stale memory still says so, not that the tenant is full.
    assert_status(
        lambda: memories.SupersedeMemory(
            mpb.SupersedeMemoryRequest(
                memory_id=str(uuid.uuid4()), memory=mpb.Memory(content="new")
            ),
            metadata=tenant.metadata(),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert_status(
        lambda: memories.SupersedeMemory(
            mpb.SupersedeMemoryRequest(
                memory_id=old.id, memory=mpb.Memory(content="new"), expected_version=7
            ),
            metadata=tenant.metadata(),
        ),
        grpc.StatusCode.ABORTED,
    )


def test_batch_over_the_limit_is_refused_as_a_whole(
    db: Db, auth_server: ServerThread, memories: Memories, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_memories=5)
    batch(memories, tenant, 3)
    assert_status(
        lambda: batch(memories, tenant, 3),
        EXHAUSTED,
        message=f"tenant {tenant.tenant_id} stores 3 memories; 3 more would exceed its limit",
    )
    assert stored(db, tenant.tenant_id)["memories"] == 3
    assert len(batch(memories, tenant, 2)) == 2
    assert stored(db, tenant.tenant_id)["memories"] == 5


def test_unlimited_memories(
    db: Db, auth_server: ServerThread, memories: Memories, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_memories=0)
    assert len(batch(memories, tenant, 50)) == 50


# -- stored conversations -------------------------------------------------------


def test_max_conversations_refuses_then_admits_after_a_delete(
    db: Db, auth_server: ServerThread, conversations: Conversations, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_conversations=2)
    first = new_conversation(conversations, tenant)
    first_turn(conversations, tenant, f"session-{uuid.uuid4().hex}")
    message = f"tenant {tenant.tenant_id} stores 2 conversations, its limit of 2 reached"
    assert_status(lambda: new_conversation(conversations, tenant), EXHAUSTED, message=message)
    assert_status(
        lambda: first_turn(conversations, tenant, "one-too-many"), EXHAUSTED, message=message
    )
    # Appending to a conversation that exists adds no conversation.
    first_turn(conversations, tenant, first)
    conversations.DeleteConversation(
        cpb.DeleteConversationRequest(conversation_id=first), metadata=tenant.metadata()
    )
    new_conversation(conversations, tenant)
    assert stored(db, tenant.tenant_id)["conversations"] == 2


def test_a_closed_conversation_at_the_limit_reports_closed(
    db: Db, auth_server: ServerThread, conversations: Conversations, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_conversations=1)
    closed = new_conversation(conversations, tenant)
    conversations.UpdateConversation(
        cpb.UpdateConversationRequest(
            conversation=cpb.Conversation(id=closed, status=cpb.CONVERSATION_STATUS_CLOSED),
            update_mask=field_mask_pb2.FieldMask(paths=["status"]),
        ),
        metadata=tenant.metadata(),
    )
    assert_status(
        lambda: first_turn(conversations, tenant, closed), grpc.StatusCode.FAILED_PRECONDITION
    )


# -- content size ---------------------------------------------------------------


def test_content_over_the_tenants_limit_is_invalid(
    db: Db,
    auth_server: ServerThread,
    memories: Memories,
    conversations: Conversations,
    tenant: TenantKeys,
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_content_bytes=10)
    over = "é" * 6  # 12 bytes, 6 characters
    fits = create_memory(memories, tenant, "0123456789")
    limit = "is 12 bytes, over the tenant's limit of 10 bytes"
    assert_status(
        lambda: create_memory(memories, tenant, over),
        INVALID,
        field="memory.content",
        message=limit,
    )
    assert_status(
        lambda: memories.BatchCreateMemories(
            mpb.BatchCreateMemoriesRequest(
                memories=[
                    mpb.Memory(namespace=["quota"], content="short"),
                    mpb.Memory(namespace=["quota"], content=over),
                ]
            ),
            metadata=tenant.metadata(),
        ),
        INVALID,
        field="memories[1].content",
        message=limit,
    )
    assert_status(
        lambda: memories.UpdateMemory(
            mpb.UpdateMemoryRequest(
                memory=mpb.Memory(id=fits.id, content=over),
                update_mask=field_mask_pb2.FieldMask(paths=["content"]),
            ),
            metadata=tenant.metadata(),
        ),
        INVALID,
        field="memory.content",
        message=limit,
    )
    assert_status(
        lambda: memories.SupersedeMemory(
            mpb.SupersedeMemoryRequest(memory_id=fits.id, memory=mpb.Memory(content=over)),
            metadata=tenant.metadata(),
        ),
        INVALID,
        field="memory.content",
        message=limit,
    )
    append = cpb.AppendMessagesRequest(
        conversation_id="c",
        create_if_missing=True,
        messages=[
            cpb.Message(role=cpb.MESSAGE_ROLE_USER, content="fits"),
            cpb.Message(role=cpb.MESSAGE_ROLE_USER, content=over),
        ],
    )
    assert_status(
        lambda: conversations.AppendMessages(append, metadata=tenant.metadata()),
        INVALID,
        field="messages[1].content",
        message=limit,
    )
    assert stored(db, tenant.tenant_id) == {"memories": 1, "conversations": 0}


# -- the counters -----------------------------------------------------------------


def test_counters_equal_the_rows_after_every_kind_of_write(
    db: Db,
    auth_server: ServerThread,
    memories: Memories,
    conversations: Conversations,
    tenant: TenantKeys,
) -> None:
    tenant_id = tenant.tenant_id
    made = [create_memory(memories, tenant, f"m{i}", key=f"k{i}") for i in range(4)]
    create_memory(memories, tenant, "replaced", key="k0", upsert=True)
    ids = batch(memories, tenant, 20)
    memories.SupersedeMemory(
        mpb.SupersedeMemoryRequest(memory_id=made[1].id, memory=mpb.Memory(content="newer")),
        metadata=tenant.metadata(),
    )
    memories.DeleteMemory(mpb.DeleteMemoryRequest(memory_id=made[2].id), metadata=tenant.metadata())
    for memory_id in ids[:5]:
        purge(memories, tenant, memory_id)
    conversation_ids = [new_conversation(conversations, tenant) for _ in range(3)]
    first_turn(conversations, tenant, "by-append")
    first_turn(conversations, tenant, conversation_ids[0])
    conversations.DeleteConversation(
        cpb.DeleteConversationRequest(conversation_id=conversation_ids[0]),
        metadata=tenant.metadata(),
    )
    # The cross-tenant purge of expiry works as memoryd_maintenance, no tenant declared.
    with db.transaction():
        db.execute("SET LOCAL ROLE memoryd_maintenance")
        db.execute("DELETE FROM memories WHERE tenant_id = %s AND id = %s", (tenant_id, ids[5]))
    assert stored(db, tenant_id) == {"memories": 4 + 20 + 1 - 5 - 1, "conversations": 3}
    assert counted(db, tenant_id) == stored(db, tenant_id)

    async def usage() -> tuple[quotas.Usage, quotas.Usage]:
        pool = auth_server.app._pool
        assert pool is not None
        async with transaction(pool, tenant_id) as conn:
            own = await quotas.read_usage(conn, tenant_id)
        async with transaction(pool, None, {"role": "memoryd_operator"}) as conn:
            operator = await quotas.read_usage(conn, tenant_id)
        return own, operator

    expected = quotas.Usage(memories=19, conversations=3)
    assert auth_server.run(usage()) == (expected, expected)


def test_counters_are_tenant_private(
    auth_server: ServerThread, memories: Memories, tenant: TenantKeys, other_tenant: TenantKeys
) -> None:
    create_memory(memories, other_tenant, "theirs")

    async def peek() -> list[tuple[Any, ...]]:
        pool = auth_server.app._pool
        assert pool is not None
        async with transaction(pool, tenant.tenant_id) as conn:
            cur = await conn.execute(
                "SELECT tenant_id FROM tenant_usage WHERE tenant_id = %s", (other_tenant.tenant_id,)
            )
            return await cur.fetchall()

    assert auth_server.run(peek()) == []


def test_concurrent_creators_of_one_tenant_all_succeed(
    db: Db, auth_server: ServerThread, memories: Memories, tenant: TenantKeys
) -> None:
    set_quotas(db, auth_server, tenant.tenant_id, max_memories=1000)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(w: int) -> None:
        barrier.wait()
        try:
            for i in range(10):
                create_memory(memories, tenant, f"writer {w} memory {i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert stored(db, tenant.tenant_id)["memories"] == 80
    assert counted(db, tenant.tenant_id)["memories"] == 80
    slots = db.execute(
        "SELECT count(*) FROM tenant_usage WHERE tenant_id = %s AND kind = 'memories'",
        (tenant.tenant_id,),
    ).fetchone()
    assert slots is not None
    assert slots[0] > 1


def test_open_writers_of_one_tenant_do_not_wait_for_each_other(
    pg_uri: str, auth_server: ServerThread, tenant: TenantKeys
) -> None:
    """Eight transactions insert memories of one tenant and stay open: none blocks.

    Each transaction counts into the slot of its transaction id; a counter
    shared by all would make the second insert wait for the first commit.
    """
    del auth_server  # its migrations made the tables
    connections: list[psycopg.Connection[Any]] = []
    slots: set[int] = set()
    try:
        while len(slots) < 8:
            conn = psycopg.connect(pg_uri)
            conn.execute("SET ROLE memoryd_app")
            conn.execute("SELECT set_config('memoryd.tenant', %s, true)", (tenant.tenant_id,))
            conn.execute("SET LOCAL lock_timeout = '2s'")
            row = conn.execute("SELECT pg_current_xact_id()::text::bigint % 16").fetchone()
            assert row is not None
            if row[0] in slots:  # another session's ids came between: try the next
                conn.close()
                continue
            slots.add(row[0])
            connections.append(conn)
        for conn in connections:
            conn.execute(
                "INSERT INTO memories (tenant_id, id, namespace, ns_path, content)"
                " VALUES (%s, %s, '{open}', 'open', 'held open')",
                (tenant.tenant_id, uuid.uuid4()),
            )
        for conn in connections:
            conn.commit()
    finally:
        for conn in connections:
            conn.close()
    with psycopg.connect(pg_uri, autocommit=True) as db:
        assert counted(db, tenant.tenant_id)["memories"] == 8
