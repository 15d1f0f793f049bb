"""A Unix-socket proxy in front of PostgreSQL that counts client/server round trips.

A round trip is one turn of the conversation: the client sends (one or more
writes) and then the server answers. Pipelined statements sent in one go and
answered in one go count once; a BEGIN, a query and a COMMIT each waited for
count three times. It runs on its own thread, so a synchronous test can point
an in-process server at it.
"""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from pathlib import Path


class RoundTripProxy:
    """Listens beside the database's socket in ``directory``; ``uri`` leads through it."""

    def __init__(self, uri: str, directory: Path, *, ignore_application: str = "") -> None:
        parts = urllib.parse.urlsplit(uri)
        query = dict(urllib.parse.parse_qsl(parts.query))
        port = query.get("port") or str(parts.port or 5432)
        self._target = f"{query['host']}/.s.PGSQL.{port}"
        self._listen = directory / f".s.PGSQL.{port}"
        query["host"] = str(directory)
        self.uri = parts._replace(query=urllib.parse.urlencode(query)).geturl()
        self.round_trips = 0
        # Connections that announce this application_name are relayed, not counted.
        self._ignored = ignore_application.encode()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roundtrip-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_unix_server(self._serve, path=str(self._listen))
        )
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self._target)
        # True once the server has answered since the client last sent.
        answered = [True]
        # Decided by the client's first message (the startup packet).
        counted: list[bool] = []

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if up and not counted:
                        counted.append(not self._announces_ignored(data))
                    if up and answered[0] and counted[0]:
                        self.round_trips += 1
                    answered[0] = not up
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(
                pump(reader, up_writer, up=True), pump(up_reader, writer, up=False)
            )
        finally:
            writer.close()
            up_writer.close()

    def _announces_ignored(self, startup: bytes) -> bool:
        """Whether a startup packet's parameters name the ignored application."""
        if not self._ignored:
            return False
        words = startup[8 : int.from_bytes(startup[:4], "big")].split(b"\0")
        parameters = dict(zip(words[::2], words[1::2], strict=False))
        return parameters.get(b"application_name") == self._ignored

    def count(self) -> int:
        """Round trips so far, across every connection."""
        return self.round_trips

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def close(self) -> None:
        """Stop relaying (the server using it must be stopped first) and end the thread."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
