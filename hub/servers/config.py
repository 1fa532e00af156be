"""The server manager's settings, taken from the hub's, and the spawner they choose: a
JupyterHub spawner class configured, or chronohub's own command with its program found, both
checked at start-up (a ``StartupError`` before anything is written, not at the first spawn)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import ports as hub_ports
from hub import startup
from hub.servers import isolation, local_spawner, spawner

if TYPE_CHECKING:
    from hub import settings as hub_settings


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
    server_token_projects: bool = True
    # Where single-user servers reach the hub's API: its internal address, known before the
    # hub serves (a server spawned at once must not be given a guessed one).
    hub_url: str = "http://127.0.0.1:8081/hub/"
    # Safe by default: nobody's code runs until the hub's settings say how.
    isolation: isolation.Isolation = field(default_factory=lambda: isolation.Isolation("none"))
    # Where servers' ports come from: the hub's one picker (port_range), shared with the
    # services and the proxy; by default the kernel's choice.
    ports: hub_ports.Ports = field(default_factory=hub_ports.Ports)


def settings_from(
    config: Any,
    code: isolation.Isolation | None = None,
    command: tuple[str, ...] | None = None,
    hub_url: str | None = None,
    picker: hub_ports.Ports | None = None,
) -> Settings:
    """The manager's settings from the hub's (``code``: the hub's one ``Isolation``;
    ``command``: the spawner's command as found at start-up; ``hub_url``: the hub's internal
    URL, by default from ``hub_ip`` and ``hub_port``; ``picker``: the hub's one port picker, by
    default one of the manager's own from ``port_range``)."""
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
        server_token_projects=config.server_token_projects,
        isolation=code or isolation.Isolation.from_settings(config),
        hub_url=hub_url or startup.url(config.hub_ip, config.hub_port, "/hub/"),
        ports=picker or hub_ports.Ports.from_setting(config.port_range),
    )


def jupyterhub_spawner(config: hub_settings.Settings) -> spawner.Spawner | None:
    """The JupyterHub spawner ``spawner_class`` names, configured; None for chronohub's own.
    A ``StartupError`` naming the problem when the class or one of its traits is unknown."""
    if config.spawner_class is None:
        return None
    # Imported only when used: jupyterhub's spawner module brings SQLAlchemy and tornado.
    from hub.servers import jupyterhub_adapter, jupyterhub_config

    try:
        return jupyterhub_adapter.JupyterHubSpawner.from_settings(
            config.spawner_class, config.spawner_config, config.spawner_config_file
        )
    except jupyterhub_config.SpawnerConfigError as exc:
        raise startup.StartupError(exc.message) from exc


def spawn_command(config: hub_settings.Settings, code: isolation.Isolation) -> tuple[str, ...]:
    """The spawner's command, its program found; a ``StartupError`` at start-up, not at the
    first spawn, when it is missing or out of reach of the accounts servers run as."""
    try:
        command = local_spawner.resolve_command([*config.spawner_cmd, *config.spawner_args])
        if code.mode == "system_users":
            local_spawner.setpriv()
    except spawner.SystemFailure as exc:
        raise startup.StartupError(exc.message) from exc
    if code.mode == "system_users" and (closed := local_spawner.closed_to_users(command[0])):
        raise startup.StartupError(
            f"users' servers run as their own system accounts, which cannot pass through"
            f" {closed} to run {command[0]}: install the hub in an environment made from an"
            " interpreter every account can run (`make run` uses /usr/bin/python3 where it"
            f" exists), or let them through with: chmod o+x {closed}"
        )
    return command
