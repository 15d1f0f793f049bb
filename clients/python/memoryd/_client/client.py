"""``Client`` and ``AsyncClient``: one channel each, with conversations, memories, documents
and admin."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from memoryd._client.admin import Admin
from memoryd._client.admin_calls import RPC_METHODS as ADMIN_RPCS
from memoryd._client.async_admin import AsyncAdmin
from memoryd._client.async_conversations import AsyncConversations
from memoryd._client.async_documents import AsyncDocuments
from memoryd._client.async_memories import AsyncMemories
from memoryd._client.conversation_calls import RPC_METHODS as CONVERSATION_RPCS
from memoryd._client.conversations import Conversations
from memoryd._client.document_calls import RPC_METHODS as DOCUMENT_RPCS
from memoryd._client.documents import Documents
from memoryd._client.memories import Memories
from memoryd._client.memory_calls import RPC_METHODS as MEMORY_RPCS
from memoryd._client.retry import RetryPolicy
from memoryd._client.transport import (
    AsyncTransport,
    SyncTransport,
    call_metadata,
    channel_credentials,
    channel_limits,
)

# Full service name -> (namespace attribute, {RPC name: method name}).
RPC_METHODS: dict[str, tuple[str, dict[str, str]]] = {
    "memoryd.v1.ConversationService": ("conversations", CONVERSATION_RPCS),
    "memoryd.v1.MemoryService": ("memories", MEMORY_RPCS),
    "memoryd.v1.DocumentService": ("documents", DOCUMENT_RPCS),
    "memoryd.v1.AdminService": ("admin", ADMIN_RPCS),
}

ChannelOptions = Sequence[tuple[str, Any]]


class Client:
    """A synchronous memoryd client on one ``grpc.Channel``; close it (or use ``with``).

    ``tls`` is False (plaintext), True (TLS with the system's roots) or
    ``grpc.ChannelCredentials``. ``api_key`` is sent as ``authorization:
    Bearer <key>`` on every call. ``default_timeout`` is each call's total
    time budget in seconds, retries included, unless a call passes ``timeout=``.
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        default_timeout: float = 10.0,
        max_attempts: int = 4,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        backoff_multiplier: float = 2.0,
        channel_options: ChannelOptions = (),
    ) -> None:
        policy = RetryPolicy(max_attempts, initial_backoff, max_backoff, backoff_multiplier)
        credentials = channel_credentials(tls)
        options = channel_limits(channel_options)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options)
        transport = SyncTransport(
            self._channel,
            metadata=call_metadata(api_key),
            default_timeout=default_timeout,
            policy=policy,
        )
        self.conversations = Conversations(transport)
        self.memories = Memories(transport)
        self.documents = Documents(transport)
        self.admin = Admin(transport)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """An asyncio memoryd client on one ``grpc.aio.Channel``; create it inside the loop.

    Takes the same options as ``Client``; close it with ``await client.close()``
    or use ``async with``.
    """

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        default_timeout: float = 10.0,
        max_attempts: int = 4,
        initial_backoff: float = 0.1,
        max_backoff: float = 5.0,
        backoff_multiplier: float = 2.0,
        channel_options: ChannelOptions = (),
    ) -> None:
        policy = RetryPolicy(max_attempts, initial_backoff, max_backoff, backoff_multiplier)
        credentials = channel_credentials(tls)
        options = channel_limits(channel_options)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(target, options)
        else:
            self._channel = grpc.aio.secure_channel(target, credentials, options)
        transport = AsyncTransport(
            self._channel,
            metadata=call_metadata(api_key),
            default_timeout=default_timeout,
            policy=policy,
        )
        self.conversations = AsyncConversations(transport)
        self.memories = AsyncMemories(transport)
        self.documents = AsyncDocuments(transport)
        self.admin = AsyncAdmin(transport)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
