"""The server process: database, gRPC server, health, and ordered shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from psycopg_pool import AsyncConnectionPool

from memoryd.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    conversation_pb2,
    conversation_pb2_grpc,
    document_pb2,
    document_pb2_grpc,
    memory_pb2,
    memory_pb2_grpc,
)
from memoryd_server import database, host_tasks, metrics, telemetry, tls
from memoryd_server.admin.servicer import AdminServicer
from memoryd_server.admission import AdmissionInterceptor, pending_call_limits
from memoryd_server.auth.interceptor import AuthInterceptor
from memoryd_server.auth.verifier import KeyVerifier
from memoryd_server.availability import Availability
from memoryd_server.boundary import Boundary
from memoryd_server.config import Settings
from memoryd_server.conversations.servicer import ConversationServicer
from memoryd_server.database import EmbeddedDatabase, StartupError
from memoryd_server.documents.servicer import DocumentServicer
from memoryd_server.embeddings.base import Embedder
from memoryd_server.embeddings.registry import ModelRegistry, ModelSpace, ensure_model
from memoryd_server.embeddings.service import Embeddings, create_embedder, provider_of
from memoryd_server.errors import MemorydError
from memoryd_server.interceptors import (
    AccessLogInterceptor,
    DeadlineInterceptor,
    ErrorInterceptor,
)
from memoryd_server.memories.access import AccessRecorder
from memoryd_server.memories.servicer import MemoryServicer
from memoryd_server.pagination import PageTokens
from memoryd_server.ratelimit import FailedKeyLimiter, RateLimiter
from memoryd_server.request_size import RequestSizes
from memoryd_server.shutdown import RELEASED_PATIENCE_SECONDS, Drain

log = structlog.get_logger("memoryd")

# How often the message embedder looks for new messages when it has caught up:

# Request metadata (headers) a call may carry; larger fails with RESOURCE_EXHAUSTED.
MAX_METADATA_BYTES = 16 * 1024

SERVICE_NAMES = (
    conversation_pb2.DESCRIPTOR.services_by_name["ConversationService"].full_name,
    memory_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    document_pb2.DESCRIPTOR.services_by_name["DocumentService"].full_name,
)


class Memoryd:
    """One running server: call ``start()``, then ``stop()`` (or use ``serve``)."""

    def __init__(
        self,
        settings: Settings,
        tracer_provider: TracerProvider | None = None,
        *,
        worker: int | None = None,
    ) -> None:
        self.settings = settings
        # Given (tests, embedding programs): its spans include one per SQL statement,
        # as they do with MEMORYD_OTLP_ENDPOINT; otherwise nothing is traced.
        self.tracer_provider = tracer_provider
        self._trace_statements = tracer_provider is not None or bool(settings.otlp_endpoint)
        self._metrics_server: WSGIServer | None = None
        # Under a supervisor (MEMORYD_WORKERS > 1): this process's index. Workers
        # share the port, and only worker 0 runs the host-wide background work.
        self.worker = worker
        self.port = 0
        # The libpq URI in use once started (the embedded server's, if embedded).
        self.database_url: str | None = None
        self.health = health.aio.HealthServicer()
        self._embedded: EmbeddedDatabase | None = None
        self._pool: AsyncConnectionPool | None = None
        # Whether the database answers; shared by both pools. Set by start().
        self._availability: Availability | None = None
        # A one-connection pool for the cross-tenant upkeep (expiry).
        self._upkeep_pool: AsyncConnectionPool | None = None
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: bool | None = None
        # The embedding models and embedders; set by start().
        self.embeddings: Embeddings | None = None
        # Verified API keys; None when MEMORYD_AUTH is off.
        self.keys: KeyVerifier | None = None
        # This replica's request rate per tenant (used when MEMORYD_AUTH is on).
        self.limiter = RateLimiter(settings)
        # Running calls, and the refusal of new ones once stopping.
        self._drain = Drain()
        # Calls running and queued per method class; the excess is shed.
        self._admission = AdmissionInterceptor(settings)

    async def start(self) -> int:
        """Start the database, migrate, open the pool and listen; returns the port."""
        credentials = tls.server_credentials(self.settings)  # a bad file fails before the database
        if self.tracer_provider is None:
            self.tracer_provider = telemetry.configure_tracing(self.settings)
        if self.settings.metrics_multiproc_dir is not None:
            metrics.enable(self.settings)  # a supervisor serves /metrics for every worker
        else:
            self._metrics_server = metrics.serve(self.settings)
        url = self.database_url = await self._database_url()
        log.info("database", url=database.redact(url), embedded=self.settings.embedded)
        await asyncio.to_thread(database.prepare_database, url)
        embedder = await asyncio.to_thread(create_embedder, self.settings)
        dimension = self.settings.known_dimension
        if dimension is None:
            assert embedder is not None
            dimension = await asyncio.to_thread(_probe_dimension, embedder)
        if self.settings.migrate_on_start:
            applied = await asyncio.to_thread(
                database.apply_migrations, url, embedding_dim=dimension
            )
            log.info("migrations_applied", count=len(applied), ids=applied)
        space = await asyncio.to_thread(self._register_model, url, dimension)
        self._availability = Availability(url)
        self._pool = database.create_pool(url, self.settings, self._availability)
        self._instrument(self._pool)
        await self._pool.open(wait=True, timeout=30.0)
        self.embeddings = Embeddings(
            ModelRegistry(self._pool, space),
            self.settings,
            None if embedder is None else Embeddings.batcher(embedder, self.settings),
        )
        log.info("embedding_model", model=space.name, dimension=space.dimension,
                 embedder=self.settings.embedder)  # fmt: skip
        self._upkeep_pool = database.create_pool(
            url, self.settings, self._availability, role=database.MAINTENANCE_ROLE, max_size=1
        )
        self._instrument(self._upkeep_pool)
        await self._upkeep_pool.open(wait=True, timeout=30.0)
        secret = await database.read_or_create_secret(
            self._pool, name="page_token", value=secrets.token_bytes(32)
        )
        access = AccessRecorder(self._pool)
        if self.settings.auth_enabled:
            self.keys = KeyVerifier(self._pool, self.settings)
            await self._check_operator_access()
        self._server = self._build_server(self._pool, PageTokens(secret), access, credentials)
        await self._server.start()
        await self._set_serving(True)
        # Every process watches its own pool and flushes the hits it noted.
        self._tasks = [
            asyncio.create_task(self._watch_database(), name="memoryd-health"),
            asyncio.create_task(access.run(), name="memoryd-access"),
            asyncio.create_task(
                metrics.watch_pools((self._pool, self._upkeep_pool)), name="memoryd-pool-metrics"
            ),
            asyncio.create_task(self._admission.run(), name="memoryd-admission"),
        ]
        if not self.worker:  # once per host: alone, or worker 0
            upkeep_pool, embeddings = self._upkeep_pool, self.embeddings
            self._tasks += [
                asyncio.create_task(
                    host_tasks.expire_idempotency_keys(upkeep_pool), name="memoryd-idempotency"
                ),
                asyncio.create_task(
                    host_tasks.expire_memories(upkeep_pool, self.settings),
                    name="memoryd-memory-expiry",
                ),
                asyncio.create_task(
                    host_tasks.embed_messages(upkeep_pool, embeddings),
                    name="memoryd-message-embedding",
                ),
            ]
        log.info(
            "serving",
            addr=self.settings.addr,
            port=self.port,
            pid=os.getpid(),
            tls=self.settings.tls_mode,
            worker=self.worker,
            auth="on" if self.settings.auth_enabled else "off",
        )
        return self.port

    @property
    def metrics_port(self) -> int | None:
        """The port /metrics is served on by this process, once started (None: not served)."""
        return None if self._metrics_server is None else self._metrics_server.server_port

    def _instrument(self, pool: AsyncConnectionPool) -> None:
        """Time (metrics) and trace (MEMORYD_OTLP_ENDPOINT) every statement of ``pool``."""
        assert self.tracer_provider is not None
        tracer = self.tracer_provider.get_tracer("memoryd.db") if self._trace_statements else None
        cursor = telemetry.cursor_class(tracer)
        if cursor is not None:  # psycopg_pool passes its kwargs to every connect()
            kwargs = pool.kwargs or {}
            assert isinstance(kwargs, dict), "create_pool passes none, or a dict"
            pool.kwargs = {**kwargs, "cursor_factory": cursor}

    def _register_model(self, url: str, dimension: int) -> ModelSpace:
        with database.owner_connection(url) as conn:
            return ensure_model(
                conn, name=self.settings.model_name, dimension=dimension,
                provider=provider_of(self.settings),
                endpoint=self.settings.embedding_endpoint,
            )  # fmt: skip

    def _failed_keys(self) -> FailedKeyLimiter | None:
        rate = self.settings.auth_failures_per_second
        return FailedKeyLimiter(rate) if self.settings.auth_enabled and rate > 0 else None

    async def _check_operator_access(self) -> None:
        """Warn when nobody could manage tenants: no admin key and no operator key."""
        if self.settings.admin_key is not None:
            return
        assert self._pool is not None
        async with database.transaction(self._pool, None, {"role": database.OPERATOR_ROLE}) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM api_keys WHERE role = 'operator' AND revoke_time IS NULL"
            )
            row = await cur.fetchone()
        if row is None or row[0] == 0:
            log.warning(
                "no_operator_key",
                hint="set MEMORYD_ADMIN_KEY, or run: memoryd keys create --operator --name NAME",
            )

    async def _database_url(self) -> str:
        if self.settings.database_url is not None:
            return self.settings.database_url
        self._embedded = EmbeddedDatabase(self.settings.data_dir)
        return await asyncio.to_thread(self._embedded.start)

    def _build_server(
        self,
        pool: AsyncConnectionPool,
        tokens: PageTokens,
        access: AccessRecorder,
        credentials: grpc.ServerCredentials | None,
    ) -> grpc.aio.Server:
        # Spans only when they go somewhere: unexported, they cost every call
        # about a tenth of a millisecond of CPU for nothing.
        tracing: list[grpc.aio.ServerInterceptor] = []
        if self._trace_statements:
            tracing.append(aio_server_interceptor(tracer_provider=self.tracer_provider))  # type: ignore[no-untyped-call]
        server = grpc.aio.server(
            interceptors=[
                *tracing,
                # One interceptor: the layers wrap each method's handler once.
                Boundary(
                    [
                        AccessLogInterceptor(),
                        self._drain,
                        self._admission,
                        DeadlineInterceptor(),
                        AuthInterceptor(self.keys, self.limiter, self._failed_keys()),
                        ErrorInterceptor(RequestSizes(self.settings)),
                    ]
                ),
            ],
            options=[
                ("grpc.max_receive_message_length", self.settings.max_receive_bytes),
                *pending_call_limits(self.settings.max_pending_calls),
                # Workers share their supervisor's port; a lone server must not
                # share it with anyone (a second server fails to start instead).
                ("grpc.so_reuseport", 0 if self.worker is None else 1),
                # Soft limit = hard limit: between the two gRPC refuses calls at
                # random, so an oversized authorization header got a random status.
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
            ],
        )
        conversation_pb2_grpc.add_ConversationServiceServicer_to_server(
            ConversationServicer(pool, self.settings, tokens, self._embeddings()), server
        )
        memory_pb2_grpc.add_MemoryServiceServicer_to_server(
            MemoryServicer(pool, self.settings, tokens, access, self._embeddings()), server
        )
        document_pb2_grpc.add_DocumentServiceServicer_to_server(
            DocumentServicer(pool, self.settings, tokens, self._embeddings()), server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(pool, self.settings, tokens, self.keys), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = self._listen(server, credentials)
        return server

    def _embeddings(self) -> Embeddings:
        assert self.embeddings is not None, "start() sets it before building the server"
        return self.embeddings

    def _listen(self, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None) -> int:
        """Bind ``settings.addr``: TLS with ``credentials``, plaintext without; the port."""
        addr = self.settings.addr
        try:
            if credentials is None:
                return server.add_insecure_port(addr)
            return server.add_secure_port(addr, credentials)
        except RuntimeError as exc:
            message = f"cannot listen on {addr}: {exc}"
            if credentials is not None:  # gRPC reports a key not matching its cert this way too
                message += " (or MEMORYD_TLS_KEY is not the key of MEMORYD_TLS_CERT)"
            raise StartupError(message) from None

    async def _set_serving(self, serving: bool) -> None:
        if serving == self._serving:
            return
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)
        log.info("health", serving=serving)

    async def _watch_database(self) -> None:
        """NOT_SERVING while the database does not answer, SERVING again once it does.

        While it is down, calls fail at once and this loop probes with new
        connections; once one answers, the pools drop their broken connections
        before calls are let through again.
        """
        assert self._pool is not None
        assert self._upkeep_pool is not None
        assert self._availability is not None
        availability = self._availability
        while True:
            await availability.wait_down(self.settings.health_interval_seconds)
            if availability.down and await availability.probe():
                for pool in (self._pool, self._upkeep_pool):
                    with contextlib.suppress(Exception):
                        await pool.check()
                availability.mark_up()
            # A ping that finds no free pooled connection in time means load, not
            # an outage, when a direct connection answers (issue 12: health
            # flipped to NOT_SERVING under overload).
            await self._set_serving(
                not availability.down
                and (await database.ping(self._pool) or await availability.probe())
            )

    async def stop(
        self,
        grace: float | None = None,
        *,
        together: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """Stop accepting, finish in-flight calls within ``grace``, then release everything.

        ``together`` (a worker's) is awaited once drained, with the seconds of
        grace left, and returns when gRPC may stop (see supervisor.py).
        """
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        log.info("stopping", grace_seconds=grace)
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        self._drain.start()
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            # Drain before gRPC stops: its stop kills calls not yet handed to a handler.
            finished = await self._drain.wait_idle(grace)
            log.info("drained", finished=finished, running=self._drain.running,
                     quiet=self._drain.quiet, stalls=self._drain.stalls)  # fmt: skip
            if together is not None:
                await together(max(until - loop.time(), 0.0))
                # Calls may have reached this worker while it waited.
                await self._drain.wait_idle(
                    max(until - loop.time(), 0.0), patience=RELEASED_PATIENCE_SECONDS
                )
                log.info("released", quiet=self._drain.quiet, stalls=self._drain.stalls)
            await self._server.stop(max(until - loop.time(), 0.0))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.embeddings is not None:
            await self.embeddings.close()
        for pool in (self._pool, self._upkeep_pool):
            if pool is not None:
                await pool.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
        if self._metrics_server is not None:
            server, self._metrics_server = self._metrics_server, None
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        log.info("stopped")


def _probe_dimension(embedder: Embedder) -> int:
    """The endpoint's vector length, or a StartupError saying why it is unknown."""
    try:
        return embedder.dimension
    except MemorydError as exc:
        raise StartupError(
            f"cannot ask the embedding service for a vector: {exc.message}"
        ) from None


async def serve(
    settings: Settings,
    on_ready: Callable[[Memoryd], None] | None = None,
    *,
    worker: int | None = None,
    together: Callable[[float], Awaitable[None]] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down in order; ``on_ready`` once serving.

    ``worker`` is this process's index under a supervisor (supervisor.py), and
    ``together`` its wait for the other workers to drain (``Memoryd.stop``).
    """
    app = Memoryd(settings, worker=worker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        if on_ready is not None:
            on_ready(app)
        await stop.wait()
    finally:
        await app.stop(together=together)
