"""MemorydSessionService against a real memoryd.

The session cases are ADK's own (tests/unittests/sessions/test_session_service.py
of google/adk-python, written for its in-memory and database services),
ported to run on memoryd with a fresh tenant each; the rest cover what a
durable service adds: stale sessions, isolation, sessions readable as
conversations. The memory service's cases are in test_adk_memory.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from google.adk.errors import StaleSessionError
from google.adk.events import Event, EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

import memoryd
from memoryd.integrations.adk import MemorydSessionService
from tests.conftest import ServerThread, TenantKeys, create_tenant_keys

Service = MemorydSessionService


@pytest.fixture
def run(
    embedding_memoryd: ServerThread, embed_tenant: TenantKeys
) -> Callable[[Callable[[MemorydSessionService], Awaitable[None]]], None]:
    """Run a test body with a session service of a fresh tenant, in its own loop."""

    def runner(body: Callable[[MemorydSessionService], Awaitable[None]]) -> None:
        asyncio.run(
            body(MemorydSessionService(embedding_memoryd.addr, api_key=embed_tenant.member))
        )

    return runner


def text_event(text: str, author: str = "user", **kwargs: Any) -> Event:
    return Event(
        invocation_id="invocation",
        author=author,
        content=types.Content(
            role="user" if author == "user" else "model", parts=[types.Part(text=text)]
        ),
        **kwargs,
    )


def test_get_empty_session(run: Any) -> None:
    async def body(service: Service) -> None:
        assert not await service.get_session(
            app_name="my_app", user_id="test_user", session_id="123"
        )

    run(body)


def test_create_get_session(run: Any) -> None:
    async def body(service: Service) -> None:
        state = {"key": "value", "ключ": "значение ✓"}
        session = await service.create_session(app_name="my_app", user_id="test_user", state=state)
        assert (session.app_name, session.user_id) == ("my_app", "test_user")
        assert session.id
        assert session.state == state
        got = await service.get_session(
            app_name="my_app", user_id="test_user", session_id=session.id
        )
        assert got == session
        # Another user or app does not see it.
        assert (
            await service.get_session(app_name="my_app", user_id="other", session_id=session.id)
            is None
        )
        assert (
            await service.get_session(app_name="other", user_id="test_user", session_id=session.id)
            is None
        )
        await service.delete_session(app_name="my_app", user_id="test_user", session_id=session.id)
        assert (
            await service.get_session(app_name="my_app", user_id="test_user", session_id=session.id)
            is None
        )

    run(body)


def test_create_and_list_sessions(run: Any) -> None:
    async def body(service: Service) -> None:
        ids = [f"session{i}" for i in range(5)]
        for session_id in ids:
            await service.create_session(
                app_name="my_app", user_id="test_user", session_id=session_id
            )
        await service.create_session(app_name="my_app", user_id="someone", session_id="s-other")
        await service.create_session(app_name="app2", user_id="test_user", session_id="s-app2")
        listed = (await service.list_sessions(app_name="my_app", user_id="test_user")).sessions
        assert [s.id for s in listed] == ids  # least recently active first
        assert all(s.events == [] for s in listed)
        everyone = (await service.list_sessions(app_name="my_app")).sessions
        assert sorted(s.id for s in everyone) == sorted([*ids, "s-other"])

    run(body)


def test_session_state(run: Any) -> None:
    async def body(service: Service) -> None:
        session_11 = await service.create_session(
            app_name="my_app", user_id="user1", state={"key11": "value11"}, session_id="session11"
        )
        await service.create_session(
            app_name="my_app", user_id="user1", state={"key12": "value12"}, session_id="session12"
        )
        await service.create_session(app_name="my_app", user_id="user2", session_id="session2")
        event = text_event(
            "text",
            actions=EventActions(
                state_delta={
                    "app:key": "value",
                    "user:key1": "value1",
                    "temp:key": "temp",
                    "key11": "value11_new",
                }
            ),
        )
        await service.append_event(session=session_11, event=event)
        assert session_11.state.get("app:key") == "value"
        assert session_11.state.get("key11") == "value11_new"
        assert session_11.state.get("user:key1") == "value1"
        assert session_11.state.get("temp:key") == "temp"  # for the rest of the invocation

        session_12 = await service.get_session(
            app_name="my_app", user_id="user1", session_id="session12"
        )
        assert session_12 is not None
        assert session_12.state.get("key12") == "value12"
        assert session_12.state.get("user:key1") == "value1"
        assert not session_12.state.get("temp:key")

        session_2 = await service.get_session(
            app_name="my_app", user_id="user2", session_id="session2"
        )
        assert session_2 is not None
        assert session_2.state.get("app:key") == "value"
        assert not session_2.state.get("user:key1")

        session_11 = await service.get_session(
            app_name="my_app", user_id="user1", session_id="session11"
        )
        assert session_11 is not None
        assert session_11.state.get("key11") == "value11_new"
        assert session_11.state.get("user:key1") == "value1"
        assert not session_11.state.get("temp:key")
        assert await service.get_user_state(app_name="my_app", user_id="user1") == {
            "key1": "value1"
        }

    run(body)


def test_create_new_session_will_merge_states(run: Any) -> None:
    async def body(service: Service) -> None:
        session_1 = await service.create_session(
            app_name="my_app", user_id="user", state={"key1": "value1"}, session_id="session1"
        )
        event = text_event(
            "text",
            actions=EventActions(
                state_delta={"app:key": "value", "user:key1": "value1", "temp:key": "temp"}
            ),
        )
        await service.append_event(session=session_1, event=event)
        session_2 = await service.create_session(
            app_name="my_app", user_id="user", state={}, session_id="session2"
        )
        assert session_2.state.get("app:key") == "value"
        assert session_2.state.get("user:key1") == "value1"
        assert not session_2.state.get("key1")
        assert not session_2.state.get("temp:key")

    run(body)


def test_append_event_bytes(run: Any) -> None:
    async def body(service: Service) -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        content = types.Content(
            role="user",
            parts=[types.Part.from_bytes(data=b"test_image_data", mime_type="image/png")],
        )
        grounding = types.GroundingMetadata(
            search_entry_point=types.SearchEntryPoint(sdk_blob=b"test_sdk_blob")
        )
        event = Event(
            invocation_id="invocation", author="user", content=content, grounding_metadata=grounding
        )
        await service.append_event(session=session, event=event)
        assert session.events[0].content == content
        got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert got is not None
        assert len(got.events) == 1
        assert got.events[0].content == content
        assert got.events[0].grounding_metadata == grounding

    run(body)


def test_append_event_complete(run: Any) -> None:
    async def body(service: Service) -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        event = Event(
            invocation_id="invocation",
            author="user",
            content=types.Content(role="user", parts=[types.Part(text="test_text")]),
            turn_complete=True,
            partial=False,
            actions=EventActions(
                artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True
            ),
            long_running_tool_ids={"tool1"},
            error_code="error_code",
            error_message="error_message",
            interrupted=True,
        )
        await service.append_event(session=session, event=event)
        got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert got == session

    run(body)


def test_get_session_with_config(run: Any) -> None:
    async def body(service: Service) -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        for i in range(1, 6):
            await service.append_event(session, Event(author="user", timestamp=i))

        async def events(**config: Any) -> list[Event]:
            got = await service.get_session(
                app_name="my_app",
                user_id="user",
                session_id=session.id,
                config=GetSessionConfig(**config) if config else None,
            )
            assert got is not None
            return got.events

        assert len(await events()) == 5
        recent = await events(num_recent_events=3)
        assert [e.timestamp for e in recent] == [3, 4, 5]
        assert [e.timestamp for e in await events(after_timestamp=4.0)] == [4, 5]
        assert await events(after_timestamp=50) == []
        assert [e.timestamp for e in await events(after_timestamp=4.0, num_recent_events=3)] == [
            4,
            5,
        ]
        assert await events(num_recent_events=0) == []

    run(body)


def test_stale_session_is_rejected(run: Any) -> None:
    """Two copies of a session: once one changed the state, the other cannot."""

    async def body(service: Service) -> None:
        first = await service.create_session(app_name="my_app", user_id="u", state={"n": 0})
        second = await service.get_session(app_name="my_app", user_id="u", session_id=first.id)
        assert second is not None
        await service.append_event(
            first, text_event("one", actions=EventActions(state_delta={"n": 1}))
        )
        with pytest.raises(StaleSessionError):
            await service.append_event(
                second, text_event("two", actions=EventActions(state_delta={"n": 2}))
            )
        fresh = await service.get_session(app_name="my_app", user_id="u", session_id=first.id)
        assert fresh is not None
        assert fresh.state["n"] == 1
        assert [e.content.parts[0].text for e in fresh.events if e.content] == ["one"]  # type: ignore[index]
        # Events without session state changes need no check: both copies may append.
        await service.append_event(second, text_event("chat"))

    run(body)


def test_concurrent_user_state_writes_merge(run: Any) -> None:
    """Writers of different user: keys from different sessions all land."""

    async def body(service: Service) -> None:
        sessions = [
            await service.create_session(app_name="my_app", user_id="u", session_id=f"c{i}")
            for i in range(6)
        ]
        await asyncio.gather(
            *(
                service.append_event(
                    s, text_event("x", actions=EventActions(state_delta={f"user:k{i}": i}))
                )
                for i, s in enumerate(sessions)
            )
        )
        assert await service.get_user_state(app_name="my_app", user_id="u") == {
            f"k{i}": i for i in range(6)
        }

    run(body)


def test_sessions_are_conversations(
    run: Any, embedding_memoryd: ServerThread, embed_tenant: TenantKeys
) -> None:
    """Events are readable as messages: the context window and message search see them."""

    async def body(service: Service) -> None:
        session = await service.create_session(app_name="travel", user_id="u7", session_id="trip-1")
        await service.append_event(session, text_event("Book me a window seat to Lisbon"))
        await service.append_event(session, text_event("Booked seat 14A", author="travel_agent"))

    run(body)
    with memoryd.Client(embedding_memoryd.addr, api_key=embed_tenant.member) as client:
        window = client.conversations.context_window("trip-1", max_tokens=1000)
        assert [(m.role, m.name, m.content) for m in window.messages] == [
            ("user", "user", "Book me a window seat to Lisbon"),
            ("assistant", "travel_agent", "Booked seat 14A"),
        ]
        hits = client.conversations.search(query_text="seat to Lisbon", mode="text")
        assert hits[0].message.conversation_id == "trip-1"


def test_session_errors(run: Any, embedding_memoryd: ServerThread, pg_uri: str) -> None:
    """A taken id, a malformed id, and another tenant's session: memoryd's typed errors."""

    async def body(service: Service) -> None:
        await service.create_session(app_name="a", user_id="u", session_id="taken")
        with pytest.raises(memoryd.AlreadyExists):
            await service.create_session(app_name="a", user_id="u", session_id="taken")
        with pytest.raises(memoryd.InvalidArgument):
            await service.create_session(app_name="a", user_id="u", session_id="sp ace/é" * 20)
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            other = create_tenant_keys(
                conn, "adk-other-" + (await service.list_sessions(app_name="a")).sessions[0].id
            )
        stranger = MemorydSessionService(embedding_memoryd.addr, api_key=other.member)
        assert await stranger.get_session(app_name="a", user_id="u", session_id="taken") is None
        assert (await stranger.list_sessions(app_name="a")).sessions == []
        viewer = MemorydSessionService(embedding_memoryd.addr, api_key=other.viewer)
        with pytest.raises(memoryd.PermissionDenied):
            await viewer.create_session(app_name="a", user_id="u")

    run(body)
