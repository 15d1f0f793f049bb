"""Random requests to every RPC, sent as two tenants: neither ever sees the other's data.

Each tenant first gets, through the API, data holding words and ids unique to
it: ``protected`` resources, which only the other tenant's requests name, and
``scratch`` resources (made afresh for each RPC), which its own requests name
and may change or delete. Hypothesis draws requests for every RPC from the
proto descriptors, from scratch or by patching a well-formed request; each is
sent as both tenants, its id-like strings picked from the sender's scratch ids
or the other tenant's protected ids and words. No response may have the status
INTERNAL or UNKNOWN, nor hold an id or word of the other tenant (or of a third
tenant nobody names) that the sender did not send itself.

The operator key is left out: it is server-wide, so isolation does not apply.
"""

from __future__ import annotations

import functools
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import message as pb_message
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# st.randoms() imports this module on first use; imported then, deep inside a
# recursive draw, pytest's assertion rewriting of it trips CPython 3.11.7's
# "AST constructor recursion depth mismatch". Importing it here avoids that.
from hypothesis.strategies._internal import random as _hypothesis_random  # noqa: F401

from memoryd_server.auth import keys
from tests.conftest import ServerThread, TenantKeys, create_tenant_keys
from tests.rpc_requests import (
    EMBEDDING_DIM,
    RPCS,
    Outcome,
    Resources,
    Rpc,
    assign,
    build_request,
    invoke,
    populate,
    struct,
    vector,
)

# Examples per RPC; each is sent twice (once per tenant).
EXAMPLES = int(os.environ.get("MEMORYD_ISOLATION_EXAMPLES", "50"))
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# -- random requests -----------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A string picked when sending, from one of the sender's ``Pools``."""

    pool: str
    index: int


@dataclass(frozen=True)
class Pools:
    """What a tenant's random requests may name: its own scratch resources, the
    other tenant's resources, and words of the other tenant's data."""

    own: Resources
    other: Resources
    terms: tuple[str, ...]

    def pick(self, ref: Ref) -> str:
        pool = self.terms if ref.pool == "terms" else getattr(self, ref.pool).ids()
        return pool[ref.index % len(pool)]


@dataclass(frozen=True)
class MessageSpec:
    cls: type[pb_message.Message]
    fields: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class StructSpec:
    values: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Based:
    """A well-formed request on one tenant's resources ("own" or "other"), patched."""

    rpc: Rpc
    whose: str
    patch: MessageSpec


def materialize(spec: Any, pools: Pools) -> Any:
    """The message (or value) of ``spec``, its ``Ref`` strings picked from ``pools``."""
    if isinstance(spec, Ref):
        return pools.pick(spec)
    if isinstance(spec, list):
        return [materialize(item, pools) for item in spec]
    if isinstance(spec, StructSpec):
        return struct(**{k: materialize(v, pools) for k, v in spec.values})
    if isinstance(spec, Based):
        request = build_request(spec.rpc, getattr(pools, spec.whose))
        patch = materialize(spec.patch, pools)
        for field, _ in patch.ListFields():
            request.ClearField(field.name)
        request.MergeFrom(patch)
        return request
    if isinstance(spec, MessageSpec):
        message = spec.cls()
        for name, value in spec.fields:
            assign(message, spec.cls.DESCRIPTOR.fields_by_name[name], materialize(value, pools))
        return message
    return spec


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> Any:
    """Usually a plausible value (so requests get past validation), sometimes an odd one."""
    return st.one_of(usual, usual, usual, odd)


_STRINGS = st.one_of(
    st.builds(Ref, st.sampled_from(("own", "other", "terms")), st.integers(0, 99)),
    st.builds(Ref, st.sampled_from(("own", "other")), st.integers(0, 99)),
    st.from_regex(r"[a-z][a-z0-9._:-]{0,12}", fullmatch=True),
    st.text(st.characters(codec="utf-8"), max_size=12),
    st.uuids().map(str),
    st.sampled_from(["", " ", "x" * 300, "\x00", "default", "%", "'", "a/b", "-1"]),
)
_INT32 = _mostly(st.integers(0, 10), st.sampled_from([-1, 1001, 2**31 - 1, -(2**31)]))
_INT64 = _mostly(_INT32, st.sampled_from([10**6, 2**63 - 1, -(2**63)]))
_UNSIGNED = st.sampled_from([0, 1, 2**32 - 1])
_SECONDS = _mostly(
    st.integers(1_600_000_000, 2_000_000_000),
    # 0001-01-01, 9999-12-31, just outside both, far outside.
    st.sampled_from([-62135596800, 253402300799, -62135596801, 253402300800, 2**40, -(2**40)]),
)
_NANOS = _mostly(st.just(0), st.sampled_from([999_999_999, -1, 10**9]))
_VECTORS = st.sampled_from(
    [[], vector(1), vector(2), vector(3), [0.0] * EMBEDDING_DIM, [math.nan] * EMBEDDING_DIM, [1.0]]
)
_SCALARS = {
    FieldDescriptor.TYPE_STRING: _STRINGS,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=8),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_FLOAT: _mostly(st.floats(0, 1, width=32), st.floats(width=32)),
    FieldDescriptor.TYPE_DOUBLE: _mostly(st.floats(0, 100), st.floats()),
    **dict.fromkeys((FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32), _INT32),
    **dict.fromkeys((FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64), _INT64),
    **dict.fromkeys((FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_UINT64), _UNSIGNED),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_ENUM:  # unknown numbers too: proto3 enums are open
        numbers = [value.number for value in field.enum_type.values]
        return _mostly(st.sampled_from(numbers[1:] or numbers), st.sampled_from([0, 99, -1]))
    return _SCALARS[field.type]


def _mask_paths(desc: Descriptor) -> list[str]:
    """Paths an update mask in ``desc`` might name: its message fields' fields."""
    paths = []
    for outer in desc.fields:
        inner = outer.message_type
        if inner is not None and not inner.full_name.startswith("google."):
            for sub in inner.fields:
                paths.append(sub.name)
                if sub.message_type is not None and sub.message_type.file == inner.file:
                    paths.extend(f"{sub.name}.{leaf.name}" for leaf in sub.message_type.fields)
    return paths or ["name"]


def _well_known(desc: Descriptor, paths: list[str]) -> st.SearchStrategy[Any] | None:
    cls = message_factory.GetMessageClass(desc)
    if desc.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), _SECONDS, _NANOS)
    if desc.full_name == "google.protobuf.Struct":
        values = st.one_of(_STRINGS, st.floats(), st.booleans(), st.none())
        keys = st.one_of(st.sampled_from(["note", "step", "a"]), st.text(max_size=4))
        return st.lists(st.tuples(keys, values), max_size=3).map(
            lambda items: StructSpec(tuple(dict(items).items()))
        )
    if desc.full_name == "google.protobuf.FieldMask":
        path = _mostly(st.sampled_from(paths), st.text(max_size=6))
        return st.lists(path, max_size=3).map(lambda p: cls(paths=p))
    return None


def _field(field: FieldDescriptor, depth: int, paths: list[str]) -> st.SearchStrategy[Any]:
    if field.is_repeated and field.type == FieldDescriptor.TYPE_FLOAT:
        return _VECTORS
    if field.message_type is not None:
        element = _message(field.message_type, depth - 1, paths, sparse=False)
    else:
        element = _scalar(field)
    return st.lists(element, min_size=1, max_size=3) if field.is_repeated else element


def _message(desc: Descriptor, depth: int, paths: list[str], *, sparse: bool) -> Any:
    """Messages of ``desc`` with about a third of their fields set (an eighth if sparse)."""
    known = _well_known(desc, paths)
    if known is not None:
        return known
    cls = message_factory.GetMessageClass(desc)
    fields = [
        (field.name, _field(field, depth, paths))
        for field in desc.fields
        if depth > 0 or field.message_type is None
    ]
    odds = st.integers(0, 7 if sparse else 2)

    @st.composite
    def draw(draw: st.DrawFn) -> MessageSpec:
        chosen = [(name, draw(values)) for name, values in fields if draw(odds) == 0]
        return MessageSpec(cls, tuple(chosen))

    return draw()


@functools.cache
def request_specs(rpc: Rpc) -> st.SearchStrategy[Any]:
    """Random requests for ``rpc``: built from scratch, or a well-formed one patched."""
    desc = rpc.input.DESCRIPTOR
    paths = _mask_paths(desc)
    whose = st.sampled_from(["own", "other"])
    return st.one_of(
        _message(desc, 3, paths, sparse=False),
        st.builds(Based, st.just(rpc), whose, _message(desc, 3, paths, sparse=True)),
    )


# -- the two tenants -----------------------------------------------------------------


@dataclass
class Side:
    """One tenant of the pair, and what the other must never see of it."""

    keys: TenantKeys
    protected: Resources
    secrets: set[str]
    pools: Pools | None = None
    # Every request this tenant sent, serialized: what it knows anyway.
    sent: list[bytes] = field(default_factory=list)

    def knows(self, secret: str) -> bool:
        raw = secret.encode()
        return any(raw in request for request in self.sent)


@dataclass
class Run:
    channel: grpc.Channel
    sides: tuple[Side, Side]
    started: float
    requests: int = 0


def _marked_tenant(conn: psycopg.Connection[Any], tag: str) -> tuple[TenantKeys, str, set[str]]:
    """A tenant without rate limit, with a marked name and a marked key: its keys,
    that key's id, and every string that names it."""
    tenant = create_tenant_keys(conn, f"{tag}-{uuid.uuid4().hex[:12]}")
    name, key_name, secret = (
        f"tname{uuid.uuid4().hex}",
        f"kname{uuid.uuid4().hex}",
        keys.new_secret(),
    )
    conn.execute(
        "UPDATE tenants SET display_name = %s, requests_per_second = 0, burst = 0"
        " WHERE tenant_id = %s",
        (name, tenant.tenant_id),
    )
    key_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO api_keys (key_id, tenant_id, name, role, prefix, secret_hash, created_by)"
        " VALUES (%s, %s, %s, 'viewer', %s, %s, 'test')",
        (key_id, tenant.tenant_id, key_name, keys.prefix_of(secret), keys.hash_secret(secret)),
    )
    prefixes = {keys.prefix_of(s) for s in (tenant.viewer, tenant.member, tenant.admin, secret)}
    names = {tenant.tenant_id, name, key_name, key_id, *tenant.key_ids.values(), *prefixes}
    return tenant, key_id, names


@pytest.fixture(scope="module")
def run(pg_uri: str, auth_server: ServerThread) -> Iterator[Run]:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        made = [_marked_tenant(conn, tag) for tag in ("a", "b", "bystander")]
    bystander = made[2][2]
    with grpc.insecure_channel(auth_server.addr) as channel:
        sides = []
        for tenant, key_id, names in made[:2]:
            protected = populate(channel, tenant.tenant_id, tenant.metadata(), key_id)
            strings = {*protected.ids(), *protected.terms}
            sides.append(Side(tenant, protected, names | strings | bystander))
        yield Run(channel, (sides[0], sides[1]), started=time.monotonic())


@pytest.fixture
def scratch(run: Run) -> None:
    """Fresh scratch resources for each RPC: earlier ones may have deleted theirs."""
    for me, other in (run.sides, run.sides[::-1]):
        tenant = me.keys
        own = populate(run.channel, tenant.tenant_id, tenant.metadata(), tenant.key_ids["viewer"])
        me.secrets.update((*own.ids(), *own.terms))
        me.pools = Pools(own, other.protected, other.protected.terms[:1])


def _ids(message: pb_message.Message) -> Iterator[str]:
    """The UUIDs in a response's id fields (ids the server assigned)."""
    for descriptor, value in message.ListFields():
        for item in value if descriptor.is_repeated else [value]:
            if isinstance(item, pb_message.Message):
                yield from _ids(item)
            elif isinstance(item, str) and descriptor.name.endswith(("id", "ids", "by")):
                yield from UUID.findall(item)


def _check(me: Side, other: Side, request: pb_message.Message, outcome: Outcome) -> None:
    assert outcome.code not in NEVER, (outcome.code, outcome.details, str(request))
    assert outcome.code != grpc.StatusCode.UNAUTHENTICATED, outcome.details  # keys stay valid
    for secret in other.secrets:
        if outcome.contains(secret):
            assert me.knows(secret), (secret, str(request), outcome.text)
    if outcome.response is not None:  # what it made now is its own, too
        new = {i for i in _ids(outcome.response) if i not in me.secrets}
        me.secrets.update(i for i in new if not me.knows(i))


@pytest.mark.usefixtures("scratch")
@pytest.mark.parametrize("rpc", RPCS, ids=str)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_tenant_sees_the_other(run: Run, rpc: Rpc, data: st.DataObject) -> None:
    spec = data.draw(request_specs(rpc), label="request")
    for me, other in (run.sides, run.sides[::-1]):
        assert me.pools is not None
        role = data.draw(st.sampled_from(["member", "admin"]), label="role")
        request = materialize(spec, me.pools)
        outcome = invoke(run.channel, rpc, request, me.keys.metadata(role))
        run.requests += 1
        me.sent.append(request.SerializeToString())
        _check(me, other, request, outcome)


def test_the_protected_data_outlived_the_random_requests(run: Run, capsys: Any) -> None:
    """Each tenant's protected data, named only by the other, is intact at the end."""
    with capsys.disabled():
        seconds = time.monotonic() - run.started
        print(f"\nisolation properties: {run.requests} requests in {seconds:.1f} s")
    rpcs = {rpc.name: rpc for rpc in RPCS}
    for side in run.sides:
        for name in ("GetConversation", "GetMemory"):
            request = build_request(rpcs[name], side.protected)
            outcome = invoke(run.channel, rpcs[name], request, side.keys.metadata())
            assert outcome.code == grpc.StatusCode.OK, outcome.details
        assert outcome.response.memory.version == 2  # created, then updated once by populate
