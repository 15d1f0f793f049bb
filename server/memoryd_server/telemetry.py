"""Logging (structlog) and tracing (OpenTelemetry) set-up."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import psycopg
import structlog
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from structlog.typing import EventDict, WrappedLogger

from memoryd_server import log_writer, metrics
from memoryd_server.config import Settings


def add_trace_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add the current span's trace id, so a log line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
    return event_dict


def _always(logger: Any) -> Callable[..., Any]:
    return lambda *_: logger


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """JSON lines when not on a TTY (or when asked), readable console otherwise."""
    out = stream if stream is not None else sys.stderr
    use_json = settings.log_format == "json" or (settings.log_format == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        # Plain tracebacks: rich's (structlog's default when rich is installed)
        # print local variables, which may hold an API key or message text.
        else structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            add_trace_id,
            structlog.processors.format_exc_info
            if use_json
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level.upper()]
        ),
        # Whole lines per write: workers share stderr, and print() writes the line
        # and its newline apart, so two workers' lines could end up on one. The
        # process's stderr is written by a thread (log_writer.py), so that a
        # stalled reader never blocks the event loop; a stream given here (tests)
        # is written at once.
        logger_factory=(
            structlog.WriteLoggerFactory(out)
            if stream is not None
            else _always(log_writer.writer_for(out))
        ),
        cache_logger_on_first_use=False,
    )
    _route_pool_logs()


class PoolLogHandler(logging.Handler):
    """psycopg_pool's stdlib log records as structlog ``psycopg_pool`` events at DEBUG.

    Unhandled, its warnings reach stderr as plain text among the JSON lines,
    one per failed reconnection; memoryd's own ``database_down``/``database_up``
    events say the same once.
    """

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger("psycopg.pool").debug(
            "psycopg_pool", level_name=record.levelname, detail=record.getMessage()
        )


def _route_pool_logs() -> None:
    pool_log = logging.getLogger("psycopg.pool")
    pool_log.handlers = [PoolLogHandler()]
    pool_log.propagate = False
    pool_log.setLevel(logging.WARNING)  # its INFO lines come with every checkout


def configure_tracing(settings: Settings) -> TracerProvider:
    """A tracer provider; spans are exported only when an OTLP endpoint is set.

    Tests and embedders add their own span processor to it (``Memoryd.tracer_provider``).
    """
    provider = TracerProvider(resource=Resource.create({"service.name": "memoryd"}))
    if settings.otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise RuntimeError(
                "MEMORYD_OTLP_ENDPOINT is set but the OTLP exporter is not installed; "
                "install memoryd-server[otlp]"
            ) from exc
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True))
        )
    return provider


def cursor_class(tracer: trace.Tracer | None) -> type[psycopg.AsyncCursor[Any]] | None:
    """The cursor class the pools' connections use, or None for psycopg's own.

    Each statement is timed for ``memoryd_db_statement_duration_seconds`` when
    metrics are on, and, with a ``tracer``, is a client span under the current
    (RPC) span carrying its SQL text, never its parameters. With neither, None:
    statements run through psycopg's cursor untouched.
    """
    if tracer is None and metrics.current() is None:
        return None

    class InstrumentedCursor(psycopg.AsyncCursor[Any]):
        # For SQL sent without this cursor (reads.py): see statement_of().
        memoryd_tracer = tracer

        async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
            with _statement(tracer, query, self):
                return await super().execute(query, params, **kwargs)

        async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
            with _statement(tracer, query, self):
                await super().executemany(query, params_seq, **kwargs)

    return InstrumentedCursor


def statement_of(
    conn: psycopg.AsyncConnection[Any], text: str
) -> contextlib.AbstractContextManager[None]:
    """Time and trace ``text`` as the pool's cursors would, for SQL sent another way.

    ``text`` carries placeholders, never values: it is what the span shows.
    """
    factory = conn.cursor_factory
    if not hasattr(factory, "memoryd_tracer"):
        return contextlib.nullcontext()
    return _statement(factory.memoryd_tracer, text, None)


@contextlib.contextmanager
def _statement(
    tracer: trace.Tracer | None, query: Any, cursor: psycopg.AsyncCursor[Any] | None
) -> Iterator[None]:
    """Times one statement and, with a tracer, wraps it in a span."""
    start = time.perf_counter()
    try:
        if tracer is None:
            yield
            return
        text = _text(query, cursor)
        operation = metrics.operation_of(text)
        attributes = {
            "db.system.name": "postgresql",
            "db.operation.name": operation,
            "db.query.text": text,
        }
        with tracer.start_as_current_span(
            operation, kind=trace.SpanKind.CLIENT, attributes=attributes
        ):
            yield
    finally:
        metrics.statement(query, time.perf_counter() - start)


def _text(query: Any, cursor: psycopg.AsyncCursor[Any] | None) -> str:
    """The statement's SQL with its placeholders (``%(name)s``), never parameter values."""
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    if isinstance(query, str):
        return query
    try:
        return str(query.as_string(cursor))  # psycopg.sql.Composed: identifiers only
    except Exception:  # noqa: BLE001 - a span without its text beats a failed query
        return "<composed>"
