"""MemoryService happy paths through the generated stubs.

Create (defaults, every field, ttl, upsert, idempotency), batches, get, update,
supersede, archive and purge, the append-only history, list filters and
paging, namespaces, point-in-time reads, search ranking, access counting and
the background expiry. Each test keeps to its own namespace ``["t", uid]``;
checks behind the API go through ``db``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2
from psycopg import errors

from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd.v1 import search_pb2 as spb
from tests.conftest import assert_status
from tests.embedding_servers import EXTERNAL_MODEL, register_external_model

DIM = 384
NOT_FOUND = grpc.StatusCode.NOT_FOUND

Db = psycopg.Connection[Any]
Stub = memory_pb2_grpc.MemoryServiceStub


# -- helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stub(grpc_create_channel: Callable[..., grpc.Channel]) -> Iterator[Stub]:
    with grpc_create_channel() as channel:
        yield memory_pb2_grpc.MemoryServiceStub(channel)


def unit(seed: int) -> list[float]:
    """A random unit vector of the server's dimension (float32 values)."""
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


def ns(uid: str, *rest: str) -> list[str]:
    return ["t", uid, *rest]


def struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def seconds(value: float) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromTimedelta(dt.timedelta(seconds=value))
    return result


def create(stub: Stub, uid: str, content: str = "a memory", **fields: Any) -> pb.Memory:
    namespace = fields.pop("namespace", ns(uid))
    request = pb.CreateMemoryRequest(
        memory=pb.Memory(namespace=namespace, content=content, **fields)
    )
    return stub.CreateMemory(request).memory


def get(stub: Stub, memory_id: str) -> pb.Memory:
    return stub.GetMemory(pb.GetMemoryRequest(memory_id=memory_id)).memory


def update(stub: Stub, memory: pb.Memory, *paths: str, **kwargs: Any) -> pb.Memory:
    request = pb.UpdateMemoryRequest(memory=memory, update_mask=mask(*paths), **kwargs)
    return stub.UpdateMemory(request).memory


def history(stub: Stub, memory_id: str) -> list[pb.MemoryEvent]:
    request = pb.GetMemoryHistoryRequest(memory_id=memory_id, page_size=1000)
    return list(stub.GetMemoryHistory(request).events)


def list_ids(stub: Stub, page_size: int = 1000, **filter_fields: Any) -> list[str]:
    """Every memory id the filter admits, all pages, in listed order."""
    ids: list[str] = []
    token = ""
    while True:
        page = stub.ListMemories(
            pb.ListMemoriesRequest(
                filter=pb.MemoryFilter(**filter_fields), page_size=page_size, page_token=token
            )
        )
        ids += [m.id for m in page.memories]
        token = page.next_page_token
        if not token:
            return ids


def search(stub: Stub, uid: str, **fields: Any) -> list[pb.SearchResult]:
    filter_fields = fields.pop("filter", {})
    filter_fields.setdefault("namespace_prefix", ns(uid))
    request = pb.SearchMemoriesRequest(filter=pb.MemoryFilter(**filter_fields), **fields)
    return list(stub.SearchMemories(request).results)


def rows(db: Db, uid: str) -> int:
    """How many memories of any status the test's namespace holds."""
    row = db.execute("SELECT count(*) FROM memories WHERE namespace[2] = %s", (uid,)).fetchone()
    assert row is not None
    return int(row[0])


def event_rows(db: Db, memory_id: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM memory_events WHERE memory_id = %s", (memory_id,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``check`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def as_datetime(value: timestamp_pb2.Timestamp) -> dt.datetime:
    return value.ToDatetime(tzinfo=dt.UTC)


def without_embedding(memory: pb.Memory) -> pb.Memory:
    """``memory`` as history and search return it."""
    copy = pb.Memory()
    copy.CopyFrom(memory)
    copy.ClearField("embedding")
    return copy


# -- create -----------------------------------------------------------------


def test_create_applies_defaults(stub, uid):
    """An unset memory is SEMANTIC, importance 5, confidence 1, HOT, ACTIVE, EXPLICIT, version 1."""
    memory = create(stub, uid, "the user likes tea")
    assert uuid.UUID(memory.id).version == 7
    assert memory.namespace == ns(uid)
    assert memory.content == "the user likes tea"
    assert memory.memory_type == pb.MEMORY_TYPE_SEMANTIC
    assert memory.importance == 5
    assert memory.HasField("confidence")
    assert memory.confidence == 1.0
    assert memory.tier == pb.MEMORY_TIER_HOT
    assert memory.status == pb.MEMORY_STATUS_ACTIVE
    assert memory.source.kind == pb.MEMORY_SOURCE_KIND_EXPLICIT
    assert memory.version == 1
    assert not memory.pinned
    assert memory.key == ""
    assert list(memory.embedding) == []
    assert memory.access_count == 0
    assert memory.superseded_by == ""
    assert not memory.HasField("last_access_time")
    assert not memory.HasField("expire_time")
    assert memory.create_time.seconds > 0
    assert memory.create_time == memory.update_time
    assert get(stub, memory.id) == memory


def test_create_round_trips_every_field(stub, uid, pg_uri):
    """Every writable field comes back as sent (embedding to float32 precision)."""
    register_external_model(pg_uri)
    occurred = dt.datetime(2023, 5, 7, 18, 30, tzinfo=dt.UTC)
    related, contradicted = str(uuid.uuid4()), str(uuid.uuid4())
    message_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    embedding = unit(1)
    expire = dt.datetime.now(dt.UTC).replace(microsecond=123456) + dt.timedelta(days=3)
    sent = pb.Memory(
        namespace=ns(uid, "prefs", "food"),
        key="favourite-drink",
        memory_type=pb.MEMORY_TYPE_USER_PROFILE,
        content="Ada drinks green tea every morning",
        subject="Ada",
        embedding=embedding,
        embedding_model=EXTERNAL_MODEL,
        occur_time=ts(occurred),
        importance=8,
        confidence=0.75,
        pinned=True,
        tier=pb.MEMORY_TIER_WARM,
        status=pb.MEMORY_STATUS_DISPUTED,
        source=pb.MemorySource(
            kind=pb.MEMORY_SOURCE_KIND_EXTRACTION,
            conversation_id=f"conv-{uid}",
            message_ids=message_ids,
            extraction_model="extractor-2",
        ),
        user_id=f"user-{uid}",
        agent_id="planner",
        tags=["drinks", "morning"],
        metadata=struct(origin="chat", score=3, nested={"ok": True, "list": [1, "two"]}),
        related_to=[related],
        contradicts=[contradicted],
        expire_time=ts(expire),
        # Output-only fields are ignored.
        version=99,
        access_count=7,
        superseded_by=str(uuid.uuid4()),
        create_time=ts(dt.datetime(2001, 1, 1, tzinfo=dt.UTC)),
    )
    created = stub.CreateMemory(pb.CreateMemoryRequest(memory=sent)).memory
    for memory in (created, get(stub, created.id)):
        assert memory.namespace == ns(uid, "prefs", "food")
        assert memory.key == "favourite-drink"
        assert memory.memory_type == pb.MEMORY_TYPE_USER_PROFILE
        assert memory.content == "Ada drinks green tea every morning"
        assert memory.subject == "Ada"
        assert np.allclose(memory.embedding, embedding, rtol=0, atol=1e-7)
        assert memory.embedding_model == EXTERNAL_MODEL
        assert memory.occur_time == ts(occurred)
        assert memory.importance == 8
        assert memory.confidence == pytest.approx(0.75)
        assert memory.pinned
        assert memory.tier == pb.MEMORY_TIER_WARM
        assert memory.status == pb.MEMORY_STATUS_DISPUTED
        assert memory.source.kind == pb.MEMORY_SOURCE_KIND_EXTRACTION
        assert memory.source.conversation_id == f"conv-{uid}"
        assert list(memory.source.message_ids) == message_ids
        assert memory.source.extraction_model == "extractor-2"
        assert memory.user_id == f"user-{uid}"
        assert memory.agent_id == "planner"
        assert list(memory.tags) == ["drinks", "morning"]
        assert memory.metadata == struct(
            origin="chat", score=3, nested={"ok": True, "list": [1, "two"]}
        )
        assert list(memory.related_to) == [related]
        assert list(memory.contradicts) == [contradicted]
        assert as_datetime(memory.expire_time) == expire
        assert memory.version == 1
        assert memory.access_count == 0
        assert memory.superseded_by == ""
        assert as_datetime(memory.create_time) > dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    (event,) = history(stub, created.id)
    assert event.event_type == pb.MEMORY_EVENT_TYPE_CREATED
    assert not event.HasField("before")
    assert event.after == without_embedding(created)


def test_confidence_zero_and_tags_deduplicated(stub, uid):
    """An explicit confidence 0 is kept (not the default); repeated tags are stored once."""
    memory = create(stub, uid, confidence=0.0, tags=["b", "a", "b", "a"])
    assert memory.HasField("confidence")
    assert memory.confidence == 0.0
    assert list(memory.tags) == ["b", "a"]


def test_ttl_sets_expire_time(stub, uid):
    """A ttl sets expire_time to about now + ttl."""
    before = dt.datetime.now(dt.UTC)
    memory = stub.CreateMemory(
        pb.CreateMemoryRequest(
            memory=pb.Memory(namespace=ns(uid), content="short-lived"), ttl=seconds(3600)
        )
    ).memory
    after = dt.datetime.now(dt.UTC)
    expire = as_datetime(memory.expire_time)
    assert before + dt.timedelta(seconds=3600) <= expire <= after + dt.timedelta(seconds=3601)
    assert as_datetime(get(stub, memory.id).expire_time) == expire


def test_upsert_updates_the_key_holder_in_place(stub, db, uid):
    """An upsert of a held (namespace, key) replaces it: same id, version 2, updated=True."""
    first = stub.CreateMemory(
        pb.CreateMemoryRequest(
            memory=pb.Memory(namespace=ns(uid), key="city", content="lives in Paris"),
            upsert=True,
        )
    )
    assert not first.updated
    assert first.memory.version == 1
    second = stub.CreateMemory(
        pb.CreateMemoryRequest(
            memory=pb.Memory(
                namespace=ns(uid), key="city", content="lives in Lyon", importance=9, tags=["geo"]
            ),
            upsert=True,
        )
    )
    assert second.updated
    assert second.memory.id == first.memory.id
    assert second.memory.version == 2
    assert second.memory.content == "lives in Lyon"
    assert second.memory.importance == 9
    assert list(second.memory.tags) == ["geo"]
    assert second.memory.create_time == first.memory.create_time
    assert as_datetime(second.memory.update_time) > as_datetime(first.memory.update_time)
    by_key = stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid), key="city")).memory
    assert by_key == second.memory
    assert rows(db, uid) == 1
    events = history(stub, first.memory.id)
    assert [e.event_type for e in events] == [
        pb.MEMORY_EVENT_TYPE_CREATED,
        pb.MEMORY_EVENT_TYPE_UPDATED,
    ]
    assert events[1].before.content == "lives in Paris"
    assert events[1].after.content == "lives in Lyon"
    # The same key in another namespace is another memory.
    other = stub.CreateMemory(
        pb.CreateMemoryRequest(
            memory=pb.Memory(namespace=ns(uid, "other"), key="city", content="x"), upsert=True
        )
    )
    assert not other.updated
    assert other.memory.id != first.memory.id


def test_taken_key_without_upsert_already_exists(stub, db, uid):
    """Without upsert a held (namespace, key) is ALREADY_EXISTS and nothing is written."""
    holder = create(stub, uid, "first", key="k")
    assert_status(
        lambda: create(stub, uid, "second", key="k"),
        grpc.StatusCode.ALREADY_EXISTS,
        message="'k'",
    )
    assert rows(db, uid) == 1
    assert get(stub, holder.id).content == "first"


def test_key_is_reusable_after_archive_or_supersede(stub, db, uid):
    """Archiving or superseding the holder frees its key for a new memory."""
    archived = create(stub, uid, "v1", key="k")
    stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=archived.id))
    second = create(stub, uid, "v2", key="k")
    assert second.id != archived.id
    stub.SupersedeMemory(
        pb.SupersedeMemoryRequest(memory_id=second.id, memory=pb.Memory(content="v3 without key"))
    )
    third = create(stub, uid, "v4", key="k")
    by_key = stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid), key="k")).memory
    assert by_key.id == third.id
    assert by_key.content == "v4"
    assert rows(db, uid) == 4


def test_create_request_id_is_idempotent(stub, db, uid):
    """A retried CreateMemory with the same request_id returns the first memory, written once."""
    request = pb.CreateMemoryRequest(
        memory=pb.Memory(namespace=ns(uid), content="once", key="once"), request_id=f"req-{uid}"
    )
    first = stub.CreateMemory(request)
    retry = stub.CreateMemory(request)
    assert retry.memory.id == first.memory.id
    assert retry.memory == first.memory
    assert not retry.updated
    assert rows(db, uid) == 1
    assert event_rows(db, first.memory.id) == 1


def test_batch_request_id_is_idempotent(stub, db, uid):
    """A retried BatchCreateMemories returns the same ids and writes nothing twice."""
    request = pb.BatchCreateMemoriesRequest(
        memories=[pb.Memory(namespace=ns(uid), content=f"m{i}") for i in range(3)],
        request_id=f"batch-{uid}",
    )
    first = stub.BatchCreateMemories(request).memory_ids
    retry = stub.BatchCreateMemories(request).memory_ids
    assert list(retry) == list(first)
    assert len(set(first)) == 3
    assert rows(db, uid) == 3
    assert sum(event_rows(db, memory_id) for memory_id in first) == 3


def _concurrently(workers: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` for each worker, started together; results or grpc status codes."""
    barrier = threading.Barrier(workers)
    outcomes: list[Any] = [None] * workers

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = work(i)
        except grpc.RpcError as exc:
            outcomes[i] = exc.code()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_concurrent_upserts_of_a_new_key_make_one_memory(stub, db, uid):
    """Concurrent upserts of one new key all succeed on a single memory: one creates it."""
    workers = 8
    outcomes = _concurrently(
        workers,
        lambda i: stub.CreateMemory(
            pb.CreateMemoryRequest(
                memory=pb.Memory(namespace=ns(uid), key="race", content=f"writer {i}"),
                upsert=True,
            )
        ),
    )
    assert all(isinstance(o, pb.CreateMemoryResponse) for o in outcomes), outcomes
    assert len({o.memory.id for o in outcomes}) == 1
    assert [o.updated for o in outcomes].count(False) == 1
    assert sorted(o.memory.version for o in outcomes) == list(range(1, workers + 1))
    assert rows(db, uid) == 1
    assert event_rows(db, outcomes[0].memory.id) == workers


def test_concurrent_retries_with_one_request_id_write_once(stub, db, uid):
    """Concurrent calls with one request_id all return the same memory, written once."""
    request = pb.CreateMemoryRequest(
        memory=pb.Memory(namespace=ns(uid), content="retried"), request_id=f"race-{uid}"
    )
    outcomes = _concurrently(8, lambda _: stub.CreateMemory(request))
    assert all(isinstance(o, pb.CreateMemoryResponse) for o in outcomes), outcomes
    assert len({o.memory.id for o in outcomes}) == 1
    assert rows(db, uid) == 1
    batch = pb.BatchCreateMemoriesRequest(
        memories=[pb.Memory(namespace=ns(uid, "b"), content=f"m{i}") for i in range(5)],
        request_id=f"race-batch-{uid}",
    )
    results = _concurrently(8, lambda _: list(stub.BatchCreateMemories(batch).memory_ids))
    assert all(r == results[0] for r in results), results
    assert rows(db, uid) == 6


# -- batches ----------------------------------------------------------------


def test_batch_creates_2000_memories_in_request_order(stub, db, uid):
    """2,000 memories are created in one call; ids come back in request order."""
    memories = [
        pb.Memory(
            namespace=ns(uid, f"g{i % 4}"),
            content=f"batch memory {i}",
            key=f"k{i}",
            importance=i % 10 + 1,
            tags=[f"t{i % 3}"],
            metadata=struct(i=i),
            embedding=unit(i) if i % 2 == 0 else [],
        )
        for i in range(2000)
    ]
    ids = list(
        stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=memories)).memory_ids
    )
    assert len(ids) == 2000
    assert len(set(ids)) == 2000
    stored = dict(
        db.execute(
            "SELECT id::text, content FROM memories WHERE namespace[2] = %s", (uid,)
        ).fetchall()
    )
    assert stored == {memory_id: f"batch memory {i}" for i, memory_id in enumerate(ids)}
    row = db.execute(
        "SELECT count(*) FROM memory_events WHERE memory_id = ANY(%s::uuid[])"
        " AND event_type = 'created' AND version = 1",
        (ids,),
    ).fetchone()
    assert row == (2000,)
    for i in (0, 1, 1999):
        memory = get(stub, ids[i])
        assert memory.namespace == ns(uid, f"g{i % 4}")
        assert memory.key == f"k{i}"
        assert memory.importance == i % 10 + 1
        assert memory.status == pb.MEMORY_STATUS_ACTIVE
        assert memory.version == 1
        assert memory.metadata["i"] == i
        assert np.allclose(memory.embedding, memories[i].embedding, rtol=0, atol=1e-7)
        assert len(memory.embedding) == (DIM if i % 2 == 0 else 0)
        events = history(stub, ids[i])
        assert [e.event_type for e in events] == [pb.MEMORY_EVENT_TYPE_CREATED]
        assert events[0].after == without_embedding(memory)
        assert events[0].event_time == memory.create_time


def test_batch_with_one_bad_memory_writes_nothing(stub, db, uid):
    """One invalid memory fails the whole batch, naming it; nothing is written."""
    memories = [pb.Memory(namespace=ns(uid), content=f"m{i}") for i in range(100)]
    memories[57].importance = 11
    assert_status(
        lambda: stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=memories)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="memories[57].importance",
    )
    assert rows(db, uid) == 0


def test_batch_with_a_repeated_or_taken_key_writes_nothing(stub, db, uid):
    """A key repeated in the batch, or already held, is ALREADY_EXISTS for the whole batch."""
    repeated = [pb.Memory(namespace=ns(uid), content=f"m{i}", key=f"k{i}") for i in range(50)]
    repeated.append(pb.Memory(namespace=ns(uid), content="again", key="k3"))
    assert_status(
        lambda: stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=repeated)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert rows(db, uid) == 0
    create(stub, uid, "holder", key="held")
    taken = [
        pb.Memory(namespace=ns(uid), content="free", key="free"),
        pb.Memory(namespace=ns(uid), content="clash", key="held"),
    ]
    assert_status(
        lambda: stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=taken)),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert rows(db, uid) == 1
    # The same key in different namespaces is fine within one batch.
    spread = [
        pb.Memory(namespace=ns(uid, "x"), content="x", key="same"),
        pb.Memory(namespace=ns(uid, "y"), content="y", key="same"),
    ]
    assert len(stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=spread)).memory_ids)
    assert rows(db, uid) == 3


# -- get --------------------------------------------------------------------


def test_get_by_id_and_by_namespace_and_key(stub, uid):
    """GetMemory finds a memory by id, and by (namespace, key) while it is live."""
    memory = create(stub, uid, "by key", key="lookup", namespace=ns(uid, "a"))
    assert get(stub, memory.id) == memory
    by_key = stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid, "a"), key="lookup")).memory
    assert by_key == memory
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid), key="lookup")), NOT_FOUND
    )
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid, "a"), key="other")),
        NOT_FOUND,
    )
    stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id))
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid, "a"), key="lookup")),
        NOT_FOUND,
    )
    assert get(stub, memory.id).status == pb.MEMORY_STATUS_ARCHIVED


# -- update -----------------------------------------------------------------

# path -> (fields of the memory to create, fields of the update)
UPDATES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "content": ({}, {"content": "new content"}),
    "subject": ({"subject": "old"}, {"subject": "new subject"}),
    "embedding": ({}, {"embedding": unit(5)}),
    "memory_type": ({}, {"memory_type": pb.MEMORY_TYPE_PROCEDURAL}),
    "importance": ({}, {"importance": 10}),
    "confidence": ({}, {"confidence": 0.25}),
    "pinned": ({}, {"pinned": True}),
    "tier": ({}, {"tier": pb.MEMORY_TIER_COLD}),
    "status": ({}, {"status": pb.MEMORY_STATUS_DISPUTED}),
    "tags": ({"tags": ["old"]}, {"tags": ["new", "tags"]}),
    "metadata": ({"metadata": struct(a=1)}, {"metadata": struct(b="two")}),
    "related_to": ({}, {"related_to": [str(uuid.uuid4()), str(uuid.uuid4())]}),
    "contradicts": ({}, {"contradicts": [str(uuid.uuid4())]}),
    "expire_time": ({}, {"expire_time": ts(dt.datetime(2100, 1, 2, 3, 4, 5, tzinfo=dt.UTC))}),
    "occur_time": ({}, {"occur_time": ts(dt.datetime(1999, 12, 31, 23, 59, tzinfo=dt.UTC))}),
}
# Fields set to their zero value: clears.
CLEARS: dict[str, dict[str, Any]] = {
    "embedding": {"embedding": unit(6)},
    "subject": {"subject": "x"},
    "tags": {"tags": ["x"]},
    "metadata": {"metadata": struct(x=1)},
    "related_to": {"related_to": [str(uuid.uuid4())]},
    "expire_time": {"expire_time": ts(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))},
    "pinned": {"pinned": True},
}
CHANGED_BY_EVERY_UPDATE = {"version", "update_time"}


@pytest.mark.parametrize("path", sorted(UPDATES))
def test_update_replaces_only_the_masked_field(stub, uid, path):
    """UpdateMemory replaces exactly the field in the mask and bumps the version."""
    initial, change = UPDATES[path]
    before = create(stub, uid, "old content", embedding=unit(4), **initial)
    sent = pb.Memory(
        id=before.id,
        # Unmasked fields are ignored, even when set.
        content="ignored" if path != "content" else change["content"],
        importance=1 if path != "importance" else change["importance"],
        **{k: v for k, v in change.items() if k not in {"content", "importance"}},
    )
    after = update(stub, sent, path)
    assert after.version == 2
    assert as_datetime(after.update_time) > as_datetime(before.update_time)
    expected = pb.Memory()
    expected.CopyFrom(before)
    expected.MergeFrom(pb.Memory(**change))
    if path in {"tags", "related_to", "contradicts", "embedding"}:
        expected.ClearField(path)
        getattr(expected, path).extend(change[path])
    if path == "occur_time":
        expected.occur_time.CopyFrom(change["occur_time"])
    if path == "metadata":
        expected.metadata.Clear()
        expected.metadata.update({"b": "two"})
    for field in pb.Memory.DESCRIPTOR.fields:
        if field.name in CHANGED_BY_EVERY_UPDATE:
            continue
        if field.name == "embedding":
            assert np.allclose(after.embedding, expected.embedding, rtol=0, atol=1e-7)
        elif field.name == "confidence":
            assert after.confidence == pytest.approx(expected.confidence)
        else:
            assert getattr(after, field.name) == getattr(expected, field.name), field.name
    assert get(stub, before.id) == after
    events = history(stub, before.id)
    assert [e.event_type for e in events] == [
        pb.MEMORY_EVENT_TYPE_CREATED,
        pb.MEMORY_EVENT_TYPE_UPDATED,
    ]


@pytest.mark.parametrize("path", sorted(CLEARS))
def test_update_with_an_unset_value_clears_the_field(stub, uid, path):
    """A masked field left unset in the request is cleared."""
    before = create(stub, uid, **CLEARS[path])
    after = update(stub, pb.Memory(id=before.id), path)
    assert after.version == 2
    if path in {"expire_time"}:
        assert not after.HasField(path)
    else:
        assert not getattr(after, path)
    assert get(stub, before.id) == after


def test_update_records_reason_and_archive_event(stub, uid):
    """The reason lands in the history event; status ARCHIVED by update is an ARCHIVED event."""
    memory = create(stub, uid, "v1")
    update(stub, pb.Memory(id=memory.id, content="v2"), "content", reason="typo fixed")
    archived = update(
        stub, pb.Memory(id=memory.id, status=pb.MEMORY_STATUS_ARCHIVED), "status", reason="stale"
    )
    assert archived.status == pb.MEMORY_STATUS_ARCHIVED
    events = history(stub, memory.id)
    assert [(e.seq, e.event_type, e.reason, e.actor) for e in events] == [
        (1, pb.MEMORY_EVENT_TYPE_CREATED, "", "anonymous"),
        (2, pb.MEMORY_EVENT_TYPE_UPDATED, "typo fixed", "anonymous"),
        (3, pb.MEMORY_EVENT_TYPE_ARCHIVED, "stale", "anonymous"),
    ]
    restored = update(
        stub, pb.Memory(id=memory.id, status=pb.MEMORY_STATUS_ACTIVE), "status", reason="back"
    )
    assert restored.status == pb.MEMORY_STATUS_ACTIVE
    assert restored.version == 4


def test_expected_version_guards_updates(stub, uid):
    """A current expected_version succeeds; a stale one is ABORTED and changes nothing."""
    memory = create(stub, uid, "v1")
    v2 = update(stub, pb.Memory(id=memory.id, content="v2"), "content", expected_version=1)
    assert v2.version == 2
    err = assert_status(
        lambda: update(stub, pb.Memory(id=memory.id, content="v3"), "content", expected_version=1),
        grpc.StatusCode.ABORTED,
    )
    assert "version 2" in (err.details() or "")
    got = get(stub, memory.id)
    assert got.content == "v2"
    assert got.version == 2
    assert len(history(stub, memory.id)) == 2


def test_concurrent_updates_with_the_same_expected_version_one_wins(stub, db, uid):
    """Eight concurrent updates at version 1: exactly one succeeds, the rest are ABORTED."""
    memory = create(stub, uid, "v1")
    workers = 8
    outcomes = _concurrently(
        workers,
        lambda i: update(
            stub, pb.Memory(id=memory.id, content=f"writer {i}"), "content", expected_version=1
        ),
    )
    winners = [o for o in outcomes if isinstance(o, pb.Memory)]
    assert len(winners) == 1, outcomes
    assert outcomes.count(grpc.StatusCode.ABORTED) == workers - 1, outcomes
    got = get(stub, memory.id)
    assert got.version == 2
    assert got.content == winners[0].content
    assert event_rows(db, memory.id) == 2


def test_updating_a_superseded_memory_fails_precondition(stub, uid):
    """A SUPERSEDED memory is read-only: UpdateMemory is FAILED_PRECONDITION."""
    old = create(stub, uid, "old")
    new = stub.SupersedeMemory(
        pb.SupersedeMemoryRequest(memory_id=old.id, memory=pb.Memory(content="new"))
    ).memory
    err = assert_status(
        lambda: update(stub, pb.Memory(id=old.id, content="edit"), "content"),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert new.id in (err.details() or "")
    assert get(stub, old.id).content == "old"


# -- supersede --------------------------------------------------------------


def test_supersede_replaces_the_old_memory(stub, uid):
    """The old memory becomes SUPERSEDED by the new one, which inherits its namespace."""
    old = create(stub, uid, "works at Acme", namespace=ns(uid, "job"), importance=7)
    response = stub.SupersedeMemory(
        pb.SupersedeMemoryRequest(
            memory_id=old.id,
            memory=pb.Memory(content="works at Initech", importance=8),
            expected_version=1,
            reason="changed jobs",
        )
    )
    superseded, new = response.superseded, response.memory
    assert superseded.id == old.id
    assert superseded.status == pb.MEMORY_STATUS_SUPERSEDED
    assert superseded.superseded_by == new.id
    assert superseded.version == 2
    assert superseded.content == "works at Acme"
    assert new.id != old.id
    assert new.namespace == ns(uid, "job")
    assert new.content == "works at Initech"
    assert new.status == pb.MEMORY_STATUS_ACTIVE
    assert new.version == 1
    assert get(stub, old.id) == superseded
    assert list_ids(stub, namespace_prefix=ns(uid)) == [new.id]
    assert list_ids(stub, namespace_prefix=ns(uid), statuses=[pb.MEMORY_STATUS_SUPERSEDED]) == [
        old.id
    ]
    old_events = history(stub, old.id)
    assert [(e.event_type, e.reason) for e in old_events] == [
        (pb.MEMORY_EVENT_TYPE_CREATED, ""),
        (pb.MEMORY_EVENT_TYPE_SUPERSEDED, "changed jobs"),
    ]
    assert old_events[1].after.superseded_by == new.id
    new_events = history(stub, new.id)
    assert [(e.event_type, e.reason) for e in new_events] == [
        (pb.MEMORY_EVENT_TYPE_CREATED, "changed jobs"),
    ]
    # Superseding again is FAILED_PRECONDITION.
    assert_status(
        lambda: stub.SupersedeMemory(
            pb.SupersedeMemoryRequest(memory_id=old.id, memory=pb.Memory(content="x"))
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_supersede_into_another_namespace_and_with_stale_version(stub, db, uid):
    """An explicit namespace is kept; a stale expected_version is ABORTED and writes nothing."""
    old = create(stub, uid, "v1")
    assert_status(
        lambda: stub.SupersedeMemory(
            pb.SupersedeMemoryRequest(
                memory_id=old.id, memory=pb.Memory(content="v2"), expected_version=5
            )
        ),
        grpc.StatusCode.ABORTED,
    )
    assert rows(db, uid) == 1
    assert get(stub, old.id).status == pb.MEMORY_STATUS_ACTIVE
    new = stub.SupersedeMemory(
        pb.SupersedeMemoryRequest(
            memory_id=old.id, memory=pb.Memory(content="v2", namespace=ns(uid, "elsewhere"))
        )
    ).memory
    assert new.namespace == ns(uid, "elsewhere")


def test_concurrent_supersedes_one_wins(stub, db, uid):
    """Of concurrent supersedes of one memory exactly one wins; the rest are FAILED_PRECONDITION."""
    old = create(stub, uid, "contested")
    outcomes = _concurrently(
        6,
        lambda i: stub.SupersedeMemory(
            pb.SupersedeMemoryRequest(memory_id=old.id, memory=pb.Memory(content=f"new {i}"))
        ),
    )
    winners = [o for o in outcomes if isinstance(o, pb.SupersedeMemoryResponse)]
    assert len(winners) == 1, outcomes
    assert outcomes.count(grpc.StatusCode.FAILED_PRECONDITION) == 5, outcomes
    assert get(stub, old.id).superseded_by == winners[0].memory.id
    assert rows(db, uid) == 2


def test_replacement_may_keep_the_key(stub, uid):
    """The replacement may take over the old memory's key."""
    old = create(stub, uid, "v1", key="fact")
    new = stub.SupersedeMemory(
        pb.SupersedeMemoryRequest(memory_id=old.id, memory=pb.Memory(content="v2", key="fact"))
    ).memory
    assert new.key == "fact"
    by_key = stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid), key="fact")).memory
    assert by_key.id == new.id
    assert get(stub, old.id).key == "fact"


# -- delete -----------------------------------------------------------------


def test_archive_keeps_the_memory_readable_but_unlisted(stub, uid):
    """DeleteMemory archives: still gettable, listed only when ARCHIVED is asked for."""
    memory = create(stub, uid, "to archive")
    keep = create(stub, uid, "to keep")
    archived = stub.DeleteMemory(
        pb.DeleteMemoryRequest(memory_id=memory.id, reason="no longer true")
    ).memory
    assert archived.id == memory.id
    assert archived.status == pb.MEMORY_STATUS_ARCHIVED
    assert archived.version == 2
    assert get(stub, memory.id) == archived
    assert list_ids(stub, namespace_prefix=ns(uid)) == [keep.id]
    assert list_ids(stub, namespace_prefix=ns(uid), statuses=[pb.MEMORY_STATUS_ARCHIVED]) == [
        memory.id
    ]
    assert set(
        list_ids(
            stub,
            namespace_prefix=ns(uid),
            statuses=[pb.MEMORY_STATUS_ARCHIVED, pb.MEMORY_STATUS_ACTIVE],
        )
    ) == {memory.id, keep.id}
    events = history(stub, memory.id)
    assert [(e.event_type, e.reason) for e in events] == [
        (pb.MEMORY_EVENT_TYPE_CREATED, ""),
        (pb.MEMORY_EVENT_TYPE_ARCHIVED, "no longer true"),
    ]
    # Archiving again changes nothing.
    again = stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id)).memory
    assert again == archived
    assert len(history(stub, memory.id)) == 2


def test_purge_leaves_no_content_behind(stub, db, uid):
    """A purge removes the memory and its history's content, leaving a PURGED tombstone."""
    secret = f"secret-{uid}"
    memory = create(stub, uid, f"{secret} v1", subject=secret, tags=[secret], key=secret)
    update(stub, pb.Memory(id=memory.id, content=f"{secret} v2"), "content", reason=secret)
    update(stub, pb.Memory(id=memory.id, metadata=struct(s=secret)), "metadata")
    before_purge = get(stub, memory.id)
    response = stub.DeleteMemory(
        pb.DeleteMemoryRequest(memory_id=memory.id, purge=True, reason=secret)
    )
    assert not response.HasField("memory")
    assert_status(lambda: get(stub, memory.id), NOT_FOUND)
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid), key=secret)), NOT_FOUND
    )
    assert db.execute("SELECT count(*) FROM memories WHERE id = %s", (memory.id,)).fetchone() == (
        0,
    )
    assert db.execute(
        "SELECT count(*) FROM memory_snapshots WHERE memory_id = %s", (memory.id,)
    ).fetchone() == (0,)
    pattern = f"%{secret}%"
    assert db.execute(
        "SELECT count(*) FROM memory_snapshots WHERE state::text LIKE %s OR reason LIKE %s",
        (pattern, pattern),
    ).fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM memories WHERE content LIKE %s OR subject LIKE %s"
        " OR key LIKE %s OR metadata::text LIKE %s",
        (pattern, pattern, pattern, pattern),
    ).fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM memory_events WHERE actor LIKE %s", (pattern,)
    ).fetchone() == (0,)
    events = history(stub, memory.id)
    assert [(e.seq, e.event_type) for e in events] == [
        (1, pb.MEMORY_EVENT_TYPE_CREATED),
        (2, pb.MEMORY_EVENT_TYPE_UPDATED),
        (3, pb.MEMORY_EVENT_TYPE_UPDATED),
        (4, pb.MEMORY_EVENT_TYPE_PURGED),
    ]
    for event in events:
        assert not event.HasField("before")
        assert not event.HasField("after")
        assert event.reason == ""
        assert event.memory_id == memory.id
    for instant in (before_purge.create_time, before_purge.update_time):
        assert_status(
            lambda instant=instant: stub.GetMemoryAt(
                pb.GetMemoryAtRequest(memory_id=memory.id, time=instant)
            ),
            NOT_FOUND,
        )
    assert search(stub, uid, query_text=secret) == []
    # Purging it again is NOT_FOUND.
    assert_status(
        lambda: stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id, purge=True)),
        NOT_FOUND,
    )


def test_purge_of_an_archived_memory(stub, uid):
    """An archived memory can still be purged."""
    memory = create(stub, uid, "archived first")
    stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id))
    stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id, purge=True))
    assert_status(lambda: get(stub, memory.id), NOT_FOUND)
    assert [e.event_type for e in history(stub, memory.id)] == [
        pb.MEMORY_EVENT_TYPE_CREATED,
        pb.MEMORY_EVENT_TYPE_ARCHIVED,
        pb.MEMORY_EVENT_TYPE_PURGED,
    ]


def _refused(db: Db, statement: str, params: tuple[Any, ...] = ()) -> None:
    """``statement`` fails with InsufficientPrivilege (and is rolled back regardless)."""
    with pytest.raises(errors.InsufficientPrivilege), db.transaction(force_rollback=True):
        db.execute(statement, params)


def test_the_database_keeps_the_history_append_only(stub, db, uid):
    """UPDATE, DELETE and TRUNCATE of events and UPDATE of snapshots are refused by the database."""
    memory = create(stub, uid, "audited")
    update(stub, pb.Memory(id=memory.id, content="audited v2"), "content")
    _refused(db, "UPDATE memory_events SET actor = 'forged' WHERE memory_id = %s", (memory.id,))
    _refused(db, "DELETE FROM memory_events WHERE memory_id = %s", (memory.id,))
    _refused(db, "TRUNCATE memory_events")
    _refused(db, "TRUNCATE memory_events CASCADE")
    _refused(
        db,
        "UPDATE memory_snapshots SET state = '{}'::jsonb, reason = 'x' WHERE memory_id = %s",
        (memory.id,),
    )
    events = history(stub, memory.id)
    assert [(e.seq, e.actor) for e in events] == [(1, "anonymous"), (2, "anonymous")]
    assert events[1].after.content == "audited v2"


# -- list -------------------------------------------------------------------


@pytest.fixture
def corpus(stub: Stub, uid: str) -> dict[str, pb.Memory]:
    """Memories with distinct attributes, in creation order a, b, c, d, e, f."""
    made = {
        "a": create(
            stub,
            uid,
            "a",
            namespace=ns(uid, "a"),
            tags=["x", "y"],
            user_id="u1",
            agent_id="g1",
            metadata=struct(k="v", n=1),
        ),
        "b": create(
            stub,
            uid,
            "b",
            namespace=ns(uid, "ab"),
            memory_type=pb.MEMORY_TYPE_EPISODIC,
            tags=["x"],
            tier=pb.MEMORY_TIER_WARM,
            user_id="u2",
            agent_id="g1",
            metadata=struct(k="w"),
        ),
        "c": create(
            stub,
            uid,
            "c",
            namespace=ns(uid, "a", "deep"),
            memory_type=pb.MEMORY_TYPE_PROCEDURAL,
            tags=["y", "z"],
            tier=pb.MEMORY_TIER_COLD,
            user_id="u1",
            agent_id="g2",
            metadata=struct(k="v", nested={"p": True}),
        ),
        "d": create(stub, uid, "d", namespace=ns(uid, "a")),
        "e": create(stub, uid, "e", namespace=ns(uid, "a"), status=pb.MEMORY_STATUS_DISPUTED),
        # Expired on arrival: the expiry task may archive it at any moment.
        "f": create(
            stub,
            uid,
            "f",
            namespace=ns(uid, "b"),
            expire_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)),
        ),
    }
    made["d"] = stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=made["d"].id)).memory
    return made


def test_list_filters_each_select_exactly_their_memories(stub, uid, corpus):
    """Every filter field narrows the list to exactly the memories it describes."""
    names = {m.id: name for name, m in corpus.items()}

    def listed(**filter_fields: Any) -> list[str]:
        filter_fields.setdefault("namespace_prefix", ns(uid))
        return [names[i] for i in list_ids(stub, **filter_fields)]

    # Newest first; ACTIVE only by default; expired left out.
    assert listed() == ["c", "b", "a"]
    assert sorted(listed(namespace_prefix=ns(uid, "a"))) == ["a", "c"]
    assert listed(namespace_prefix=ns(uid, "a", "deep")) == ["c"]
    assert listed(namespace_prefix=ns(uid, "ab")) == ["b"]
    assert listed(namespace_prefix=ns(uid, "a", "de")) == []
    assert sorted(listed(memory_types=[pb.MEMORY_TYPE_EPISODIC, pb.MEMORY_TYPE_PROCEDURAL])) == [
        "b",
        "c",
    ]
    assert listed(memory_types=[pb.MEMORY_TYPE_SEMANTIC]) == ["a"]
    assert sorted(listed(tags_any=["x", "z"])) == ["a", "b", "c"]
    assert listed(tags_any=["z"]) == ["c"]
    assert listed(tags_all=["x", "y"]) == ["a"]
    assert sorted(listed(tags_all=["y"])) == ["a", "c"]
    assert listed(statuses=[pb.MEMORY_STATUS_ARCHIVED]) == ["d"]
    assert listed(statuses=[pb.MEMORY_STATUS_DISPUTED]) == ["e"]
    assert sorted(listed(statuses=[pb.MEMORY_STATUS_ACTIVE, pb.MEMORY_STATUS_DISPUTED])) == [
        "a",
        "b",
        "c",
        "e",
    ]
    assert sorted(listed(tiers=[pb.MEMORY_TIER_WARM, pb.MEMORY_TIER_COLD])) == ["b", "c"]
    assert listed(tiers=[pb.MEMORY_TIER_HOT]) == ["a"]
    assert sorted(listed(user_id="u1")) == ["a", "c"]
    assert sorted(listed(agent_id="g1")) == ["a", "b"]
    assert listed(user_id="u1", agent_id="g1") == ["a"]
    assert sorted(listed(metadata=struct(k="v"))) == ["a", "c"]
    assert listed(metadata=struct(nested={"p": True})) == ["c"]
    assert listed(metadata=struct(n=1)) == ["a"]
    assert listed(metadata=struct(k="nope")) == []
    b_time, c_time = corpus["b"].create_time, corpus["c"].create_time
    assert as_datetime(corpus["a"].create_time) < as_datetime(b_time) < as_datetime(c_time)
    assert listed(create_time_start=b_time, create_time_end=c_time) == ["b"]
    assert listed(create_time_start=b_time) == ["c", "b"]
    assert listed(create_time_end=b_time) == ["a"]
    every = [pb.MEMORY_STATUS_ACTIVE, pb.MEMORY_STATUS_ARCHIVED, pb.MEMORY_STATUS_DISPUTED]
    assert sorted(listed(statuses=every)) == ["a", "b", "c", "d", "e"]
    assert sorted(listed(statuses=every, include_expired=True)) == ["a", "b", "c", "d", "e", "f"]


def test_list_pages_to_the_end_without_duplicates(stub, uid):
    """Paging with next_page_token visits every memory once, then ends."""
    ids = stub.BatchCreateMemories(
        pb.BatchCreateMemoriesRequest(
            memories=[pb.Memory(namespace=ns(uid), content=f"m{i}") for i in range(23)]
        )
    ).memory_ids
    singles = [create(stub, uid, f"single {i}").id for i in range(3)]
    pages: list[list[str]] = []
    token = ""
    while True:
        page = stub.ListMemories(
            pb.ListMemoriesRequest(
                filter=pb.MemoryFilter(namespace_prefix=ns(uid)), page_size=5, page_token=token
            )
        )
        pages.append([m.id for m in page.memories])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [5, 5, 5, 5, 5, 1]
    seen = [i for p in pages for i in p]
    assert len(seen) == len(set(seen)) == 26
    assert set(seen) == set(ids) | set(singles)
    assert seen == sorted(seen, key=uuid.UUID, reverse=True)
    assert seen[:3] == singles[::-1]
    assert list_ids(stub, page_size=1000, namespace_prefix=ns(uid)) == seen


# -- namespaces -------------------------------------------------------------


def test_list_namespaces_under_a_prefix_truncated_and_paged(stub, uid):
    """ListNamespaces lists distinct live namespaces in order, truncated to max_depth."""
    for path in (("a",), ("a",), ("a", "x"), ("a", "y"), ("ab",), ("b",), ("b", "x", "deep")):
        create(stub, uid, namespace=ns(uid, *path))
    gone = create(stub, uid, namespace=ns(uid, "gone"))
    stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=gone.id))
    create(stub, uid, namespace=ns(uid, "disputed"), status=pb.MEMORY_STATUS_DISPUTED)

    def namespaces(prefix: list[str], max_depth: int = 0, page_size: int = 0) -> list[list[str]]:
        found: list[list[str]] = []
        token = ""
        while True:
            page = stub.ListNamespaces(
                pb.ListNamespacesRequest(
                    prefix=prefix, max_depth=max_depth, page_size=page_size, page_token=token
                )
            )
            found += [list(n.segments) for n in page.namespaces]
            token = page.next_page_token
            if not token:
                return found

    full = [
        ns(uid, "a"),
        ns(uid, "a", "x"),
        ns(uid, "a", "y"),
        ns(uid, "ab"),
        ns(uid, "b"),
        ns(uid, "b", "x", "deep"),
        ns(uid, "disputed"),
    ]
    assert namespaces(ns(uid)) == full
    assert namespaces(ns(uid), page_size=2) == full
    assert namespaces(ns(uid), page_size=1) == full
    assert namespaces(ns(uid, "a")) == [ns(uid, "a"), ns(uid, "a", "x"), ns(uid, "a", "y")]
    assert namespaces(ns(uid, "b", "x")) == [ns(uid, "b", "x", "deep")]
    assert namespaces(ns(uid), max_depth=3) == [
        ns(uid, "a"),
        ns(uid, "ab"),
        ns(uid, "b"),
        ns(uid, "disputed"),
    ]
    assert namespaces(ns(uid), max_depth=3, page_size=3) == namespaces(ns(uid), max_depth=3)
    assert namespaces(ns(uid), max_depth=4) == [
        ns(uid, "a"),
        ns(uid, "a", "x"),
        ns(uid, "a", "y"),
        ns(uid, "ab"),
        ns(uid, "b"),
        ns(uid, "b", "x"),
        ns(uid, "disputed"),
    ]
    assert namespaces(ns(uid), max_depth=2) == [ns(uid)]
    assert namespaces(ns(uid, "nothing")) == []
    first = stub.ListNamespaces(pb.ListNamespacesRequest(prefix=ns(uid), page_size=7))
    assert first.next_page_token == ""


# -- history ----------------------------------------------------------------


def test_history_pages_oldest_first(stub, uid):
    """GetMemoryHistory pages through events in order; each event's before is the last after."""
    memory = create(stub, uid, "v1")
    for i in range(2, 8):
        update(stub, pb.Memory(id=memory.id, content=f"v{i}"), "content", reason=f"r{i}")
    pages: list[list[pb.MemoryEvent]] = []
    token = ""
    while True:
        page = stub.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(memory_id=memory.id, page_size=3, page_token=token)
        )
        pages.append(list(page.events))
        token = page.next_page_token
        if not token:
            break
    assert [[e.seq for e in p] for p in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    events = [e for p in pages for e in p]
    assert not events[0].HasField("before")
    assert events[0].event_type == pb.MEMORY_EVENT_TYPE_CREATED
    for previous, event in itertools.pairwise(events):
        assert event.event_type == pb.MEMORY_EVENT_TYPE_UPDATED
        assert event.before == previous.after
        assert event.after.version == event.seq
        assert event.after.content == f"v{event.seq}"
        assert event.reason == f"r{event.seq}"
        assert as_datetime(event.event_time) > as_datetime(previous.event_time)
    assert all(len(e.after.embedding) == 0 for e in events)
    assert events[-1].after == get(stub, memory.id)


def test_get_memory_at_rebuilds_each_version(stub, uid):
    """GetMemoryAt at each update_time returns that version; before creation it is NOT_FOUND."""
    versions = [create(stub, uid, "v1", importance=1, tags=["one"])]
    versions.append(update(stub, pb.Memory(id=versions[0].id, content="v2"), "content"))
    versions.append(update(stub, pb.Memory(id=versions[0].id, importance=9), "importance"))
    versions.append(update(stub, pb.Memory(id=versions[0].id, tags=["four"]), "tags"))
    memory_id = versions[0].id

    def at(instant: dt.datetime) -> pb.Memory:
        return stub.GetMemoryAt(pb.GetMemoryAtRequest(memory_id=memory_id, time=ts(instant))).memory

    for version in versions:
        state = at(as_datetime(version.update_time))
        assert state.version == version.version
        assert state.content == version.content
        assert state.importance == version.importance
        assert list(state.tags) == list(version.tags)
        assert state.update_time == version.update_time
        assert state.create_time == versions[0].create_time
    assert [
        (s.content, s.importance, list(s.tags))
        for s in (at(as_datetime(v.update_time)) for v in versions)
    ] == [("v1", 1, ["one"]), ("v2", 1, ["one"]), ("v2", 9, ["one"]), ("v2", 9, ["four"])]
    # Between two versions: the earlier one.
    middle = (
        as_datetime(versions[1].update_time)
        + (as_datetime(versions[2].update_time) - as_datetime(versions[1].update_time)) / 2
    )
    assert at(middle).version == 2
    assert at(dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).version == 4
    just_before = as_datetime(versions[0].create_time) - dt.timedelta(microseconds=1)
    assert_status(lambda: at(just_before), NOT_FOUND)


def test_concurrent_updates_keep_history_times_in_version_order(stub, uid):
    """With concurrent writers later versions get later update_times; GetMemoryAt finds each."""
    for _ in range(4):
        memory = create(stub, uid, "contended")
        outcomes = _concurrently(
            12,
            lambda i, memory=memory: update(
                stub, pb.Memory(id=memory.id, content=f"writer {i}"), "content"
            ),
        )
        versions = sorted([memory, *outcomes], key=lambda m: m.version)
        assert [m.version for m in versions] == list(range(1, 14))
        times = [as_datetime(m.update_time) for m in versions]
        assert times == sorted(times), [(m.version, m.update_time.ToJsonString()) for m in versions]
        for version in versions:
            state = stub.GetMemoryAt(
                pb.GetMemoryAtRequest(memory_id=memory.id, time=version.update_time)
            ).memory
            assert (state.version, state.content) == (version.version, version.content)


def test_get_memory_at_after_purge_is_not_found(stub, uid):
    """Once purged, no past state of a memory can be read."""
    memory = create(stub, uid, "soon gone")
    assert (
        stub.GetMemoryAt(
            pb.GetMemoryAtRequest(memory_id=memory.id, time=memory.create_time)
        ).memory.content
        == "soon gone"
    )
    stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id, purge=True))
    assert_status(
        lambda: stub.GetMemoryAt(
            pb.GetMemoryAtRequest(memory_id=memory.id, time=memory.create_time)
        ),
        NOT_FOUND,
        message="purged",
    )


# -- search -----------------------------------------------------------------


def test_null_embeddings_never_match_a_vector_search(stub, uid):
    """A memory without an embedding is never a vector result but is found by text."""
    query = unit(10)
    with_embedding = create(stub, uid, "penguins waddle", embedding=unit(11))
    without = create(stub, uid, "penguins swim")
    vector = search(stub, uid, query_embedding=query, top_k=100)
    assert [r.memory.id for r in vector] == [with_embedding.id]
    text = search(stub, uid, query_text="penguins", top_k=100)
    assert {r.memory.id for r in text} == {with_embedding.id, without.id}
    hybrid = search(stub, uid, query_embedding=query, query_text="swim", top_k=100)
    by_id = {r.memory.id: r for r in hybrid}
    assert set(by_id) == {with_embedding.id, without.id}
    assert by_id[without.id].similarity_score == 0.0
    assert by_id[without.id].text_score > 0.0


def test_text_search_finds_by_keyword(stub, uid):
    """A text query finds the memories containing its words (stemmed), and only those."""
    giraffe = create(stub, uid, "Giraffes have long necks")
    create(stub, uid, "Elephants have long trunks")
    create(stub, uid, "Zebras have stripes")
    results = search(stub, uid, query_text="giraffe")
    assert [r.memory.id for r in results] == [giraffe.id]
    assert results[0].text_score > 0
    assert results[0].similarity_score == 0.0
    assert results[0].score == pytest.approx(results[0].text_score, abs=1e-6)
    both = search(stub, uid, query_text="long")
    assert len(both) == 2
    assert search(stub, uid, query_text="kangaroo") == []
    # The subject is searched too.
    subject = create(stub, uid, "eats leaves", subject="okapi")
    assert [r.memory.id for r in search(stub, uid, query_text="okapi")] == [subject.id]


def test_hybrid_search_ranks_the_exact_keyword_match_first(stub, uid):
    """With the vector signal neutral (same embeddings), the keyword match ranks first."""
    shared = unit(20)
    others = [
        create(stub, uid, text, embedding=shared)
        for text in (
            "the harbour has many boats",
            "a beach with white sand",
            "fishing nets dry in the sun",
        )
    ]
    match = create(stub, uid, "the old lighthouse guides the boats", embedding=shared)
    results = search(stub, uid, query_embedding=shared, query_text="lighthouse")
    assert results[0].memory.id == match.id
    assert {r.memory.id for r in results} == {match.id, *(o.id for o in others)}
    assert results[0].text_score > 0
    assert all(r.text_score == 0 for r in results[1:])
    for r in results:
        assert r.similarity_score == pytest.approx(1.0, abs=1e-5)
    # Equidistant: a query embedding orthogonal to all memories is neutral too.
    orthogonal = np.array(unit(21), dtype=np.float64)
    base = np.array(shared, dtype=np.float64)
    orthogonal -= orthogonal.dot(base) * base
    orthogonal /= np.linalg.norm(orthogonal)
    results = search(stub, uid, query_embedding=orthogonal.tolist(), query_text="lighthouse")
    assert results[0].memory.id == match.id
    assert results[0].similarity_score == pytest.approx(0.5, abs=1e-3)


def test_min_score_drops_weak_results(stub, uid):
    """Results scoring below min_score are left out."""
    query = np.array(unit(30))
    near = create(stub, uid, "near", embedding=query.tolist())
    orthogonal = np.array(unit(31))
    orthogonal -= orthogonal.dot(query) * query
    middle = create(
        stub, uid, "middle", embedding=(orthogonal / np.linalg.norm(orthogonal)).tolist()
    )
    far = create(stub, uid, "far", embedding=(-query).tolist())
    everything = search(stub, uid, query_embedding=query.tolist())
    assert [r.memory.id for r in everything] == [near.id, middle.id, far.id]
    assert [round(r.score, 3) for r in everything] == [1.0, 0.5, 0.0]
    assert [
        r.memory.id for r in search(stub, uid, query_embedding=query.tolist(), min_score=0.4)
    ] == [
        near.id,
        middle.id,
    ]
    assert [
        r.memory.id for r in search(stub, uid, query_embedding=query.tolist(), min_score=0.9)
    ] == [near.id]
    assert search(stub, uid, query_embedding=query.tolist(), min_score=1.01) == []


def test_score_parts_are_in_the_unit_interval_and_weighted(stub, uid):
    """Each part is in [0, 1], the score is their weighted mean, and embeddings are left out."""
    for i in range(5):
        create(
            stub,
            uid,
            f"rivers and lakes {i}" if i % 2 else f"mountains {i}",
            embedding=unit(40 + i),
            importance=2 * i + 1,
        )
    weights = pb.RankingWeights(similarity=2, text=1, recency=0.5, importance=0.5)
    results = search(
        stub,
        uid,
        query_embedding=unit(40),
        query_text="rivers",
        weights=weights,
        top_k=10,
        fusion=spb.FUSION_WEIGHTED,
    )
    assert len(results) == 5
    # Hybrid weighted fusion takes text relative to the best text match.
    best_text = max(r.text_score for r in results)
    for r in results:
        parts = (r.similarity_score, r.text_score / best_text, r.recency_score, r.importance_score)
        assert all(0.0 <= p <= 1.0 for p in parts), parts
        assert r.recency_score > 0.99  # just written, 30-day half-life
        assert r.importance_score == pytest.approx(r.memory.importance / 10)
        expected = (2 * parts[0] + parts[1] + 0.5 * parts[2] + 0.5 * parts[3]) / 4
        assert r.score == pytest.approx(expected, abs=1e-5)
        assert len(r.memory.embedding) == 0
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_importance_and_recency_weights_change_the_order(stub, uid):
    """Importance weight ranks the vital memory first; recency weight the freshest one."""
    shared = unit(50)
    vital = create(stub, uid, "vital but old", embedding=shared, importance=10)
    time.sleep(0.2)
    fresh = create(stub, uid, "trivial but fresh", embedding=shared, importance=1)
    half_life = seconds(1)
    by_importance = search(
        stub,
        uid,
        query_embedding=shared,
        weights=pb.RankingWeights(similarity=1, importance=1, recency_half_life=half_life),
    )
    assert [r.memory.id for r in by_importance] == [vital.id, fresh.id]
    by_recency = search(
        stub,
        uid,
        query_embedding=shared,
        weights=pb.RankingWeights(similarity=1, recency=1, recency_half_life=half_life),
    )
    assert [r.memory.id for r in by_recency] == [fresh.id, vital.id]
    assert by_recency[0].recency_score > by_recency[1].recency_score
    # Recency counts from when it happened: an edit changes nothing, a new occur_time does.
    update(stub, pb.Memory(id=vital.id, subject="touched"), "subject")
    unchanged = search(
        stub,
        uid,
        query_embedding=shared,
        weights=pb.RankingWeights(recency=1, recency_half_life=half_life),
    )
    assert [r.memory.id for r in unchanged] == [fresh.id, vital.id]
    now = ts(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    update(stub, pb.Memory(id=vital.id, occur_time=now), "occur_time")
    again = search(
        stub,
        uid,
        query_embedding=shared,
        weights=pb.RankingWeights(recency=1, recency_half_life=half_life),
    )
    assert [r.memory.id for r in again] == [vital.id, fresh.id]


def test_search_applies_the_filter(stub, uid):
    """Search considers only the memories the filter admits."""
    shared = unit(60)
    tagged = create(stub, uid, "tagged apples", embedding=shared, tags=["fruit"])
    create(stub, uid, "untagged apples", embedding=shared)
    create(stub, uid, "other namespace apples", embedding=shared, namespace=ns(uid + "x"))
    results = search(stub, uid, query_embedding=shared, filter={"tags_any": ["fruit"]})
    assert [r.memory.id for r in results] == [tagged.id]
    results = search(stub, uid, query_text="apples", filter={"tags_all": ["fruit"]})
    assert [r.memory.id for r in results] == [tagged.id]
    assert len(search(stub, uid, query_text="apples")) == 2
    assert len(search(stub, uid, query_text="apples", top_k=1)) == 1


def test_search_counts_access(stub, uid):
    """Search results get access_count and last_access_time bumped (flushed in the background)."""
    shared = unit(70)
    hit = create(stub, uid, "searched for", embedding=shared)
    missed = create(stub, uid, "never returned")
    started = dt.datetime.now(dt.UTC)
    assert [r.memory.id for r in search(stub, uid, query_embedding=shared)] == [hit.id]
    assert wait_for(lambda: get(stub, hit.id).access_count == 1, timeout=5)
    accessed = get(stub, hit.id)
    assert as_datetime(accessed.last_access_time) >= started - dt.timedelta(seconds=1)
    # An access is not a change.
    assert accessed.version == 1
    assert accessed.update_time == hit.update_time
    assert len(history(stub, hit.id)) == 1
    assert get(stub, missed.id).access_count == 0
    assert not get(stub, missed.id).HasField("last_access_time")
    search(stub, uid, query_embedding=shared)
    assert wait_for(lambda: get(stub, hit.id).access_count == 2, timeout=5)


def test_every_search_that_returns_a_memory_counts(stub, uid):
    """access_count counts searches: three back-to-back searches returning it count three."""
    shared = unit(75)
    hit = create(stub, uid, "popular", embedding=shared)
    for _ in range(3):
        assert [r.memory.id for r in search(stub, uid, query_embedding=shared)] == [hit.id]
    assert wait_for(lambda: get(stub, hit.id).access_count >= 1, timeout=5)
    time.sleep(1.2)  # any later flush
    assert get(stub, hit.id).access_count == 3


# -- expiry -----------------------------------------------------------------


def test_expired_memories_are_left_out_unless_asked_for(stub, uid):
    """Memories past expire_time are left out of List and Search unless include_expired."""
    shared = unit(80)
    live = create(
        stub,
        uid,
        "cormorant live",
        embedding=shared,
        expire_time=ts(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)),
    )
    expired = create(
        stub,
        uid,
        "cormorant expired",
        embedding=shared,
        expire_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)),
    )
    # The expiry task may archive it meanwhile: ask for both statuses.
    statuses = [pb.MEMORY_STATUS_ACTIVE, pb.MEMORY_STATUS_ARCHIVED]
    assert list_ids(stub, namespace_prefix=ns(uid), statuses=statuses) == [live.id]
    assert set(
        list_ids(stub, namespace_prefix=ns(uid), statuses=statuses, include_expired=True)
    ) == {live.id, expired.id}
    base = {"statuses": statuses}
    for query in ({"query_embedding": shared}, {"query_text": "cormorant"}):
        found = search(stub, uid, filter=dict(base), **query)
        assert [r.memory.id for r in found] == [live.id]
        found = search(stub, uid, filter=dict(base, include_expired=True), **query)
        assert {r.memory.id for r in found} == {live.id, expired.id}


def test_background_expiry_archives_memories_past_their_time(stub, uid):
    """The expiry task archives a memory once its ttl has passed, as "system:expiry"."""
    memory = stub.CreateMemory(
        pb.CreateMemoryRequest(memory=pb.Memory(namespace=ns(uid), content="ttl"), ttl=seconds(1))
    ).memory
    assert memory.status == pb.MEMORY_STATUS_ACTIVE
    assert wait_for(lambda: get(stub, memory.id).status == pb.MEMORY_STATUS_ARCHIVED, timeout=10)
    archived = get(stub, memory.id)
    assert archived.version == 2
    assert as_datetime(archived.update_time) >= as_datetime(memory.expire_time)
    last = history(stub, memory.id)[-1]
    assert last.event_type == pb.MEMORY_EVENT_TYPE_ARCHIVED
    assert last.actor == "system:expiry"
    assert last.after.status == pb.MEMORY_STATUS_ARCHIVED
    assert list_ids(stub, namespace_prefix=ns(uid)) == []


def _pinned_and_expired_sibling(stub: Stub, uid: str) -> tuple[pb.Memory, pb.Memory]:
    """A pinned and an unpinned memory with a 1 s ttl, once the unpinned one was archived."""
    shared = unit(90)
    pinned, unpinned = (
        stub.CreateMemory(
            pb.CreateMemoryRequest(
                memory=pb.Memory(
                    namespace=ns(uid),
                    content=f"heron {name}",
                    pinned=name == "pinned",
                    embedding=shared,
                ),
                ttl=seconds(1),
            )
        ).memory
        for name in ("pinned", "unpinned")
    )
    assert wait_for(lambda: get(stub, unpinned.id).status == pb.MEMORY_STATUS_ARCHIVED)
    time.sleep(0.6)  # one more expiry round
    return pinned, unpinned


def test_pinned_memories_are_never_expired(stub, uid):
    """The expiry task leaves pinned memories alone, whatever their expire_time."""
    pinned, _ = _pinned_and_expired_sibling(stub, uid)
    got = get(stub, pinned.id)
    assert got.status == pb.MEMORY_STATUS_ACTIVE
    assert got.version == 1
    assert [e.event_type for e in history(stub, pinned.id)] == [pb.MEMORY_EVENT_TYPE_CREATED]


def test_pinned_memories_past_expire_time_stay_in_view(stub, uid):
    """A pinned memory is never expired, so List and Search keep returning it by default."""
    pinned, _ = _pinned_and_expired_sibling(stub, uid)
    assert list_ids(stub, namespace_prefix=ns(uid)) == [pinned.id]
    found = search(stub, uid, query_text="heron")
    assert [r.memory.id for r in found] == [pinned.id]


def test_recency_halves_every_half_life(stub, uid):
    """Recency halves every half-life: a memory updated one half-life ago scores about 0.5."""
    shared = unit(95)
    memory = create(stub, uid, "halving", embedding=shared)
    time.sleep(0.5)
    results = search(
        stub,
        uid,
        query_embedding=shared,
        weights=pb.RankingWeights(recency=1, recency_half_life=seconds(0.5)),
    )
    assert [r.memory.id for r in results] == [memory.id]
    age = (dt.datetime.now(dt.UTC) - as_datetime(memory.update_time)).total_seconds()
    assert results[0].recency_score <= 0.5 + 1e-6
    assert results[0].recency_score >= math.pow(0.5, age / 0.5) - 1e-6


def test_embedding_model_changes_only_with_its_embedding(stub, uid, pg_uri):
    """The model names the vector's space: changing it alone would mislabel the vector."""
    register_external_model(pg_uri)
    before = create(stub, uid, "labelled", embedding=unit(4))
    assert before.embedding_model == ""
    assert_status(
        lambda: update(stub, pb.Memory(id=before.id, embedding_model=EXTERNAL_MODEL),
                       "embedding_model"),
        grpc.StatusCode.INVALID_ARGUMENT, field="update_mask", message="only with embedding",
    )  # fmt: skip
    after = update(
        stub,
        pb.Memory(id=before.id, embedding=unit(5), embedding_model=EXTERNAL_MODEL),
        "embedding",
        "embedding_model",
    )
    assert after.embedding_model == EXTERNAL_MODEL
    cleared = update(stub, pb.Memory(id=before.id), "embedding")
    assert (list(cleared.embedding), cleared.embedding_model) == ([], "")
