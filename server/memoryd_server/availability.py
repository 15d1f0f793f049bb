"""Whether the database answers, and a pool that fails at once while it does not.

psycopg_pool alone makes an outage slow on both ends: a call waits the whole
pool timeout for a connection that cannot be made, and once the database is
back the pool's reconnection back-off (1, 2, 4, ... s) delays the first
connection by seconds. Here a failed connection makes the database "down"
after one direct connection attempt confirms it; calls are then refused with
UNAVAILABLE without touching the pool, and the health watcher probes with
direct connections until one succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from memoryd_server import metrics
from memoryd_server.errors import Unavailable

log = structlog.get_logger("memoryd")

# A probe's whole budget: a local database answers in milliseconds, and the
# promise is UNAVAILABLE within a second of an outage.
PROBE_SECONDS = 0.8
# How long a call waits for a pooled connection before the database is probed:
# past this, an empty pool may mean no connection can be made.
WAIT_BEFORE_PROBE_SECONDS = 0.3
# A pooled connection idle this long is checked (a round trip) before use. One
# returned more recently worked a moment ago: for it to be broken, the database
# must have died within that moment, and the call fails as calls in an outage do.
CHECK_IDLE_SECONDS = 1.0
DOWN_MESSAGE = "the database is unavailable; retry later"


class Availability:
    """The shared "database down" state of one database URL."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.down = False
        self._down_since = 0.0
        self._went_down = asyncio.Event()
        self._probing: asyncio.Task[bool] | None = None

    def raise_if_down(self) -> None:
        if self.down:
            raise Unavailable(DOWN_MESSAGE)

    async def probe(self) -> bool:
        """Whether a new connection answers now; updates the state. One at a time."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._probe(), name="memoryd-db-probe")
        # Shielded: a cancelled caller must not cancel the probe others await.
        return await asyncio.shield(self._probing)

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                async with conn:
                    await conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means down
            self._mark_down(exc)
            return False
        return True

    async def wait_down(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the database goes down meanwhile."""
        if self.down:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._went_down.wait()

    def mark_up(self) -> None:
        if self.down:
            self.down = False
            self._went_down.clear()
            log.info("database_up", down_seconds=round(time.monotonic() - self._down_since, 3))

    def _mark_down(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            self._down_since = time.monotonic()
            self._went_down.set()
            text = str(exc).strip()
            log.warning(
                "database_down",
                cause=type(exc).__name__,
                detail=text.splitlines()[0] if text else "",
            )

    async def unless_down(self, getter: Any, release: Any) -> Any:
        """Await ``getter`` (a pool checkout), failing as soon as the database is down.

        A checkout that waits long probes the database, so a call queued for a
        connection that cannot be made fails within a second, not at the pool timeout.
        ``release`` gives back a connection the checkout got for a caller that
        went away meanwhile.
        """
        task = asyncio.ensure_future(getter)
        down = asyncio.ensure_future(self._went_down.wait())
        try:
            done, _ = await asyncio.wait({task, down}, timeout=WAIT_BEFORE_PROBE_SECONDS)
            if not done:
                asyncio.ensure_future(self.probe())  # noqa: RUF006 - held in self._probing
                await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # psycopg_pool returns a connection handed to a cancelled waiter; one
            # the checkout already got is ours to return (the caller's deadline
            # passed as it arrived): dropped, it stayed counted as in use, and
            # under overload the pool ran out of connections for good.
            if task.done() and not task.cancelled() and task.exception() is None:
                await release(task.result())
            task.cancel()
            raise
        finally:
            down.cancel()
        if task.done():
            return task.result()
        task.cancel()
        raise Unavailable(DOWN_MESSAGE)


class Pool(AsyncConnectionPool):
    """A connection pool that refuses checkouts while its database is down.

    Connections idle for CHECK_IDLE_SECONDS or more are checked on checkout
    here rather than by the pool's own ``check``, which retries a broken one
    with a back-off of 1, 2, 4, ... s; a busy server's connections, returned
    moments ago, skip that round trip (a database that died since fails the
    call UNAVAILABLE, as any call during an outage). A broken connection (the
    database restarted) costs one probe: if the database answers, the idle
    connections are checked and the checkout is retried once; if not, the
    call fails UNAVAILABLE at once.
    """

    def __init__(self, *args: Any, availability: Availability, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.availability = availability
        self._returned: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    async def putconn(self, conn: Any) -> None:
        """Return ``conn``, to the end even if the caller is cancelled meanwhile.

        Returning a connection may roll back its transaction (a round trip). A
        call cancelled twice (its deadline, then gRPC's reset of the stream)
        was cancelled again in there, and its connection never went back: under
        overload the pool lost all of them and answered UNAVAILABLE for good.
        """
        self._returned[conn] = time.monotonic()
        await asyncio.shield(super().putconn(conn))

    async def getconn(self, timeout: float | None = None, *, check: bool = True) -> Any:  # noqa: ASYNC109 - psycopg's signature
        """A connection; with ``check`` False, unchecked (the caller retries if broken)."""
        self.availability.raise_if_down()
        started = time.perf_counter()
        for attempt in range(2):
            if self.get_stats().get("pool_available", 0):
                conn = await super().getconn(timeout)
            else:
                conn = await self.availability.unless_down(super().getconn(timeout), self.putconn)
            idle = time.monotonic() - self._returned.get(conn, 0.0)
            if not check or idle < CHECK_IDLE_SECONDS:
                metrics.checkout(self.name, time.perf_counter() - started)
                return conn
            try:
                await self.check_connection(conn)
            except asyncio.CancelledError:
                # The call's deadline passed during the check: without this the
                # connection never went back, and under overload (deadlines
                # passing by the hundred) the pool lost every connection and
                # answered UNAVAILABLE for good.
                await self.putconn(conn)
                raise
            except Exception:  # noqa: BLE001 - broken: putconn discards it
                await self.putconn(conn)
                if attempt or not await self.availability.probe():
                    raise Unavailable(DOWN_MESSAGE) from None
                await self.check()  # drop the other broken idle connections
            else:
                metrics.checkout(self.name, time.perf_counter() - started)
                return conn
        raise AssertionError("unreachable")
