"""Single-user servers: decide each transition, record it as events, and drive the spawner.

``ServerManager`` owns every server task of this hub process (spawns, readiness checks,
watchers of running servers, stops), and cancels them on shutdown. Each transition is an
event on the server's stream (``server-<user_id>/<server_name>``): spawn requested, started
(pid, url), ready, stop requested, stopped, failed (with the reason and whose fault it was);
the servers and routes projections follow in the same transaction. The decisions are the
pure functions ``decide_spawn`` and ``decide_stop``.

At startup ``readopt`` looks at the servers the log says are running: a process that still
answers is adopted, anything else is cleaned up and recorded as failed; a spawn or stop another
live hub process runs is left to it, and one a dead process left is taken up later
(hub/servers/readoption.py, hub/servers/hub_processes.py).

The process lifecycle; beside it ``records``, ``spawn_progress``, ``running`` (live servers,
their locks), ``config`` and ``jupyterhub_adapter`` (JupyterHub's spawner classes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import aiohttp

from events import errors, models, sql, store, tasks
from events.catalog import servers as server_events
from events.catalog import tokens as token_events
from hub import metrics, processes
from hub import ports as hub_ports
from hub.auth import tokens
from hub.auth.oauth import clients as oauth_clients
from hub.servers import (
    config,
    hub_processes,
    isolation,
    local_spawner,
    readiness,
    readoption,
    records,
    rules,
    running,
    spawn_progress,
    spawner,
)

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.servers", "servers.sql")

# How long DELETE waits for a stop before answering 202.
SLOW_STOP_TIMEOUT_S = 10.0


# The manager's settings, where its callers have always found them.
Settings = config.Settings
settings_from = config.settings_from


class ServerManager(readoption.Readoption):
    """Starts, watches and stops servers, recording every transition as events."""

    def __init__(
        self,
        event_store: store.EventStore,
        settings: Settings,
        *,
        spawner_: spawner.Spawner | None = None,
        oauth: spawner.OAuthClients | None = None,
    ) -> None:
        self.store = event_store
        self.settings = settings
        self.spawner = spawner_ or local_spawner.LocalSpawner()
        # A JupyterHub spawner class (the admin's choice) decides where and as whom code runs.
        self.adapted = isinstance(self.spawner, spawner.ResumingSpawner)
        self.oauth = oauth or oauth_clients.ServerClients(event_store)
        self.hub_url = settings.hub_url  # where servers reach the hub's API
        self._live: dict[tuple[UUID, str], running.Live] = {}
        self._locks: running.KeyedLocks[tuple[UUID, str]] = running.KeyedLocks()
        self._tasks = tasks.TaskOwner("server", logger=log)
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._session: aiohttp.ClientSession | None = None
        # The live hub processes sharing the database (set when serving): spawns and stops
        # are claimed, and another live process's are left to it.
        self.hubs: hub_processes.Registry | None = None

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the readiness-check client."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=readiness.POLL_REQUEST_TIMEOUT_S),
            connector=aiohttp.TCPConnector(force_close=True),
        )

    async def close(self, *, stop_servers: bool = False, watched_too: bool = False) -> None:
        """Stop servers if asked (``cleanup_servers``: those this process started or
        re-adopted, and ``watched_too`` those it watches for other processes, when it is the last
        live one), then cancel every task this owns."""
        if stop_servers:
            for live in [v for v in self._live.values() if watched_too or not v.watch_only]:
                # Each server on its own: one that cannot be stopped does not keep the others
                # running, and what went wrong is in the log.
                try:
                    await self.stop(live.user_id, live.user, live.server_name, models.Metadata())
                except spawner.PolicyError as exc:  # stopped meanwhile, or not running
                    log.info("at shutdown, %s/%s: %s", live.user, live.server_name, exc.message)
                except Exception:
                    log.exception("at shutdown, could not stop %s/%s", live.user, live.server_name)
            await self.wait_idle(30)
        await self._tasks.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> ServerManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on_routes_changed(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Await ``listener`` whenever a route is added or removed (the proxies reload): a
        server is reported ready only once the proxies route to it."""
        self._listeners.append(listener)

    def forget_routes_listener(self, listener: Callable[[], Awaitable[None]]) -> None:
        """Stop calling ``listener`` (its proxy is gone)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    async def _routes_changed(self) -> None:
        for listener in self._listeners:
            await listener()

    def _own(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return self._tasks.start(coro, name)

    async def wait_idle(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a cancel
        """Wait until no spawn or stop of this process is in progress (for tests and shutdown)."""
        busy = [t for t in self._tasks.tasks if not t.get_name().startswith("watch ")]
        if busy:
            await asyncio.wait(busy, timeout=timeout)

    def _lock(self, key: tuple[UUID, str]) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(key)

    # --- spawning -----------------------------------------------------------------------------

    async def spawn(
        self,
        user_id: UUID,
        user: str,
        server_name: str,
        options: dict[str, Any],
        meta: models.Metadata,
    ) -> Literal["ready", "pending"]:
        """Start a server; "ready" if it answered within ``slow_spawn_timeout``, else "pending".

        ``PolicyError`` (nothing written) when refused; ``SystemFailure`` when it failed within
        the wait (``server.failed`` recorded).
        """
        key = (user_id, server_name)
        stream = server_events.stream_id(user_id, server_name)
        async with self._lock(key):
            async with self.store.session() as session:
                conn = session.conn
                await conn.execute(queries["lock_server"], stream)
                admin = bool(await conn.fetchval(queries["user_admin"], user_id))
                groups = tuple(r["name"] for r in await conn.fetch(queries["user_groups"], user_id))
                try:
                    if not self.adapted:
                        self.settings.isolation.check(user, admin=admin)
                except isolation.CodeRefused as exc:
                    raise spawner.PolicyError(str(exc), status=403) from exc
                row = await conn.fetchrow(queries["server"], user_id, server_name)
                limits = rules.Limits(
                    allow_named=self.settings.allow_named,
                    named_limit=self.settings.named_limit,
                    named_count=await conn.fetchval(queries["named_servers"], user_id),
                    spawn_limit=self.settings.spawn_limit,
                    pending_spawns=await conn.fetchval(queries["pending_spawns"]),
                )
                decision = rules.decide_spawn(
                    row["state"] if row else None, user, server_name, limits
                )
                if decision == "spawn":
                    issued = await tokens.issue(
                        session,
                        owner_name=user,
                        user_id=user_id,
                        scopes=rules.server_token_scopes(
                            user, server_name, projects=self.settings.server_token_projects
                        ),
                        note=f"Server at {rules.prefix(user, server_name)}",
                        expires_in=None,
                        now=datetime.now(UTC),
                        metadata=meta,
                    )
                    await session.append(
                        stream,
                        [
                            server_events.ServerSpawnRequested(
                                user_id=user_id,
                                user=user,
                                server_name=server_name,
                                options=options,
                                token_id=issued.token_id,
                            )
                        ],
                        metadata=meta,
                    )
                    if self.hubs is not None:
                        await self.hubs.claim(conn, user_id, server_name)
            live = self._live.get(key)
            if decision == "spawn":
                live = running.Live(
                    user_id, user, server_name, token_id=issued.token_id, admin=admin
                )
                live.report({"progress": 0, "message": "Server requested"})
                self._live[key] = live
                live.spawn_task = self._own(
                    self._run_spawn(live, issued.secret, meta, options, groups),
                    f"spawn {user}/{server_name}",
                )
        if live is None:  # pending in another hub process
            return "pending"
        try:
            outcome = await asyncio.wait_for(
                asyncio.shield(live.outcome), self.settings.slow_spawn_timeout
            )
        except TimeoutError:
            return "pending"
        if outcome == "ready":
            return "ready"
        failure = live.progress[-1]
        error: spawner.SpawnError = (
            spawner.PolicyError(failure["reason"])
            if failure.get("kind") == "policy"
            else spawner.SystemFailure(failure["reason"])
        )
        raise error

    async def _run_spawn(
        self,
        live: running.Live,
        api_token: str,
        meta: models.Metadata,
        options: dict[str, Any],
        groups: tuple[str, ...],
    ) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + settings.start_timeout
        try:
            try:
                port = settings.ports.pick(settings.ip)
            except hub_ports.PortsExhausted as exc:
                raise spawner.SystemFailure(str(exc)) from exc
            path = rules.prefix(live.user, live.server_name)
            url = f"http://{settings.ip}:{port}{path}"
            env = rules.contract_env(
                user=live.user,
                server_name=live.server_name,
                api_token=api_token,
                hub_url=self.hub_url,
                service_url=url,
                public_url=settings.public_url,
                extra=settings.env,
            )
            try:
                identity = (
                    None
                    if self.adapted
                    else await settings.isolation.identity(live.user, admin=live.admin)
                )
            except isolation.CodeRefused as exc:
                raise spawner.PolicyError(str(exc), status=403) from exc
            except isolation.AccountError as exc:
                raise spawner.SystemFailure(str(exc)) from exc
            await self.oauth.register(
                user=live.user,
                server_name=live.server_name,
                redirect_uri=f"{path}oauth_callback",
                token_id=live.token_id or "",
            )
            spec = spawner.SpawnSpec(
                user=live.user,
                server_name=live.server_name,
                command=settings.command,
                env=env,
                workdir=settings.data_dir / "users" / live.user,
                log_path=local_spawner.log_path(settings.data_dir, live.user, live.server_name),
                ip=settings.ip,
                port=port,
                identity=identity,
                user_id=live.user_id,
                options=options,
                groups=groups,
                report=live.report,
            )
            live.report({"progress": 10, "message": "Spawning server..."})
            live.process = process = await self.spawner.start(spec)
            # A JupyterHub spawner says where its server is, and keeps a state to find it again.
            state: dict[str, Any] = {}
            if isinstance(process, spawner.LocatedProcess):
                url, state = process.url, process.state()
            started = server_events.ServerStarted(
                **running.ids(live), pid=process.pid or None, url=url, spawner_state=state
            )
            await self._append(live, [started], meta)
            what = f"process {process.pid}" if process.pid else f"at {url}"
            live.report({"progress": 50, "message": f"Server {what} started; waiting for it"})
            await self._wait_ready(url, live.process, deadline, spec.log_path)
            async with self._lock(live.key):
                if live.stopping:
                    return
                await self._append(
                    live, [server_events.ServerReady(**running.ids(live), url=url)], meta
                )
            await self._routes_changed()
            live.report(spawn_progress.ready_event(path))
            live.finish("ready")
            metrics.spawned("ready", loop.time() - began)
            live.watcher = self._own(self._watch(live), f"watch {live.user}/{live.server_name}")
        except hub_processes.ClaimLost as exc:
            await self._lost(live, exc)
        except spawner.SpawnError as exc:
            metrics.spawned(f"failed_{exc.kind}", loop.time() - began)
            await self._fail(live, exc.message, exc.kind, meta, claimed=True)
        except (OSError, aiohttp.ClientError) as exc:
            log.exception("spawning %s/%s", live.user, live.server_name)
            metrics.spawned("failed_system", loop.time() - began)
            await self._fail(live, f"unexpected error: {exc}", "system", meta, claimed=True)

    async def _wait_ready(
        self, url: str, process: spawner.ServerProcess, deadline: float, log_path: Path
    ) -> None:
        assert self._session is not None, "the manager is not started"
        await readiness.wait_ready(
            self._session, url, process, deadline, log_path, self.settings.start_timeout
        )

    async def _watch(self, live: running.Live) -> None:
        """Record ``server.failed`` when a running server's process exits on its own."""
        assert live.process is not None
        code = await live.process.wait()
        async with self._lock(live.key):
            if live.stopping or self._live.get(live.key) is not live:
                return
            reason = f"the server exited on its own with code {code}"
            # Other processes may watch it too: the first to record it decides, the others
            # find it recorded (or ended otherwise) and only forget it.
            if not await self._fail(live, reason, "system", None, if_running=True):
                del self._live[live.key]

    def watch_started_elsewhere(self, row: Any) -> None:
        """Watch a ready server (a ``servers`` row) another hub process started, perhaps dead
        since (hub/servers/watch_others.py); a process gone already is recorded failed."""
        key, pid = (row["user_id"], row["server_name"]), row["pid"]
        if self.adapted or not pid or key in self._live or key in self._locks:
            return
        live = running.Live(key[0], row["user_name"], key[1], row["token_id"], watch_only=True)
        live.process = self.spawner.adopt(pid) or processes.AdoptedProcess(pid)
        self._live[key] = live
        live.finish("ready")
        live.watcher = self._own(self._watch(live), f"watch {live.user}/{live.server_name}")

    async def _fail(
        self,
        live: running.Live,
        reason: str,
        kind: str,
        meta: models.Metadata | None,
        *,
        if_running: bool = False,
        claimed: bool = False,
    ) -> bool:
        """Kill what is left, record ``server.failed`` and revoke the server's token; with
        ``if_running``, only if the log still says it runs (false, nothing done, otherwise:
        another hub process ended it first, under the server's lock); with ``claimed`` (this
        process's own spawn), only if no other process took the spawn over meanwhile."""
        try:
            if claimed:
                with contextlib.suppress(errors.DatabaseUnavailable):
                    # fenced before the kill; with no answer the failed server is stopped all
                    # the same (its record below fails the same way)
                    await self._append(live, [], meta)
            if live.process is not None and live.process.exit_code() is None:
                await live.process.stop(0.5)
            stream = server_events.stream_id(live.user_id, live.server_name)
            async with self.store.session() as session:
                await session.conn.execute(queries["lock_server"], stream)
                if if_running:
                    row = await self.server_row(session.conn, live.user_id, live.server_name)
                    if row is None or row["state"] not in ("started", "ready"):
                        return False
                if claimed and self.hubs is not None:
                    await self.hubs.fence(session.conn, live)
                log.warning("server %s/%s failed: %s", live.user, live.server_name, reason)
                failed = server_events.ServerFailed(
                    **running.ids(live), reason=reason[:2000], kind=kind
                )
                await session.append(stream, [failed], metadata=meta or models.Metadata())
                await self._revoke(session, live.token_id, meta)
        except hub_processes.ClaimLost as exc:
            await self._lost(live, exc)
            return False
        # The proxy forgets the route first, then the OAuth client goes; only then is the
        # failure reported, so whoever waits for the spawn sees it all done.
        await self._routes_changed()
        await self.oauth.unregister(user=live.user, server_name=live.server_name)
        live.report(spawn_progress.failed_event(reason, kind))
        live.finish("failed")
        if self._live.get(live.key) is live:
            del self._live[live.key]
        return True

    async def _revoke(
        self, session: store.Session, token_id: str | None, meta: models.Metadata | None
    ) -> None:
        if token_id and await session.conn.fetchval(queries["token_exists"], token_id):
            await session.append(
                token_events.stream_id(token_id),
                [token_events.TokenRevoked(token_id=token_id)],
                metadata=meta or models.Metadata(),
            )

    async def _append(
        self, live: running.Live, events: list[models.Event], meta: models.Metadata | None
    ) -> None:
        """Record a step of a spawn this process runs; ``ClaimLost`` (nothing recorded) if
        another hub process took it over while this one stalled (hub_processes.fence)."""
        stream = server_events.stream_id(live.user_id, live.server_name)
        async with self.store.session() as session:
            await session.conn.execute(queries["lock_server"], stream)
            if self.hubs is not None:
                await self.hubs.fence(session.conn, live)
            if events:
                await session.append(stream, events, metadata=meta or models.Metadata())

    # --- stopping -----------------------------------------------------------------------------

    async def stop(
        self,
        user_id: UUID,
        user: str,
        server_name: str,
        meta: models.Metadata,
        *,
        remove: bool = False,
        wait: float = SLOW_STOP_TIMEOUT_S,
    ) -> Literal["stopped", "pending", "removed"]:
        """Stop (with ``remove``: delete) a server; "pending" if it takes longer than ``wait``."""
        key = (user_id, server_name)
        stream = server_events.stream_id(user_id, server_name)
        async with self._lock(key):
            async with self.store.session() as session:
                conn = session.conn
                await conn.execute(queries["lock_server"], stream)
                row = await conn.fetchrow(queries["server"], user_id, server_name)
                decision = rules.decide_stop(
                    row["state"] if row else None, user, server_name, remove
                )
                ids = {"user_id": user_id, "user": user, "server_name": server_name}
                if decision == "remove":
                    await session.append(
                        stream, [server_events.ServerRemoved(**ids)], metadata=meta
                    )
                    return "removed"
                if decision == "pending":
                    return "pending"
                await session.append(
                    stream, [server_events.ServerStopRequested(**ids)], metadata=meta
                )
                if self.hubs is not None:
                    await self.hubs.claim(conn, user_id, server_name)
            assert row is not None
            live = self._live.get(key)
            if live is not None and live.token_id != row["token_id"]:
                self._forget(live)  # an earlier spawn's, overtaken: this stop is the row's
                live = None
            if live is None:
                live = running.Live(user_id, user, server_name, token_id=row["token_id"])
                live.process = await self._adopt(row)
                self._live[key] = live
            live.stopping = True
            live.token_id = live.token_id or row["token_id"]
            task = self._own(self._finish_stop(live, remove, meta), f"stop {user}/{server_name}")
        await self._routes_changed()
        done, _ = await asyncio.wait([task], timeout=wait)
        return "stopped" if done else "pending"

    async def _finish_stop(self, live: running.Live, remove: bool, meta: models.Metadata) -> None:
        if live.spawn_task is not None and not live.spawn_task.done():
            live.spawn_task.cancel()
            await asyncio.gather(live.spawn_task, return_exceptions=True)
        forced = False
        try:
            if self.hubs is not None:  # fenced before the kill (a name may be a newer spawn's)
                await self._append(live, [], meta)
        except hub_processes.ClaimLost as exc:
            await self._lost(live, exc)
            return
        if live.process is not None:
            forced = await live.process.stop(self.settings.term_timeout)
        if live.watcher is not None:
            live.watcher.cancel()
        ids = running.ids(live)
        events: list[models.Event] = [server_events.ServerStopped(**ids, forced=forced)]
        if remove:
            events.append(server_events.ServerRemoved(**ids))
        stream = server_events.stream_id(live.user_id, live.server_name)
        try:
            async with self.store.session() as session:
                if self.hubs is not None:
                    await session.conn.execute(queries["lock_server"], stream)
                    await self.hubs.fence(session.conn, live)
                await session.append(stream, events, metadata=meta)
                await self._revoke(session, live.token_id, meta)
        except hub_processes.ClaimLost as exc:
            await self._lost(live, exc)
            return
        await self.oauth.unregister(user=live.user, server_name=live.server_name)
        live.report(dict(spawn_progress.STOPPED))
        live.finish("stopped")
        if self._live.get(live.key) is live:
            del self._live[live.key]

    # --- named servers without a process ----------------------------------------------------

    async def define(
        self,
        user_id: UUID,
        user: str,
        server_name: str,
        display_name: str,
        options: dict[str, Any],
        meta: models.Metadata,
    ) -> None:
        """Create a stopped named server (JupyterHub 6's PUT); ``PolicyError`` 409 if it exists."""
        await records.define(
            self.store, self.settings, user_id, user, server_name, display_name, options, meta
        )

    async def modify(
        self,
        user_id: UUID,
        user: str,
        server_name: str,
        display_name: str | None,
        options: dict[str, Any] | None,
        meta: models.Metadata,
    ) -> None:
        """Change a stopped server's display name or options (JupyterHub 6's PATCH)."""
        await records.modify(self.store, user_id, user, server_name, display_name, options, meta)

    async def rename(
        self,
        user_id: UUID,
        user: str,
        server_name: str,
        new_name: str,
        display_name: str | None,
        options: dict[str, Any] | None,
        meta: models.Metadata,
    ) -> None:
        """Rename a stopped server (JupyterHub 6's PATCH with ``name``); see ``records``."""
        await records.rename(self.store, self.settings, user_id, user, server_name, new_name,
                             display_name, options, meta)  # fmt: skip

    # --- progress -----------------------------------------------------------------------------

    def progress(self, user_id: UUID, server_name: str) -> AsyncIterator[dict[str, Any]] | None:
        """The progress events of a spawn this process runs (past ones first), or None."""
        return spawn_progress.follow(self._live.get((user_id, server_name)))

    def progress_from_log(
        self, user_id: UUID, user: str, server_name: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The progress of a spawn another hub process runs, followed in the log."""
        return spawn_progress.from_log(self.store, user_id, user, server_name)

    def latest_progress(self, user_id: UUID, server_name: str) -> dict[str, Any] | None:
        """The last progress event of a spawn this process runs, or None."""
        return spawn_progress.latest(self._live.get((user_id, server_name)))

    # --- activity -----------------------------------------------------------------------------

    async def record_activity(self, seen: dict[tuple[UUID, str], datetime]) -> None:
        """Write proxy-observed activity of servers (and their users), forward only."""
        await records.record_activity(self.store, seen)

    # --- reads --------------------------------------------------------------------------------

    async def server_row(self, conn: sql.Connection, user_id: UUID, server_name: str) -> Any:
        """The server's read-model row (with activity), or None."""
        return await conn.fetchrow(queries["server"], user_id, server_name)
