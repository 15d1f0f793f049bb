"""GetContextWindow: counts, token budgets, pinned system messages, and its index scan."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import field_mask_pb2

from memoryd.v1 import conversation_pb2 as pb
from memoryd_server.conversations.messages import CONTEXT_WINDOW_QUERY
from memoryd_server.tenancy import DEFAULT_TENANT


def _msg(role: int, content: str, tokens: int) -> pb.Message:
    return pb.Message(role=role, content=content, token_count=tokens)


def _conversation(stub, conv_id: str, messages: list[pb.Message], summary: str = "") -> None:
    for start in range(0, len(messages), 1000):
        stub.AppendMessages(
            pb.AppendMessagesRequest(
                conversation_id=conv_id,
                create_if_missing=True,
                conversation=pb.Conversation(title="ctx"),
                messages=messages[start : start + 1000],
            )
        )
    if summary:
        stub.UpdateConversation(
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv_id, summary=summary),
                update_mask=field_mask_pb2.FieldMask(paths=["summary"]),
            )
        )


def _window(stub, conv_id: str, **options) -> pb.GetContextWindowResponse:
    return stub.GetContextWindow(pb.GetContextWindowRequest(conversation_id=conv_id, **options))


def test_default_is_last_twenty_oldest_first(grpc_stub, uid):
    """Without limits the window is the last 20 messages, oldest first, with the summary."""
    conv = f"w-{uid}"
    _conversation(
        grpc_stub,
        conv,
        [_msg(pb.MESSAGE_ROLE_USER, str(i), 2) for i in range(30)],
        summary="so far",
    )
    window = _window(grpc_stub, conv)
    assert [m.seq for m in window.messages] == list(range(11, 31))
    assert (window.summary, window.total_tokens, window.omitted_message_count) == ("so far", 40, 10)


def test_short_conversation_is_whole(grpc_stub, uid):
    """A conversation shorter than the window comes back whole, nothing omitted."""
    conv = f"s-{uid}"
    _conversation(grpc_stub, conv, [_msg(pb.MESSAGE_ROLE_USER, "hi", 1)])
    window = _window(grpc_stub, conv, max_messages=5)
    assert [m.content for m in window.messages] == ["hi"]
    assert window.omitted_message_count == 0


def test_token_budget_keeps_the_newest_that_fit(grpc_stub, uid):
    """max_tokens keeps the newest messages that fit, stopping at the first that does not."""
    conv = f"t-{uid}"
    tokens = [5, 50, 10, 10, 10]  # seqs 1..5
    _conversation(grpc_stub, conv, [_msg(pb.MESSAGE_ROLE_USER, str(t), t) for t in tokens])
    window = _window(grpc_stub, conv, max_tokens=35)
    assert [m.seq for m in window.messages] == [3, 4, 5]
    assert (window.total_tokens, window.omitted_message_count) == (30, 2)
    both = _window(grpc_stub, conv, max_tokens=1000, max_messages=2)
    assert [m.seq for m in both.messages] == [4, 5]
    none_fit = _window(grpc_stub, conv, max_tokens=5)
    assert list(none_fit.messages) == []
    assert none_fit.omitted_message_count == 5


def test_system_messages_are_pinned(grpc_stub, uid):
    """include_system_messages adds old SYSTEM messages first and reserves their tokens."""
    conv = f"sys-{uid}"
    messages = [_msg(pb.MESSAGE_ROLE_SYSTEM, "rules", 7)]
    messages += [_msg(pb.MESSAGE_ROLE_USER, f"u{i}", 10) for i in range(10)]
    _conversation(grpc_stub, conv, messages)
    window = _window(grpc_stub, conv, max_messages=3, include_system_messages=True)
    assert [m.seq for m in window.messages] == [1, 9, 10, 11]
    assert window.messages[0].role == pb.MESSAGE_ROLE_SYSTEM
    assert (window.total_tokens, window.omitted_message_count) == (37, 7)
    budget = _window(grpc_stub, conv, max_tokens=30, include_system_messages=True)
    assert [m.seq for m in budget.messages] == [1, 10, 11]
    assert budget.total_tokens == 27
    not_pinned = _window(grpc_stub, conv, max_messages=3)
    assert [m.seq for m in not_pinned.messages] == [9, 10, 11]


def test_system_message_inside_window_is_not_repeated(grpc_stub, uid):
    """A SYSTEM message that is recent anyway appears once."""
    conv = f"sys2-{uid}"
    _conversation(
        grpc_stub,
        conv,
        [
            _msg(pb.MESSAGE_ROLE_USER, "a", 1),
            _msg(pb.MESSAGE_ROLE_SYSTEM, "s", 1),
            _msg(pb.MESSAGE_ROLE_USER, "b", 1),
        ],
    )
    window = _window(grpc_stub, conv, include_system_messages=True)
    assert [m.seq for m in window.messages] == [1, 2, 3]


def test_pinned_system_tokens_count_once(grpc_stub, uid):
    """A pinned SYSTEM message inside the window takes its tokens from the budget once.

    10 + 10 + system 50 + 10 tokens fit max_tokens 80 exactly: the whole
    conversation comes back (the window used to count the 50 twice and return
    60 tokens, omitting two messages).
    """
    conv = f"sys3-{uid}"
    _conversation(
        grpc_stub,
        conv,
        [
            _msg(pb.MESSAGE_ROLE_USER, "a", 10),
            _msg(pb.MESSAGE_ROLE_ASSISTANT, "b", 10),
            _msg(pb.MESSAGE_ROLE_SYSTEM, "rules", 50),
            _msg(pb.MESSAGE_ROLE_USER, "c", 10),
        ],
    )
    window = _window(grpc_stub, conv, max_tokens=80, include_system_messages=True)
    assert [m.seq for m in window.messages] == [1, 2, 3, 4]
    assert (window.total_tokens, window.omitted_message_count) == (80, 0)
    tight = _window(grpc_stub, conv, max_tokens=79, include_system_messages=True)
    assert [m.seq for m in tight.messages] == [2, 3, 4]
    assert (tight.total_tokens, tight.omitted_message_count) == (70, 1)


def test_empty_and_missing_conversations(grpc_stub, uid):
    """A conversation without messages gives an empty window; a missing one NOT_FOUND."""
    created = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(title=f"e-{uid}"))
    ).conversation
    window = _window(grpc_stub, created.id, include_system_messages=True, max_tokens=10)
    assert (list(window.messages), window.total_tokens, window.omitted_message_count) == ([], 0, 0)
    with pytest.raises(grpc.RpcError) as err:
        _window(grpc_stub, f"missing-{uid}")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"missing-{uid}" in err.value.details()


def _explain(db, conv: str, limit: int, budget: int | None) -> dict:
    params = {
        "tenant": DEFAULT_TENANT,
        "conversation": conv,
        "limit": limit,
        "max_tokens": budget,
        "system": False,
        "pins": 100,
    }
    query = b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + CONTEXT_WINDOW_QUERY.as_bytes(db)
    row = db.execute(query, params).fetchone()[0]
    return row[0]["Plan"] if isinstance(row, list) else json.loads(row)[0]["Plan"]


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


@pytest.mark.slow
def test_window_on_long_conversation_is_an_index_range_scan(grpc_stub, db, uid):
    """On 20,000 messages the window reads only its rows, by a backward scan of the primary key."""
    conv = f"long-{uid}"
    _conversation(grpc_stub, conv, [_msg(pb.MESSAGE_ROLE_USER, f"m{i}", 3) for i in range(20_000)])
    db.execute("ANALYZE messages")
    window = _window(grpc_stub, conv)
    assert [m.seq for m in window.messages] == list(range(19_981, 20_001))
    assert window.omitted_message_count == 19_980
    plan_nodes = _nodes(_explain(db, conv, 20, None))
    # The window's own scan: backward on the primary key, reading only its rows.
    scans = [n for n in plan_nodes if n.get("Scan Direction") == "Backward"]
    assert len(scans) == 1, plan_nodes
    assert scans[0]["Index Name"] == "messages_pkey"
    assert scans[0]["Actual Rows"] <= 20
    assert not [n for n in plan_nodes if n["Node Type"] == "Seq Scan"]
    # Every other messages scan reads at most the window's rows too.
    reads = [n for n in plan_nodes if n.get("Relation Name") == "messages"]
    assert all(n["Actual Rows"] * n["Actual Loops"] <= 20 for n in reads), reads
    budgeted = _nodes(_explain(db, conv, 1000, 30))
    scan = next(n for n in budgeted if n.get("Scan Direction") == "Backward")
    assert scan["Actual Rows"] <= 1000
