"""Readoption: the servers the log says are starting, running or stopping, looked at when a
hub process starts (``readopt``) and, for those a dead hub process left half done, by the
periodic look of hub/servers/watch_others.py (``take_up_orphans``): a process that still
answers is adopted, anything else is killed and recorded as failed, and a stop is finished.
A spawn or stop another live hub process runs is left to it (hub/servers/hub_processes.py).

Here too: finding a recorded server's process again (``_adopt``), giving up a spawn or stop
another process took over (``_lost``), and forgetting an earlier spawn overtaken (``_forget``).

A part of ``ServerManager`` (hub/servers/manager.py), kept apart for its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from events import models, sql
from events.catalog import servers as server_events
from events.store import EventStore
from hub.servers import (
    config,
    hub_processes,
    local_spawner,
    orphans,
    records,
    rules,
    running,
    spawn_progress,
)
from hub.servers import spawner as spawners

log = logging.getLogger("hub.servers.manager")
queries = sql.Queries("hub.servers", "servers.sql")

# After a hub restart, a server recorded as ready gets this long to answer again.
READOPT_CHECK_S = 3.0


class Readoption:
    """``ServerManager``'s readoption (its state and steps declared here for the checker)."""

    store: EventStore
    settings: config.Settings
    spawner: spawners.Spawner  # the manager's
    adapted: bool
    hubs: hub_processes.Registry | None
    _live: dict[tuple[UUID, str], running.Live]

    if TYPE_CHECKING:

        def _lock(self, key: tuple[UUID, str]) -> contextlib.AbstractAsyncContextManager[None]: ...
        def _own(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...
        async def _fail(
            self,
            live: running.Live,
            reason: str,
            kind: str,
            meta: models.Metadata | None,
            *,
            if_running: bool = False,
            claimed: bool = False,
        ) -> bool: ...
        async def _finish_stop(
            self, live: running.Live, remove: bool, meta: models.Metadata
        ) -> None: ...
        async def _wait_ready(
            self, url: str, process: spawners.ServerProcess, deadline: float, log_path: Path
        ) -> None: ...
        async def _append(
            self, live: running.Live, events: list[models.Event], meta: models.Metadata | None
        ) -> None: ...
        async def _routes_changed(self) -> None: ...
        async def _watch(self, live: running.Live) -> None: ...

    async def readopt(self) -> None:
        """Adopt the servers the log says run whose process still answers; fail the others.
        A spawn or stop that another live hub process runs is left to it (hub_processes)."""
        async with self.store.pool.acquire() as conn:
            # Claims first: the rows read after them are what this process acts on.
            taken = None if self.hubs is None else await self.hubs.take_orphaned(conn)
            rows = await conn.fetch(queries["live_servers"])
        for row in rows:
            key = (row["user_id"], row["server_name"])
            if taken is None or row["state"] == "ready" or key in taken:
                await self._readopt(row)

    async def take_up_orphans(self) -> None:
        """Fail or finish the spawns and stops whose hub process is no longer live (it died:
        its lease expired), as readoption does; each taken up by one process."""
        if self.hubs is None:
            return
        async with self.store.pool.acquire() as conn:
            taken = await self.hubs.take_orphaned(conn)
            rows = await conn.fetch(queries["live_servers"]) if taken else []
        for row in rows:
            key = (row["user_id"], row["server_name"])
            if key not in taken or row["state"] == "ready":
                continue
            async with self._lock(key):
                watched = self._live.get(key)
                if watched is not None and not watched.watch_only:
                    continue  # this process's own (its claim was lost while it stalled)
                if watched is not None:
                    del self._live[key]
                    if watched.watcher is not None:
                        watched.watcher.cancel()
                log.info("taking up %s/%s: its hub process is gone", row["user_name"], key[1])
                await self._readopt(row)

    async def _readopt(self, row: Any) -> None:
        """Adopt one server the log says runs if its process answers; else fail it."""
        live = running.Live(
            row["user_id"], row["user_name"], row["server_name"], token_id=row["token_id"]
        )
        live.process = await self._adopt(row)
        state = row["state"]
        if state == "stopping":
            self._live[live.key] = live
            live.stopping = True
            self._own(self._finish_stop(live, False, models.Metadata()), f"stop {live.user}")
            return
        if live.process is None or state == "spawning":  # _fail stops an unrecorded one
            gone = "the hub restarted and the server's process was gone"
            early = "the hub stopped before the server's process was " + (
                "recorded; it was stopped" if live.process else "started"
            )
            reason = early if state == "spawning" else gone
            # a spawn taken up is this process's claim; a ready server's is nobody's
            await self._fail(live, reason, "system", None, claimed=state != "ready")
            return
        self._live[live.key] = live
        live.spawn_task = self._own(
            self._resume(live, row["url"], state), f"readopt {live.user}/{live.server_name}"
        )

    async def _resume(self, live: running.Live, url: str, state: str) -> None:
        assert live.process is not None
        loop = asyncio.get_running_loop()
        wait = self.settings.start_timeout if state == "started" else READOPT_CHECK_S
        log_path = local_spawner.log_path(self.settings.data_dir, live.user, live.server_name)
        try:
            await self._wait_ready(url, live.process, loop.time() + wait, log_path)
        except spawners.SpawnError as exc:
            reason = f"after the hub restarted: {exc.message}"
            await self._fail(live, reason, "system", None, claimed=state == "started")
            return
        async with self._lock(live.key):
            if live.stopping:
                return
            if state == "started":
                ready = server_events.ServerReady(**running.ids(live), url=url)
                try:
                    await self._append(live, [ready], None)
                except hub_processes.ClaimLost as exc:
                    await self._lost(live, exc)
                    return
        log.info("re-adopted %s/%s (pid %s)", live.user, live.server_name, live.process.pid)
        await self._routes_changed()
        live.finish("ready")
        live.watcher = self._own(self._watch(live), f"watch {live.user}/{live.server_name}")

    async def _adopt(self, row: Any) -> spawners.ServerProcess | None:
        """A recorded server's process if it runs: by its state (JupyterHub's spawners), or pid."""
        if not isinstance(self.spawner, spawners.ResumingSpawner):
            if not row["pid"]:  # started, perhaps, but never recorded: found by its token
                return await orphans.unrecorded(self.store, row["token_id"])
            return self.spawner.adopt(row["pid"])
        user_id, user, name = row["user_id"], row["user_name"], row["server_name"]
        state = await records.spawner_state(self.store, user_id, name)
        return await self.spawner.resume(
            user_id=user_id, user=user, server_name=name, url=row["url"] or "", state=state
        )

    async def _lost(self, live: running.Live, exc: hub_processes.ClaimLost) -> None:
        """Give up a spawn or stop another hub process took over: record nothing more; stop
        what this process started only if the spawn ended elsewhere, or if a newer spawn's
        server cannot be the same (this process's own child); never one another process
        adopted. Whoever waits here learns how it ended as far as the log says."""
        log.warning("%s (%s): this process records nothing more of it", exc.message, exc.verdict)
        process = live.process
        ended_here = exc.verdict == "ended" or (exc.verdict == "superseded" and not self.adapted)
        if ended_here and process is not None and process.exit_code() is None:
            await process.stop(0.5)
        if live.stopping:
            live.report(dict(spawn_progress.STOPPED))
            live.finish("stopped")
        elif exc.verdict == "adopted" and exc.state == "ready":
            live.report(spawn_progress.ready_event(rules.prefix(live.user, live.server_name)))
            live.finish("ready")
        else:
            live.report(spawn_progress.failed_event(exc.message, "system"))
            live.finish("failed")
        if self._live.get(live.key) is live:
            del self._live[live.key]

    def _forget(self, live: running.Live) -> None:
        """Drop what this process knew of an earlier spawn of a server: its watcher stops (it
        would record the newer one's end); a spawn task left meets its fence (``_lost``)."""
        if live.watcher is not None:
            live.watcher.cancel()
        if self._live.get(live.key) is live:
            del self._live[live.key]
