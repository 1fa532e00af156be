"""The server manager's settings, taken from the hub's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub import ports as hub_ports
from hub import startup
from hub.servers import isolation


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
