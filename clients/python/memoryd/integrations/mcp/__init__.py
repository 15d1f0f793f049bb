"""memoryd as an MCP server for tool-calling agents (install ``memoryd-client[mcp]``)."""

from memoryd.integrations.mcp.server import build_server

__all__ = ["build_server"]
