"""memoryd as a LangGraph store: ``MemorydStore`` (install ``memoryd-client[langgraph]``)."""

from memoryd.integrations.langgraph.store import MemorydStore

__all__ = ["MemorydStore"]
