"""MemorydMemoryService against a real memoryd: sessions remembered, recalled by meaning.

ADK ships no test suite for memory services that a durable one could reuse;
these cases follow what its in-memory service promises (add a session, search
by a query, per app and user), plus what memoryd adds: no repeats when a
session is added again, custom metadata kept, deletion scoped to the user.
"""

from __future__ import annotations

import asyncio

from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types

from memoryd.integrations.adk import MemorydMemoryService, MemorydSessionService
from tests.conftest import ServerThread, TenantKeys
from tests.integrations.test_adk import text_event


def test_memory_service_recalls_sessions(
    embedding_memoryd: ServerThread, embed_tenant: TenantKeys
) -> None:
    async def body() -> None:
        sessions = MemorydSessionService(embedding_memoryd.addr, api_key=embed_tenant.member)
        memory = MemorydMemoryService(embedding_memoryd.addr, api_key=embed_tenant.member)
        session = await sessions.create_session(app_name="travel", user_id="u7")
        for text, author in [
            ("I always want a window seat on long flights", "user"),
            ("Noted: window seats", "travel_agent"),
            ("My dog Biscuit stays with my sister when I travel", "user"),
        ]:
            await sessions.append_event(session, text_event(text, author=author))
        await memory.add_session_to_memory(session)
        await memory.add_session_to_memory(session)  # again: updated, not repeated

        found = await memory.search_memory(
            app_name="travel", user_id="u7", query="seat preference on planes"
        )
        texts = [m.content.parts[0].text for m in found.memories]  # type: ignore[index]
        assert texts[0] == "I always want a window seat on long flights"
        assert len(texts) == len(set(texts)) == 3
        assert found.memories[0].author == "user"
        assert found.memories[0].timestamp is not None
        assert (
            await memory.search_memory(app_name="travel", user_id="u8", query="seat")
        ).memories == []
        assert (
            await memory.search_memory(app_name="other", user_id="u7", query="seat")
        ).memories == []

        await memory.add_events_to_memory(
            app_name="travel",
            user_id="u7",
            session_id=session.id,
            events=[text_event("Allergic to peanuts, no nuts in meals")],
            custom_metadata={"source": "delta"},
        )
        await memory.add_memory(
            app_name="travel",
            user_id="u7",
            memories=[
                MemoryEntry(
                    id="home",
                    content=types.Content(parts=[types.Part(text="Lives in Porto, Portugal")]),
                    author="user",
                    custom_metadata={"confidence": "high"},
                )
            ],
        )
        hits = (
            await memory.search_memory(app_name="travel", user_id="u7", query="food allergy")
        ).memories
        assert hits[0].content.parts[0].text == "Allergic to peanuts, no nuts in meals"  # type: ignore[index]
        assert hits[0].custom_metadata["source"] == "delta"
        hits = (
            await memory.search_memory(app_name="travel", user_id="u7", query="home city")
        ).memories
        assert hits[0].custom_metadata["confidence"] == "high"
        await memory.delete_memory(
            app_name="travel", user_id="u8", memory_id=hits[0].id
        )  # not theirs
        await memory.delete_memory(app_name="travel", user_id="u7", memory_id=hits[0].id)
        hits = (
            await memory.search_memory(app_name="travel", user_id="u7", query="home city")
        ).memories
        assert all("Porto" not in m.content.parts[0].text for m in hits)  # type: ignore[index, operator]

    asyncio.run(body())
