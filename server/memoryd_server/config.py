"""Settings: the only reader of MEMORYD_* and DATABASE_URL, validated at start."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

LogFormat = Literal["auto", "json", "console"]
ExpiryAction = Literal["archive", "purge"]
TlsMode = Literal["off", "tls", "mtls"]
AuthMode = Literal["on", "off"]
EmbedderKind = Literal["none", "local", "openai"]

# Where a server may run without auth by default: only its own machine can call it.
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# MEMORYD_ADMIN_KEY must be at least this long: it guards every tenant.
MIN_ADMIN_KEY_CHARS = 32

# pgvector's HNSW indexes hold vectors of at most 2,000 dimensions.
MAX_EMBEDDING_DIM = 2000
# Callers' vectors (MEMORYD_EMBEDDER=none) have this many dimensions unless configured.
DEFAULT_EMBEDDING_DIM = 1536
# MEMORYD_EMBEDDER=local (embeddings/local.py).
LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_DIMENSION = 384


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Server configuration. Build it with ``Settings.from_env(os.environ)``."""

    addr: str = "127.0.0.1:50051"
    database_url: str | None = None
    data_dir: Path = Path("memoryd-data")
    # Server processes sharing the port; None: one per core this process may use.
    workers: int | None = None
    pool_min_size: int = 1
    pool_max_size: int = 10
    max_content_bytes: int = 1024 * 1024
    # A document's content (DocumentService); UploadDocument streams documents
    # larger than one message.
    max_document_bytes: int = 16 * 1024 * 1024
    # Fits a BatchCreateMemories of 10,000 memories with 1,536-dimensional embeddings.
    max_receive_bytes: int = 64 * 1024 * 1024
    # The server's embedding model (see embedding_model and dimension below).
    embedder: EmbedderKind = "none"
    # None: the embedder's own name ("" for caller-supplied vectors with embedder none).
    embedding_model: str | None = None
    # None: 1536 with embedder none, 384 for the local model, asked of the endpoint for openai.
    embedding_dim: int | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = dataclasses.field(default=None, repr=False)
    # Texts embedded together at most, and how long a text waits for others to join.
    embed_batch_size: int = 64
    embed_max_wait_ms: float = 2.0
    # onnxruntime threads for the local model (0: one per core).
    embed_threads: int = 0
    expiry_action: ExpiryAction = "archive"
    expiry_interval_seconds: float = 60.0
    statement_timeout_ms: int = 30_000
    shutdown_grace_seconds: float = 10.0
    health_interval_seconds: float = 0.5
    migrate_on_start: bool = True
    log_level: str = "info"
    log_format: LogFormat = "auto"
    otlp_endpoint: str | None = None
    # Where Prometheus scrapes /metrics; None (MEMORYD_METRICS_ADDR=off): not served.
    metrics_addr: str | None = "127.0.0.1:9464"
    # prometheus_client's multiprocess directory, set by a supervisor for its workers:
    # they record there and the supervisor alone serves /metrics.
    metrics_multiproc_dir: Path | None = None
    # PEM files; the server uses plaintext unless cert and key are set.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # None: on, unless the server binds only to loopback with the embedded database.
    auth: AuthMode | None = None
    # A server-wide operator key, compared by hash; never logged.
    admin_key: str | None = dataclasses.field(default=None, repr=False)
    # How long a verified key is trusted without asking the database again: the
    # bound on how late a revocation or a disabled tenant takes effect on other replicas.
    auth_cache_seconds: float = 10.0
    # Unknown-key lookups one client address may cause per second before its further
    # lookups run one at a time (0: no limit).
    auth_failures_per_second: float = 10.0
    # Per-tenant defaults; a tenant's own quotas (AdminService) override them. 0: unlimited.
    quota_requests_per_second: float = 100.0
    quota_burst: int = 200
    quota_max_memories: int = 1_000_000
    quota_max_conversations: int = 100_000
    quota_max_documents: int = 100_000
    quota_max_document_bytes: int = 10 * 1024 * 1024 * 1024
    # Admission control (admission.py), per method class: calls running at once
    # (None: the pool's size; 0: no limit, nothing is shed), calls queued
    # beyond them, and the longest a call may wait in the queue.
    max_concurrent_calls: int | None = None
    max_queued_calls: int = 40
    max_queue_ms: float = 1000.0
    # How far behind the event loop may run before the limits are lowered (0: never).
    max_lag_ms: float = 100.0
    # Calls gRPC's core holds before the event loop has taken them: past this
    # many it starts refusing new ones itself, all of them at 4x (0: core's
    # own defaults, 1,000 and 3,000).
    max_pending_calls: int = 64

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read settings from ``environ``; unset or empty variables keep defaults."""
        env = {k: v for k, v in environ.items() if v != ""}
        unknown = sorted(
            k for k in env if k.startswith("MEMORYD_") and k not in ENVIRONMENT_VARIABLES
        )
        if unknown:  # most likely a typo that would silently keep a default
            raise ConfigError(f"{unknown[0]}: not a memoryd setting (see the README's table)")
        values: dict[str, object] = {}
        for var, field, parse in _VARIABLES:
            if var in env:
                try:
                    values[field] = parse(env[var])
                except ValueError as exc:
                    raise ConfigError(f"{var}: {exc}") from None
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject combinations that cannot work, naming the variable."""
        _check_addr("MEMORYD_ADDR", self.addr)
        if self.pool_min_size < 1 or self.pool_max_size < self.pool_min_size:
            raise ConfigError("MEMORYD_POOL_MIN_SIZE/MEMORYD_POOL_MAX_SIZE: need 1 <= min <= max")
        if self.max_receive_bytes < self.max_content_bytes:
            raise ConfigError(
                "MEMORYD_MAX_RECEIVE_BYTES: must be at least MEMORYD_MAX_CONTENT_BYTES"
            )
        if self.metrics_addr is not None:
            _check_addr("MEMORYD_METRICS_ADDR", self.metrics_addr)
        self._validate_embedder()
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError("DATABASE_URL: expected a postgresql:// URL")
        self._validate_tls()
        if self.admin_key is not None and len(self.admin_key) < MIN_ADMIN_KEY_CHARS:
            raise ConfigError(
                f"MEMORYD_ADMIN_KEY: must be at least {MIN_ADMIN_KEY_CHARS} characters"
                " (e.g. the output of: openssl rand -hex 32)"
            )
        if not math.isfinite(self.quota_requests_per_second) or self.quota_requests_per_second < 0:
            raise ConfigError("MEMORYD_QUOTA_REQUESTS_PER_SECOND: must be 0 (unlimited) or more")

    def _validate_embedder(self) -> None:
        if self.embedding_dim is not None and not 1 <= self.embedding_dim <= MAX_EMBEDDING_DIM:
            raise ConfigError(f"MEMORYD_EMBEDDING_DIM: must be 1 to {MAX_EMBEDDING_DIM}")
        if self.embedder == "local":
            if self.embedding_model not in (None, LOCAL_MODEL):
                raise ConfigError(
                    f"MEMORYD_EMBEDDING_MODEL: the local embedder runs {LOCAL_MODEL} only"
                )
            if self.embedding_dim not in (None, LOCAL_DIMENSION):
                raise ConfigError(
                    f"MEMORYD_EMBEDDING_DIM: {LOCAL_MODEL} makes {LOCAL_DIMENSION} dimensions"
                )
        if self.embedder == "openai":
            if not self.embedding_model:
                raise ConfigError(
                    "MEMORYD_EMBEDDING_MODEL: required with MEMORYD_EMBEDDER=openai"
                    " (e.g. text-embedding-3-small, or nomic-embed-text on Ollama)"
                )
            if not self.openai_base_url.startswith(("http://", "https://")):
                raise ConfigError("MEMORYD_OPENAI_BASE_URL: expected an http:// or https:// URL")
        if self.embedding_model is not None and len(self.embedding_model) > 256:
            raise ConfigError("MEMORYD_EMBEDDING_MODEL: at most 256 characters")
        if not 1 <= self.embed_batch_size <= 2048:
            raise ConfigError("MEMORYD_EMBED_BATCH_SIZE: must be 1 to 2048")

    @property
    def concurrency_limit(self) -> int:
        """Calls of one method class running at once (0: admission control is off)."""
        if self.max_concurrent_calls is None:
            return self.pool_max_size
        return self.max_concurrent_calls

    @property
    def model_name(self) -> str:
        """The name rows record for the server's embedding model."""
        if self.embedding_model is not None:
            return self.embedding_model
        return LOCAL_MODEL if self.embedder == "local" else ""

    @property
    def embedding_endpoint(self) -> str:
        """The endpoint the model's registration records ("" unless openai)."""
        return self.openai_base_url if self.embedder == "openai" else ""

    @property
    def known_dimension(self) -> int | None:
        """The model's vector length, if known without asking an endpoint."""
        if self.embedding_dim is not None:
            return self.embedding_dim
        if self.embedder == "local":
            return LOCAL_DIMENSION
        return DEFAULT_EMBEDDING_DIM if self.embedder == "none" else None

    def _validate_tls(self) -> None:
        # Only the combination: the files are read (and checked) when the server starts.
        if self.tls_cert is not None and self.tls_key is None:
            raise ConfigError("MEMORYD_TLS_KEY: required when MEMORYD_TLS_CERT is set")
        if self.tls_key is not None and self.tls_cert is None:
            raise ConfigError("MEMORYD_TLS_CERT: required when MEMORYD_TLS_KEY is set")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError(
                "MEMORYD_TLS_CLIENT_CA: requires MEMORYD_TLS_CERT and MEMORYD_TLS_KEY"
            )

    @property
    def worker_count(self) -> int:
        """How many server processes ``memoryd serve`` runs (MEMORYD_WORKERS)."""
        if self.workers is not None:
            return self.workers
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )

    @property
    def embedded(self) -> bool:
        """True when the server runs its own PostgreSQL in ``data_dir``."""
        return self.database_url is None

    @property
    def tls_mode(self) -> TlsMode:
        """``off`` (plaintext), ``tls``, or ``mtls`` (clients must present a certificate)."""
        if self.tls_cert is None:
            return "off"
        return "tls" if self.tls_client_ca is None else "mtls"

    @property
    def loopback_only(self) -> bool:
        """True when ``addr`` is a loopback address: no other machine can connect."""
        host = self.addr.rpartition(":")[0]
        if host in _LOOPBACK_HOSTS:
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def auth_enabled(self) -> bool:
        """Whether calls need an API key: MEMORYD_AUTH, else off only on loopback + embedded."""
        if self.auth is not None:
            return self.auth == "on"
        return not (self.loopback_only and self.embedded)

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the CLI use it)."""
        new = dataclasses.replace(self, **changes)  # type: ignore[arg-type]
        new.validate()
        return new


def _check_addr(var: str, addr: str) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{var}: expected HOST:PORT, got {addr!r}")


def _metrics_addr(text: str) -> str | None:
    return None if text.strip().lower() == "off" else text


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 (unlimited) or more, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be 0 (unlimited) or more, got {text!r}")
    return value


def _auth(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"on", "off"}:
        raise ValueError(f"expected on or off, got {text!r}")
    return lowered


def _log_level(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"debug", "info", "warning", "error"}:
        raise ValueError(f"expected debug, info, warning or error, got {text!r}")
    return lowered


def _expiry_action(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"archive", "purge"}:
        raise ValueError(f"expected archive or purge, got {text!r}")
    return lowered


def _embedder(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"none", "local", "openai"}:
        raise ValueError(f"expected none, local or openai, got {text!r}")
    return lowered


def _log_format(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in {"auto", "json", "console"}:
        raise ValueError(f"expected auto, json or console, got {text!r}")
    return lowered


# (environment variable, Settings field, parser). The README's table lists the same.
_VARIABLES: tuple[tuple[str, str, Callable[[str], object]], ...] = (
    ("MEMORYD_ADDR", "addr", str),
    ("DATABASE_URL", "database_url", str),
    ("MEMORYD_DATA_DIR", "data_dir", Path),
    ("MEMORYD_WORKERS", "workers", _positive_int),
    ("MEMORYD_POOL_MIN_SIZE", "pool_min_size", _positive_int),
    ("MEMORYD_POOL_MAX_SIZE", "pool_max_size", _positive_int),
    ("MEMORYD_MAX_CONTENT_BYTES", "max_content_bytes", _positive_int),
    ("MEMORYD_MAX_DOCUMENT_BYTES", "max_document_bytes", _positive_int),
    ("MEMORYD_MAX_RECEIVE_BYTES", "max_receive_bytes", _positive_int),
    ("MEMORYD_EMBEDDER", "embedder", _embedder),
    ("MEMORYD_EMBEDDING_MODEL", "embedding_model", str),
    ("MEMORYD_EMBEDDING_DIM", "embedding_dim", _positive_int),
    ("MEMORYD_OPENAI_BASE_URL", "openai_base_url", str),
    ("MEMORYD_OPENAI_API_KEY", "openai_api_key", str),
    ("MEMORYD_EMBED_BATCH_SIZE", "embed_batch_size", _positive_int),
    ("MEMORYD_EMBED_MAX_WAIT_MS", "embed_max_wait_ms", _non_negative_float),
    ("MEMORYD_EMBED_THREADS", "embed_threads", _non_negative_int),
    ("MEMORYD_EXPIRY_ACTION", "expiry_action", _expiry_action),
    ("MEMORYD_EXPIRY_INTERVAL_SECONDS", "expiry_interval_seconds", _positive_float),
    ("MEMORYD_STATEMENT_TIMEOUT_MS", "statement_timeout_ms", _positive_int),
    ("MEMORYD_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds", _positive_float),
    ("MEMORYD_HEALTH_INTERVAL_SECONDS", "health_interval_seconds", _positive_float),
    ("MEMORYD_MIGRATE_ON_START", "migrate_on_start", _bool),
    ("MEMORYD_LOG_LEVEL", "log_level", _log_level),
    ("MEMORYD_LOG_FORMAT", "log_format", _log_format),
    ("MEMORYD_OTLP_ENDPOINT", "otlp_endpoint", str),
    ("MEMORYD_METRICS_ADDR", "metrics_addr", _metrics_addr),
    ("PROMETHEUS_MULTIPROC_DIR", "metrics_multiproc_dir", Path),
    ("MEMORYD_TLS_CERT", "tls_cert", Path),
    ("MEMORYD_TLS_KEY", "tls_key", Path),
    ("MEMORYD_TLS_CLIENT_CA", "tls_client_ca", Path),
    ("MEMORYD_AUTH", "auth", _auth),
    ("MEMORYD_ADMIN_KEY", "admin_key", str),
    ("MEMORYD_AUTH_CACHE_SECONDS", "auth_cache_seconds", _positive_float),
    ("MEMORYD_AUTH_FAILURES_PER_SECOND", "auth_failures_per_second", _non_negative_float),
    ("MEMORYD_QUOTA_REQUESTS_PER_SECOND", "quota_requests_per_second", _non_negative_float),
    ("MEMORYD_QUOTA_BURST", "quota_burst", _non_negative_int),
    ("MEMORYD_QUOTA_MAX_MEMORIES", "quota_max_memories", _non_negative_int),
    ("MEMORYD_QUOTA_MAX_DOCUMENTS", "quota_max_documents", _non_negative_int),
    ("MEMORYD_QUOTA_MAX_DOCUMENT_BYTES", "quota_max_document_bytes", _non_negative_int),
    ("MEMORYD_QUOTA_MAX_CONVERSATIONS", "quota_max_conversations", _non_negative_int),
    ("MEMORYD_MAX_CONCURRENT_CALLS", "max_concurrent_calls", _non_negative_int),
    ("MEMORYD_MAX_QUEUED_CALLS", "max_queued_calls", _non_negative_int),
    ("MEMORYD_MAX_QUEUE_MS", "max_queue_ms", _non_negative_float),
    ("MEMORYD_MAX_LAG_MS", "max_lag_ms", _non_negative_float),
    ("MEMORYD_MAX_PENDING_CALLS", "max_pending_calls", _non_negative_int),
)

ENVIRONMENT_VARIABLES: frozenset[str] = frozenset(var for var, _, _ in _VARIABLES)


def defaults() -> list[tuple[str, str]]:
    """Every setting's variable and its default, as ``memoryd serve --help`` lists them."""
    defaults = Settings()
    described = {
        "auth": "on, or off on loopback with the embedded database",
        "embedding_model": "the embedder's own",
        "embedding_dim": "the model's (1536 for embedder none)",
        "metrics_multiproc_dir": "unset (set by a supervisor for its workers)",
    }
    rows = []
    for var, field, _ in _VARIABLES:
        value = getattr(defaults, field)
        if field in described:
            text = described[field]
        elif value is None:
            text = "unset"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, float) and value.is_integer():
            text = str(int(value))
        else:
            text = str(value)
        rows.append((var, text))
    return rows
