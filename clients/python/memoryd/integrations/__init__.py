"""Adapters that plug memoryd into agent frameworks: LangGraph, Google ADK, MCP (extras)."""
