"""``MemorydSessionService``: ADK sessions as memoryd conversations.

A session is a conversation (its id, app_name and user_id), its events are the
conversation's messages (``events.py``), and its session-scoped state is the
conversation's state. ``app:`` and ``user:`` state live in one conversation per
app and per (app, user) that hold only state; ``temp:`` state is never stored.
Every state write carries the version it was read at, so a session object that
another writer has moved past fails with ADK's ``StaleSessionError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

from google.adk.errors import StaleSessionError
from google.adk.events import Event
from google.adk.sessions import Session
from google.adk.sessions.base_session_service import (
    BaseSessionService,
    GetSessionConfig,
    ListSessionsResponse,
)
from google.adk.sessions.state import State

from memoryd._client import types as t
from memoryd._client.client import AsyncClient
from memoryd._client.errors import Aborted, AlreadyExists, NotFound
from memoryd.integrations.adk.events import from_message, to_message
from memoryd.integrations.loop_clients import LoopClients

# app_name of the conversations that hold app and user state, so that listing an app's
# sessions never returns them.
STATE_APP_PREFIX = "adk-state:"
# Concurrent writers of app or user state merge key by key: a lost race is retried.
STATE_RETRIES = 8


def _state_id(kind: str, *parts: str) -> str:
    """A valid conversation id for a state holder, whatever characters the names use."""
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]
    return f"adk-{kind}-state.{digest}"


def _split(delta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A state delta's app, user and session parts (prefixes removed); temp keys dropped."""
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    session: dict[str, Any] = {}
    for key, value in delta.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return app, user, session


def _merged(session: dict[str, Any], app: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    return (
        dict(session)
        | {State.APP_PREFIX + k: v for k, v in app.items()}
        | {State.USER_PREFIX + k: v for k, v in user.items()}
    )


class MemorydSessionService(BaseSessionService):
    """ADK's session service on memoryd's ConversationService.

    Session ids are conversation ids, unique within the tenant (letters,
    digits and ``._:-``, up to 128 characters); a session asked for under
    another app or user is not found.
    """

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        tls: bool = False,
        client: AsyncClient | None = None,
    ) -> None:
        self._clients = LoopClients(target, api_key=api_key, tls=tls, client=client)

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session; ALREADY_EXISTS (``memoryd.AlreadyExists``) if the id is taken."""
        app_delta, user_delta, session_state = _split(state or {})
        app_state = await self._write_state(_state_id("app", app_name), app_name, "", app_delta)
        user_state = await self._write_state(
            _state_id("user", app_name, user_id), app_name, user_id, user_delta
        )
        conversation = await self._clients.get().conversations.create(
            conversation_id=session_id or str(uuid.uuid4()),
            app_name=app_name,
            user_id=user_id,
            state=session_state,
        )
        return self._session(conversation, _merged(session_state, app_state, user_state), [])

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with its events (all, or those ``config`` selects), or None."""
        conversations = self._clients.get().conversations
        try:
            conversation = await conversations.get(session_id)
        except NotFound:
            return None
        if (conversation.app_name, conversation.user_id) != (app_name, user_id):
            return None
        events, app_state, user_state = await asyncio.gather(
            self._events(conversation.id, config or GetSessionConfig()),
            self._read_state(_state_id("app", app_name)),
            self._read_state(_state_id("user", app_name, user_id)),
        )
        return self._session(
            conversation, _merged(conversation.state, app_state, user_state), events
        )

    async def _events(self, conversation_id: str, config: GetSessionConfig) -> list[Event]:
        conversations = self._clients.get().conversations
        if config.num_recent_events is None and config.after_timestamp is None:
            return [from_message(m) async for m in conversations.iter_messages(conversation_id)]
        if config.num_recent_events == 0:
            return []
        # Newest first, stopping at the count or the time asked for: never the whole session.
        newest: list[Event] = []
        page_size = min(1000, config.num_recent_events or 100)
        async for message in conversations.iter_messages(
            conversation_id, newest_first=True, page_size=page_size
        ):
            event = from_message(message)
            if config.after_timestamp is not None and event.timestamp < config.after_timestamp:
                break
            newest.append(event)
            if len(newest) == config.num_recent_events:
                break
        return newest[::-1]

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The app's (or user's) sessions, without events, least recently active first."""
        conversations = self._clients.get().conversations
        found = [
            c
            async for c in conversations.iter(app_name=app_name, user_id=user_id or "")
            if c.app_name == app_name
        ]
        app_state = await self._read_state(_state_id("app", app_name))
        users: dict[str, dict[str, Any]] = {}
        for c in found:
            if c.user_id not in users:
                users[c.user_id] = await self._read_state(_state_id("user", app_name, c.user_id))
        return ListSessionsResponse(
            sessions=[
                self._session(c, _merged(c.state, app_state, users[c.user_id]), [])
                for c in reversed(found)
            ]
        )

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (a no-op if there is none)."""
        conversations = self._clients.get().conversations
        try:
            conversation = await conversations.get(session_id)
            if (conversation.app_name, conversation.user_id) == (app_name, user_id):
                await conversations.delete(session_id)
        except NotFound:
            return

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's state in the app, keys without their ``user:`` prefix."""
        return await self._read_state(_state_id("user", app_name, user_id))

    async def append_event(self, session: Session, event: Event) -> Event:
        """Apply the event's state delta (stale sessions rejected) and record the event."""
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        delta = event.actions.state_delta if event.actions else {}
        app_delta, user_delta, session_delta = _split(delta or {})
        conversations = self._clients.get().conversations
        if session_delta:
            stored = {
                k: v
                for k, v in session.state.items()
                if not k.startswith((State.APP_PREFIX, State.USER_PREFIX, State.TEMP_PREFIX))
            }
            try:
                updated = await conversations.update(
                    session.id,
                    state=stored | session_delta,
                    expected_version=self._version(session),
                )
            except Aborted as exc:
                raise StaleSessionError(
                    f"session {session.id} was changed since it was read; get it again"
                ) from exc
            self._remember_version(session, updated.version)
        if app_delta:
            await self._write_state(
                _state_id("app", session.app_name), session.app_name, "", app_delta
            )
        if user_delta:
            await self._write_state(
                _state_id("user", session.app_name, session.user_id),
                session.app_name,
                session.user_id,
                user_delta,
            )
        result = await conversations.append(session.id, [to_message(event)])
        self._commit_event_to_session(session, event)
        update_time = result.conversation.update_time
        session.last_update_time = update_time.timestamp() if update_time else event.timestamp
        return event

    # --- app and user state --------------------------------------------------------------

    async def _read_state(self, holder: str) -> dict[str, Any]:
        try:
            return (await self._clients.get().conversations.get(holder)).state
        except NotFound:
            return {}

    async def _write_state(
        self, holder: str, app_name: str, user_id: str, delta: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``delta`` into a state holder (made on first use); its state after."""
        conversations = self._clients.get().conversations
        for _ in range(STATE_RETRIES):
            try:
                current = await conversations.get(holder)
            except NotFound:
                if not delta:
                    return {}
                try:
                    made = await conversations.create(
                        conversation_id=holder,
                        app_name=STATE_APP_PREFIX + app_name,
                        user_id=user_id,
                        state=delta,
                    )
                except AlreadyExists:
                    continue  # made concurrently: merge into it
                return made.state
            if not delta:
                return current.state
            try:
                updated = await conversations.update(
                    holder, state=current.state | delta, expected_version=current.version
                )
            except Aborted:
                continue  # another writer won: merge again on what it wrote
            return updated.state
        raise StaleSessionError(f"state {holder} kept changing under {STATE_RETRIES} writes")

    # --- sessions --------------------------------------------------------------------------

    def _session(
        self, conversation: t.Conversation, state: dict[str, Any], events: list[Event]
    ) -> Session:
        session = Session(
            id=conversation.id,
            app_name=conversation.app_name,
            user_id=conversation.user_id,
            state=state,
            events=events,
            last_update_time=(
                conversation.update_time.timestamp() if conversation.update_time else 0.0
            ),
        )
        self._remember_version(session, conversation.version)
        return session

    @staticmethod
    def _remember_version(session: Session, version: int) -> None:
        # ADK's own marker for the stored revision a session object was read at.
        session._storage_update_marker = str(version)  # noqa: SLF001 - ADK services set it

    @staticmethod
    def _version(session: Session) -> int | None:
        marker = session._storage_update_marker  # noqa: SLF001 - ADK services read it
        return int(marker) if marker else None
