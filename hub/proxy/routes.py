"""Keeps the proxies' routing tables in line with the routes read model.

The table is read from the database (ready servers, services with a URL) whenever a server
becomes ready or goes, and every ``interval`` seconds in case another hub process changed it
or a proxy lost its routes; each sink (the built-in proxy, the CHP adapter) gets the whole
table each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from events import sql
from hub.proxy import table

queries = sql.Queries(__package__ or "hub.proxy", "routes.sql")
log = logging.getLogger(__name__)

Sink = Callable[[list[table.Route]], Awaitable[None]]


async def load(pool: Any) -> list[table.Route]:
    """The routing table as the routes projection and the services have it."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(queries["routes"])
    return table.routes_from_rows(rows)


class RouteFollower:
    """Pushes the routing table to its sinks on change and periodically (``start``/``stop``)."""

    def __init__(self, pool: Any, sinks: list[Sink], interval: float) -> None:
        self.pool = pool
        self.sinks = sinks
        self.interval = interval
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Load the table and hand it to every sink now; a failing sink is logged, not raised."""
        async with self._lock:
            table = await load(self.pool)
            for sink in self.sinks:
                try:
                    await sink(table)
                except Exception:
                    log.exception("could not update a proxy's routes")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except OSError:
                log.exception("could not read the routes")

    async def start(self) -> None:
        """Push the table once, then keep it in line every ``interval`` seconds."""
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="route follower")

    async def stop(self) -> None:
        """Cancel the periodic check."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
