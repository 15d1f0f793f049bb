"""Every RPC against every kind of caller: no key, dead keys, malformed headers,
each role, another tenant's keys, a disabled tenant, a key revoked mid-use.

The RPCs are those of the memoryd.v1 descriptors, and the server's reflection
must list exactly those, so a new RPC is covered without being named here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from memoryd_server.auth import keys, policy
from memoryd_server.auth.interceptor import INVALID_KEY, MALFORMED, MISSING_KEY
from tests.conftest import ADMIN_SECRET, ServerThread, TenantKeys, create_tenant_keys
from tests.rpc_requests import (
    RPCS,
    Outcome,
    Resources,
    Rpc,
    build_request,
    ghost_of,
    invoke,
    populate,
)

Code = grpc.StatusCode
OPERATOR = (("authorization", f"Bearer {ADMIN_SECRET}"),)
CACHE_SECONDS = 1.0  # auth_server's auth_cache_seconds
ROLES = ("viewer", "member", "admin", "operator")
# What each role may do, as the proto comments state it.
GRANTS = {
    "viewer": {"any", "read"},
    "member": {"any", "read", "write"},
    "admin": {"any", "read", "write", "admin"},
    "operator": {"any", "admin", "operator"},
}
OPERATOR_RPCS = {"CreateTenant", "ListTenants", "UpdateTenant", "DisableTenant", "EnableTenant"}
# Other tenants' ids in these create the caller's own resources, or filter.
CREATES = {"CreateConversation", "CreateMemory", "BatchCreateMemories"}
LISTS = {
    *("ListConversations", "ListMemories", "SearchMemories", "ListNamespaces", "SearchMessages"),
    *("ListDocuments", "SearchDocuments"),
}
BY_NAME = {rpc.name: rpc for rpc in RPCS}
LIST_CONVERSATIONS = BY_NAME["ListConversations"]


def _permission(rpc: Rpc) -> str:
    return policy.METHOD_PERMISSIONS[rpc.path]


def _metadata(tenant: TenantKeys, role: str) -> tuple[tuple[str, str], ...]:
    return OPERATOR if role == "operator" else tenant.metadata(role)


def _populate(channel: grpc.Channel, tenant: TenantKeys) -> Resources:
    return populate(channel, tenant.tenant_id, tenant.metadata("member"), tenant.key_ids["viewer"])


@pytest.fixture(scope="module")
def channel(auth_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(auth_server.addr) as chan:
        yield chan


# -- the set of RPCs -----------------------------------------------------------------


def test_reflection_lists_exactly_the_descriptors_rpcs(channel):
    """Reflection (open to callers without a key) serves the descriptors' RPCs, no more."""
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    pool = DescriptorPool(database)
    open_services = {name for name in services if name.startswith("grpc.")}
    assert "grpc.health.v1.Health" in open_services
    assert all(name.startswith(("grpc.health.", "grpc.reflection.")) for name in open_services)
    found = {}
    for name in services - open_services:
        for method in pool.FindServiceByName(name).methods:
            found[f"/{name}/{method.name}"] = (method.input_type.full_name, method.output_type.name)
    expected = {
        rpc.path: (rpc.input.DESCRIPTOR.full_name, rpc.output.DESCRIPTOR.name) for rpc in RPCS
    }
    assert found == expected
    assert {"ConversationService", "MemoryService", "AdminService"} <= {
        rpc.service.rsplit(".", 1)[-1] for rpc in RPCS
    }


def test_health_needs_no_key(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", *sorted({rpc.service for rpc in RPCS})):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def test_every_rpc_has_a_permission():
    """Data RPCs are reads or writes; AdminService's operator RPCs manage tenants."""
    for rpc in RPCS:
        permission = _permission(rpc)
        if rpc.service.endswith("AdminService"):
            assert (permission == "operator") == (rpc.name in OPERATOR_RPCS), rpc
        else:
            assert permission in {"read", "write"}, rpc
    assert set(policy.METHOD_PERMISSIONS) == {rpc.path for rpc in RPCS}


# -- callers without a working key ---------------------------------------------------


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_no_key(channel, rpc):
    for metadata in ((), (("x-api-key", "mdk_abc"),)):
        outcome = invoke(channel, rpc, rpc.input(), metadata)
        assert (outcome.code, outcome.details) == (Code.UNAUTHENTICATED, MISSING_KEY)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_malformed_authorization(channel, rpc, tenant):
    member = f"Bearer {tenant.member}"
    malformed = [
        [("authorization", "Basic x")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a b")],
        [("authorization", f"Bearer {tenant.member} extra")],
        [("authorization", "Bearer " + "k" * 10 * 1024)],
        [("authorization", member), ("authorization", member)],
    ]
    for metadata in malformed:
        outcome = invoke(channel, rpc, rpc.input(), metadata)
        assert (outcome.code, outcome.details) == (Code.UNAUTHENTICATED, MALFORMED), metadata[0]
    huge = invoke(channel, rpc, rpc.input(), [("authorization", "Bearer " + "k" * 64 * 1024)])
    assert huge.code == Code.RESOURCE_EXHAUSTED, huge.details  # refused by the transport


def test_non_ascii_authorization(auth_server):
    """grpcurl sends the raw bytes (grpc-python refuses to): every RPC says UNAUTHENTICATED."""
    beside = Path(sys.executable).parent / "grpcurl"
    binary = str(beside) if beside.exists() else "grpcurl"
    for rpc in RPCS:
        command = [binary, "-plaintext", "-H", "authorization: Bearer caf\u00e9\u00ff", "-d"]
        command += ["{}", auth_server.addr, rpc.path.lstrip("/")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 64 + Code.UNAUTHENTICATED.value[0], (rpc, result.stderr)
        assert MALFORMED in result.stderr


@pytest.fixture(scope="module")
def dead_keys(pg_uri, channel) -> dict[str, tuple[tuple[str, str], ...]]:
    """Keys that do not work: unknown, revoked and expired (some after being cached)."""
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        owner = create_tenant_keys(conn, f"t-{uuid.uuid4().hex[:12]}")
        secrets = {"unknown": keys.new_secret()}
        for name, expire in (
            ("revoked", None),
            ("revoked_unused", None),
            ("expired", "now() + interval '1 second'"),
            ("expired_unused", "now() - interval '1 second'"),
        ):
            secrets[name] = keys.new_secret()
            conn.execute(
                "INSERT INTO api_keys (key_id, tenant_id, name, role, prefix, secret_hash,"
                " created_by, expire_time)"
                f" VALUES (%s, %s, %s, 'admin', %s, %s, 'test', {expire or 'NULL'})",
                (
                    str(uuid.uuid4()),
                    owner.tenant_id,
                    name,
                    keys.prefix_of(secrets[name]),
                    keys.hash_secret(secrets[name]),
                ),
            )
        metadata = {
            name: (("authorization", f"Bearer {secret}"),) for name, secret in secrets.items()
        }
        for name in ("revoked", "expired"):  # the server caches them as valid
            assert (
                invoke(channel, LIST_CONVERSATIONS, LIST_CONVERSATIONS.input(), metadata[name]).code
                == Code.OK
            )
        conn.execute(
            "UPDATE api_keys SET revoke_time = now()"
            " WHERE tenant_id = %s AND name LIKE 'revoked%%'",
            (owner.tenant_id,),
        )
    time.sleep(CACHE_SECONDS + 1.0)  # the cache entries and the expiry are past
    return metadata


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_dead_keys_get_one_answer(channel, rpc, dead_keys):
    """Unknown, revoked and expired keys are told apart by nothing: code, message, details."""
    outcomes = {name: invoke(channel, rpc, rpc.input(), md) for name, md in dead_keys.items()}
    for name, outcome in outcomes.items():
        assert (outcome.code, outcome.details) == (Code.UNAUTHENTICATED, INVALID_KEY), name
    assert len({outcome.status for outcome in outcomes.values()}) == 1


# -- roles ---------------------------------------------------------------------------

# Well-formed requests on the caller's own resources that fail anyway.
OWN_FAILURES = {"CreateConversation": Code.ALREADY_EXISTS, "CreateTenant": Code.ALREADY_EXISTS}


def _snapshot(channel: grpc.Channel, db: Any, tenant: TenantKeys, res: Resources) -> list[Any]:
    """This tenant's data as its member sees it, and its rows behind the API."""
    state = [
        invoke(channel, BY_NAME[name], build_request(BY_NAME[name], res), tenant.metadata()).blob
        for name in (
            "GetConversation",
            "ListMessages",
            "GetMemory",
            "GetMemoryHistory",
            "GetDocument",
        )
    ]
    for query in (
        "SELECT display_name, state, disable_time FROM tenants WHERE tenant_id = %s",
        "SELECT key_id, name, role, expire_time, revoke_time FROM api_keys WHERE tenant_id = %s"
        " ORDER BY key_id",  # not last_used_time: using a key stamps it
    ):
        state.append(db.execute(query, (res.tenant_id,)).fetchall())
    return state


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_role(channel, db, rpc, role, tenant):
    """Each role gets PERMISSION_DENIED exactly where the policy says, and changes
    nothing there; elsewhere the call works."""
    resources = _populate(channel, tenant)
    before = _snapshot(channel, db, tenant, resources)
    outcome = invoke(channel, rpc, build_request(rpc, resources), _metadata(tenant, role))
    if _permission(rpc) in GRANTS[role]:
        assert outcome.code == OWN_FAILURES.get(rpc.name, Code.OK), (outcome.code, outcome.details)
    else:
        assert outcome.code == Code.PERMISSION_DENIED, (outcome.code, outcome.details)
        assert rpc.name in outcome.details
        assert _snapshot(channel, db, tenant, resources) == before


# -- another tenant's keys on this tenant's ids -------------------------------------


@pytest.fixture
def two_tenants(tenant: TenantKeys, other_tenant: TenantKeys) -> tuple[TenantKeys, TenantKeys]:
    return tenant, other_tenant


def _normalized(outcome: Outcome, res: Resources) -> tuple[Code, str]:
    details = outcome.details
    for i, value in enumerate(res.ids()):
        details = details.replace(value, f"<id{i}>")
    return outcome.code, details


def _items(outcome: Outcome) -> int:
    """How many entries the response's lists hold."""
    assert outcome.response is not None
    return sum(len(v) for f, v in outcome.response.ListFields() if f.is_repeated)


@pytest.mark.parametrize("role", ["member", "admin"])
@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_another_tenants_key(channel, db, rpc, role, two_tenants):
    """Another tenant's key on this tenant's ids: NOT_FOUND (or nothing), as for ids
    that exist nowhere; never this tenant's data, never a change to it."""
    tenant, other_tenant = two_tenants
    res = _populate(channel, tenant)
    before = _snapshot(channel, db, tenant, res)
    request = build_request(rpc, res)
    outcome = invoke(channel, rpc, request, other_tenant.metadata(role))
    ghost = ghost_of(f"t-{uuid.uuid4().hex[:12]}")
    twin = invoke(channel, rpc, build_request(rpc, ghost), other_tenant.metadata(role))

    if _permission(rpc) not in GRANTS[role]:
        expected = Code.PERMISSION_DENIED
    elif rpc.name in CREATES | LISTS or rpc.name == "WhoAmI":
        expected = Code.OK
    else:
        expected = Code.NOT_FOUND
    assert outcome.code == expected, (outcome.code, outcome.details)
    assert _normalized(outcome, res) == _normalized(twin, ghost)
    if expected == Code.OK and rpc.name in LISTS:
        assert _items(outcome) == 0, outcome.text
    if rpc.name == "CreateMemory":
        assert not outcome.response.updated  # not an upsert of this tenant's key
    sent = str(request)
    for secret in (*res.terms, *res.ids()):
        assert secret in sent or not outcome.contains(secret), (secret, outcome.text)
    assert _snapshot(channel, db, tenant, res) == before

    # The same request from this tenant does reach its data.
    if expected != Code.PERMISSION_DENIED and rpc.name != "WhoAmI":
        own = invoke(channel, rpc, request, tenant.metadata(role))
        assert own.code == OWN_FAILURES.get(rpc.name, Code.OK), (own.code, own.details)
        if rpc.name in LISTS:
            assert _items(own) > 0
        if rpc.name == "CreateMemory":
            assert own.response.updated


# -- disabled tenants and revoked keys ----------------------------------------------


@pytest.mark.parametrize("rpc", RPCS, ids=str)
def test_disabled_tenant(channel, db, rpc, tenant):
    db.execute("UPDATE tenants SET state = 'disabled' WHERE tenant_id = %s", (tenant.tenant_id,))
    for role in ("viewer", "member", "admin"):
        outcome = invoke(
            channel, rpc, build_request(rpc, ghost_of(tenant.tenant_id)), tenant.metadata(role)
        )
        assert outcome.code == Code.PERMISSION_DENIED, (role, outcome.code, outcome.details)
        assert "disabled" in outcome.details


def _list(channel: grpc.Channel, metadata: Any) -> Outcome:
    return invoke(channel, LIST_CONVERSATIONS, LIST_CONVERSATIONS.input(), metadata)


def test_disabling_a_tenant_applies_within_the_cache_bound(channel, db, tenant):
    assert _list(channel, tenant.metadata()).code == Code.OK  # cached as active
    db.execute("UPDATE tenants SET state = 'disabled' WHERE tenant_id = %s", (tenant.tenant_id,))
    time.sleep(CACHE_SECONDS + 0.3)
    assert _list(channel, tenant.metadata()).code == Code.PERMISSION_DENIED
    db.execute("UPDATE tenants SET state = 'active' WHERE tenant_id = %s", (tenant.tenant_id,))
    time.sleep(CACHE_SECONDS + 0.3)
    assert _list(channel, tenant.metadata()).code == Code.OK


def test_disable_tenant_applies_at_once(channel, tenant):
    assert _list(channel, tenant.metadata()).code == Code.OK  # cached as active
    request = BY_NAME["DisableTenant"].input(tenant_id=tenant.tenant_id)
    assert invoke(channel, BY_NAME["DisableTenant"], request, OPERATOR).code == Code.OK
    assert _list(channel, tenant.metadata()).code == Code.PERMISSION_DENIED
    request = BY_NAME["EnableTenant"].input(tenant_id=tenant.tenant_id)
    assert invoke(channel, BY_NAME["EnableTenant"], request, OPERATOR).code == Code.OK
    assert _list(channel, tenant.metadata()).code == Code.OK


@pytest.mark.parametrize("revoker", ["admin", "operator"])
def test_revoke_api_key_applies_at_once(channel, tenant, revoker):
    assert _list(channel, tenant.metadata("member")).code == Code.OK  # cached as valid
    rpc = BY_NAME["RevokeApiKey"]
    request = rpc.input(key_id=tenant.key_ids["member"])
    assert invoke(channel, rpc, request, _metadata(tenant, revoker)).code == Code.OK
    outcome = _list(channel, tenant.metadata("member"))
    assert (outcome.code, outcome.details) == (Code.UNAUTHENTICATED, INVALID_KEY)
    assert _list(channel, tenant.metadata("viewer")).code == Code.OK  # only that key


@pytest.mark.parametrize("how", ["sql", "rpc"])
def test_key_revoked_while_a_client_is_busy(channel, db, tenant, how):
    """Calls succeed until the revocation and fail UNAUTHENTICATED after it (at once
    through RevokeApiKey, within the cache bound behind the API), never otherwise."""
    results: list[tuple[float, float, Code]] = []
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            start = time.monotonic()
            code = _list(channel, tenant.metadata("member")).code
            results.append((start, time.monotonic(), code))
            time.sleep(0.02)  # within the tenant's rate limit

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        while len(results) < 20:
            time.sleep(0.01)
        revoked = time.monotonic()
        if how == "sql":
            db.execute(
                "UPDATE api_keys SET revoke_time = now() WHERE key_id = %s",
                (tenant.key_ids["member"],),
            )
            bound = revoked + CACHE_SECONDS + 0.05
        else:
            rpc = BY_NAME["RevokeApiKey"]
            request = rpc.input(key_id=tenant.key_ids["member"])
            assert invoke(channel, rpc, request, tenant.metadata("admin")).code == Code.OK
            bound = time.monotonic()
        time.sleep(CACHE_SECONDS + 0.5)
    finally:
        stop.set()
        worker.join(10)
    codes = [code for _, _, code in results]
    assert set(codes) <= {Code.OK, Code.UNAUTHENTICATED}, set(codes)
    assert all(code == Code.OK for _, end, code in results if end < revoked)
    assert all(code == Code.UNAUTHENTICATED for start, _, code in results if start > bound)
    first = codes.index(Code.UNAUTHENTICATED)
    assert Code.OK not in codes[first:]  # once refused, refused for good
    assert first > 0
