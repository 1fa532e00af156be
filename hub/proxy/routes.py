"""Keeps the proxies' routing tables in line with the routes read model.

The table is read from the database (ready servers, services with a URL) whenever a server
becomes ready or goes, whenever the event log wakes this process (``wakeup``: another hub
process appended events, which may have changed a route: a server it spawned became ready),
and every ``interval`` seconds in case a proxy lost its routes; each sink (the built-in
proxy, the CHP adapter) gets the whole table each time, except after a wake-up that changed
nothing. Wake-ups are followed at most every ``WAKE_GAP_S``, so a busy log costs a few small
reads a second, not one per append. When the database does not answer, the follower logs
it and tries again sooner, backing off up to ``interval``; it never stops following until
``stop``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from events import errors, notify, sql, tasks
from hub.proxy import table

queries = sql.Queries(__package__ or "hub.proxy", "routes.sql")
log = logging.getLogger(__name__)

Sink = Callable[[list[table.Route]], Awaitable[None]]


# After a failed read, the next comes this soon, then twice as late each time (up to interval).
RETRY_FIRST_S = 0.05
# At most this often, a wake-up of the event log is followed by a read of the table.
WAKE_GAP_S = 0.1


async def load(pool: Any) -> list[table.Route]:
    """The routing table as the routes projection and the services have it
    (``DatabaseUnavailable`` when it cannot be read)."""
    with sql.translated():
        async with pool.acquire() as conn:
            rows = await conn.fetch(queries["routes"])
    return table.routes_from_rows(rows)


class RouteFollower:
    """Pushes the routing table to its sinks on change and periodically (``start``/``stop``)."""

    def __init__(
        self,
        pool: Any,
        sinks: list[Sink],
        interval: float,
        *,
        wakeup: notify.Wakeup | None = None,
    ) -> None:
        self.pool = pool
        self.sinks = sinks
        self.interval = interval
        self.wakeup = wakeup
        self._pushed: list[table.Route] | None = None
        self._lock = asyncio.Lock()
        self._tasks = tasks.TaskOwner("route follower", logger=log)
        self.failures = 0  # reads of the table that failed in a row (0: the last one worked)

    async def refresh(self, *, unless_unchanged: bool = False) -> None:
        """Load the table and hand it to every sink now (``unless_unchanged``: only if it
        differs from the last one handed over); a failing sink is logged, not raised."""
        async with self._lock:
            table = await load(self.pool)
            if unless_unchanged and table == self._pushed:
                return
            self._pushed = table
            for sink in self.sinks:
                try:
                    await sink(table)
                except Exception:
                    log.exception("could not update a proxy's routes")

    async def _run(self, token: asyncio.Event | None) -> None:
        # ``token``: the log's wake-up edge taken before the last read, so that an append
        # between that read and the wait is not missed.
        wait = self.interval
        loop = asyncio.get_running_loop()
        due = loop.time() + wait
        while True:
            woken = False
            if self.wakeup is None or token is None:
                await asyncio.sleep(wait)
            else:
                woken = await notify.Wakeup.wait(token, max(due - loop.time(), 0))
                if woken:
                    await asyncio.sleep(WAKE_GAP_S)  # and the appends that come with it
                token = self.wakeup.token()
            try:
                await self.refresh(unless_unchanged=woken)
            except errors.DatabaseUnavailable as exc:
                self.failures += 1
                wait = min(RETRY_FIRST_S * 2 ** (self.failures - 1), self.interval)
                log.warning("could not read the routes (%s); retrying in %.2fs", exc, wait)
            else:
                if self.failures:
                    log.info("the routes are read again after %d failures", self.failures)
                self.failures, wait = 0, self.interval
            if not woken or self.failures:  # the periodic check (or a retry) is due anew
                due = loop.time() + wait

    async def start(self) -> None:
        """Push the table once, then keep it in line: on wake-ups of the log, and every
        ``interval`` seconds."""
        token = self.wakeup.token() if self.wakeup is not None else None
        await self.refresh()
        self._tasks.start(self._run(token), "route follower")

    async def stop(self) -> None:
        """Cancel the periodic check."""
        await self._tasks.close()
