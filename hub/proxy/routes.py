"""Keeps the proxies' routing tables in line with the routes read model.

The table is read from the database (ready servers, services with a URL) whenever a server
becomes ready or goes, and every ``interval`` seconds in case another hub process changed it
or a proxy lost its routes; each sink (the built-in proxy, the CHP adapter) gets the whole
table each time. When the database does not answer, the follower logs it and tries again
sooner, backing off up to ``interval``; it never stops following until ``stop``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from events import errors, sql, tasks
from hub.proxy import table

queries = sql.Queries(__package__ or "hub.proxy", "routes.sql")
log = logging.getLogger(__name__)

Sink = Callable[[list[table.Route]], Awaitable[None]]


# After a failed read, the next comes this soon, then twice as late each time (up to interval).
RETRY_FIRST_S = 0.05


async def load(pool: Any) -> list[table.Route]:
    """The routing table as the routes projection and the services have it
    (``DatabaseUnavailable`` when it cannot be read)."""
    with sql.translated():
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
        self._tasks = tasks.TaskOwner("route follower", logger=log)
        self.failures = 0  # reads of the table that failed in a row (0: the last one worked)

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
        wait = self.interval
        while True:
            await asyncio.sleep(wait)
            try:
                await self.refresh()
            except errors.DatabaseUnavailable as exc:
                self.failures += 1
                wait = min(RETRY_FIRST_S * 2 ** (self.failures - 1), self.interval)
                log.warning("could not read the routes (%s); retrying in %.2fs", exc, wait)
            else:
                if self.failures:
                    log.info("the routes are read again after %d failures", self.failures)
                self.failures, wait = 0, self.interval

    async def start(self) -> None:
        """Push the table once, then keep it in line every ``interval`` seconds."""
        await self.refresh()
        self._tasks.start(self._run(), "route follower")

    async def stop(self) -> None:
        """Cancel the periodic check."""
        await self._tasks.close()
