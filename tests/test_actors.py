"""Who did it: the API key (id and name) on conversations, messages and memory history.

With MEMORYD_AUTH=on the actor is the calling key; with it off, "anonymous";
for the expiry task, "system:expiry". Exports carry the actors, and an export
written before memoryd recorded them still imports (with empty actors).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

import memoryd
from memoryd.v1 import conversation_pb2 as cpb
from memoryd.v1 import conversation_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as mpb
from memoryd_server.portability.export import export_tenant
from memoryd_server.portability.importer import import_tenant
from tests.conftest import ServerThread, TenantKeys


@pytest.fixture
def clients(auth_server: ServerThread, tenant: TenantKeys) -> Iterator[dict[str, memoryd.Client]]:
    """Typed clients of ``tenant`` on the auth server, by role (member, admin)."""
    made = {
        role: memoryd.Client(auth_server.addr, api_key=getattr(tenant, role))
        for role in ("member", "admin")
    }
    yield made
    for client in made.values():
        client.close()


def key(tenant: TenantKeys, role: str) -> tuple[str, str]:
    """The (id, name) of ``tenant``'s ``role`` key."""
    return tenant.key_ids[role], f"{role} of {tenant.tenant_id}"


def created(c: memoryd.Conversation | memoryd.Message) -> tuple[str, str]:
    return c.created_by, c.created_by_name


def updated(c: memoryd.Conversation) -> tuple[str, str]:
    return c.updated_by, c.updated_by_name


def actors(events: list[memoryd.MemoryEvent]) -> list[tuple[str, str, str]]:
    return [(e.event_type, e.actor, e.actor_name) for e in events]


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_conversation_records_its_creator_and_last_changer(
    clients: dict[str, memoryd.Client], tenant: TenantKeys, uid: str
) -> None:
    """Create sets both actors; update and append set updated_by; feedback changes neither."""
    member, admin = clients["member"], clients["admin"]
    conv = member.conversations.create(conversation_id=f"c-{uid}", title="t")
    assert created(conv) == updated(conv) == key(tenant, "member")

    changed = admin.conversations.update(conv.id, summary="s")
    assert created(changed) == key(tenant, "member")
    assert updated(changed) == key(tenant, "admin")

    result = member.conversations.append(
        conv.id, [memoryd.NewMessage("user", "hi"), memoryd.NewMessage("assistant", "hello")]
    )
    assert updated(result.conversation) == key(tenant, "member")
    assert [created(m) for m in result.messages] == [key(tenant, "member")] * 2

    rated = admin.conversations.set_feedback(conv.id, result.messages[1].id, "positive")
    assert created(rated) == key(tenant, "member")  # the author stays; feedback is not authorship
    after = member.conversations.get(conv.id)
    assert created(after) == key(tenant, "member")
    assert updated(after) == key(tenant, "member")
    listed = admin.conversations.list_messages(conv.id).items
    assert [created(m) for m in listed] == [key(tenant, "member")] * 2
    (found,) = admin.conversations.list().items
    assert (created(found), updated(found)) == (created(after), updated(after))


def test_append_creating_a_conversation_records_the_appender(
    clients: dict[str, memoryd.Client], tenant: TenantKeys, uid: str
) -> None:
    """AppendMessages with create_if_missing: the appender created it and its messages."""
    result = clients["admin"].conversations.append(
        f"c-{uid}", [memoryd.NewMessage("user", "hi")], create_if_missing=True
    )
    assert created(result.conversation) == updated(result.conversation) == key(tenant, "admin")
    assert created(result.messages[0]) == key(tenant, "admin")


def test_memory_history_names_each_actor(
    clients: dict[str, memoryd.Client], tenant: TenantKeys, uid: str
) -> None:
    """Create, update, supersede, archive, purge and batch events carry the key and its name."""
    member, admin = clients["member"], clients["admin"]
    first = member.memories.create(memoryd.NewMemory("v1", namespace=[uid])).memory
    admin.memories.update(first.id, content="v2")
    replaced = member.memories.supersede(first.id, memoryd.NewMemory("v3"), reason="newer")
    m, a = key(tenant, "member"), key(tenant, "admin")
    assert actors(member.memories.history(first.id).items) == [
        ("created", *m),
        ("updated", *a),
        ("superseded", *m),
    ]
    newer = replaced.memory.id
    admin.memories.delete(newer)
    member.memories.delete(newer, purge=True)
    assert actors(admin.memories.history(newer).items) == [
        ("created", *m),
        ("archived", *a),
        ("purged", *m),
    ]
    (batched,) = admin.memories.batch_create([memoryd.NewMemory("b", namespace=[uid])])
    assert actors(member.memories.history(batched).items) == [("created", *a)]


def test_expiry_is_the_actor_of_what_it_archives(
    clients: dict[str, memoryd.Client], uid: str
) -> None:
    """A memory archived by its ttl names the expiry task, not the key that created it."""
    member = clients["member"]
    memory = member.memories.create(
        memoryd.NewMemory("short-lived", namespace=[uid]), ttl=timedelta(seconds=1)
    ).memory
    assert wait_for(lambda: member.memories.get(memory.id).status == "archived")
    assert actors(member.memories.history(memory.id).items)[-1] == (
        "archived",
        "system:expiry",
        "expiry",
    )


def test_auth_off_records_anonymous(
    grpc_create_channel: Callable[..., grpc.Channel], uid: str
) -> None:
    """Without auth every actor is "anonymous", by id and by name."""
    anonymous = ("anonymous", "anonymous")
    with grpc_create_channel() as channel:
        conversations = conversation_pb2_grpc.ConversationServiceStub(channel)
        memories = memory_pb2_grpc.MemoryServiceStub(channel)
        conv = conversations.CreateConversation(
            cpb.CreateConversationRequest(conversation_id=f"c-{uid}")
        ).conversation
        assert (conv.created_by, conv.created_by_name) == anonymous
        assert (conv.updated_by, conv.updated_by_name) == anonymous
        appended = conversations.AppendMessages(
            cpb.AppendMessagesRequest(
                conversation_id=conv.id,
                messages=[cpb.Message(role=cpb.MESSAGE_ROLE_USER, content="hi")],
            )
        )
        message = appended.messages[0]
        assert (message.created_by, message.created_by_name) == anonymous
        memory = memories.CreateMemory(
            mpb.CreateMemoryRequest(memory=mpb.Memory(namespace=[uid], content="x"))
        ).memory
        memories.DeleteMemory(mpb.DeleteMemoryRequest(memory_id=memory.id, purge=True))
        events = memories.GetMemoryHistory(mpb.GetMemoryHistoryRequest(memory_id=memory.id)).events
        assert [(e.actor, e.actor_name) for e in events] == [anonymous, anonymous]


def _export(pg_uri: str, tenant: str) -> list[str]:
    out = io.StringIO()
    export_tenant(pg_uri, tenant, out)
    return out.getvalue().splitlines(keepends=True)


def _actor_rows(db: psycopg.Connection[Any], tenant: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for query in (
        "SELECT created_by, created_by_name, updated_by, updated_by_name FROM conversations"
        " WHERE tenant_id = %s",
        "SELECT created_by, created_by_name FROM messages WHERE tenant_id = %s ORDER BY seq",
        "SELECT actor, actor_name FROM memory_events WHERE tenant_id = %s"
        " ORDER BY memory_id, version",
    ):
        rows.extend(db.execute(query, (tenant,)).fetchall())
    return rows


def test_export_and_import_keep_the_actors(
    clients: dict[str, memoryd.Client],
    tenant: TenantKeys,
    pg_uri: str,
    db: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    """A round trip keeps every actor; an export from before actors imports with empty ones."""
    uid = tenant.tenant_id
    member, admin = clients["member"], clients["admin"]
    conv = member.conversations.create(conversation_id=f"c-{uid}")
    admin.conversations.append(conv.id, [memoryd.NewMessage("user", "hi")])
    memory = member.memories.create(memoryd.NewMemory("fact", namespace=[uid])).memory
    admin.memories.update(memory.id, content="fact 2")
    lines = _export(pg_uri, tenant.tenant_id)
    m, a = key(tenant, "member"), key(tenant, "admin")
    expected = [(*m, *a), a, m, a]
    assert _actor_rows(db, tenant.tenant_id) == expected

    path = tmp_path / "now.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    assert import_tenant(pg_uri, f"imp-{uid}", path).complete
    assert _actor_rows(db, f"imp-{uid}") == expected
    assert _export(pg_uri, f"imp-{uid}")[1:] == lines[1:]

    dropped = {"created_by", "created_by_name", "updated_by", "updated_by_name", "actor_name"}
    old = [lines[0]]
    for line in lines[1:-1]:
        record = json.loads(line)
        record["data"] = {k: v for k, v in record["data"].items() if k not in dropped}
        old.append(json.dumps(record) + "\n")
    old.append(lines[-1])
    path = tmp_path / "old.jsonl"
    path.write_text("".join(old), encoding="utf-8")
    assert import_tenant(pg_uri, f"old-{uid}", path).complete
    assert _actor_rows(db, f"old-{uid}") == [("", "", "", ""), ("", ""), (m[0], ""), (a[0], "")]
