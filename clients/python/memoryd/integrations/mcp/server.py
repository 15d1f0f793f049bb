"""The MCP server behind ``memoryd mcp``: six tools, each one call of memoryd's gRPC API.

The tools run with the API key the server was started with, so an agent sees
exactly its tenant and its key's role. Their descriptions are written for the
model that reads them. memoryd's errors come back as tool errors carrying the
server's message (``InvalidArgument`` says which field), never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from memoryd._client import types as t
from memoryd._client.errors import MemorydError
from memoryd.integrations.loop_clients import LoopClients

P = ParamSpec("P")
R = TypeVar("R")

INSTRUCTIONS = (
    "Long-term memory and conversation history for this agent, kept by memoryd. "
    "Call recall before answering anything that may depend on what the user said or "
    "what you learned earlier; call remember when you learn a durable fact, preference "
    "or decision. Namespaces are paths such as ['my-app', 'user-42', 'preferences']."
)


def _tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn memoryd's typed errors into tool errors the model can read and act on."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except MemorydError as exc:
            raise ToolError(f"{type(exc).__name__}: {exc}") from exc

    return call


def _memory(memory: t.Memory) -> dict[str, Any]:
    return {
        "id": memory.id,
        "namespace": list(memory.namespace),
        "key": memory.key,
        "content": memory.content,
        "tags": list(memory.tags),
        "importance": memory.importance,
        "updated": memory.update_time.isoformat() if memory.update_time else None,
    }


def build_server(target: str, *, api_key: str | None = None, tls: bool = False) -> MCPServer:
    """An MCP server whose tools call the memoryd at ``target`` with ``api_key``."""
    clients = LoopClients(target, api_key=api_key, tls=tls)
    server: MCPServer = MCPServer("memoryd", instructions=INSTRUCTIONS)

    @server.tool()
    @_tool_errors
    async def remember(
        content: str,
        namespace: list[str],
        key: str = "",
        tags: list[str] | None = None,
        importance: int = 0,
    ) -> dict[str, Any]:
        """Store a durable fact, preference or decision so it can be recalled later.

        Write `content` as one self-contained sentence ("Ada prefers a window seat on
        long flights"), not a fragment of dialogue. `namespace` is a path of 1-16
        labels that scopes it, for example ["travel-agent", "user-42",
        "preferences"]. Give a short `key` (such as "seat") to make this the one
        memory for that topic: remembering the same namespace and key again replaces
        it, keeping the old version in history. `importance` runs from 1 (trivial)
        to 10 (vital); 0 means the default, 5. Returns the stored memory and
        whether an existing one was replaced.
        """
        memory = t.NewMemory(
            content=content,
            namespace=namespace,
            key=key,
            tags=tags or (),
            importance=importance,
        )
        result = await clients.get().memories.create(memory, upsert=bool(key))
        return {"memory": _memory(result.memory), "replaced": result.updated}

    @server.tool()
    @_tool_errors
    async def recall(
        query: str, namespace_prefix: list[str] | None = None, limit: int = 5
    ) -> list[dict[str, Any]]:
        """Search long-term memory with a question or a few words; best matches first.

        Matches by meaning and by shared words, so ask naturally ("Where does the
        user like to sit on a plane?"). `namespace_prefix` keeps the search inside a
        scope such as ["travel-agent", "user-42"]; leave it empty to search every
        namespace. `limit` is 1 to 100. Each result has the memory's id (for
        forget), its content and a relevance score.
        """
        hits = await clients.get().memories.search(
            query_text=query,
            filter=t.MemoryFilter(namespace_prefix=namespace_prefix or ()),
            top_k=limit,
        )
        return [{**_memory(hit.memory), "score": round(hit.score, 4)} for hit in hits]

    @server.tool()
    @_tool_errors
    async def forget(
        memory_id: str = "", namespace: list[str] | None = None, key: str = ""
    ) -> dict[str, Any]:
        """Forget a memory that is wrong or no longer true.

        Name it by `memory_id` (from recall), or by the `namespace` and `key` it was
        remembered with. It stops being recalled; memoryd keeps an audit record.
        """
        memories = clients.get().memories
        if not memory_id:
            memory_id = (await memories.get(namespace=namespace or (), key=key)).id
        archived = await memories.delete(memory_id, reason="forgotten through MCP")
        return {"forgotten": memory_id, "status": archived.status if archived else "purged"}

    @server.tool()
    @_tool_errors
    async def list_namespaces(
        prefix: list[str] | None = None, max_depth: int = 0
    ) -> list[list[str]]:
        """List the namespaces that hold memories, to see how memory is organised.

        `prefix` narrows to one scope (["travel-agent"]); `max_depth` cuts paths to
        that many labels (0: whole paths). At most 1,000 are returned.
        """
        page = await clients.get().memories.list_namespaces(
            prefix=prefix or (), max_depth=max_depth, page_size=1000
        )
        return [list(ns) for ns in page.items]

    @server.tool()
    @_tool_errors
    async def append_turn(
        conversation_id: str,
        role: str,
        content: str,
        user_id: str = "",
        token_count: int = 0,
    ) -> dict[str, Any]:
        """Record one turn of a conversation, creating the conversation on first use.

        `conversation_id` names the session (any stable string, such as
        "session-42"); `role` is "user", "assistant", "system" or "tool";
        `token_count` is the turn's size in tokens if known (it budgets the context
        window). Returns the turn's sequence number and the conversation's length.
        """
        if role not in ("user", "assistant", "system", "tool"):
            raise ToolError("role must be one of user, assistant, system, tool")
        result = await clients.get().conversations.append(
            conversation_id,
            [t.NewMessage(role, content, token_count=token_count)],  # type: ignore[arg-type]
            create_if_missing=True,
            user_id=user_id,
        )
        return {
            "seq": result.messages[0].seq,
            "message_count": result.conversation.message_count,
        }

    @server.tool()
    @_tool_errors
    async def context_window(conversation_id: str, max_tokens: int = 4000) -> dict[str, Any]:
        """Read the most recent turns of a conversation that fit `max_tokens`, oldest first.

        Use it to catch up on a session before replying. `summary` covers what
        was left out, and `omitted_message_count` says how many turns that is.
        """
        window = await clients.get().conversations.context_window(
            conversation_id, max_tokens=max_tokens
        )
        return {
            "messages": [
                {"seq": m.seq, "role": m.role, "content": m.content} for m in window.messages
            ],
            "summary": window.summary,
            "total_tokens": window.total_tokens,
            "omitted_message_count": window.omitted_message_count,
        }

    return server
