"""The supervisor of managed services: starts each configured service with a command, waits
until it answers, restarts it when it dies, gives up on a crash loop, stops it with the hub.

Each service runs in a task of its own (owned by a ``TaskOwner``), so a service that cannot
start, exits at once, never answers or crash-loops never holds up or takes down the hub or
another service: its state says so (``Service.state``, the REST API) and so do its events on
the stream ``service-<name>``: ``service.started`` → ``service.ready`` → ``service.exited`` →
``service.restarting`` → … → ``service.failed`` or, at the hub's shutdown, ``service.stopped``.

One start of a service:

1. its url: the configured one, or a free port on 127.0.0.1 when the configured port is 0
   (``url = "http://127.0.0.1:0"``); a configured port another process holds is a failed
   start, said as such, rather than a service that exits with a bind error;
2. its token: the configured ``api_token``, else a new one for each start (its hash stored,
   as every token's; the previous start's revoked);
3. its process (its program found in the hub's environment first, see ``resolve``;
   ``hub.processes``: its own process group, its log in
   ``<data_dir>/logs/services/<name>.log``, the environment of ``hub.services.environment``);
4. with a url, the wait until ``<url>/services/<name>/`` answers over HTTP (any status),
   at most the service's ``timeout``: one that never answers is stopped and counts as a
   death;
5. then it runs until it exits, which is a death: ``hub.services.restarts`` decides the wait
   before the next start, or gives up.

Stopping (the hub's shutdown): SIGTERM to the group, SIGKILL after ``service_stop_grace_s``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from events import errors as store_errors
from events import models, store, tasks
from events.catalog import services as service_events
from events.catalog import tokens as token_events
from hub import data_dir, processes
from hub import ports as hub_ports
from hub import settings as hub_settings
from hub.auth import scopes, tokens
from hub.services import environment, restarts

log = logging.getLogger(__name__)

SUPERVISOR = models.Metadata(actor=models.Actor(kind="system", name="services"))
# How often a starting service's URL is tried, and how long one try may take.
POLL_S = 0.05
POLL_MAX_S = 0.5
POLL_REQUEST_TIMEOUT_S = 2.0

State = Literal["starting", "running", "restarting", "failed", "stopped"]
RoutesChanged = Callable[[], Awaitable[None]]


class PortTaken(Exception):
    """The configured port of a service cannot be listened on; the message says why."""


@dataclass(frozen=True)
class Death:
    """How one start ended: after ``up_for`` seconds answering (0: it never did)."""

    up_for: float
    code: int | None
    reason: str


@dataclass
class Service:
    """What the supervisor knows of one managed service."""

    entry: hub_settings.ServiceConfig
    state: State = "starting"
    process: processes.ChildProcess | None = None
    url: str | None = None
    token_id: str | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_error: str | None = None
    since: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def pid(self) -> int:
        """Its process id while it runs, else 0 (JupyterHub's model says 0)."""
        if self.process is None or self.process.exit_code() is not None:
            return 0
        return self.process.pid

    def status(self) -> dict[str, Any]:
        """chronohub's additions to the service model: how it is doing."""
        return {
            "state": self.state,
            "since": self.since.isoformat(),
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_error": self.last_error,
        }

    def moved_to(self, state: State) -> None:
        self.state = state
        self.since = datetime.now(UTC)


def log_path(root: Path, name: str) -> Path:
    """Where a managed service's output goes (beside the servers' logs)."""
    return root / "logs" / "services" / f"{name}.log"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


class Supervisor:
    """Runs the configured managed services (``start``/``close``, or ``async with``)."""

    def __init__(
        self,
        event_store: store.EventStore,
        config: hub_settings.Settings,
        addresses: environment.Addresses,
        *,
        on_routes_changed: RoutesChanged | None = None,
        environ: Mapping[str, str] | None = None,
        ports: hub_ports.Ports | None = None,
    ) -> None:
        self.store = event_store
        self.config = config
        # The hub's one port picker, shared with servers and the proxy (port_range).
        self.ports = ports or hub_ports.Ports.from_setting(config.port_range)
        self.addresses = addresses
        self.on_routes_changed = on_routes_changed
        self.environ = dict(os.environ if environ is None else environ)
        self.policy = restarts.Policy(
            first_s=config.service_restart_first_s,
            max_s=config.service_restart_max_s,
            stable_s=config.service_stable_s,
            deaths=config.service_crash_loop_deaths,
            window_s=config.service_crash_loop_window_s,
        )
        self.services = {e.name: Service(e) for e in config.services if e.command}
        self._tasks = tasks.TaskOwner("service supervisor", logger=log)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every managed service, each in its own task; returns at once."""
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=POLL_REQUEST_TIMEOUT_S)
        )
        for service in self.services.values():
            self._tasks.start(self._run(service), f"service {service.name}")

    async def close(self) -> None:
        """Stop watching, then stop every service still running (SIGTERM, SIGKILL after the
        grace period), all at once."""
        await self._tasks.close()
        await asyncio.gather(*(self._stop(s) for s in self.services.values()))
        if self._http is not None:
            await self._http.close()

    # --- one service's life -----------------------------------------------------------------

    async def _run(self, service: Service) -> None:
        try:
            await self._supervise(service)
        except Exception as exc:
            # A fault of the hub's own (not the service's): say so in its state; the task
            # owner logs the traceback, and close() still stops its process.
            service.moved_to("failed")
            service.last_error = f"the hub stopped watching it after an error: {exc!r}"
            raise

    async def _supervise(self, service: Service) -> None:
        loop = asyncio.get_running_loop()
        decide = restarts.Restarts(self.policy)
        while True:
            death = await self._once(service)
            service.process = None
            service.last_exit, service.last_error = death.code, death.reason
            decision = decide.died(loop.time(), death.up_for)
            if isinstance(decision, restarts.GiveUp):
                reason = f"{decision.reason} (last: {death.reason})"
                log.error("service %s failed: %s", service.name, reason)
                self._note(service, f"failed: {reason}")
                # in the log before the state says so: whoever sees "failed" finds the event
                await self._record(
                    service, service_events.ServiceFailed(name=service.name, reason=reason)
                )
                service.moved_to("failed")
                service.last_error = reason
                await self._revoke(service)
                return
            service.restarts += 1
            service.moved_to("restarting")
            log.warning(
                "service %s: %s; restarting in %g s", service.name, death.reason, decision.delay_s
            )
            self._note(service, f"{death.reason}; restarting in {decision.delay_s:g} s")
            await self._record(
                service,
                service_events.ServiceRestarting(
                    name=service.name, delay_s=decision.delay_s, restarts=service.restarts
                ),
            )
            await asyncio.sleep(decision.delay_s)

    async def _once(self, service: Service) -> Death:
        """Start ``service`` once and watch it until it dies."""
        service.moved_to("starting")
        entry = service.entry
        try:
            url = self._url(entry)
        except (PortTaken, hub_ports.PortsExhausted) as exc:
            return Death(0, None, str(exc))
        except OSError as exc:  # no free port on the configured host
            return Death(0, None, f"no port to listen on at {entry.url}: {exc}")
        if entry.cwd is not None and not entry.cwd.is_dir():
            return Death(0, None, f"its working directory {entry.cwd} is not a directory")
        service.url = url
        try:
            secret = await self._token(service)
        except store_errors.DatabaseUnavailable as exc:
            return Death(0, None, f"could not issue its token: {exc}")
        env = environment.build(
            entry, token=secret, url=url, addresses=self.addresses, environ=self.environ
        )
        path = log_path(self.config.data_dir, entry.name)
        cwd = entry.cwd or data_dir.private_subdir(self.config.data_dir / "services" / entry.name)
        try:
            command = [resolve(entry.command[0]), *entry.command[1:]]
            process = await processes.start(command, env=env, cwd=cwd, log_path=path)
        except FileNotFoundError:
            return Death(0, None, f"its command {entry.command[0]!r} does not exist")
        except PermissionError:
            return Death(0, None, f"its command {entry.command[0]!r} is not executable")
        except OSError as exc:
            return Death(0, None, f"could not start {entry.command[0]!r}: {exc}")
        service.process = process
        log.info("service %s started (pid %d, log %s)", entry.name, process.pid, path)
        await self._record(
            service,
            service_events.ServiceStarted(
                name=entry.name, pid=process.pid, url=url, token_id=service.token_id
            ),
        )
        await self._routes_changed()
        loop = asyncio.get_running_loop()
        if url is not None:
            failure = await self._wait_ready(service, process, url)
            if failure is not None:
                return await self._ended(service, process, failure)
        ready_at = loop.time()
        service.moved_to("running")
        await self._record(service, service_events.ServiceReady(name=entry.name, url=url))
        code = await process.wait()
        up_for = loop.time() - ready_at
        return await self._ended(service, process, f"it exited with code {code}", up_for)

    async def _ended(
        self, service: Service, process: processes.ChildProcess, reason: str, up_for: float = 0
    ) -> Death:
        code = process.exit_code()
        if code is None:  # it never answered: stopped here
            await process.stop(self.config.service_stop_grace_s)
            code = process.exit_code()
        else:
            await process.stop(0)  # whatever its group left behind
        await self._record(
            service,
            service_events.ServiceExited(name=service.name, exit_status=code, reason=reason),
        )
        return Death(up_for, code, reason)

    def _url(self, entry: hub_settings.ServiceConfig) -> str | None:
        """Where this start listens; ``PortTaken`` when another process has the configured
        port."""
        if entry.url is None:
            return None
        parts = urlsplit(entry.url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port
        if port == 0:
            port = self.ports.pick(host)
            netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        if port is not None and _local(host):
            try:
                socket.create_server((host, port)).close()
            except OSError as exc:
                why = "is taken by another process" if exc.errno == errno.EADDRINUSE else str(exc)
                raise PortTaken(f"port {port} on {host} {why}") from exc
        return entry.url

    async def _wait_ready(
        self, service: Service, process: processes.ChildProcess, url: str
    ) -> str | None:
        """None once ``url`` answers over HTTP; else why it did not (it exited, or the
        service's ``timeout`` passed)."""
        assert self._http is not None
        target = _origin(url) + environment.prefix(service.name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + service.entry.timeout
        interval = POLL_S
        while True:
            code = process.exit_code()
            if code is not None:
                return f"it exited with code {code} before it answered at {target}"
            try:
                async with self._http.get(target, allow_redirects=False):
                    return None
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                return f"it did not answer at {target} within {service.entry.timeout:g} s"
            await asyncio.sleep(interval)
            interval = min(interval * 2, POLL_MAX_S)

    async def _stop(self, service: Service) -> None:
        process = service.process
        if process is None:
            return
        service.process = None
        running = process.exit_code() is None
        forced = await process.stop(self.config.service_stop_grace_s)
        if running:
            log.info("service %s stopped%s", service.name, " (SIGKILL)" if forced else "")
            service.moved_to("stopped")
            await self._record(
                service, service_events.ServiceStopped(name=service.name, forced=forced)
            )
        await self._revoke(service)

    # --- tokens, events, routes -------------------------------------------------------------

    async def _token(self, service: Service) -> str:
        """The token of this start: the configured one, or a new one replacing the last."""
        entry = service.entry
        if entry.api_token is not None:
            return entry.api_token.get_secret_value()
        async with self.store.session() as session:
            if service.token_id is not None:
                await self._revoke_in(session, service.token_id)
            issued = await tokens.issue(
                session,
                owner_name=entry.name,
                service=entry.name,
                scopes=[scopes.INHERIT],
                note="managed service (this start)",
                expires_in=None,
                now=datetime.now(UTC),
                metadata=SUPERVISOR,
            )
        service.token_id = issued.token_id
        return issued.secret

    async def _revoke(self, service: Service) -> None:
        """Revoke the token of the last start (a service that no longer runs needs none)."""
        if service.token_id is None:
            return
        try:
            async with self.store.session() as session:
                await self._revoke_in(session, service.token_id)
        except store_errors.DatabaseUnavailable as exc:
            # The next start of the hub revokes it (bootstrap keeps only configured tokens).
            log.warning("could not revoke the token of service %s: %s", service.name, exc)
            return
        service.token_id = None

    @staticmethod
    async def _revoke_in(session: store.Session, token_id: str) -> None:
        await session.append(
            token_events.stream_id(token_id),
            [token_events.TokenRevoked(token_id=token_id, reason="replaced")],
            metadata=SUPERVISOR,
        )

    async def _record(self, service: Service, event: models.Event) -> None:
        """Append ``event`` to the service's stream; a database out of reach is logged, and
        the service goes on (its state is this process's, not the log's)."""
        try:
            async with self.store.session() as session:
                await session.append(
                    service_events.stream_id(service.name), [event], metadata=SUPERVISOR
                )
        except store_errors.DatabaseUnavailable as exc:
            log.warning("could not record %s of service %s: %s", event.type, service.name, exc)

    async def _routes_changed(self) -> None:
        if self.on_routes_changed is None:
            return
        try:
            await self.on_routes_changed()
        except store_errors.DatabaseUnavailable as exc:
            log.warning("could not update the routes: %s", exc)

    def _note(self, service: Service, line: str) -> None:
        """Say in the service's own log what the hub did, beside what the service wrote."""
        path = log_path(self.config.data_dir, service.name)
        data_dir.private_subdir(path.parent)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with open(path, "a", encoding="utf-8") as file:
                file.write(f"[chronohub {stamp}] service {service.name}: {line}\n")
        except OSError as exc:
            log.warning("could not write to %s: %s", path, exc)


def resolve(program: str) -> str:
    """``program`` as the hub's own environment has it, if it is there: ``python3`` is the
    hub's interpreter and a tool installed beside the hub (``jupyterhub-idle-culler``) is
    found first, as a TOML file cannot name ``sys.executable`` the way JupyterHub's Python
    configuration does. Else as given, looked up on the service's PATH."""
    if "/" in program:
        return program
    return shutil.which(program, path=str(Path(sys.executable).parent)) or program


def _local(host: str) -> bool:
    """Whether ``host`` is this machine, where a taken port can be seen before starting."""
    return host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::")  # noqa: S104
