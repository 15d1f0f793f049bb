"""Unit tests of settings, URL redaction, page tokens and identifiers (no server, no database)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

import memoryd_server
from memoryd_server import cli, config, tls
from memoryd_server.config import ENVIRONMENT_VARIABLES, ConfigError, Settings
from memoryd_server.database import redact
from memoryd_server.errors import InvalidArgument
from memoryd_server.ids import check_resource_id, parse_uuid, uuid7
from memoryd_server.pagination import PageTokens

# --- Settings.from_env ----------------------------------------------------------------


def test_defaults() -> None:
    """With no variables set, the server listens locally on an embedded database."""
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.addr == "127.0.0.1:50051"
    assert settings.database_url is None
    assert settings.data_dir == Path("memoryd-data")
    assert (settings.pool_min_size, settings.pool_max_size) == (1, 10)
    assert settings.max_content_bytes == 1024 * 1024
    assert settings.max_receive_bytes == 64 * 1024 * 1024
    assert (settings.embedder, settings.embedding_model, settings.embedding_dim) == (
        "none",
        None,
        None,
    )
    assert (settings.model_name, settings.known_dimension) == ("", 1536)
    assert (settings.expiry_action, settings.expiry_interval_seconds) == ("archive", 60.0)
    assert settings.statement_timeout_ms == 30_000
    assert settings.shutdown_grace_seconds == 10.0
    assert settings.health_interval_seconds == 0.5
    assert settings.migrate_on_start is True
    assert (settings.log_level, settings.log_format) == ("info", "auto")
    assert settings.otlp_endpoint is None
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (None, None, None)
    assert settings.tls_mode == "off"


# (variable, value, Settings field, parsed value): one row per variable, at least.
PARSED = [
    ("MEMORYD_ADDR", "0.0.0.0:6000", "addr", "0.0.0.0:6000"),
    ("MEMORYD_ADDR", "[::]:50051", "addr", "[::]:50051"),
    ("DATABASE_URL", "postgresql://u@db:5432/m", "database_url", "postgresql://u@db:5432/m"),
    ("DATABASE_URL", "postgres://u@db/m", "database_url", "postgres://u@db/m"),
    ("MEMORYD_DATA_DIR", "/var/lib/memoryd", "data_dir", Path("/var/lib/memoryd")),
    ("MEMORYD_WORKERS", "3", "workers", 3),
    ("MEMORYD_POOL_MIN_SIZE", "3", "pool_min_size", 3),
    ("MEMORYD_POOL_MAX_SIZE", "40", "pool_max_size", 40),
    ("MEMORYD_MAX_CONTENT_BYTES", "2048", "max_content_bytes", 2048),
    ("MEMORYD_MAX_RECEIVE_BYTES", "33554432", "max_receive_bytes", 33_554_432),
    ("MEMORYD_STATEMENT_TIMEOUT_MS", "1500", "statement_timeout_ms", 1500),
    ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "2.5", "shutdown_grace_seconds", 2.5),
    ("MEMORYD_HEALTH_INTERVAL_SECONDS", "0.25", "health_interval_seconds", 0.25),
    ("MEMORYD_MIGRATE_ON_START", "false", "migrate_on_start", False),
    ("MEMORYD_LOG_LEVEL", "DEBUG", "log_level", "debug"),
    ("MEMORYD_LOG_FORMAT", "JSON", "log_format", "json"),
    ("MEMORYD_OTLP_ENDPOINT", "http://jaeger:4317", "otlp_endpoint", "http://jaeger:4317"),
    ("MEMORYD_METRICS_ADDR", "0.0.0.0:9464", "metrics_addr", "0.0.0.0:9464"),
    ("MEMORYD_METRICS_ADDR", "OFF", "metrics_addr", None),
    (
        "PROMETHEUS_MULTIPROC_DIR",
        "/run/memoryd/metrics",
        "metrics_multiproc_dir",
        Path("/run/memoryd/metrics"),
    ),
    ("MEMORYD_EMBEDDING_DIM", "384", "embedding_dim", 384),
    ("MEMORYD_EMBEDDER", "NONE", "embedder", "none"),
    ("MEMORYD_EMBEDDER", "openai", "embedder", "openai"),
    ("MEMORYD_EMBEDDING_MODEL", "nomic-embed-text", "embedding_model", "nomic-embed-text"),
    (
        "MEMORYD_OPENAI_BASE_URL",
        "http://ollama:11434/v1",
        "openai_base_url",
        "http://ollama:11434/v1",
    ),
    ("MEMORYD_OPENAI_API_KEY", "sk-secret", "openai_api_key", "sk-secret"),
    ("MEMORYD_EMBED_BATCH_SIZE", "16", "embed_batch_size", 16),
    ("MEMORYD_EMBED_MAX_WAIT_MS", "0", "embed_max_wait_ms", 0.0),
    ("MEMORYD_EMBED_THREADS", "2", "embed_threads", 2),
    ("MEMORYD_EXPIRY_ACTION", "Purge", "expiry_action", "purge"),
    ("MEMORYD_EXPIRY_INTERVAL_SECONDS", "0.5", "expiry_interval_seconds", 0.5),
    ("MEMORYD_TLS_CERT", "/etc/memoryd/server.pem", "tls_cert", Path("/etc/memoryd/server.pem")),
    ("MEMORYD_TLS_KEY", "/etc/memoryd/key.pem", "tls_key", Path("/etc/memoryd/key.pem")),
    ("MEMORYD_TLS_CLIENT_CA", "/etc/memoryd/ca.pem", "tls_client_ca", Path("/etc/memoryd/ca.pem")),
    ("MEMORYD_AUTH", "ON", "auth", "on"),
    ("MEMORYD_AUTH", "off", "auth", "off"),
    ("MEMORYD_ADMIN_KEY", "k" * 40, "admin_key", "k" * 40),
    ("MEMORYD_AUTH_CACHE_SECONDS", "2.5", "auth_cache_seconds", 2.5),
    ("MEMORYD_AUTH_FAILURES_PER_SECOND", "0", "auth_failures_per_second", 0.0),
    ("MEMORYD_AUTH_FAILURES_PER_SECOND", "2.5", "auth_failures_per_second", 2.5),
    ("MEMORYD_QUOTA_REQUESTS_PER_SECOND", "12.5", "quota_requests_per_second", 12.5),
    ("MEMORYD_QUOTA_REQUESTS_PER_SECOND", "0", "quota_requests_per_second", 0.0),
    ("MEMORYD_QUOTA_BURST", "50", "quota_burst", 50),
    ("MEMORYD_QUOTA_MAX_MEMORIES", "0", "quota_max_memories", 0),
    ("MEMORYD_QUOTA_MAX_CONVERSATIONS", "500", "quota_max_conversations", 500),
    ("MEMORYD_MAX_CONCURRENT_CALLS", "0", "max_concurrent_calls", 0),
    ("MEMORYD_MAX_QUEUED_CALLS", "7", "max_queued_calls", 7),
    ("MEMORYD_MAX_QUEUE_MS", "12.5", "max_queue_ms", 12.5),
    ("MEMORYD_MAX_LAG_MS", "0", "max_lag_ms", 0.0),
    ("MEMORYD_MAX_PENDING_CALLS", "16", "max_pending_calls", 16),
    ("MEMORYD_QUOTA_MAX_DOCUMENTS", "0", "quota_max_documents", 0),
    ("MEMORYD_QUOTA_MAX_DOCUMENT_BYTES", "1048576", "quota_max_document_bytes", 1048576),
    ("MEMORYD_MAX_DOCUMENT_BYTES", "2048", "max_document_bytes", 2048),
]

# Variables valid only together with others (the values are those of PARSED).
COMPANIONS = {
    "MEMORYD_EMBEDDER": ("MEMORYD_EMBEDDING_MODEL",),
    "MEMORYD_TLS_CERT": ("MEMORYD_TLS_KEY",),
    "MEMORYD_TLS_KEY": ("MEMORYD_TLS_CERT",),
    "MEMORYD_TLS_CLIENT_CA": ("MEMORYD_TLS_CERT", "MEMORYD_TLS_KEY"),
}
FIELDS = {var: field for var, _, field, _ in PARSED}
PARSED_VALUES = {var: value for var, value, _, _ in PARSED}


def test_table_covers_every_variable() -> None:
    """The parsing table below has a row for every documented variable."""
    assert {row[0] for row in PARSED} == ENVIRONMENT_VARIABLES


@pytest.mark.parametrize(("var", "value", "field", "expected"), PARSED)
def test_variable_parsed(var: str, value: str, field: str, expected: object) -> None:
    """Each variable sets its field, parsed to the field's type; the others keep defaults."""
    env = {companion: PARSED_VALUES[companion] for companion in COMPANIONS.get(var, ())}
    settings = Settings.from_env({**env, var: value})
    assert getattr(settings, field) == expected
    assert type(getattr(settings, field)) is type(expected)
    defaults = {FIELDS[v]: getattr(Settings(), FIELDS[v]) for v in (*env, var)}
    assert dataclasses.replace(settings, **defaults) == Settings()


@pytest.mark.parametrize("var", sorted(ENVIRONMENT_VARIABLES))
def test_empty_means_default(var: str) -> None:
    """A variable set to the empty string is treated as unset."""
    assert Settings.from_env({var: ""}) == Settings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" On ", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
    ],
)
def test_bool_spellings(text: str, expected: bool) -> None:
    """Booleans accept 1/0, true/false, yes/no and on/off in any case."""
    assert Settings.from_env({"MEMORYD_MIGRATE_ON_START": text}).migrate_on_start is expected


def test_unrelated_variables_ignored() -> None:
    """Variables that are not settings (the rest of os.environ) do not matter."""
    assert Settings.from_env({"PATH": "/usr/bin", "HOME": "/root", "PGPASSWORD": "x"}) == Settings()


def test_all_variables_together() -> None:
    """A full production environment parses into one consistent Settings."""
    env = {var: value for var, value, _, _ in PARSED}
    settings = Settings.from_env(env)
    assert not settings.embedded
    assert settings.pool_min_size == 3
    assert settings.pool_max_size == 40


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MEMORYD_POOL_MAX_SIZE", "ten"),
        ("MEMORYD_POOL_MAX_SIZE", "2.5"),
        ("MEMORYD_POOL_MAX_SIZE", "0"),
        ("MEMORYD_POOL_MAX_SIZE", "-1"),
        ("MEMORYD_WORKERS", "0"),
        ("MEMORYD_POOL_MIN_SIZE", "0"),
        ("MEMORYD_MAX_CONTENT_BYTES", "1MB"),
        ("MEMORYD_MAX_RECEIVE_BYTES", "-5"),
        ("MEMORYD_STATEMENT_TIMEOUT_MS", "0"),
        ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "0"),
        ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "-1.5"),
        ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "nan"),
        ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "inf"),
        ("MEMORYD_HEALTH_INTERVAL_SECONDS", "infinity"),
        ("MEMORYD_ADDR", "0.0.0.0:99999"),
        ("MEMORYD_POOL_SIZE", "4"),
        ("MEMORYD_EMBEDDING_DIM", "2001"),
        ("MEMORYD_EMBEDDING_DIM", "0"),
        ("MEMORYD_EMBEDDER", "sentence-transformers"),
        ("MEMORYD_EMBED_BATCH_SIZE", "5000"),
        ("MEMORYD_EMBED_MAX_WAIT_MS", "-1"),
        ("MEMORYD_EXPIRY_ACTION", "delete"),
        ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "soon"),
        ("MEMORYD_HEALTH_INTERVAL_SECONDS", "0"),
        ("MEMORYD_MIGRATE_ON_START", "maybe"),
        ("MEMORYD_MIGRATE_ON_START", "2"),
        ("MEMORYD_LOG_LEVEL", "verbose"),
        ("MEMORYD_LOG_LEVEL", "critical"),
        ("MEMORYD_LOG_FORMAT", "xml"),
        ("MEMORYD_ADDR", "localhost"),
        ("MEMORYD_ADDR", "localhost:"),
        ("MEMORYD_ADDR", ":50051"),
        ("MEMORYD_ADDR", "localhost:grpc"),
        ("DATABASE_URL", "mysql://root@db/memoryd"),
        ("DATABASE_URL", "sqlite:///memoryd.db"),
        ("DATABASE_URL", "host=db dbname=memoryd"),
        ("MEMORYD_AUTH", "maybe"),
        ("MEMORYD_AUTH", "true"),
        ("MEMORYD_ADMIN_KEY", "short"),
        ("MEMORYD_AUTH_CACHE_SECONDS", "0"),
        ("MEMORYD_AUTH_FAILURES_PER_SECOND", "-1"),
        ("MEMORYD_QUOTA_REQUESTS_PER_SECOND", "-1"),
        ("MEMORYD_QUOTA_REQUESTS_PER_SECOND", "inf"),
        ("MEMORYD_QUOTA_BURST", "-1"),
        ("MEMORYD_QUOTA_MAX_MEMORIES", "lots"),
    ],
)
def test_bad_value_names_variable(var: str, value: str) -> None:
    """A malformed value raises ConfigError whose message starts with the variable's name."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: value})
    assert str(info.value).startswith(f"{var}:"), str(info.value)


def test_min_pool_above_max_rejected() -> None:
    """A pool minimum above its maximum raises ConfigError naming both variables."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MEMORYD_POOL_MIN_SIZE": "11", "MEMORYD_POOL_MAX_SIZE": "10"})
    assert "MEMORYD_POOL_MIN_SIZE" in str(info.value)
    assert "MEMORYD_POOL_MAX_SIZE" in str(info.value)


def test_min_pool_equal_to_max_accepted() -> None:
    """A fixed-size pool (min == max) is valid."""
    env = {"MEMORYD_POOL_MIN_SIZE": "5", "MEMORYD_POOL_MAX_SIZE": "5"}
    assert Settings.from_env(env).pool_min_size == 5


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),  # loopback + embedded: a developer's machine
        ({"MEMORYD_ADDR": "localhost:50051"}, False),
        ({"MEMORYD_ADDR": "[::1]:50051"}, False),
        ({"MEMORYD_ADDR": "127.0.0.2:50051"}, False),
        ({"MEMORYD_ADDR": "0.0.0.0:50051"}, True),
        ({"MEMORYD_ADDR": "[::]:50051"}, True),
        ({"MEMORYD_ADDR": "10.0.0.5:50051"}, True),
        ({"MEMORYD_ADDR": "memoryd.internal:50051"}, True),
        ({"DATABASE_URL": "postgresql://db/m"}, True),  # a shared database
        ({"MEMORYD_ADDR": "0.0.0.0:50051", "MEMORYD_AUTH": "off"}, False),
        ({"MEMORYD_AUTH": "on"}, True),
    ],
)
def test_auth_default_depends_on_exposure(env: dict[str, str], enabled: bool) -> None:
    """Auth is off by default only on loopback with the embedded database, unless set."""
    assert Settings.from_env(env).auth_enabled is enabled


def test_admin_key_not_in_repr() -> None:
    """The operator key never reaches a log line through the settings' repr."""
    secret = "s3cret-" + "x" * 40
    assert secret not in repr(Settings.from_env({"MEMORYD_ADMIN_KEY": secret}))


def test_receive_limit_below_content_limit_rejected() -> None:
    """The gRPC receive limit must fit one maximal message content."""
    env = {"MEMORYD_MAX_CONTENT_BYTES": "2048", "MEMORYD_MAX_RECEIVE_BYTES": "1024"}
    with pytest.raises(ConfigError, match="MEMORYD_MAX_RECEIVE_BYTES"):
        Settings.from_env(env)


TLS_ENV = {
    "MEMORYD_TLS_CERT": "server.pem",
    "MEMORYD_TLS_KEY": "server-key.pem",
    "MEMORYD_TLS_CLIENT_CA": "ca.pem",
}


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        (("MEMORYD_TLS_CERT",), "MEMORYD_TLS_KEY"),
        (("MEMORYD_TLS_KEY",), "MEMORYD_TLS_CERT"),
        (("MEMORYD_TLS_CERT", "MEMORYD_TLS_CLIENT_CA"), "MEMORYD_TLS_KEY"),
        (("MEMORYD_TLS_KEY", "MEMORYD_TLS_CLIENT_CA"), "MEMORYD_TLS_CERT"),
    ],
)
def test_tls_cert_and_key_go_together(present: tuple[str, ...], missing: str) -> None:
    """A certificate without its key (or the reverse) names the missing variable."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: TLS_ENV[var] for var in present})
    assert str(info.value).startswith(f"{missing}:"), str(info.value)
    assert present[0] in str(info.value)


def test_tls_client_ca_requires_cert_and_key() -> None:
    """MEMORYD_TLS_CLIENT_CA alone (mTLS without server TLS) is refused, naming it."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MEMORYD_TLS_CLIENT_CA": "ca.pem"})
    message = str(info.value)
    assert message.startswith("MEMORYD_TLS_CLIENT_CA:"), message
    assert "MEMORYD_TLS_CERT" in message
    assert "MEMORYD_TLS_KEY" in message


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "off"),
        ({"MEMORYD_TLS_CERT": "s.pem", "MEMORYD_TLS_KEY": "k.pem"}, "tls"),
        (TLS_ENV, "mtls"),
    ],
)
def test_tls_mode(env: dict[str, str], mode: str) -> None:
    """tls_mode says off, tls, or mtls (client certificates required)."""
    assert Settings.from_env(env).tls_mode == mode


def test_tls_files_not_read_by_settings() -> None:
    """Settings only checks the combination; the files are read when the server starts."""
    settings = Settings.from_env(TLS_ENV)
    assert settings.tls_cert == Path("server.pem")


CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY_PEM = b"-----BEGIN PRIVATE KEY-----\ns3cretKEY\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """PEM-shaped files for the three TLS variables (not real certificates)."""
    files = {
        "MEMORYD_TLS_CERT": tmp_path / "server.pem",
        "MEMORYD_TLS_KEY": tmp_path / "server-key.pem",
        "MEMORYD_TLS_CLIENT_CA": tmp_path / "ca.pem",
    }
    files["MEMORYD_TLS_CERT"].write_bytes(CERT_PEM)
    files["MEMORYD_TLS_KEY"].write_bytes(KEY_PEM)
    files["MEMORYD_TLS_CLIENT_CA"].write_bytes(CERT_PEM)
    return files


def _tls_settings(files: dict[str, Path]) -> Settings:
    return Settings.from_env({var: str(path) for var, path in files.items()})


def test_tls_off_without_credentials() -> None:
    """Without a certificate and key the server listens in plaintext."""
    assert tls.server_credentials(Settings()) is None


@pytest.mark.parametrize("var", sorted(TLS_ENV))
def test_tls_missing_file_names_variable_and_path(
    tls_files: dict[str, Path], tmp_path: Path, var: str
) -> None:
    """A file that does not exist is a ConfigError naming the variable and the path."""
    tls_files[var] = tmp_path / "nowhere" / "missing.pem"
    with pytest.raises(ConfigError) as info:
        tls.server_credentials(_tls_settings(tls_files))
    assert str(info.value) == f"{var}: cannot read {tls_files[var]}: No such file or directory"


@pytest.mark.parametrize("var", sorted(TLS_ENV))
def test_tls_unreadable_path_names_variable_and_path(
    tls_files: dict[str, Path], tmp_path: Path, var: str
) -> None:
    """A path that cannot be read as a file (here a directory) names the variable and path."""
    tls_files[var] = tmp_path
    with pytest.raises(ConfigError) as info:
        tls.server_credentials(_tls_settings(tls_files))
    assert str(info.value).startswith(f"{var}: cannot read {tmp_path}:"), str(info.value)


@pytest.mark.parametrize(
    ("var", "content"),
    [
        ("MEMORYD_TLS_CERT", KEY_PEM),
        ("MEMORYD_TLS_KEY", CERT_PEM),
        ("MEMORYD_TLS_KEY", b"s3cretKEY, not PEM at all"),
        ("MEMORYD_TLS_CLIENT_CA", b""),
    ],
)
def test_tls_file_without_pem_names_variable_not_contents(
    tls_files: dict[str, Path], var: str, content: bytes
) -> None:
    """A file lacking the expected PEM block names the variable and path, never the contents."""
    tls_files[var].write_bytes(content)
    with pytest.raises(ConfigError) as info:
        tls.server_credentials(_tls_settings(tls_files))
    message = str(info.value)
    assert message.startswith(f"{var}: {tls_files[var]} holds no PEM "), message
    assert "s3cret" not in message


def test_tls_credentials_from_pem_files(tls_files: dict[str, Path]) -> None:
    """PEM-shaped files become server credentials (gRPC checks them when it binds)."""
    assert isinstance(tls.server_credentials(_tls_settings(tls_files)), grpc.ServerCredentials)


def test_config_error_is_value_error() -> None:
    """ConfigError is a ValueError, so generic callers can catch it."""
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://memoryd:s3cretPW@db:3306/memoryd",
        "postgresql+psycopg://memoryd:s3cretPW@db/memoryd",
        " postgresql://memoryd:s3cretPW@db/memoryd",
        "host=db user=memoryd password=s3cretPW",
    ],
)
def test_database_url_error_hides_password(url: str) -> None:
    """The error for a bad DATABASE_URL never repeats the password, even in its chain."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": url})
    assert str(info.value).startswith("DATABASE_URL:")
    chain = [info.value, info.value.__cause__, info.value.__context__]
    assert all("s3cretPW" not in repr(exc) for exc in chain)


def test_embedded_without_database_url() -> None:
    """Without DATABASE_URL the server runs its own PostgreSQL."""
    assert Settings.from_env({}).embedded is True


def test_not_embedded_with_database_url() -> None:
    """With DATABASE_URL the server uses that database and starts none."""
    assert Settings.from_env({"DATABASE_URL": "postgresql://db/memoryd"}).embedded is False


def test_settings_are_frozen() -> None:
    """Settings cannot change after start: assignment fails."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.addr = "0.0.0.0:1"  # type: ignore[misc]


def test_replace_validates() -> None:
    """replace() returns a validated copy and leaves the original alone."""
    settings = Settings()
    assert settings.replace(pool_max_size=3).pool_max_size == 3
    assert settings.pool_max_size == 10
    with pytest.raises(ConfigError, match="MEMORYD_ADDR"):
        settings.replace(addr="nowhere")


# --- database.redact ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://memoryd:s3cret@db:5432/memoryd",
            "postgresql://memoryd:***@db:5432/memoryd",
        ),
        ("postgres://u:p%40ss%2Fw@db/m", "postgres://u:***@db/m"),
        (
            "postgresql://u:s3cret@db/m?sslmode=require",
            "postgresql://u:***@db/m?sslmode=require",
        ),
        ("postgresql://u:s3cret@h1:5432,h2:5432/m", "postgresql://u:***@h1:5432,h2:5432/m"),
        ("postgresql://:s3cret@db/m", "postgresql://:***@db/m"),
        (
            "postgresql://u@db/m?password=s3cret&sslmode=require",
            "postgresql://u@db/m?password=***&sslmode=require",
        ),
        (
            "postgresql://db/m?sslmode=require&PASSWORD=s3cret",
            "postgresql://db/m?sslmode=require&PASSWORD=***",
        ),
        ("host=db user=u password=s3cret dbname=m", "host=db user=u password=*** dbname=m"),
        ("postgresql://u:s3c/ret@db/m", "postgresql://u:***@db/m"),
        ("postgresql://u:s3c@ret@db/m", "postgresql://u:***@db/m"),
        ("postgresql://u:s3c?r#et@db/m", "postgresql://u:***@db/m"),
        ("host=db password='s3cret with spaces' user=u", "host=db password=*** user=u"),
    ],
)
def test_redact_hides_password(url: str, expected: str) -> None:
    """Passwords in the userinfo or in password= parameters are replaced by ***."""
    assert redact(url) == expected
    assert "s3cret" not in redact(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://memoryd@db:5432/memoryd",
        "postgresql://db:5432/memoryd?sslmode=require",
        "postgresql:///memoryd?host=/var/run/postgresql",
        "postgresql://[::1]:5432/memoryd",
        "host=db user=memoryd dbname=memoryd",
    ],
)
def test_redact_leaves_urls_without_password(url: str) -> None:
    """A URL without a password comes back unchanged."""
    assert redact(url) == url


# --- pagination.PageTokens ------------------------------------------------------------

SECRET = b"k" * 32
QUERY = {"user_id": "u1", "status": "active"}


@pytest.fixture
def tokens() -> PageTokens:
    """Page tokens signed with a fixed test key."""
    return PageTokens(SECRET)


def _rejected(
    tokens: PageTokens, token: str, kind: str = "conversations", query: Any = QUERY
) -> None:
    """Assert ``token`` is refused with INVALID_ARGUMENT on page_token."""
    with pytest.raises(InvalidArgument) as info:
        tokens.decode(token, kind, query)
    assert info.value.field == "page_token"


def test_page_token_round_trip(tokens: PageTokens) -> None:
    """A token decodes to the position it was made for, for the same kind and query."""
    position = ["2025-01-02T03:04:05.000006+00:00", "c-42", 7]
    token = tokens.encode("conversations", QUERY, position)
    assert tokens.decode(token, "conversations", QUERY) == position
    assert tokens.decode(token, "conversations", dict(reversed(QUERY.items()))) == position


def test_page_token_is_url_safe(tokens: PageTokens) -> None:
    """Tokens are plain URL-safe text, fit for JSON and query strings."""
    token = tokens.encode("conversations", QUERY, ["ü/+?", 1])
    assert token.replace(".", "").replace("-", "").replace("_", "").isalnum()


def test_empty_page_token_is_first_page(tokens: PageTokens) -> None:
    """An empty token means the first page."""
    assert tokens.decode("", "conversations", QUERY) is None


def test_tampered_body_rejected(tokens: PageTokens) -> None:
    """A token whose payload was changed (signature kept) is refused."""
    body, _, signature = tokens.encode("conversations", QUERY, ["a", 1]).partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["p"] = ["a", 1000]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    _rejected(tokens, f"{forged}.{signature}")


def test_tampered_signature_rejected(tokens: PageTokens) -> None:
    """A token whose signature was changed is refused."""
    body, _, _ = tokens.encode("conversations", QUERY, ["a", 1]).partition(".")
    zeros = base64.urlsafe_b64encode(bytes(16)).rstrip(b"=").decode()
    _rejected(tokens, f"{body}.{zeros}")


def test_token_of_other_key_rejected(tokens: PageTokens) -> None:
    """A token signed with another server's key is refused."""
    _rejected(tokens, PageTokens(b"x" * 32).encode("conversations", QUERY, ["a"]))


@pytest.mark.parametrize(
    "token", ["garbage", ".", "abc.", ".abc", "!!!.???", "é.é", "a.b.c", "x" * 5000]
)
def test_malformed_token_rejected(tokens: PageTokens, token: str) -> None:
    """Text that is not a token at all is refused with INVALID_ARGUMENT, not a crash."""
    _rejected(tokens, token)


def test_token_for_other_kind_rejected(tokens: PageTokens) -> None:
    """A token from one list method is refused by another."""
    _rejected(tokens, tokens.encode("conversations", QUERY, ["a"]), kind="messages")


def test_token_for_other_query_rejected(tokens: PageTokens) -> None:
    """A token is refused when the request's filters changed."""
    token = tokens.encode("conversations", QUERY, ["a"])
    _rejected(tokens, token, query={**QUERY, "user_id": "u2"})
    _rejected(tokens, token, query={"user_id": "u1"})


def test_short_secret_refused() -> None:
    """A page-token key shorter than 16 bytes is a programming error."""
    with pytest.raises(ValueError, match="16 bytes"):
        PageTokens(b"short")


# --- ids ------------------------------------------------------------------------------


def test_uuid7_version_and_variant() -> None:
    """uuid7() returns RFC 9562 version-7 UUIDs with the RFC 4122 variant."""
    for _ in range(100):
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_uuid7_carries_unix_millis() -> None:
    """The first 48 bits are the creation time in Unix milliseconds."""
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after


def test_uuid7_sorts_by_time() -> None:
    """Ids generated at least 2 ms apart sort in creation order, as UUIDs and as text."""
    ids = []
    for _ in range(5):
        ids.append(uuid7())
        time.sleep(0.002)
    assert ids == sorted(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)


def test_uuid7_unique() -> None:
    """Ids generated in the same millisecond still differ (random bits)."""
    assert len({uuid7() for _ in range(10_000)}) == 10_000


@pytest.mark.parametrize("value", ["a", "Z9", "agent-1.session_2:x", "0" * 128, "A.b-c_d:e"])
def test_check_resource_id_accepts(value: str) -> None:
    """Ids of 1 to 128 letters, digits and ._:- starting with a letter or digit are accepted."""
    assert check_resource_id("conversation_id", value) == value


@pytest.mark.parametrize(
    "value", ["", "-a", ".a", "_a", "a b", "a/b", "a\n", "é", "0" * 129, "a;DROP TABLE x"]
)
def test_check_resource_id_rejects(value: str) -> None:
    """Other ids are INVALID_ARGUMENT on the named field."""
    with pytest.raises(InvalidArgument) as info:
        check_resource_id("conversation.id", value)
    assert info.value.field == "conversation.id"


def test_parse_uuid_accepts() -> None:
    """A canonical UUID string parses to the same UUID."""
    value = uuid7()
    assert parse_uuid("message_id", str(value)) == value
    assert parse_uuid("message_id", str(value).upper()) == value


@pytest.mark.parametrize("value", ["", "nope", "1234", "g" * 32, "x" * 1000])
def test_parse_uuid_rejects(value: str) -> None:
    """Anything else is INVALID_ARGUMENT on the named field, with a bounded message."""
    with pytest.raises(InvalidArgument) as info:
        parse_uuid("message_id", value)
    assert info.value.field == "message_id"
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MEMORYD_EMBEDDER": "local", "MEMORYD_EMBEDDING_DIM": "768"}, "MEMORYD_EMBEDDING_DIM"),
        ({"MEMORYD_EMBEDDER": "local", "MEMORYD_EMBEDDING_MODEL": "e5"}, "MEMORYD_EMBEDDING_MODEL"),
        ({"MEMORYD_EMBEDDER": "openai"}, "MEMORYD_EMBEDDING_MODEL"),
        (
            {"MEMORYD_EMBEDDER": "openai", "MEMORYD_EMBEDDING_MODEL": "m",
             "MEMORYD_OPENAI_BASE_URL": "ollama:11434"},
            "MEMORYD_OPENAI_BASE_URL",
        ),
        ({"MEMORYD_EMBEDDING_MODEL": "é" * 257}, "MEMORYD_EMBEDDING_MODEL"),
    ],
)  # fmt: skip
def test_embedder_combinations_that_cannot_work(env: dict[str, str], variable: str) -> None:
    """The embedder settings are checked together; the error names the variable to fix."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env(env)


def test_embedder_resolves_model_and_dimension() -> None:
    """The local model names itself and knows its dimension; openai learns it at start."""
    local = Settings.from_env({"MEMORYD_EMBEDDER": "local"})
    assert (local.model_name, local.known_dimension) == ("all-MiniLM-L6-v2", 384)
    remote = Settings.from_env({"MEMORYD_EMBEDDER": "openai", "MEMORYD_EMBEDDING_MODEL": "m"})
    assert (remote.model_name, remote.known_dimension) == ("m", None)
    assert "sk-" not in repr(Settings(openai_api_key="sk-secret"))


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """``memoryd --version`` prints the release and exits 0."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"memoryd {memoryd_server.__version__}\n"


def test_serve_help_lists_every_setting_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``memoryd serve --help`` has a line per variable, with the default Settings has."""
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = capsys.readouterr().out
    listed = dict(
        line.strip().split(None, 1) for line in text.split("their defaults:\n")[1].splitlines()
    )
    assert listed.keys() == ENVIRONMENT_VARIABLES
    assert listed["MEMORYD_ADDR"] == Settings().addr == "127.0.0.1:50051"
    assert listed["MEMORYD_METRICS_ADDR"] == "127.0.0.1:9464"
    assert listed["MEMORYD_POOL_MAX_SIZE"] == str(Settings().pool_max_size)
    assert listed["MEMORYD_MIGRATE_ON_START"] == "true"
    assert listed["DATABASE_URL"] == "unset"
    # Every listed default parses back to the default itself (where it is a value).
    for var, field, _ in config._VARIABLES:
        default = listed[var]
        if default == "unset" or " " in default:
            continue
        parsed = Settings.from_env({var: default})
        assert getattr(parsed, field) == getattr(Settings(), field), var


def test_admission_limit_defaults_to_the_pool_size() -> None:
    """One class's calls running at once fit the pool unless set; 0 turns admission off."""
    assert Settings(pool_max_size=7).concurrency_limit == 7
    assert Settings(pool_max_size=7, max_concurrent_calls=3).concurrency_limit == 3
    assert Settings(max_concurrent_calls=0).concurrency_limit == 0
