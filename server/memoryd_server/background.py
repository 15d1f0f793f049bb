"""Run a memoryd on its own event loop in a background thread.

For synchronous programs that host the server in-process: tests, benchmarks,
notebooks. ``serve`` is the entry point for a standalone server.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from opentelemetry.sdk.trace import TracerProvider

from memoryd_server.app import Memoryd
from memoryd_server.config import Settings

T = TypeVar("T")


class BackgroundServer:
    """A started memoryd; ``addr`` is where it listens. Call ``stop()`` when done."""

    def __init__(
        self,
        settings: Settings,
        *,
        start_timeout: float = 120.0,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.app = Memoryd(settings, tracer_provider)
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="memoryd-loop", daemon=True
        )
        self._thread.start()
        try:
            self.port: int = self.run(self.app.start(), timeout=start_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def addr(self) -> str:
        """``host:port`` of the listening server."""
        host = self.settings.addr.rpartition(":")[0]
        return f"{host}:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace: float = 1.0) -> None:
        """Shut the server down in order and end its thread."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            self.run(self.app.stop(grace))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()
