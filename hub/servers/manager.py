"""Single-user servers: decide each transition, record it as events, and drive the spawner.

``ServerManager`` owns every server task of this hub process (spawns, readiness checks,
watchers of running servers, stops), and cancels them on shutdown. Each transition is an
event on the server's stream (``server-<user_id>/<server_name>``): spawn requested, started
(pid, url), ready, stop requested, stopped, failed (with the reason and whose fault it was);
the servers and routes projections follow in the same transaction. The decisions are the
pure functions ``decide_spawn`` and ``decide_stop``.

At startup ``readopt`` looks at the servers the log says are running: a process that still
answers is adopted, anything else is cleaned up and recorded as failed.

Longer than the house's 700 lines (about 780): the records of stopped servers (define, modify,
rename) and the spawn progress share the manager's per-server locks and live state; splitting
them out along that seam is the next step of the restructure, not done yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import aiohttp

from events import models, sql, store, tasks
from events.catalog import server_records
from events.catalog import servers as server_events
from events.catalog import tokens as token_events
from hub import startup
from hub.auth import tokens
from hub.auth.oauth import clients as oauth_clients
from hub.servers import isolation, local_spawner, rules, server_log, spawner

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.servers", "servers.sql")

# Readiness is polled often at first, then less: the hub's overhead per spawn is mostly how
# late the first successful check comes after the server listens.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.02
POLL_REQUEST_TIMEOUT_S = 2.0
# After a hub restart, a server recorded as ready gets this long to answer again.
READOPT_CHECK_S = 3.0
# How long DELETE waits for a stop before answering 202.
SLOW_STOP_TIMEOUT_S = 10.0


# --- the manager ------------------------------------------------------------------------------


@dataclass
class Settings:
    """The manager's part of the hub's settings."""

    command: tuple[str, ...]
    env: dict[str, str]
    ip: str
    data_dir: Path
    start_timeout: float
    slow_spawn_timeout: float
    term_timeout: float
    spawn_limit: int
    named_limit: int
    allow_named: bool
    public_url: str | None = None
    # Safe by default: nobody's code runs until the hub's settings say how.
    isolation: isolation.Isolation = field(default_factory=lambda: isolation.Isolation("none"))


@dataclass
class _Live:
    """What this process knows of one server it runs (or is starting, or stopping)."""

    user_id: UUID
    user: str
    server_name: str
    token_id: str | None = None
    admin: bool = False
    process: spawner.ServerProcess | None = None
    spawn_task: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    stopping: bool = False
    outcome: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    progress: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> tuple[UUID, str]:
        return (self.user_id, self.server_name)

    def report(self, event: dict[str, Any]) -> None:
        """Add a progress event and wake whoever follows the progress."""
        self.progress.append(event)
        self.changed.set()
        self.changed = asyncio.Event()

    def finish(self, outcome: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)


async def _stopped(
    conn: sql.Connection, user_id: UUID, user: str, server_name: str, doing: str
) -> Any:
    """The row of a server that exists and is not running, for ``doing`` it (an edit)."""
    row = await conn.fetchrow(queries["server"], user_id, server_name)
    if row is None:
        raise rules.ServerNotFound(f"{user} has no server named {server_name!r}")
    if row["state"] in rules.ACTIVE:
        raise spawner.PolicyError(
            f"{rules.label(user, server_name)} is running; stop it before {doing} it", status=409
        )
    return row


class ServerManager:
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
        self.oauth = oauth or oauth_clients.ServerClients(event_store)
        self.hub_url = "http://127.0.0.1:8081/hub/"  # the hub's internal address, once known
        self._live: dict[tuple[UUID, str], _Live] = {}
        self._locks: dict[tuple[UUID, str], asyncio.Lock] = {}
        self._tasks = tasks.TaskOwner("server", logger=log)
        self._listeners: list[Callable[[], Awaitable[None]]] = []
        self._session: aiohttp.ClientSession | None = None

    # --- lifetime -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the readiness-check client."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=POLL_REQUEST_TIMEOUT_S),
            connector=aiohttp.TCPConnector(force_close=True),
        )

    async def close(self, *, stop_servers: bool = False) -> None:
        """Stop servers if asked (``cleanup_servers``), then cancel every task this owns."""
        if stop_servers:
            for live in list(self._live.values()):
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

    def _lock(self, key: tuple[UUID, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

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
                try:
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
                        scopes=rules.server_token_scopes(user, server_name),
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
            live = self._live.get(key)
            if decision == "spawn":
                live = _Live(user_id, user, server_name, token_id=issued.token_id, admin=admin)
                live.report({"progress": 0, "message": "Server requested"})
                self._live[key] = live
                live.spawn_task = self._own(
                    self._run_spawn(live, issued.secret, meta), f"spawn {user}/{server_name}"
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

    async def _run_spawn(self, live: _Live, api_token: str, meta: models.Metadata) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.start_timeout
        try:
            port = startup.free_port(settings.ip)
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
                identity = await settings.isolation.identity(live.user, admin=live.admin)
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
            )
            live.report({"progress": 10, "message": "Spawning server..."})
            live.process = await self.spawner.start(spec)
            await self._append(
                live,
                [server_events.ServerStarted(**_ids(live), pid=live.process.pid, url=url)],
                meta,
            )
            live.report(
                {
                    "progress": 50,
                    "message": f"Server process {live.process.pid} started;"
                    " waiting for it to answer",
                }
            )
            await self._wait_ready(url, live.process, deadline, spec.log_path)
            async with self._lock(live.key):
                if live.stopping:
                    return
                await self._append(live, [server_events.ServerReady(**_ids(live), url=url)], meta)
            await self._routes_changed()
            live.report(
                {
                    "progress": 100,
                    "ready": True,
                    "message": f"Server ready at {path}",
                    "html_message": f'Server ready at <a href="{path}">{path}</a>',
                    "url": path,
                }
            )
            live.finish("ready")
            live.watcher = self._own(self._watch(live), f"watch {live.user}/{live.server_name}")
        except spawner.SpawnError as exc:
            await self._fail(live, exc.message, exc.kind, meta)
        except (OSError, aiohttp.ClientError) as exc:
            log.exception("spawning %s/%s", live.user, live.server_name)
            await self._fail(live, f"unexpected error: {exc}", "system", meta)

    async def _wait_ready(
        self, url: str, process: spawner.ServerProcess, deadline: float, log_path: Path
    ) -> None:
        """Poll ``{url}api`` until it answers (any status below 500), the process exits, or
        the deadline passes."""
        assert self._session is not None, "the manager is not started"
        loop = asyncio.get_running_loop()
        interval = POLL_FIRST_S
        while True:
            code = process.exit_code()
            if code is not None:
                error = server_log.error_of(log_path)
                raise spawner.SystemFailure(
                    f"the server exited with code {code} before it answered"
                    + (f": {error}" if error else "")
                    + f" (its log: {log_path})"
                )
            try:
                async with self._session.get(url + "api", allow_redirects=False) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise spawner.SystemFailure(
                    f"the server did not answer at {url}api within"
                    f" {self.settings.start_timeout:g} s"
                )
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, POLL_MAX_S)

    async def _watch(self, live: _Live) -> None:
        """Record ``server.failed`` when a running server's process exits on its own."""
        assert live.process is not None
        code = await live.process.wait()
        async with self._lock(live.key):
            if live.stopping or self._live.get(live.key) is not live:
                return
            await self._fail(live, f"the server exited on its own with code {code}", "system", None)

    async def _fail(
        self, live: _Live, reason: str, kind: str, meta: models.Metadata | None
    ) -> None:
        """Kill what is left, record ``server.failed`` and revoke the server's token."""
        if live.process is not None and live.process.exit_code() is None:
            await live.process.stop(0.5)
        log.warning("server %s/%s failed: %s", live.user, live.server_name, reason)
        async with self.store.session() as session:
            await session.append(
                server_events.stream_id(live.user_id, live.server_name),
                [server_events.ServerFailed(**_ids(live), reason=reason[:2000], kind=kind)],
                metadata=meta or models.Metadata(),
            )
            await self._revoke(session, live.token_id, meta)
        # The proxy forgets the route first, then the OAuth client goes; only then is the
        # failure reported, so whoever waits for the spawn sees it all done.
        await self._routes_changed()
        await self.oauth.unregister(user=live.user, server_name=live.server_name)
        message = reason if kind == "policy" else f"Spawn failed: {reason}"
        live.report(
            {"progress": 100, "failed": True, "message": message, "kind": kind, "reason": reason}
        )
        live.finish("failed")
        if self._live.get(live.key) is live:
            del self._live[live.key]

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
        self, live: _Live, events: list[models.Event], meta: models.Metadata | None
    ) -> None:
        await self.store.append(
            server_events.stream_id(live.user_id, live.server_name),
            events,
            metadata=meta or models.Metadata(),
        )

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
            assert row is not None
            live = self._live.get(key)
            if live is None:
                live = _Live(user_id, user, server_name, token_id=row["token_id"])
                if row["pid"]:
                    live.process = self.spawner.adopt(row["pid"])
                self._live[key] = live
            live.stopping = True
            live.token_id = live.token_id or row["token_id"]
            task = self._own(self._finish_stop(live, remove, meta), f"stop {user}/{server_name}")
        await self._routes_changed()
        done, _ = await asyncio.wait([task], timeout=wait)
        return "stopped" if done else "pending"

    async def _finish_stop(self, live: _Live, remove: bool, meta: models.Metadata) -> None:
        if live.spawn_task is not None and not live.spawn_task.done():
            live.spawn_task.cancel()
            await asyncio.gather(live.spawn_task, return_exceptions=True)
        forced = False
        if live.process is not None:
            forced = await live.process.stop(self.settings.term_timeout)
        if live.watcher is not None:
            live.watcher.cancel()
        ids = _ids(live)
        events: list[models.Event] = [server_events.ServerStopped(**ids, forced=forced)]
        if remove:
            events.append(server_events.ServerRemoved(**ids))
        async with self.store.session() as session:
            await session.append(
                server_events.stream_id(live.user_id, live.server_name), events, metadata=meta
            )
            await self._revoke(session, live.token_id, meta)
        await self.oauth.unregister(user=live.user, server_name=live.server_name)
        live.report({"progress": 100, "failed": True, "message": "Spawn cancelled: stopped"})
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
        stream = server_events.stream_id(user_id, server_name)
        async with self.store.session() as session:
            conn = session.conn
            await conn.execute(queries["lock_server"], stream)
            if not self.settings.allow_named:
                raise spawner.PolicyError("Named servers are not enabled.")
            if await conn.fetchrow(queries["server"], user_id, server_name) is not None:
                raise spawner.PolicyError(f"Server {user}/{server_name} already exists", status=409)
            limit = self.settings.named_limit
            if limit and await conn.fetchval(queries["named_servers"], user_id) >= limit:
                raise spawner.PolicyError(
                    f"User {user} already has the maximum of {limit} named servers."
                )
            await session.append(
                stream,
                [
                    server_records.ServerDefined(
                        user_id=user_id,
                        user=user,
                        server_name=server_name,
                        display_name=display_name,
                        options=options,
                    )
                ],
                metadata=meta,
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
        stream = server_events.stream_id(user_id, server_name)
        async with self.store.session() as session:
            conn = session.conn
            await conn.execute(queries["lock_server"], stream)
            row = await _stopped(conn, user_id, user, server_name, "changing")
            await session.append(
                stream,
                [
                    server_records.ServerModified(
                        user_id=user_id,
                        user=user,
                        server_name=server_name,
                        display_name=row["display_name"] if display_name is None else display_name,
                        options=json.loads(row["options"]) if options is None else options,
                    )
                ],
                metadata=meta,
            )

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
        """Rename a stopped server (JupyterHub 6's PATCH with ``name``). Its display name
        becomes ``display_name``, or the new name; renaming the default server makes a named
        one, so the named-server limit applies then."""
        streams = sorted(server_events.stream_id(user_id, name) for name in (server_name, new_name))
        async with self.store.session() as session:
            conn = session.conn
            for stream in streams:  # in a fixed order: two renames never wait on each other
                await conn.execute(queries["lock_server"], stream)
            if not self.settings.allow_named:
                raise spawner.PolicyError("Named servers are not enabled.")
            row = await _stopped(conn, user_id, user, server_name, "renaming")
            if await conn.fetchrow(queries["server"], user_id, new_name) is not None:
                raise spawner.PolicyError(f"Server {user}/{new_name} already exists", status=409)
            limit = self.settings.named_limit
            if (  # the default server becomes a named one
                not server_name
                and limit
                and await conn.fetchval(queries["named_servers"], user_id) >= limit
            ):
                raise spawner.PolicyError(
                    f"User {user} already has the maximum of {limit} named servers."
                )
            await session.append(
                server_events.stream_id(user_id, server_name),
                [
                    server_records.ServerRenamed(
                        user_id=user_id,
                        user=user,
                        server_name=server_name,
                        new_name=new_name,
                        display_name=new_name if display_name is None else display_name,
                        options=json.loads(row["options"]) if options is None else options,
                    )
                ],
                metadata=meta,
            )
            await conn.execute(queries["server_activity_rename"], user_id, server_name, new_name)

    # --- progress -----------------------------------------------------------------------------

    def progress(self, user_id: UUID, server_name: str) -> AsyncIterator[dict[str, Any]] | None:
        """The progress events of a spawn this process runs (past ones first), or None."""
        live = self._live.get((user_id, server_name))
        if live is None or live.stopping or live.outcome.done():
            return None
        return self._follow(live)

    def latest_progress(self, user_id: UUID, server_name: str) -> dict[str, Any] | None:
        """The last progress event of a spawn this process runs, or None."""
        live = self._live.get((user_id, server_name))
        if live is None or not live.progress:
            return None
        return {k: v for k, v in live.progress[-1].items() if k not in ("kind", "reason")}

    async def _follow(self, live: _Live) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while True:
            changed = live.changed
            while sent < len(live.progress):
                event = live.progress[sent]
                sent += 1
                yield {k: v for k, v in event.items() if k not in ("kind", "reason")}
                if event.get("progress") == 100:
                    return
            await changed.wait()

    # --- activity -----------------------------------------------------------------------------

    async def record_activity(self, seen: dict[tuple[UUID, str], datetime]) -> None:
        """Write proxy-observed activity of servers (and their users), forward only."""
        if not seen:
            return
        keys = list(seen)
        async with self.store.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                queries["server_activity_touch"],
                [k[0] for k in keys],
                [k[1] for k in keys],
                [seen[k] for k in keys],
            )
            latest: dict[UUID, datetime] = {}
            for (user_id, _), stamp in seen.items():
                latest[user_id] = max(stamp, latest.get(user_id, stamp))
            await conn.execute(queries["user_activity_touch"], list(latest), list(latest.values()))

    # --- after a restart ----------------------------------------------------------------------

    async def readopt(self) -> None:
        """Adopt the servers the log says run whose process still answers; fail the others."""
        async with self.store.pool.acquire() as conn:
            rows = await conn.fetch(queries["live_servers"])
        for row in rows:
            live = _Live(
                row["user_id"], row["user_name"], row["server_name"], token_id=row["token_id"]
            )
            live.process = self.spawner.adopt(row["pid"]) if row["pid"] else None
            state = row["state"]
            if state == "stopping":
                self._live[live.key] = live
                live.stopping = True
                self._own(self._finish_stop(live, False, models.Metadata()), f"stop {live.user}")
                continue
            if live.process is None:
                await self._fail(
                    live,
                    "the hub restarted and the server's process was gone"
                    if state != "spawning"
                    else "the hub stopped before the server's process was started",
                    "system",
                    None,
                )
                continue
            self._live[live.key] = live
            live.spawn_task = self._own(
                self._resume(live, row["url"], state), f"readopt {live.user}/{live.server_name}"
            )

    async def _resume(self, live: _Live, url: str, state: str) -> None:
        assert live.process is not None
        loop = asyncio.get_running_loop()
        wait = self.settings.start_timeout if state == "started" else READOPT_CHECK_S
        log_path = local_spawner.log_path(self.settings.data_dir, live.user, live.server_name)
        try:
            await self._wait_ready(url, live.process, loop.time() + wait, log_path)
        except spawner.SpawnError as exc:
            await self._fail(live, f"after the hub restarted: {exc.message}", "system", None)
            return
        async with self._lock(live.key):
            if live.stopping:
                return
            if state == "started":
                await self._append(live, [server_events.ServerReady(**_ids(live), url=url)], None)
        log.info("re-adopted %s/%s (pid %s)", live.user, live.server_name, live.process.pid)
        await self._routes_changed()
        live.finish("ready")
        live.watcher = self._own(self._watch(live), f"watch {live.user}/{live.server_name}")

    # --- reads --------------------------------------------------------------------------------

    async def server_row(self, conn: sql.Connection, user_id: UUID, server_name: str) -> Any:
        """The server's read-model row (with activity), or None."""
        return await conn.fetchrow(queries["server"], user_id, server_name)


def _ids(live: _Live) -> dict[str, Any]:
    return {"user_id": live.user_id, "user": live.user, "server_name": live.server_name}


def settings_from(
    config: Any, code: isolation.Isolation | None = None, command: tuple[str, ...] | None = None
) -> Settings:
    """The manager's settings from the hub's (``code``: the hub's one ``Isolation``;
    ``command``: the spawner's command as found at start-up)."""
    return Settings(
        command=command or (*config.spawner_cmd, *config.spawner_args),
        env=dict(config.spawner_env),
        ip=config.spawner_ip,
        data_dir=Path(config.data_dir).resolve(),
        start_timeout=config.start_timeout,
        slow_spawn_timeout=config.slow_spawn_timeout,
        term_timeout=config.term_timeout,
        spawn_limit=config.concurrent_spawn_limit,
        named_limit=config.named_server_limit_per_user,
        allow_named=config.allow_named_servers,
        public_url=config.public_url,
        isolation=code or isolation.Isolation.from_settings(config),
    )
