"""Traces: one span per SQL statement under the RPC's span, with SQL text but no parameters."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server import metrics, telemetry
from memoryd_server.config import Settings
from tests.conftest import ServerThread, assert_status

APPEND = "/memoryd.v1.ConversationService/AppendMessages"


@pytest.fixture(scope="module")
def traced(
    test_settings: Settings, memoryd_server: ServerThread
) -> Iterator[tuple[ServerThread, InMemorySpanExporter]]:
    """A memoryd whose spans go to memory, as MEMORYD_OTLP_ENDPOINT sends them out."""
    del memoryd_server  # the session's migrations made the tables
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = ServerThread(test_settings.replace(metrics_addr=None), tracer_provider=provider)
    yield server, exporter
    server.stop()


def _rpc_span(spans: tuple[ReadableSpan, ...], method: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == method]
    return span


def _spans_once_ended(exporter: InMemorySpanExporter, method: str) -> tuple[ReadableSpan, ...]:
    """The finished spans once ``method``'s span is among them.

    A failed call's span ends as its handler unwinds, which may be just after
    its client has the status.
    """
    deadline = time.monotonic() + 10
    while True:
        spans = exporter.get_finished_spans()
        if any(s.name == method for s in spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def _statements_under(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    """The statement spans whose parent is ``parent``, in start order."""
    assert parent.context is not None
    children = [
        s
        for s in spans
        if s.parent is not None
        and s.parent.span_id == parent.context.span_id
        and s.attributes is not None
        and s.attributes.get("db.system.name") == "postgresql"
    ]
    return sorted(children, key=lambda s: s.start_time or 0)


def test_every_statement_is_a_span_under_the_rpc(
    traced: tuple[ServerThread, InMemorySpanExporter],
) -> None:
    """An AppendMessages call's statements are client spans under its span, text only."""
    server, exporter = traced
    exporter.clear()
    secret = f"the-secret-content-ø-{uuid.uuid4().hex}"
    with grpc.insecure_channel(server.addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        stub.AppendMessages(
            pb.AppendMessagesRequest(
                conversation_id=f"trace-{uuid.uuid4().hex[:8]}",
                create_if_missing=True,
                messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content=secret)],
            )
        )
        assert_status(
            lambda: stub.GetConversation(pb.GetConversationRequest(conversation_id="none-1")),
            grpc.StatusCode.NOT_FOUND,
        )
    spans = _spans_once_ended(exporter, "/memoryd.v1.ConversationService/GetConversation")
    rpc = _rpc_span(spans, APPEND)
    assert rpc.context is not None
    statements = _statements_under(spans, rpc)
    texts = [str((s.attributes or {})["db.query.text"]) for s in statements]
    # The tenant's transaction settings, then the append's own statements.
    assert len(texts) >= 2, texts
    assert any("set_config" in t for t in texts), texts
    assert any("INSERT INTO messages" in t for t in texts), texts
    for span, text in zip(statements, texts, strict=True):
        assert span.kind.name == "CLIENT"
        assert span.context is not None
        assert span.context.trace_id == rpc.context.trace_id
        assert span.name == (span.attributes or {})["db.operation.name"]
        # Placeholders (%(name)s), never the values.
        assert secret not in text
    assert any("%(" in t or "%s" in t for t in texts), texts
    for span in spans:
        for attribute in (span.attributes or {}).values():
            assert secret not in str(attribute)
    # The failed call's statements sit under its own span, in its own trace.
    missing = _rpc_span(spans, "/memoryd.v1.ConversationService/GetConversation")
    assert missing.context is not None
    assert _statements_under(spans, missing)
    assert missing.context.trace_id != rpc.context.trace_id


def test_composed_statements_are_named_by_their_keyword(
    traced: tuple[ServerThread, InMemorySpanExporter],
) -> None:
    """Statements built with psycopg.sql are rendered (identifiers only) and named too."""
    server, exporter = traced
    exporter.clear()
    with grpc.insecure_channel(server.addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        stub.CreateConversation(pb.CreateConversationRequest())
    spans = _spans_once_ended(exporter, "/memoryd.v1.ConversationService/CreateConversation")
    rpc = _rpc_span(spans, "/memoryd.v1.ConversationService/CreateConversation")
    names = [s.name for s in _statements_under(spans, rpc)]
    assert names, names
    # PING: the pool's liveness check of a connection (an empty statement);
    # BEGIN: the transaction's start with its settings, one message.
    assert set(names) <= {
        "PING",
        "BEGIN",
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "WITH",
        "COMMIT",
    }, names
    assert "INSERT" in names
    assert names.index("BEGIN") < names.index("INSERT") < names.index("COMMIT"), names


def test_no_statement_spans_without_a_tracer(memoryd_server: ServerThread) -> None:
    """Tracing off (no OTLP endpoint): the pools' cursors make no spans at all."""
    assert memoryd_server.app.tracer_provider is not None
    assert not memoryd_server.app._trace_statements
    # With metrics off too, psycopg's own cursor runs every statement untouched.
    if metrics.current() is None:
        assert telemetry.cursor_class(None) is None
