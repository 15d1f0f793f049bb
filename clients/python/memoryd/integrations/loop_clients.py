"""One ``memoryd.AsyncClient`` per event loop, for adapters whose callers bring the loop.

A grpc.aio channel belongs to the loop it was made in, and frameworks (tests,
ASGI servers, ``asyncio.run`` per request) may run an adapter on several.
"""

from __future__ import annotations

import asyncio
import weakref

from memoryd._client.client import AsyncClient


class LoopClients:
    """Makes, per running loop, the client for ``target`` with ``api_key``."""

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        tls: bool = False,
        client: AsyncClient | None = None,
    ) -> None:
        self._target = target
        self._api_key = api_key
        self._tls = tls
        # A client the caller made is used as it is, on its own loop.
        self._given = client
        self._made: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> AsyncClient:
        """The client for the running loop."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        client = self._made.get(loop)
        if client is None:
            client = AsyncClient(self._target, api_key=self._api_key, tls=self._tls)
            self._made[loop] = client
        return client

    async def close(self) -> None:
        """Close the client made for the running loop, if any."""
        client = self._made.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()
