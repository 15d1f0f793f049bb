"""``memoryd mcp``: serve the MCP tools over stdio (the default) or streamable HTTP."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options (the MCP SDK is imported only when it runs)."""
    parser.add_argument("--addr", default="localhost:50051", help="memoryd's host:port")
    parser.add_argument(
        "--api-key", default=None, help="the key the tools call with (default: MEMORYD_API_KEY)"
    )
    parser.add_argument("--tls", action="store_true", help="reach memoryd with TLS")
    parser.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio for a client that starts this process; http for streamable HTTP",
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP: the address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="HTTP: the port to listen on")
    parser.add_argument("--path", default="/mcp", help="HTTP: the endpoint's path")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Serve until stdin closes (stdio) or the process is interrupted (HTTP)."""
    try:
        from memoryd.integrations.mcp.server import build_server
    except ImportError as exc:
        print(f"memoryd mcp needs memoryd-client[mcp]: {exc}", file=sys.stderr)
        return 2
    server = build_server(
        args.addr, api_key=args.api_key or environ.get("MEMORYD_API_KEY"), tls=args.tls
    )
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run(
            "streamable-http", host=args.host, port=args.port, streamable_http_path=args.path
        )
    return 0
