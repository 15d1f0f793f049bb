"""memoryd as Google ADK's session and memory services (install ``memoryd-client[adk]``)."""

from memoryd.integrations.adk.memory import MemorydMemoryService
from memoryd.integrations.adk.sessions import MemorydSessionService

__all__ = ["MemorydMemoryService", "MemorydSessionService"]
