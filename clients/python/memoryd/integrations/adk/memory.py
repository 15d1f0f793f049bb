"""``MemorydMemoryService``: ADK's long-term memory on memoryd's MemoryService.

What a session said becomes memories in the namespace ``("adk", app, user)``,
one per event with text, keyed by session and event id, so adding a session
again updates its memories instead of repeating them. ``search_memory`` is
memoryd's hybrid search (meaning and words) within the user's namespace, with
the server's embedder; results keep their author, time and metadata.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.adk.events import Event
from google.adk.memory.base_memory_service import BaseMemoryService, SearchMemoryResponse
from google.adk.memory.memory_entry import MemoryEntry
from google.adk.sessions import Session
from google.genai import types as genai

from memoryd._client import types as t
from memoryd._client.client import AsyncClient
from memoryd._client.errors import NotFound
from memoryd.integrations.adk.events import event_text
from memoryd.integrations.loop_clients import LoopClients

# How many memories one search returns (memoryd's top_k).
DEFAULT_TOP_K = 10


def namespace(app_name: str, user_id: str) -> tuple[str, str, str]:
    """Where a user's memories of an app live."""
    return ("adk", app_name, user_id)


class MemorydMemoryService(BaseMemoryService):
    """ADK's memory service on memoryd: durable, searchable by meaning, per tenant."""

    def __init__(
        self,
        target: str = "localhost:50051",
        *,
        api_key: str | None = None,
        tls: bool = False,
        client: AsyncClient | None = None,
        top_k: int = DEFAULT_TOP_K,
    ) -> None:
        self._clients = LoopClients(target, api_key=api_key, tls=tls, client=client)
        self._top_k = top_k

    async def add_session_to_memory(self, session: Session) -> None:
        """Remember every event of the session that has text (again: updated, not repeated)."""
        await self.add_events_to_memory(
            app_name=session.app_name,
            user_id=session.user_id,
            events=session.events,
            session_id=session.id,
        )

    async def add_events_to_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        events: Sequence[Event],
        session_id: str | None = None,
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Remember these events (a delta of a session), one memory per event with text."""
        memories = self._clients.get().memories
        for event in events:
            text = event_text(event)
            if not text:
                continue
            memory = t.NewMemory(
                content=text,
                namespace=namespace(app_name, user_id),
                key=f"{session_id or 'no-session'}:{event.id}",
                memory_type="episodic",
                user_id=user_id,
                source=t.MemorySource(kind="system", conversation_id=session_id or ""),
                occur_time=datetime.fromtimestamp(event.timestamp, UTC),
                metadata={
                    **dict(custom_metadata or {}),
                    "author": event.author,
                    "session_id": session_id or "",
                    "event_id": event.id,
                },
            )
            await memories.create(memory, upsert=True)

    async def add_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        memories: Sequence[MemoryEntry],
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Remember explicit entries; an entry with an ``id`` replaces the one with that key."""
        client = self._clients.get().memories
        for entry in memories:
            text = "\n".join(p.text for p in entry.content.parts or () if p.text)
            if not text:
                raise ValueError("a memory entry needs text in its content")
            occurred = datetime.fromisoformat(entry.timestamp) if entry.timestamp else None
            memory = t.NewMemory(
                content=text,
                namespace=namespace(app_name, user_id),
                key=entry.id or "",
                user_id=user_id,
                occur_time=occurred,
                metadata={
                    **dict(custom_metadata or {}),
                    **entry.custom_metadata,
                    "author": entry.author or "",
                },
            )
            await client.create(memory, upsert=bool(entry.id))

    async def search_memory(
        self, *, app_name: str, user_id: str, query: str
    ) -> SearchMemoryResponse:
        """The user's memories that best match ``query``, best first."""
        hits = await self._clients.get().memories.search(
            query_text=query,
            filter=t.MemoryFilter(namespace_prefix=namespace(app_name, user_id), user_id=user_id),
            top_k=self._top_k,
        )
        return SearchMemoryResponse(memories=[_entry(hit.memory) for hit in hits])

    async def delete_memory(
        self, *, app_name: str, user_id: str, memory_id: str | None = None
    ) -> None:
        """Forget one memory (archived: memoryd keeps its history) of this user."""
        if not memory_id:
            raise ValueError("delete_memory needs the memory_id that search_memory returned")
        memories = self._clients.get().memories
        try:
            memory = await memories.get(memory_id)
        except NotFound:
            return
        if memory.namespace[:3] == namespace(app_name, user_id):
            await memories.delete(memory_id, reason="deleted through ADK")


def _entry(memory: t.Memory) -> MemoryEntry:
    metadata: dict[str, Any] = dict(memory.metadata)
    author = metadata.pop("author", None) or None
    when = memory.occur_time or memory.create_time
    role = "user" if author == "user" else "model"
    return MemoryEntry(
        id=memory.id,
        content=genai.Content(role=role, parts=[genai.Part(text=memory.content)]),
        author=author,
        timestamp=when.isoformat() if when else None,
        custom_metadata=metadata,
    )
