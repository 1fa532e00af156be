"""JupyterHub's spawners, unchanged, behind chronohub's ``Spawner`` protocol.

One JupyterHub spawner object per server start (or resume after a hub restart), given what
JupyterHub's ``Spawner`` base reaches for: ``user`` (a small object: name, id, url, groups…),
``hub`` (``jupyterhub.objects.Hub``: api_url, base_url, public_host), ``api_token`` (the server
token chronohub issued), ``oauth_client_id``, ``orm_spawner`` (a transient
``jupyterhub.orm.Spawner`` holding the server's name and ``jupyterhub.orm.Server``: never in a
database session), ``user_options``, ``ip``/``port`` when the configuration leaves them unset.
Its ``start``/``poll``/``stop``/``progress``/``get_state`` are driven by the server manager,
which records every transition as chronohub's events: this module appends none.

What a spawner reaches for beyond this (``db``, ``authenticator``, ``user.spawners``,
internal SSL certificates) is not given: docs/servers.md lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from uuid import UUID

from jupyterhub import objects, orm
from jupyterhub import spawner as jh_spawner
from jupyterhub.utils import maybe_future
from traitlets.config import Config

from events import models
from hub.servers import jupyterhub_config, rules, spawner

log = logging.getLogger(__name__)

# A spawner's poll may be an API call (Kubernetes, Docker): readiness checks ask at most this
# often; a running server's watcher asks every ``poll_interval`` (the spawner's own trait).
POLL_MIN_INTERVAL_S = 0.5


@dataclass
class Group:
    """A group as spawners read it (``group.name``, for ``group_overrides``)."""

    name: str


@dataclass
class User:
    """The ``user`` a JupyterHub spawner reads: JupyterHub's ``User`` as far as spawners use it."""

    name: str
    id: int
    groups: list[Group] = field(default_factory=list)
    admin: bool = False
    spawners: dict[str, jh_spawner.Spawner] = field(default_factory=dict)

    @property
    def escaped_name(self) -> str:
        return quote(self.name, safe="@~")

    @property
    def url(self) -> str:
        return rules.prefix(self.name, "")

    @property
    def spawner(self) -> jh_spawner.Spawner | None:
        """The default server's spawner (when this adapter holds it)."""
        return self.spawners.get("")

    @property
    def server(self) -> Any:
        default = self.spawner
        return default.server if default is not None else None

    def progress_url(self, server_name: str = "") -> str:
        path = f"/hub/api/users/{self.escaped_name}/"
        return path + (
            f"servers/{quote(server_name, safe='')}/progress" if server_name else "server/progress"
        )


def user_number(user_id: UUID | None) -> int:
    """A stable integer for ``user.id`` (JupyterHub's ids are integers, chronohub's uuids):
    templates such as KubeSpawner's ``{userid}`` get the same number for a user every time."""
    return user_id.int % 2**31 if user_id is not None else 0


class AdaptedServer:
    """A server a JupyterHub spawner runs, as chronohub's ``ServerProcess``."""

    def __init__(self, jh: jh_spawner.Spawner, url: str) -> None:
        self.spawner = jh
        self._url = url
        self._code: int | None = None
        self._polled_at = -1.0

    @property
    def pid(self) -> int:
        pid = getattr(self.spawner, "pid", 0)
        return pid if isinstance(pid, int) else 0

    @property
    def url(self) -> str:
        return self._url

    def state(self) -> dict[str, Any]:
        """The spawner's ``get_state()``, for the log: keys named like secrets left out (the
        log is immutable and exported), so a class that keeps one cannot resume with it."""
        state = dict(self.spawner.get_state() or {})
        while key := models.secret_key_in(state):
            log.warning("%s: its state's %r is kept out of the event log", self.spawner, key)
            state = _without(state, key)
        return state

    def exit_code(self) -> int | None:
        return self._code

    async def poll(self) -> int | None:
        loop = asyncio.get_running_loop()
        if self._code is None and loop.time() - self._polled_at >= POLL_MIN_INTERVAL_S:
            self._polled_at = loop.time()
            status = await maybe_future(self.spawner.poll())
            self._code = None if status is None else exit_code(status)
        return self._code

    async def wait(self) -> int:
        while True:
            self._polled_at = -1.0
            code = await self.poll()
            if code is not None:
                return code
            # The spawner's own poll period (JupyterHub polls every poll_interval too).
            await asyncio.sleep(max(float(self.spawner.poll_interval), POLL_MIN_INTERVAL_S))

    async def stop(self, term_timeout: float) -> bool:
        """Stop it through the spawner, then its ``post_stop_hook``; its state is cleared."""
        try:
            await maybe_future(self.spawner.stop())
        except Exception:  # a third-party spawner may raise anything: logged, and the server
            # is recorded as stopped all the same (JupyterHub, too, forgets it)
            log.exception("%s.stop failed", type(self.spawner).__name__)
        if self._code is None:
            self._code = 0
        await maybe_future(self.spawner.run_post_stop_hook())
        self.spawner.clear_state()
        return False


class NoDatabase:
    """What ``spawner.db`` (JupyterHub's deprecated database session) gives: classes that
    still commit their changes to ``server`` through it (KubeSpawner's ``poll`` when a pod's
    address changed) find a session whose commit does nothing, since the objects they hold
    are transient and there is no JupyterHub database."""

    def commit(self) -> None:
        """Nothing to write."""

    def rollback(self) -> None:
        """Nothing to undo."""

    def add(self, instance: object) -> None:
        """Nothing to keep."""


@dataclass(frozen=True)
class Hub:
    """Where servers reach the hub, as a JupyterHub spawner's ``hub`` says it."""

    api_url: str
    public_url: str | None = None

    def jupyterhub_hub(self) -> objects.Hub:
        parts = urlsplit(self.api_url)
        base = parts.path[: -len("api")] if parts.path.endswith("api") else "/hub/"
        public_host = ""
        if self.public_url:
            public = urlsplit(self.public_url)
            public_host = f"{public.scheme}://{public.netloc}"
        return objects.Hub(
            proto=parts.scheme or "http",
            ip=parts.hostname or "127.0.0.1",
            port=parts.port or (443 if parts.scheme == "https" else 80),
            base_url=base,
            public_host=public_host,
        )


class JupyterHubSpawner:
    """chronohub's ``Spawner`` that runs a JupyterHub spawner class, configured by traitlets."""

    def __init__(self, cls: type[jh_spawner.Spawner], config: Config) -> None:
        self.cls = cls
        self.config = config
        # The authenticator's part before each start (hub/app.py sets it): (user id, spawner)
        self.pre_spawn: Callable[[UUID, jh_spawner.Spawner], Awaitable[None]] | None = None
        self._configured = {
            name
            for base in cls.mro()
            if isinstance(base, type) and isinstance(config.get(base.__name__), Config)
            for name in config[base.__name__]
        }

    @classmethod
    def from_settings(
        cls, name: str, table: Mapping[str, Any], file: Path | None
    ) -> JupyterHubSpawner:
        """The adapter for ``spawner_class`` ``name``; ``SpawnerConfigError`` naming the
        problem when the class or a trait is unknown."""
        spawner_class = jupyterhub_config.load_class(name)
        return cls(spawner_class, jupyterhub_config.load_config(spawner_class, table, file))

    def make(
        self,
        *,
        user: str,
        server_name: str,
        user_id: UUID | None = None,
        groups: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> jh_spawner.Spawner:
        """A JupyterHub spawner object for one server, given what its base class expects."""
        env = env or {}
        owner = User(user, user_number(user_id), [Group(g) for g in groups])
        orm_server = orm.Server(
            proto="http",
            ip="",
            port=0,
            base_url=rules.prefix(user, server_name),
            cookie_name="cookie",
        )
        orm_spawner = orm.Spawner(name=server_name, server=orm_server, user_options=options or {})
        hub = Hub(
            env.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            env.get("JUPYTERHUB_PUBLIC_HUB_URL"),
        ).jupyterhub_hub()
        kwargs: dict[str, Any] = {
            "config": self.config,
            "user": owner,
            "hub": hub,
            "orm_spawner": orm_spawner,
            "oauth_client_id": rules.client_id(user, server_name),
            "proxy_spec": rules.prefix(user, server_name),
            "user_options": dict(options or {}),
        }
        if "JUPYTERHUB_API_TOKEN" in env:
            kwargs["api_token"] = env["JUPYTERHUB_API_TOKEN"]
        if "JUPYTERHUB_PUBLIC_URL" in env:
            kwargs["public_url"] = env["JUPYTERHUB_PUBLIC_URL"]
            kwargs["public_hub_url"] = env.get("JUPYTERHUB_PUBLIC_HUB_URL", "")
        jh = self.cls(**kwargs)
        jh._deprecated_db_session = NoDatabase()
        owner.spawners[server_name] = jh
        return jh

    async def start(self, spec: spawner.SpawnSpec) -> spawner.ServerProcess:
        """Start the server through the JupyterHub spawner; ``SystemFailure`` (or
        ``PolicyError`` for a spawner's 4xx ``SpawnException``) with its message."""
        try:
            jh = self.make(
                user=spec.user,
                server_name=spec.server_name,
                user_id=spec.user_id,
                groups=spec.groups,
                env=spec.env,
                options=spec.options,
            )
        except Exception as exc:  # a trait the configuration sets to what the class refuses
            raise failure(exc) from exc
        # The class's own default stands (KubeSpawner's and DockerSpawner's listen on every
        # address of their pod or container); only an empty one, unconfigured, becomes the
        # hub's spawner_ip, as chronohub's own spawner listens.
        if "ip" not in self._configured and not jh.ip:
            jh.ip = spec.ip
        if not jh.port:
            jh.port = spec.port
        # chronohub's spawner_env reaches the server as with chronohub's own spawner, below what
        # the spawner's own `environment` trait sets.
        extra = {k: v for k, v in spec.env.items() if not k.startswith(("JUPYTERHUB_", "JPY_"))}
        jh.environment = {**extra, **jh.environment}
        try:
            await self._before_start(jh, spec.user_id)
        except Exception as exc:  # the authenticator's or the admin's hooks may raise anything;
            # nothing is started yet, so nothing to clean up
            raise failure(exc) from exc
        try:
            async with _progress(jh, spec):
                returned = await asyncio.wait_for(
                    maybe_future(jh.start()), timeout=float(jh.start_timeout)
                )
        except TimeoutError as exc:
            await _cleanup(jh)
            raise spawner.SystemFailure(
                f"{self.cls.__name__}.start did not return within {jh.start_timeout} s"
            ) from exc
        except spawner.SpawnError:
            raise
        except Exception as exc:  # a third-party spawner may raise anything: its message is
            # the failure's reason
            await _cleanup(jh)
            raise failure(exc) from exc
        url = server_url(returned, jh, spec)
        jh.server.ip, jh.server.port = urlsplit(url).hostname or "", urlsplit(url).port or 0
        return AdaptedServer(jh, url)

    async def _before_start(self, jh: jh_spawner.Spawner, user_id: UUID | None) -> None:
        """What JupyterHub's ``User.spawn`` runs before ``start``, in its order: the
        authenticator's ``pre_spawn_start`` and the spawner's ``auth_state_hook`` (through
        ``pre_spawn``, which the hub sets when its authenticator is one of JupyterHub's;
        otherwise the hook gets no auth_state), group overrides, ``apply_user_options``, the
        ``pre_spawn_hook``."""
        if self.pre_spawn is not None and user_id is not None:
            await self.pre_spawn(user_id, jh)
        else:
            await jh.run_auth_state_hook(None)
        await jh.apply_group_overrides()
        await jh._run_apply_user_options(jh.user_options)
        await maybe_future(jh.run_pre_spawn_hook())

    def adopt(self, pid: int) -> spawner.ServerProcess | None:
        """Not used: JupyterHub spawners find their servers by state (``resume``)."""
        return None

    async def resume(
        self, *, user_id: UUID, user: str, server_name: str, url: str, state: dict[str, Any]
    ) -> spawner.ServerProcess | None:
        """After a hub restart: the spawner loads its recorded state and is polled; a server
        that still runs is adopted, else its state is cleared and None returned."""
        jh = self.make(user=user, server_name=server_name, user_id=user_id)
        jh.load_state(state)
        if url:  # where it was: a class may compare (KubeSpawner's poll: "url changed!")
            parts = urlsplit(url)
            jh.server.ip, jh.server.port = parts.hostname or "", parts.port or 0
        try:
            status = await maybe_future(jh.poll())
        except (
            Exception
        ):  # a third-party spawner may raise anything; logged, the server is treated as gone
            log.exception("polling %s/%s after a restart", user, server_name)
            status = 1
        if status is not None or not url:
            jh.clear_state()
            return None
        parts = urlsplit(url)
        jh.server.ip, jh.server.port = parts.hostname or "", parts.port or 0
        return AdaptedServer(jh, url)

    async def options_form(self, *, user: str, server_name: str, user_id: UUID | None) -> str:
        """The class's options form (HTML, the admin's configuration), or "" when it has none."""
        jh = self.make(user=user, server_name=server_name, user_id=user_id)
        form = await jh.get_options_form()
        return str(form or "")

    def options_from_form(
        self, form: Mapping[str, list[str]], *, user: str, server_name: str, user_id: UUID | None
    ) -> dict[str, Any]:
        """The submitted form (each field a list of strings) through ``options_from_form``."""
        jh = self.make(user=user, server_name=server_name, user_id=user_id)
        try:
            options = jh.run_options_from_form(dict(form))
        except Exception as exc:  # the admin's function may raise anything: the user is told
            raise spawner.PolicyError(f"the options form could not be read: {exc}") from exc
        if not isinstance(options, dict):
            raise spawner.PolicyError(
                f"{self.cls.__name__}.options_from_form returned {type(options).__name__},"
                " not a dict"
            )
        return options


async def _cleanup(jh: jh_spawner.Spawner) -> None:
    """After a failed start, as JupyterHub does: stop whatever was started."""
    try:
        await maybe_future(jh.stop(now=True))
    except Exception:  # the start's failure is what is reported; this one is logged
        log.exception("stopping after a failed start")


def exit_code(status: Any) -> int:
    """A non-None ``poll()`` answer as an exit code: JupyterHub takes any such answer for
    "stopped", and DockerSpawner's is a string (``"ExitCode=137, Error='', …"``)."""
    try:
        return int(status)
    except (TypeError, ValueError):
        return 1


def failure(exc: BaseException) -> spawner.SpawnError:
    """A spawner's exception as chronohub's failure: a 4xx ``SpawnException`` (JupyterHub 6:
    the user's fault) is a ``PolicyError``, anything else a ``SystemFailure``."""
    status = getattr(exc, "status_code", 500)
    message = getattr(exc, "message", "") or str(exc) or type(exc).__name__
    if isinstance(status, int) and status < 500:
        return spawner.PolicyError(str(message), status=status)
    return spawner.SystemFailure(f"{type(exc).__name__}: {message}")


def server_url(returned: Any, jh: jh_spawner.Spawner, spec: spawner.SpawnSpec) -> str:
    """Where the server listens, from what ``start`` returned ((ip, port) or a URL), with its
    path, as JupyterHub's ``User.spawn`` reads it."""
    path = rules.prefix(spec.user, spec.server_name)
    if isinstance(returned, str) and returned:
        parts = urlsplit(returned)
        return f"{parts.scheme or 'http'}://{parts.netloc}{path}"
    if isinstance(returned, tuple | list) and len(returned) == 2:
        ip, port = returned
        host = f"[{ip}]" if ":" in str(ip) else str(ip)
        return f"http://{host}:{int(port)}{path}"
    # JupyterHub < 0.9's spawners returned nothing and set ip and port.
    return f"http://{jh.ip or spec.ip}:{int(jh.port)}{path}"


@contextlib.asynccontextmanager
async def _progress(jh: jh_spawner.Spawner, spec: spawner.SpawnSpec) -> Any:
    """While ``start`` runs, forward the spawner's ``progress()`` events to the spawn's progress
    (between chronohub's own 10 and 50); the task is this block's and cancelled at its end."""
    if spec.report is None:
        yield
        return
    report = spec.report

    async def forward() -> None:
        async with contextlib.aclosing(jh.progress()) as events:
            async for event in events:
                if not isinstance(event, dict):
                    continue
                value = event.get("progress")
                number = int(value) if isinstance(value, int | float) else 10
                forwarded = {
                    "progress": min(max(number, 10), 49),
                    "message": str(event.get("message", "")),
                }
                if event.get("html_message"):
                    forwarded["html_message"] = str(event["html_message"])
                report(forwarded)

    task = asyncio.create_task(forward(), name=f"progress {spec.user}/{spec.server_name}")
    try:
        yield
    finally:
        task.cancel()
        results = await asyncio.gather(task, return_exceptions=True)
        if isinstance(results[0], Exception):
            log.warning("%s.progress failed: %s", type(jh).__name__, results[0])


def _without(value: Any, key: str) -> Any:
    """``value`` with every ``key`` removed, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value
