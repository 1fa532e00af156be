"""Servers other hub processes started are watched here too (issue 20: a process that dies
leaves no work stuck).

A server is watched by the process that started it (its exit is recorded as a failure), by
each process that started after it (``ServerManager.readopt``), and, through this, by every
process that looks: every ``every_s`` seconds each process reads the ready servers and
watches those it does not know yet (``ServerManager.watch_started_elsewhere``). So when the
process that started a server dies, the others still notice the server's exit, as they
still route to it (routes are in the database) and stop it when asked (by its recorded pid).
A spawn or stop a dead process left half done is taken up here too, once its lease expired.
Local-process servers only: a JupyterHub spawner's are found again from their state, where
one is asked about.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from events import errors, sql, tasks
from hub.servers import manager as servers

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.servers", "watch_others.sql")

CHECK_S = 5.0


class OtherServers:
    """Looks for ready servers this process does not watch, every ``every_s`` seconds
    (``async with`` or ``start``/``stop``)."""

    def __init__(self, pool: Any, manager: servers.ServerManager, every_s: float = CHECK_S):
        self.pool = pool
        self.manager = manager
        self.every_s = every_s
        self._tasks = tasks.TaskOwner("other processes' servers", logger=log)

    async def check(self) -> None:
        """Watch the ready servers this process does not know yet; take up the spawns and
        stops of processes no longer live (hub/servers/hub_processes.py)."""
        await self.watch_ready()
        with sql.translated():
            await self.manager.take_up_orphans()

    async def watch_ready(self) -> None:
        """Watch the ready servers this process does not know yet."""
        with sql.translated():
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(queries["ready_servers_everywhere"])
        for row in rows:
            self.manager.watch_started_elsewhere(row)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.check()
            except errors.DatabaseUnavailable as exc:
                log.warning("could not look for other hub processes' servers: %s", exc)

    def start(self) -> None:
        """Check every ``every_s`` seconds from now on."""
        self._tasks.start(self._run(), "watch other processes' servers")

    async def stop(self) -> None:
        """Stop checking."""
        await self._tasks.close()

    async def __aenter__(self) -> OtherServers:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
