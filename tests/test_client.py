"""The typed client (``memoryd.Client``/``AsyncClient``) against the session's real server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

import memoryd
from memoryd.v1 import admin_pb2, conversation_pb2, memory_pb2

from .conftest import ServerThread, TenantKeys, create_tenant_keys

DIM = 384


def _embedding(seed: int) -> list[float]:
    """A deterministic non-zero embedding of the server's dimension."""
    return [((i * 7 + seed * 13) % 11 + 1) / 11.0 for i in range(DIM)]


@pytest.fixture(scope="module")
def keys(pg_uri: str, auth_server: ServerThread) -> TenantKeys:
    """This module's tenant on the server with auth on: the client sends real keys."""
    del auth_server  # its migrations made the tables
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"client-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(auth_server: ServerThread, keys: TenantKeys) -> Iterator[memoryd.Client]:
    with memoryd.Client(auth_server.addr, api_key=keys.member) as c:
        yield c


def test_every_rpc_has_a_client_method() -> None:
    """Every service's RPCs all appear in RPC_METHODS, on both clients' namespaces."""
    for file in (conversation_pb2.DESCRIPTOR, memory_pb2.DESCRIPTOR, admin_pb2.DESCRIPTOR):
        for service in file.services_by_name.values():
            attr, methods = memoryd.RPC_METHODS[service.full_name]
            assert set(methods) == {m.name for m in service.methods}, service.full_name
            for cls in (memoryd.Client, memoryd.AsyncClient):
                namespace = {
                    "conversations": (memoryd.Conversations, memoryd.AsyncConversations),
                    "memories": (memoryd.Memories, memoryd.AsyncMemories),
                    "admin": (memoryd.Admin, memoryd.AsyncAdmin),
                }[attr][cls is memoryd.AsyncClient]
                for rpc, method in methods.items():
                    assert callable(getattr(namespace, method, None)), (cls, rpc, method)


def test_all_equals_exports() -> None:
    """``memoryd.__all__`` lists exactly its public names."""
    # Subpackages (the stubs, the framework adapters) appear here once imported.
    subpackages = {"v1", "integrations"}
    public = {n for n in vars(memoryd) if not n.startswith("_") and n not in subpackages}
    assert set(memoryd.__all__) == public


def test_sync_agent_turn(client: memoryd.Client, uid: str) -> None:
    """Append (creating the conversation), read the context window, store and find a memory."""
    conv_id = f"sess-{uid}"
    result = client.conversations.append(
        conv_id,
        [
            memoryd.NewMessage("system", "be brief", token_count=3),
            {"role": "user", "content": "I like green tea", "token_count": 5},
        ],
        create_if_missing=True,
        user_id=f"user-{uid}",
        title="turn",
    )
    assert [m.seq for m in result.messages] == [1, 2]
    assert result.messages[1].role == "user"
    assert result.conversation.id == conv_id
    assert result.conversation.status == "active"
    assert result.conversation.create_time is not None
    reply = client.conversations.append(
        conv_id, [memoryd.NewMessage("assistant", "Noted.", token_count=2, model="m1")]
    )
    assert reply.conversation.message_count == 3
    window = client.conversations.context_window(conv_id, max_tokens=7)
    assert [m.content for m in window.messages] == ["I like green tea", "Noted."]
    assert window.omitted_message_count == 1
    assert window.total_tokens == 7

    created = client.memories.create(
        memoryd.NewMemory(
            "The user likes green tea",
            namespace=[uid, "prefs"],
            key="drink",
            memory_type="user_profile",
            embedding=_embedding(1),
            metadata={"source": "chat"},
            tags=["drink"],
        ),
        ttl=timedelta(days=1),
    )
    mem = created.memory
    assert not created.updated
    assert mem.memory_type == "user_profile"
    assert mem.metadata == {"source": "chat"}
    assert mem.expire_time is not None
    hits = client.memories.search(
        query_embedding=_embedding(1),
        filter=memoryd.MemoryFilter(namespace_prefix=[uid]),
        top_k=5,
    )
    assert hits[0].memory.id == mem.id
    assert hits[0].score > 0.9
    assert client.memories.get(namespace=[uid, "prefs"], key="drink").id == mem.id


def test_async_agent_turn(auth_server: ServerThread, keys: TenantKeys, uid: str) -> None:
    """The same turn on AsyncClient, with a numpy-like embedding."""

    class Array:
        def __init__(self, values: list[float]) -> None:
            self.values = values

        def tolist(self) -> list[float]:
            return self.values

    async def turn() -> None:
        async with memoryd.AsyncClient(auth_server.addr, api_key=keys.member) as client:
            conv_id = f"async-{uid}"
            result = await client.conversations.append(
                conv_id,
                [memoryd.NewMessage("user", "hello", token_count=1)],
                create_if_missing=True,
                user_id=uid,
            )
            assert result.messages[0].seq == 1
            window = await client.conversations.context_window(conv_id)
            assert [m.content for m in window.messages] == ["hello"]
            mem = (
                await client.memories.create(
                    memoryd.NewMemory("hello fact", namespace=[uid], embedding=Array(_embedding(2)))
                )
            ).memory
            hits = await client.memories.search(
                query_embedding=Array(_embedding(2)),
                filter=memoryd.MemoryFilter(namespace_prefix=[uid]),
            )
            assert hits[0].memory.id == mem.id
            with pytest.raises(memoryd.NotFound):
                await client.conversations.get(f"missing-{uid}")

    asyncio.run(turn())


def test_key_errors_are_typed(auth_server: ServerThread, keys: TenantKeys, uid: str) -> None:
    """No key or a wrong one is Unauthenticated; a viewer's write is PermissionDenied."""
    with memoryd.Client(auth_server.addr) as anonymous, pytest.raises(memoryd.Unauthenticated):
        anonymous.conversations.get(f"c-{uid}")
    with (
        memoryd.Client(auth_server.addr, api_key="mdk_wrong") as wrong,
        pytest.raises(memoryd.Unauthenticated) as info,
    ):
        wrong.conversations.get(f"c-{uid}")
    assert info.value.attempts == 1  # not retried: a retry cannot fix a key
    with memoryd.Client(auth_server.addr, api_key=keys.viewer) as viewer:
        with pytest.raises(memoryd.PermissionDenied):
            viewer.conversations.create(conversation_id=f"c-{uid}")
        with pytest.raises(memoryd.NotFound):
            viewer.conversations.get(f"c-{uid}")


def test_conversation_crud_and_feedback(client: memoryd.Client, uid: str) -> None:
    """create/get/update/set_feedback/delete round-trip plain values; errors are typed."""
    conv = client.conversations.create(
        conversation_id=f"c-{uid}", user_id=uid, metadata={"a": 1}, state={"step": "x"}
    )
    assert conv.state == {"step": "x"}
    assert client.conversations.get(conv.id).metadata == {"a": 1.0}
    updated = client.conversations.update(conv.id, title="t", status="idle", expected_version=1)
    assert (updated.title, updated.status, updated.version) == ("t", "idle", 2)
    with pytest.raises(memoryd.Aborted) as info:
        client.conversations.update(conv.id, summary="s", expected_version=1)
    assert info.value.reason == "Aborted"
    msg = client.conversations.append(conv.id, [memoryd.NewMessage("assistant", "hi")]).messages[0]
    rated = client.conversations.set_feedback(conv.id, msg.id, "negative", comment="meh")
    assert rated.feedback is not None
    assert rated.feedback.rating == "negative"
    with pytest.raises(memoryd.InvalidArgument) as bad:
        client.conversations.append(conv.id, [memoryd.NewMessage("user", "")])
    assert bad.value.field_violations
    assert bad.value.field_violations[0].field.startswith("messages[0]")
    assert client.conversations.delete(conv.id) == 1
    with pytest.raises(memoryd.NotFound):
        client.conversations.get(conv.id)


def test_memory_lifecycle(client: memoryd.Client, uid: str) -> None:
    """update, supersede, delete, history and at on plain values."""
    ids = client.memories.batch_create(
        [memoryd.NewMemory(f"fact {i}", namespace=[uid, f"n{i % 2}"]) for i in range(3)]
    )
    assert len(ids) == 3
    mem = client.memories.update(ids[0], content="fact zero", importance=9, tags=["x"])
    assert (mem.content, mem.importance, mem.tags, mem.version) == ("fact zero", 9, ("x",), 2)
    result = client.memories.supersede(
        ids[0], memoryd.NewMemory("fact zero, corrected"), reason="fix"
    )
    assert result.superseded.status == "superseded"
    assert result.memory.namespace == (uid, "n0")
    archived = client.memories.delete(ids[1], reason="gone")
    assert archived is not None
    assert archived.status == "archived"
    assert client.memories.delete(ids[2], purge=True) is None
    events = list(client.memories.iter_history(ids[0], page_size=1))
    assert [e.event_type for e in events] == ["created", "updated", "superseded"]
    assert events[0].event_time is not None
    past = client.memories.at(ids[0], events[0].event_time + timedelta(microseconds=1))
    assert past.content == "fact 0"


def test_iterators_walk_to_the_end(
    client: memoryd.Client, auth_server: ServerThread, keys: TenantKeys, uid: str
) -> None:
    """Every iterator yields every item once, across several pages."""
    for i in range(5):
        client.conversations.append(
            f"it-{uid}-{i}",
            [memoryd.NewMessage("user", str(j)) for j in range(7)],
            create_if_missing=True,
            user_id=f"it-{uid}",
        )
    convs = [c.id for c in client.conversations.iter(user_id=f"it-{uid}", page_size=2)]
    assert sorted(convs) == sorted(f"it-{uid}-{i}" for i in range(5))
    msgs = [m.seq for m in client.conversations.iter_messages(f"it-{uid}-0", page_size=3)]
    assert msgs == list(range(1, 8))
    client.memories.batch_create(
        [memoryd.NewMemory(f"m{i}", namespace=[uid, f"ns{i}"]) for i in range(5)]
    )
    mems = [m.id for m in client.memories.iter(filter=memoryd.MemoryFilter([uid]), page_size=2)]
    assert len(mems) == len(set(mems)) == 5
    spaces = list(client.memories.iter_namespaces(prefix=[uid], page_size=2))
    assert spaces == [(uid, f"ns{i}") for i in range(5)]

    async def walk() -> tuple[list[str], list[int]]:
        async with memoryd.AsyncClient(auth_server.addr, api_key=keys.viewer) as ac:
            cs = [c.id async for c in ac.conversations.iter(user_id=f"it-{uid}", page_size=2)]
            ms = [m.seq async for m in ac.conversations.iter_messages(f"it-{uid}-1", page_size=2)]
            return cs, ms

    cs, ms = asyncio.run(walk())
    assert sorted(cs) == sorted(convs)
    assert ms == list(range(1, 8))


def test_unknown_enum_string_is_invalid_argument(client: memoryd.Client) -> None:
    """A bad enum name fails locally with InvalidArgument naming the field."""
    with pytest.raises(memoryd.InvalidArgument) as info:
        client.conversations.append("x", [memoryd.NewMessage("robot", "hi")])  # type: ignore[arg-type]
    assert info.value.field_violations[0].field == "messages[0].role"


class FakeRpcError(grpc.RpcError):
    """An RpcError as grpc raises them: code(), details(), trailing_metadata()."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Any = ()) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers


def _status_trailer(code: grpc.StatusCode, *details: Any) -> tuple[tuple[str, bytes], ...]:
    status = status_pb2.Status(code=code.value[0], message="m")
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return (("grpc-status-details-bin", status.SerializeToString()),)


EXPECTED = {
    grpc.StatusCode.CANCELLED: memoryd.Cancelled,
    grpc.StatusCode.UNKNOWN: memoryd.Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: memoryd.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: memoryd.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: memoryd.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: memoryd.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: memoryd.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: memoryd.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: memoryd.FailedPrecondition,
    grpc.StatusCode.ABORTED: memoryd.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: memoryd.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: memoryd.Unimplemented,
    grpc.StatusCode.INTERNAL: memoryd.Internal,
    grpc.StatusCode.UNAVAILABLE: memoryd.Unavailable,
    grpc.StatusCode.DATA_LOSS: memoryd.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: memoryd.Unauthenticated,
}


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_status_code_maps_to_its_class(code: grpc.StatusCode) -> None:
    """from_grpc_error picks the class of the code and reads ErrorInfo and BadRequest."""
    info = error_details_pb2.ErrorInfo(reason=EXPECTED[code].__name__, domain="memoryd")
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="f.g", description="d")]
    )
    err = memoryd.from_grpc_error(FakeRpcError(code, "boom", _status_trailer(code, info, bad)))
    assert type(err) is EXPECTED[code]
    assert isinstance(err, memoryd.MemorydError)
    assert (err.code, err.message, err.reason) == (code, "boom", EXPECTED[code].__name__)
    assert err.field_violations == (memoryd.FieldViolation("f.g", "d"),)


def test_error_classes_have_distinct_codes() -> None:
    """Every non-OK code has exactly one class."""
    assert len(set(EXPECTED.values())) == len(EXPECTED) == len(grpc.StatusCode) - 1
    assert memoryd.MemorydError.by_code == EXPECTED


def test_from_grpc_error_without_details() -> None:
    """No trailers, garbled trailers and RetryInfo are all handled."""
    plain = memoryd.from_grpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "", None))
    assert (type(plain), plain.message, plain.reason) == (memoryd.NotFound, "NOT_FOUND", "")
    garbled = (("grpc-status-details-bin", b"\xff\xff"),)
    assert (
        memoryd.from_grpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "x", garbled)).reason == ""
    )
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=5_000_000))
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    err = memoryd.from_grpc_error(FakeRpcError(code, "slow", _status_trailer(code, retry)))
    assert err.retry_delay == timedelta(milliseconds=5)


def test_real_server_error_details(client: memoryd.Client) -> None:
    """The server's ErrorInfo reason reaches the typed error, with the RpcError as cause."""
    with pytest.raises(memoryd.NotFound) as info:
        client.memories.get(str(uuid.uuid4()))
    assert info.value.reason == "NotFound"
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_tiny_timeout_is_deadline_exceeded(client: memoryd.Client, uid: str) -> None:
    """A call whose deadline passes raises DeadlineExceeded, not a raw RpcError."""
    with pytest.raises(memoryd.DeadlineExceeded):
        client.conversations.list(user_id=uid, timeout=1e-6)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_closed_port_is_unavailable_after_bounded_retries() -> None:
    """Retries stop after max_attempts; the last Unavailable carries its cause."""
    start = time.monotonic()
    with (
        memoryd.Client(
            f"127.0.0.1:{_closed_port()}", max_attempts=3, initial_backoff=0.05, max_backoff=0.1
        ) as c,
        pytest.raises(memoryd.Unavailable) as info,
    ):
        c.conversations.get("x")
    assert time.monotonic() - start < 3
    assert info.value.attempts == 3
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_async_closed_port_is_unavailable() -> None:
    """The async client retries the same way."""

    async def call() -> memoryd.Unavailable:
        async with memoryd.AsyncClient(
            f"127.0.0.1:{_closed_port()}", max_attempts=2, initial_backoff=0.01
        ) as c:
            with pytest.raises(memoryd.Unavailable) as info:
                await c.memories.list()
            return info.value

    err = asyncio.run(call())
    assert err.attempts == 2


def test_writes_without_request_id_are_not_retried() -> None:
    """update/delete/supersede/set_feedback fail on the first UNAVAILABLE."""
    with memoryd.Client(f"127.0.0.1:{_closed_port()}", initial_backoff=0.01) as c:
        with pytest.raises(memoryd.Unavailable) as info:
            c.conversations.delete("x")
        assert info.value.attempts == 1
        with pytest.raises(memoryd.Unavailable) as info:
            c.memories.update("x", content="y")
        assert info.value.attempts == 1


class FlakyProxy(grpc.GenericRpcHandler):
    """Forwards every call to the real server as raw bytes, but answers the first
    AppendMessages with UNAVAILABLE after the server has committed it."""

    def __init__(self, upstream: grpc.Channel) -> None:
        self.upstream = upstream
        self.append_calls = 0
        self.metadata: list[tuple[str, str]] = []

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        method: str = handler_call_details.method
        forward: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.upstream.unary_unary(method)

        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.metadata.extend(context.invocation_metadata())  # type: ignore[arg-type]
            credentials = [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]
            response: bytes = forward(request, timeout=10, metadata=credentials)
            if method.endswith("/AppendMessages"):
                self.append_calls += 1
                if self.append_calls == 1:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
            return response

        return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture
def flaky_proxy(auth_server: ServerThread) -> Iterator[tuple[str, FlakyProxy]]:
    with grpc.insecure_channel(auth_server.addr) as upstream:
        proxy = FlakyProxy(upstream)
        server = grpc.server(futures.ThreadPoolExecutor(4), handlers=[proxy])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            yield f"127.0.0.1:{port}", proxy
        finally:
            server.stop(None).wait()


def test_retried_append_does_not_duplicate(
    flaky_proxy: tuple[str, FlakyProxy], client: memoryd.Client, keys: TenantKeys, uid: str
) -> None:
    """The client retries an UNAVAILABLE append under the same request_id: one copy lands."""
    addr, proxy = flaky_proxy
    with memoryd.Client(addr, api_key=keys.member, initial_backoff=0.01) as flaky:
        result = flaky.conversations.append(
            f"dup-{uid}", [memoryd.NewMessage("user", "once")], create_if_missing=True
        )
    assert proxy.append_calls == 2
    assert [m.seq for m in result.messages] == [1]
    assert [m.content for m in client.conversations.iter_messages(f"dup-{uid}")] == ["once"]
    assert ("authorization", f"Bearer {keys.member}") in proxy.metadata


MYPY_SCRIPT = """
import asyncio
from datetime import timedelta

import memoryd


def turn(client: memoryd.Client) -> list[str]:
    result = client.conversations.append(
        "s1", [memoryd.NewMessage("user", "hi")], create_if_missing=True
    )
    seq: int = result.messages[0].seq
    window: memoryd.ContextWindow = client.conversations.context_window("s1", max_tokens=100)
    mem = client.memories.create(memoryd.NewMemory("fact", namespace=["a"]), ttl=timedelta(1))
    hits = client.memories.search(query_text="fact", top_k=3)
    del seq, window, mem
    return [h.memory.content for h in hits]


async def aturn() -> int:
    async with memoryd.AsyncClient("localhost:1", default_timeout=1.0) as client:
        try:
            conv = await client.conversations.get("s1")
        except memoryd.NotFound as err:
            print(err.reason, err.code)
            return 0
        return conv.message_count + len([c async for c in client.conversations.iter()])


with memoryd.Client("localhost:1", api_key="k") as c:
    print(turn, asyncio.run, aturn, c)
"""


def test_mypy_strict_user_script(tmp_path: Path) -> None:
    """A typed user script passes ``mypy --strict`` against the installed package."""
    script = tmp_path / "user.py"
    script.write_text(MYPY_SCRIPT)
    env = {**os.environ, "MYPYPATH": str(Path(memoryd.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
