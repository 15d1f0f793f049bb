"""MemoryService rejects malformed, unknown and conflicting requests and writes nothing.

Every INVALID_ARGUMENT is checked for the ``google.rpc.BadRequest`` field
violation naming the offending field; failing writes are checked behind the API
(through ``db``) to have left the test's namespace ``["t", uid]`` untouched.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2

from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from tests.conftest import assert_status

DIM = 384
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

Db = psycopg.Connection[Any]
Stub = memory_pb2_grpc.MemoryServiceStub
Call = Callable[[], Any]

BAD_UUIDS = ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "x" * 5000, "\u00e9"]


# -- helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def stub(grpc_create_channel: Callable[..., grpc.Channel]) -> Iterator[Stub]:
    with grpc_create_channel() as channel:
        yield memory_pb2_grpc.MemoryServiceStub(channel)


def unit(seed: int = 0) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


def ns(uid: str, *rest: str) -> list[str]:
    return ["t", uid, *rest]


def mem(uid: str, content: str = "a memory", **fields: Any) -> pb.Memory:
    namespace = fields.pop("namespace", ns(uid))
    return pb.Memory(namespace=namespace, content=content, **fields)


def create(stub: Stub, memory: pb.Memory, **kwargs: Any) -> pb.Memory:
    return stub.CreateMemory(pb.CreateMemoryRequest(memory=memory, **kwargs)).memory


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)
    return result


def struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def rows(db: Db, uid: str) -> int:
    """How many memories of any status the test's namespace holds."""
    row = db.execute("SELECT count(*) FROM memories WHERE namespace[2] = %s", (uid,)).fetchone()
    assert row is not None
    return int(row[0])


def writes(stub: Stub, target: pb.Memory) -> dict[str, Callable[[pb.Memory], Call]]:
    """The ways to write a memory: create, batch (as its third memory), supersede ``target``."""
    uid = target.namespace[1]

    def batch(m: pb.Memory) -> Call:
        memories = [mem(uid, "fine 0"), mem(uid, "fine 1"), m]
        return lambda: stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=memories))

    return {
        "memory": lambda m: lambda: create(stub, m),
        "memories[2]": batch,
        "supersede": lambda m: (
            lambda: stub.SupersedeMemory(pb.SupersedeMemoryRequest(memory_id=target.id, memory=m))
        ),
    }


def assert_rejected(stub: Stub, db: Db, uid: str, memory: pb.Memory, field: str) -> None:
    """``memory`` is INVALID_ARGUMENT naming ``field`` in every write; nothing is written."""
    target = create(stub, mem(uid, "supersede me", namespace=ns(uid, "target")))
    baseline = rows(db, uid)
    for prefix, make in writes(stub, target).items():
        name = "memory" if prefix == "supersede" else prefix
        assert_status(make(memory), INVALID, field=f"{name}.{field}")
    assert rows(db, uid) == baseline
    assert_unchanged(stub, db, target)


def update_call(stub: Stub, memory: pb.Memory, *paths: str, **kwargs: Any) -> Call:
    request = pb.UpdateMemoryRequest(memory=memory, update_mask=mask(*paths), **kwargs)
    return lambda: stub.UpdateMemory(request)


def assert_unchanged(stub: Stub, db: Db, memory: pb.Memory) -> None:
    """``memory`` is still at its version 1 state, with one history event."""
    got = stub.GetMemory(pb.GetMemoryRequest(memory_id=memory.id)).memory
    assert got == memory
    row = db.execute(
        "SELECT count(*) FROM memory_events WHERE memory_id = %s", (memory.id,)
    ).fetchone()
    assert row == (1,)


def search_call(stub: Stub, uid: str, **fields: Any) -> Call:
    filter_fields = fields.pop("filter", {})
    filter_fields.setdefault("namespace_prefix", ns(uid))
    request = pb.SearchMemoriesRequest(filter=pb.MemoryFilter(**filter_fields), **fields)
    return lambda: stub.SearchMemories(request)


def list_call(stub: Stub, **filter_fields: Any) -> Call:
    request = pb.ListMemoriesRequest(filter=pb.MemoryFilter(**filter_fields))
    return lambda: stub.ListMemories(request)


def assert_no_sql(err: grpc.RpcError) -> None:
    details = err.details() or ""
    for leak in ("SELECT", "INSERT", "UPDATE ", "DELETE FROM", "postgresql://", "psycopg"):
        assert leak not in details, details


# -- scalar fields ----------------------------------------------------------


@pytest.mark.parametrize("importance", [11, -1, 100, 2**31 - 1])
def test_importance_outside_1_to_10_is_invalid(stub, db, uid, importance):
    """Importance outside 1..10 is INVALID_ARGUMENT in every write and in updates."""
    assert_rejected(stub, db, uid, mem(uid, importance=importance), "importance")
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, importance=importance), "importance"),
        INVALID,
        field="memory.importance",
        message="1 to 10",
    )
    assert_unchanged(stub, db, memory)


def test_importance_zero_is_the_default_on_create_but_invalid_in_an_update(stub, db, uid):
    """0 means "unset" (5) on create, but an update that names importance needs 1..10."""
    memory = create(stub, mem(uid, importance=0))
    assert memory.importance == 5
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, importance=0), "importance"),
        INVALID,
        field="memory.importance",
    )
    assert_unchanged(stub, db, memory)


@pytest.mark.parametrize("confidence", [1.5, -0.1, math.nan, math.inf, -math.inf])
def test_confidence_outside_0_to_1_or_nan_is_invalid(stub, db, uid, confidence):
    """Confidence must be a number in 0..1."""
    assert_rejected(stub, db, uid, mem(uid, confidence=confidence), "confidence")
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, confidence=confidence), "confidence"),
        INVALID,
        field="memory.confidence",
    )
    assert_unchanged(stub, db, memory)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memory_type", 99),
        ("memory_type", -1),
        ("tier", 42),
        ("status", 42),
    ],
)
def test_unknown_enum_values_are_invalid(stub, db, uid, field, value):
    """Enum numbers the contract does not define are INVALID_ARGUMENT, on create and update."""
    assert_rejected(stub, db, uid, mem(uid, **{field: value}), field)
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, **{field: value}), field),
        INVALID,
        field=f"memory.{field}",
        message=str(value),
    )
    assert_unchanged(stub, db, memory)


@pytest.mark.parametrize("kind", [9, 7, -2])
def test_unknown_source_kind_is_invalid(stub, db, uid, kind):
    """An unknown source.kind is INVALID_ARGUMENT naming memory.source.kind."""
    assert_rejected(stub, db, uid, mem(uid, source=pb.MemorySource(kind=kind)), "source.kind")


@pytest.mark.parametrize("field", ["memory_type", "tier", "status"])
def test_unspecified_enum_in_an_update_is_invalid(stub, db, uid, field):
    """An update that names an enum field must give it a value."""
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id), field),
        INVALID,
        field=f"memory.{field}",
        message="UNSPECIFIED",
    )
    assert_unchanged(stub, db, memory)


@pytest.mark.parametrize("status", [pb.MEMORY_STATUS_SUPERSEDED, pb.MEMORY_STATUS_ARCHIVED])
def test_new_memories_are_active_or_disputed(stub, db, uid, status):
    """A memory cannot be created SUPERSEDED or ARCHIVED."""
    assert_rejected(stub, db, uid, mem(uid, status=status), "status")


def test_status_superseded_via_update_is_invalid(stub, db, uid):
    """Only SupersedeMemory supersedes: UpdateMemory to SUPERSEDED is INVALID_ARGUMENT."""
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, status=pb.MEMORY_STATUS_SUPERSEDED), "status"),
        INVALID,
        field="memory.status",
        message="SupersedeMemory",
    )
    assert_unchanged(stub, db, memory)


# -- content, namespace, tags, short fields ---------------------------------


@pytest.mark.parametrize("content", ["", "   ", "\n\t"])
def test_empty_content_is_invalid(stub, db, uid, content):
    """Content is required (whitespace alone is not content)."""
    assert_rejected(stub, db, uid, mem(uid, content), "content")
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, content=content), "content"),
        INVALID,
        field="memory.content",
    )
    assert_unchanged(stub, db, memory)


def test_content_over_the_limit_is_invalid(stub, db, memoryd_server, uid):
    """Content over the limit (in UTF-8 bytes) is INVALID_ARGUMENT; the limit itself is fine."""
    limit = memoryd_server.settings.max_content_bytes
    for content in ("x" * (limit + 1), "\u00e9" * (limit // 2 + 1)):
        assert_status(
            lambda content=content: create(stub, mem(uid, content)),
            INVALID,
            field="memory.content",
            message=str(limit),
        )
    memory = create(stub, mem(uid, "small"))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, content="y" * (limit + 1)), "content"),
        INVALID,
        field="memory.content",
    )
    assert_unchanged(stub, db, memory)
    assert rows(db, uid) == 1
    assert len(create(stub, mem(uid, "z" * limit)).content) == limit


def test_nul_characters_are_invalid(stub, db, uid):
    """PostgreSQL text cannot hold NUL: it is refused with the field named."""
    assert_rejected(stub, db, uid, mem(uid, "a\x00b"), "content")
    assert_rejected(stub, db, uid, mem(uid, key="k\x00"), "key")
    assert_rejected(stub, db, uid, mem(uid, tags=["ok", "t\x00"]), "tags[1]")
    assert_rejected(stub, db, uid, mem(uid, metadata=struct(k="v\x00")), "metadata")


@pytest.mark.parametrize(
    "case",
    [
        ([], "namespace", "required"),
        (["t", ""], "namespace[1]", "empty"),
        (["t", "x" * 129], "namespace[1]", "128"),
        (["t", "a\x1fb"], "namespace[1]", "control"),
        (["t", "line\nbreak"], "namespace[1]", "control"),
        (["\x7f"], "namespace[0]", "control"),
        ([f"s{i}" for i in range(17)], "namespace", "16"),
    ],
)
def test_malformed_namespaces_are_invalid(stub, db, uid, case):
    """Namespaces are 1 to 16 segments of 1 to 128 characters without control characters."""
    namespace, field, message = case
    memory = pb.Memory(namespace=namespace, content="x")
    assert_status(lambda: create(stub, memory), INVALID, field=f"memory.{field}", message=message)
    assert_status(
        lambda: stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(memories=[mem(uid), memory])
        ),
        INVALID,
        field=f"memories[1].{field}",
    )
    assert rows(db, uid) == 0
    if namespace:  # empty means "everything" in filters and prefixes
        assert_status(
            list_call(stub, namespace_prefix=namespace),
            INVALID,
            field=f"filter.namespace_prefix{field.removeprefix('namespace')}",
        )
        assert_status(
            search_call(stub, uid, query_text="x", filter={"namespace_prefix": namespace}),
            INVALID,
            field=f"filter.namespace_prefix{field.removeprefix('namespace')}",
        )
        assert_status(
            lambda: stub.ListNamespaces(pb.ListNamespacesRequest(prefix=namespace)),
            INVALID,
            field=f"prefix{field.removeprefix('namespace')}",
        )
        assert_status(
            lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=namespace, key="k")),
            INVALID,
            field=field,
        )


def test_longest_namespace_is_fine(stub, uid):
    """16 segments of 128 characters are accepted; multi-byte ones up to 2,400 bytes in all."""
    namespace = ns(uid, *(["e" * 128] * 14))
    assert len(namespace) == 16
    memory = create(stub, pb.Memory(namespace=namespace, content="deep"))
    assert list(memory.namespace) == namespace
    wide = ns(uid, *(["\u00e9" * 70] * 14))
    assert list(create(stub, pb.Memory(namespace=wide, content="deep")).namespace) == wide


def test_too_many_or_empty_tags_are_invalid(stub, db, uid):
    """At most 32 tags, none empty or over 128 characters."""
    assert_rejected(stub, db, uid, mem(uid, tags=[f"t{i}" for i in range(33)]), "tags")
    assert_rejected(stub, db, uid, mem(uid, tags=["ok", ""]), "tags[1]")
    assert_rejected(stub, db, uid, mem(uid, tags=["x" * 129]), "tags[0]")
    memory = create(stub, mem(uid, tags=[f"t{i}" for i in range(32)]))
    assert len(memory.tags) == 32
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, tags=[f"u{i}" for i in range(33)]), "tags"),
        INVALID,
        field="memory.tags",
    )
    assert_status(
        list_call(stub, namespace_prefix=ns(uid), tags_any=[""]),
        INVALID,
        field="filter.tags_any[0]",
    )
    assert_status(
        list_call(stub, namespace_prefix=ns(uid), tags_all=["a", ""]),
        INVALID,
        field="filter.tags_all[1]",
    )


CHARACTER_LIMITS = {
    "tags": ["\u00e9" * 128],
    "key": "\u00e9" * 256,
    "subject": "\u00e9" * 1024,
}


@pytest.mark.parametrize("field", sorted(CHARACTER_LIMITS))
def test_limits_in_characters_count_characters(stub, uid, field):
    """Tags (128), key (256) and subject (1024) are limited in characters."""
    value = CHARACTER_LIMITS[field]
    memory = create(stub, mem(uid, **{field: value}))
    assert getattr(memory, field) == value


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"key": "k" * 257}, "key"),
        ({"subject": "s" * 1025}, "subject"),
        ({"embedding_model": "m" * 257}, "embedding_model"),
        ({"user_id": "u" * 257}, "user_id"),
        ({"agent_id": "a" * 257}, "agent_id"),
        ({"source": pb.MemorySource(extraction_model="m" * 257)}, "source.extraction_model"),
        ({"source": pb.MemorySource(conversation_id="has space")}, "source.conversation_id"),
        ({"source": pb.MemorySource(message_ids=["nope"])}, "source.message_ids[0]"),
        ({"related_to": [str(uuid.uuid4()) for _ in range(101)]}, "related_to"),
        ({"metadata": struct(x=math.nan)}, "metadata"),
    ],
)
def test_over_long_or_malformed_fields_are_invalid(stub, db, uid, fields, field):
    """Short text fields, ids and metadata are checked, naming the field."""
    assert_rejected(stub, db, uid, mem(uid, **fields), field)


def test_over_long_request_fields_are_invalid(stub, db, uid):
    """request_id (128) and reason (1024) are limited too."""
    assert_status(lambda: create(stub, mem(uid), request_id="r" * 129), INVALID, field="request_id")
    assert_status(
        lambda: stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(memories=[mem(uid)], request_id="r" * 129)
        ),
        INVALID,
        field="request_id",
    )
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, content="x"), "content", reason="r" * 1025),
        INVALID,
        field="reason",
    )
    assert_status(
        lambda: stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory.id, reason="r" * 1025)),
        INVALID,
        field="reason",
    )
    assert_unchanged(stub, db, memory)


# -- embeddings -------------------------------------------------------------

BAD_EMBEDDINGS = {
    "383 dimensions": (unit()[:-1], "384"),
    "385 dimensions": ([*unit(), 0.5], "384"),
    "1 dimension": ([1.0], "384"),
    "NaN": ([*unit()[:-1], math.nan], "finite"),
    "Infinity": ([math.inf, *unit()[1:]], "finite"),
    "-Infinity": ([*unit()[:10], -math.inf, *unit()[11:]], "finite"),
    "all zeros": ([0.0] * DIM, "zeros"),
}


@pytest.mark.parametrize("case", sorted(BAD_EMBEDDINGS))
def test_bad_embeddings_are_invalid_everywhere(stub, db, uid, case):
    """Wrong dimension, NaN, Inf and all zeros are refused by create, batch, update and search."""
    values, message = BAD_EMBEDDINGS[case]
    assert_status(
        lambda: create(stub, mem(uid, embedding=values)),
        INVALID,
        field="memory.embedding",
        message=message,
    )
    assert_status(
        lambda: stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(
                memories=[mem(uid, embedding=unit(1)), mem(uid, embedding=values)]
            )
        ),
        INVALID,
        field="memories[1].embedding",
        message=message,
    )
    memory = create(stub, mem(uid, embedding=unit(2)))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, embedding=values), "embedding"),
        INVALID,
        field="memory.embedding",
        message=message,
    )
    assert_unchanged(stub, db, memory)
    assert_status(
        search_call(stub, uid, query_embedding=values),
        INVALID,
        field="query_embedding",
        message=message,
    )
    assert_status(
        search_call(stub, uid, query_embedding=values, query_text="memory"),
        INVALID,
        field="query_embedding",
    )
    assert rows(db, uid) == 1


# -- search -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   "])
def test_search_needs_a_query(stub, uid, text):
    """SearchMemories without an embedding or words is INVALID_ARGUMENT."""
    assert_status(search_call(stub, uid, query_text=text), INVALID, field="query_embedding")


@pytest.mark.parametrize("top_k", [101, -1, 1000, -(2**31)])
def test_top_k_out_of_range_is_invalid(stub, uid, top_k):
    """top_k is at most 100 and never negative."""
    assert_status(search_call(stub, uid, query_text="x", top_k=top_k), INVALID, field="top_k")


def test_top_k_100_is_allowed(stub, uid):
    """top_k 100 is the maximum, and fine."""
    create(stub, mem(uid, "findable words"))
    results = stub.SearchMemories(
        pb.SearchMemoriesRequest(
            filter=pb.MemoryFilter(namespace_prefix=ns(uid)), query_text="findable", top_k=100
        )
    ).results
    assert len(results) == 1


@pytest.mark.parametrize("name", ["similarity", "text", "recency", "importance"])
@pytest.mark.parametrize("value", [-0.1, -math.inf, math.inf, math.nan])
def test_negative_or_non_finite_weights_are_invalid(stub, uid, name, value):
    """Ranking weights must be finite and >= 0."""
    weights = pb.RankingWeights(**{name: value})
    assert_status(
        search_call(stub, uid, query_text="x", weights=weights), INVALID, field=f"weights.{name}"
    )


def test_non_positive_half_life_is_invalid(stub, uid):
    """The recency half-life must be positive."""
    for seconds in (0, -5):
        weights = pb.RankingWeights(
            recency=1, recency_half_life=duration_pb2.Duration(seconds=seconds)
        )
        assert_status(
            search_call(stub, uid, query_text="x", weights=weights),
            INVALID,
            field="weights.recency_half_life",
        )


def test_search_text_over_the_limit_is_invalid(stub, uid):
    """query_text is limited to 4096 bytes."""
    assert_status(search_call(stub, uid, query_text="w" * 4097), INVALID, field="query_text")


# -- filters ----------------------------------------------------------------

FILTER_ENUMS = [
    ("memory_types", [pb.MEMORY_TYPE_SEMANTIC, 99], "memory_types[1]", "99"),
    ("memory_types", [pb.MEMORY_TYPE_UNSPECIFIED], "memory_types[0]", "UNSPECIFIED"),
    ("statuses", [42], "statuses[0]", "42"),
    ("statuses", [pb.MEMORY_STATUS_ACTIVE, pb.MEMORY_STATUS_UNSPECIFIED], "statuses[1]", "UNSPEC"),
    ("tiers", [42], "tiers[0]", "42"),
    ("tiers", [pb.MEMORY_TIER_UNSPECIFIED], "tiers[0]", "UNSPECIFIED"),
]


@pytest.mark.parametrize("case", FILTER_ENUMS)
def test_unknown_or_unspecified_filter_enums_are_invalid(stub, uid, case):
    """Filter lists take only defined, specified enum values, in List and Search."""
    name, values, field, message = case
    assert_status(
        list_call(stub, namespace_prefix=ns(uid), **{name: values}),
        INVALID,
        field=f"filter.{field}",
        message=message,
    )
    assert_status(
        search_call(stub, uid, query_text="x", filter={name: values}),
        INVALID,
        field=f"filter.{field}",
        message=message,
    )


def test_reversed_create_time_range_is_invalid(stub, uid):
    """create_time_end must be after create_time_start."""
    now = dt.datetime.now(dt.UTC)
    for end in (now, now - dt.timedelta(seconds=1)):
        assert_status(
            list_call(stub, create_time_start=ts(now), create_time_end=ts(end)),
            INVALID,
            field="filter.create_time_end",
        )


def test_filter_metadata_with_non_finite_numbers_is_invalid(stub, uid):
    """A metadata filter is JSON: no NaN or Infinity."""
    assert_status(
        list_call(stub, namespace_prefix=ns(uid), metadata=struct(x=math.inf)),
        INVALID,
        field="filter.metadata",
    )


# -- update masks -----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "id",
        "namespace",
        "key",
        "version",
        "user_id",
        "agent_id",
        "source",
        "source.kind",
        "create_time",
        "update_time",
        "superseded_by",
        "access_count",
        "last_access_time",
        "nope",
        "Content",
        "embeddingModel",
        "metadata.key",
        "*",
        "",
    ],
)
def test_update_mask_naming_an_unknown_or_immutable_field_is_invalid(stub, db, uid, path):
    """A mask path that is not an updatable field is INVALID_ARGUMENT, alone or with others."""
    memory = create(stub, mem(uid, user_id="u", key="k"))
    changed = pb.Memory(id=memory.id, content="new", namespace=["x"], key="k2", user_id="v")
    assert_status(update_call(stub, changed, path), INVALID, field="update_mask", message=path)
    assert_status(update_call(stub, changed, "content", path), INVALID, field="update_mask")
    assert_unchanged(stub, db, memory)


def test_empty_update_mask_is_invalid(stub, db, uid):
    """An update must name at least one field."""
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, content="new")), INVALID, field="update_mask"
    )
    assert_unchanged(stub, db, memory)


# -- ids --------------------------------------------------------------------


def calls_by_memory_id(stub: Stub, memory_id: str) -> dict[str, Call]:
    """Every RPC that takes a memory id, called with ``memory_id``."""
    now = ts(dt.datetime.now(dt.UTC))
    return {
        "GetMemory": lambda: stub.GetMemory(pb.GetMemoryRequest(memory_id=memory_id)),
        "SupersedeMemory": lambda: stub.SupersedeMemory(
            pb.SupersedeMemoryRequest(memory_id=memory_id, memory=pb.Memory(content="x"))
        ),
        "DeleteMemory": lambda: stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=memory_id)),
        "DeleteMemory(purge)": lambda: stub.DeleteMemory(
            pb.DeleteMemoryRequest(memory_id=memory_id, purge=True)
        ),
        "GetMemoryHistory": lambda: stub.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(memory_id=memory_id)
        ),
        "GetMemoryAt": lambda: stub.GetMemoryAt(
            pb.GetMemoryAtRequest(memory_id=memory_id, time=now)
        ),
    }


@pytest.mark.parametrize("bad_id", BAD_UUIDS)
def test_malformed_memory_ids_are_invalid_everywhere(stub, db, uid, bad_id):
    """A memory id that is not a UUID is INVALID_ARGUMENT naming the field, in every RPC."""
    for name, call in calls_by_memory_id(stub, bad_id).items():
        err = assert_status(call, INVALID, field="memory_id", message="UUID")
        assert err.code() == INVALID, name
    assert_status(
        update_call(stub, pb.Memory(id=bad_id, content="x"), "content"),
        INVALID,
        field="memory.id",
    )
    good = str(uuid.uuid4())
    assert_rejected(stub, db, uid, mem(uid, related_to=[good, bad_id]), "related_to[1]")
    assert_rejected(stub, db, uid, mem(uid, contradicts=[bad_id]), "contradicts[0]")
    memory = create(stub, mem(uid))
    assert_status(
        update_call(stub, pb.Memory(id=memory.id, related_to=[good, bad_id]), "related_to"),
        INVALID,
        field="memory.related_to[1]",
    )
    assert_unchanged(stub, db, memory)


def test_empty_memory_ids_are_required(stub):
    """An empty memory id is INVALID_ARGUMENT ("is required"), not NOT_FOUND."""
    for call in calls_by_memory_id(stub, "").values():
        assert_status(call, INVALID, field="memory_id", message="required")
    assert_status(
        update_call(stub, pb.Memory(content="x"), "content"),
        INVALID,
        field="memory.id",
        message="required",
    )


def test_unknown_memory_ids_are_not_found_everywhere(stub, uid):
    """A well-formed id that names no memory is NOT_FOUND in every RPC that takes one."""
    missing = str(uuid.uuid4())
    for name, call in calls_by_memory_id(stub, missing).items():
        err = assert_status(call, NOT_FOUND)
        assert missing in (err.details() or ""), name
        assert_no_sql(err)
    for kwargs in ({}, {"expected_version": 1}):
        assert_status(
            update_call(stub, pb.Memory(id=missing, content="x"), "content", **kwargs), NOT_FOUND
        )
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid), key="missing")), NOT_FOUND
    )


def test_get_memory_needs_an_id_or_a_namespace_and_key(stub, uid):
    """GetMemory takes an id, or a namespace and a key: not both, not neither, not half."""
    memory_id = str(uuid.uuid4())
    assert_status(lambda: stub.GetMemory(pb.GetMemoryRequest()), INVALID, field="memory_id")
    assert_status(
        lambda: stub.GetMemory(
            pb.GetMemoryRequest(memory_id=memory_id, namespace=ns(uid), key="k")
        ),
        INVALID,
        field="memory_id",
    )
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(memory_id=memory_id, key="k")),
        INVALID,
        field="memory_id",
    )
    assert_status(
        lambda: stub.GetMemory(pb.GetMemoryRequest(namespace=ns(uid))), INVALID, field="key"
    )
    assert_status(lambda: stub.GetMemory(pb.GetMemoryRequest(key="k")), INVALID, field="namespace")


# -- times and durations ----------------------------------------------------


def test_ttl_and_expire_time_together_are_invalid(stub, db, uid):
    """ttl and memory.expire_time exclude each other; a ttl must be positive."""
    expire = ts(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert_status(
        lambda: create(stub, mem(uid, expire_time=expire), ttl=duration_pb2.Duration(seconds=60)),
        INVALID,
        field="ttl",
    )
    for seconds in (0, -60):
        assert_status(
            lambda seconds=seconds: create(
                stub, mem(uid), ttl=duration_pb2.Duration(seconds=seconds)
            ),
            INVALID,
            field="ttl",
        )
    assert rows(db, uid) == 0


@pytest.mark.parametrize("seconds", [315_576_000_000, 10**15])
def test_ttl_beyond_the_calendar_is_invalid_not_internal(stub, db, uid, seconds):
    """A ttl that ends past year 9999 is the caller's mistake: INVALID_ARGUMENT, not INTERNAL."""
    assert_status(
        lambda: create(stub, mem(uid), ttl=duration_pb2.Duration(seconds=seconds)),
        INVALID,
        field="ttl",
    )
    assert rows(db, uid) == 0


def test_half_life_beyond_the_duration_range_is_invalid_not_internal(stub, uid):
    """A recency half-life outside Duration's range is INVALID_ARGUMENT, not INTERNAL."""
    weights = pb.RankingWeights(recency=1, recency_half_life=duration_pb2.Duration(seconds=10**15))
    assert_status(
        search_call(stub, uid, query_text="x", weights=weights),
        INVALID,
        field="weights.recency_half_life",
    )


OUT_OF_RANGE_TIMES = [
    timestamp_pb2.Timestamp(seconds=2**40),  # after 9999-12-31
    timestamp_pb2.Timestamp(seconds=-62_135_596_801),  # before 0001-01-01
    timestamp_pb2.Timestamp(seconds=0, nanos=2_000_000_000),  # nanos over 1e9
]


@pytest.mark.parametrize(
    "where",
    [
        "memory.expire_time",
        "update memory.expire_time",
        "filter.create_time_start",
        "filter.create_time_end",
        "time",
    ],
)
def test_out_of_range_timestamps_are_invalid_not_internal(stub, db, uid, where):
    """Timestamps outside 0001..9999 are INVALID_ARGUMENT naming the field, not INTERNAL."""
    memory = create(stub, mem(uid))
    for bad in OUT_OF_RANGE_TIMES:
        calls = {
            "memory.expire_time": lambda bad=bad: create(stub, mem(uid, expire_time=bad)),
            "update memory.expire_time": update_call(
                stub, pb.Memory(id=memory.id, expire_time=bad), "expire_time"
            ),
            "filter.create_time_start": list_call(stub, create_time_start=bad),
            "filter.create_time_end": list_call(stub, create_time_end=bad),
            "time": lambda bad=bad: stub.GetMemoryAt(
                pb.GetMemoryAtRequest(memory_id=memory.id, time=bad)
            ),
        }
        assert_status(calls[where], INVALID, field=where.removeprefix("update "))
    assert_unchanged(stub, db, memory)
    assert rows(db, uid) == 1


def test_get_memory_at_without_time_is_invalid(stub, uid):
    """GetMemoryAt needs an instant."""
    memory = create(stub, mem(uid))
    assert_status(
        lambda: stub.GetMemoryAt(pb.GetMemoryAtRequest(memory_id=memory.id)),
        INVALID,
        field="time",
    )


# -- batches, upserts, idempotency ------------------------------------------


def test_batch_size_limits(stub, db, uid):
    """A batch holds 1 to 10,000 memories."""
    assert_status(
        lambda: stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest()),
        INVALID,
        field="memories",
    )
    too_many = [mem(uid, f"m{i}") for i in range(10_001)]
    assert_status(
        lambda: stub.BatchCreateMemories(pb.BatchCreateMemoriesRequest(memories=too_many)),
        INVALID,
        field="memories",
        message="10000",
    )
    assert rows(db, uid) == 0


def test_upsert_needs_a_key(stub, db, uid):
    """upsert without a key is INVALID_ARGUMENT naming memory.key."""
    assert_status(lambda: create(stub, mem(uid), upsert=True), INVALID, field="memory.key")
    assert rows(db, uid) == 0


def test_request_id_reused_for_a_different_request_already_exists(stub, db, uid):
    """A request_id names one request: another body, or another method, is ALREADY_EXISTS."""
    request_id = f"req-{uid}"
    first = create(stub, mem(uid, "first"), request_id=request_id)
    assert_status(
        lambda: create(stub, mem(uid, "second"), request_id=request_id),
        grpc.StatusCode.ALREADY_EXISTS,
        message=request_id,
    )
    assert_status(
        lambda: stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(memories=[mem(uid, "first")], request_id=request_id)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    batch_id = f"batch-{uid}"
    stub.BatchCreateMemories(
        pb.BatchCreateMemoriesRequest(memories=[mem(uid, "b")], request_id=batch_id)
    )
    assert_status(
        lambda: stub.BatchCreateMemories(
            pb.BatchCreateMemoriesRequest(memories=[mem(uid, "c")], request_id=batch_id)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert rows(db, uid) == 2
    assert create(stub, mem(uid, "first"), request_id=request_id).id == first.id


def test_failed_create_does_not_burn_its_request_id(stub, db, uid):
    """A request that failed wrote nothing, not even its request_id: a fixed retry works."""
    create(stub, mem(uid, "holder", key="k"))
    request = pb.CreateMemoryRequest(memory=mem(uid, "clash", key="k"), request_id=f"r-{uid}")
    assert_status(lambda: stub.CreateMemory(request), grpc.StatusCode.ALREADY_EXISTS)
    row = db.execute(
        "SELECT count(*) FROM idempotency_keys WHERE request_id = %s", (f"r-{uid}",)
    ).fetchone()
    assert row == (0,)
    request.memory.key = "k2"
    assert stub.CreateMemory(request).memory.key == "k2"
    assert rows(db, uid) == 2


def test_supersede_into_a_taken_key_changes_nothing(stub, db, uid):
    """A replacement whose key another live memory holds is ALREADY_EXISTS; the old stays ACTIVE."""
    old = create(stub, mem(uid, "old"))
    create(stub, mem(uid, "holder", key="taken"))
    assert_status(
        lambda: stub.SupersedeMemory(
            pb.SupersedeMemoryRequest(memory_id=old.id, memory=pb.Memory(content="n", key="taken"))
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert_unchanged(stub, db, old)
    assert rows(db, uid) == 2


def test_reactivating_into_a_taken_key_already_exists(stub, db, uid):
    """An archived memory cannot be made ACTIVE again while another holds its key."""
    archived = create(stub, mem(uid, "v1", key="k"))
    archived = stub.DeleteMemory(pb.DeleteMemoryRequest(memory_id=archived.id)).memory
    create(stub, mem(uid, "v2", key="k"))
    err = assert_status(
        update_call(stub, pb.Memory(id=archived.id, status=pb.MEMORY_STATUS_ACTIVE), "status"),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert_no_sql(err)
    got = stub.GetMemory(pb.GetMemoryRequest(memory_id=archived.id)).memory
    assert got == archived


# -- paging -----------------------------------------------------------------


@pytest.mark.parametrize("size", [-1, 1001, 2**31 - 1])
def test_page_size_out_of_range_is_invalid(stub, uid, size):
    """page_size is 0 (default) to 1000 in every list."""
    memory = create(stub, mem(uid))
    for call in (
        lambda: stub.ListMemories(pb.ListMemoriesRequest(page_size=size)),
        lambda: stub.ListNamespaces(pb.ListNamespacesRequest(page_size=size)),
        lambda: stub.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(memory_id=memory.id, page_size=size)
        ),
    ):
        assert_status(call, INVALID, field="page_size")


@pytest.mark.parametrize("depth", [-1, 17])
def test_max_depth_out_of_range_is_invalid(stub, depth):
    """max_depth is 0 (no truncation) to 16."""
    assert_status(
        lambda: stub.ListNamespaces(pb.ListNamespacesRequest(max_depth=depth)),
        INVALID,
        field="max_depth",
    )


def _flip(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


def _tampered(token: str) -> list[str]:
    body, _, mac = token.partition(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    forged = base64.urlsafe_b64encode(payload.replace(b'"p":[', b'"p":[1,')).rstrip(b"=")
    return [
        _flip(token, 3),
        _flip(token, len(body) // 2),
        _flip(token, len(token) - 2),
        token[:-1],
        token + "A",
        body,
        "." + mac,
        token.replace(".", ""),
        forged.decode() + "." + mac,
        "garbage",
        "a.b",
        "!!!.???",
        "\u00e9\u00e9.\u00e9",
        "A" * 5000 + "." + mac,
        token * 2,
    ]


@pytest.fixture
def paged(stub: Stub, uid: str) -> dict[str, Any]:
    """Three memories in three namespaces, one with three versions; a first page of each list."""
    memories = [create(stub, mem(uid, f"m{i}", namespace=ns(uid, f"n{i}"))) for i in range(3)]
    for i in (2, 3):
        stub.UpdateMemory(
            pb.UpdateMemoryRequest(
                memory=pb.Memory(id=memories[0].id, content=f"v{i}"), update_mask=mask("content")
            )
        )
    tokens = {
        "memories": stub.ListMemories(
            pb.ListMemoriesRequest(filter=pb.MemoryFilter(namespace_prefix=ns(uid)), page_size=1)
        ).next_page_token,
        "namespaces": stub.ListNamespaces(
            pb.ListNamespacesRequest(prefix=ns(uid), page_size=1)
        ).next_page_token,
        "history": stub.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(memory_id=memories[0].id, page_size=1)
        ).next_page_token,
    }
    assert all(tokens.values())
    return {"memories": memories, "tokens": tokens}


def _list_calls(stub: Stub, uid: str, memory_id: str) -> dict[str, Callable[[str], Call]]:
    return {
        "memories": lambda token: (
            lambda: stub.ListMemories(
                pb.ListMemoriesRequest(
                    filter=pb.MemoryFilter(namespace_prefix=ns(uid)), page_size=1, page_token=token
                )
            )
        ),
        "namespaces": lambda token: (
            lambda: stub.ListNamespaces(
                pb.ListNamespacesRequest(prefix=ns(uid), page_size=1, page_token=token)
            )
        ),
        "history": lambda token: (
            lambda: stub.GetMemoryHistory(
                pb.GetMemoryHistoryRequest(memory_id=memory_id, page_size=1, page_token=token)
            )
        ),
    }


def test_real_page_tokens_work(stub, uid, paged):
    """The tokens the lists issue continue them."""
    calls = _list_calls(stub, uid, paged["memories"][0].id)
    assert len(calls["memories"](paged["tokens"]["memories"])().memories) == 1
    namespaces = calls["namespaces"](paged["tokens"]["namespaces"])().namespaces
    assert [list(n.segments) for n in namespaces] == [ns(uid, "n1")]
    assert [e.seq for e in calls["history"](paged["tokens"]["history"])().events] == [2]


@pytest.mark.parametrize("listed", ["memories", "namespaces", "history"])
def test_tampered_page_tokens_are_invalid(stub, uid, paged, listed):
    """Altered, truncated or forged page tokens are INVALID_ARGUMENT naming page_token."""
    call = _list_calls(stub, uid, paged["memories"][0].id)[listed]
    for token in _tampered(paged["tokens"][listed]):
        err = assert_status(call(token), INVALID, field="page_token")
        assert_no_sql(err)


def test_page_tokens_are_bound_to_their_list_and_query(stub, uid, paged):
    """A token works only for the list and the query that issued it."""
    tokens = paged["tokens"]
    calls = _list_calls(stub, uid, paged["memories"][0].id)
    for issued, token in tokens.items():
        for listed, call in calls.items():
            if listed != issued:
                assert_status(call(token), INVALID, field="page_token")
    assert_status(
        lambda: stub.ListMemories(
            pb.ListMemoriesRequest(
                filter=pb.MemoryFilter(namespace_prefix=ns(uid), tags_any=["x"]),
                page_size=1,
                page_token=tokens["memories"],
            )
        ),
        INVALID,
        field="page_token",
        message="different request",
    )
    assert_status(
        lambda: stub.ListNamespaces(
            pb.ListNamespacesRequest(
                prefix=ns(uid), max_depth=3, page_size=1, page_token=tokens["namespaces"]
            )
        ),
        INVALID,
        field="page_token",
    )
    assert_status(
        lambda: stub.GetMemoryHistory(
            pb.GetMemoryHistoryRequest(
                memory_id=paged["memories"][1].id, page_size=1, page_token=tokens["history"]
            )
        ),
        INVALID,
        field="page_token",
    )
