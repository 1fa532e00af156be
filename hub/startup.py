"""What ``chronohub serve`` checks and says as it starts: its two addresses.

As in JupyterHub, people and clients use one public address, the proxy's (``ip``:``port``,
``http://127.0.0.1:8000/`` by default); the proxy routes ``/hub/`` to the hub's own,
internal address (``hub_ip``:``hub_port``, ``127.0.0.1:8081``), where the single-user
servers' API calls reach the hub too. Both sockets are bound before the database starts, so
a busy port is told at once, in one line saying how to choose another, not as a traceback
after the database came up.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Literal

from hub import settings as hub_settings

Role = Literal["public", "hub"]

# Accepted connections waiting to be taken: the proxy's benchmark opens many at once.
BACKLOG = 1024


class StartupError(Exception):
    """chronohub cannot start with this configuration here; the message is one line that says
    what to change."""


@dataclass(frozen=True)
class _Knobs:
    """How an address is chosen: its settings, their variables, options and an example."""

    what: str
    port: tuple[str, str, str]
    ip: tuple[str, str, str]
    example: int


_KNOBS: dict[Role, _Knobs] = {
    "public": _Knobs(
        "the public address",
        ("port", "CHRONOHUB_PORT", "--port"),
        ("ip", "CHRONOHUB_IP", "--ip"),
        8010,
    ),
    "hub": _Knobs(
        "the hub's internal address",
        ("hub_port", "CHRONOHUB_HUB_PORT", "--hub-port"),
        ("hub_ip", "CHRONOHUB_HUB_IP", "--hub-ip"),
        8091,
    ),
}


def url(host: str, port: int, path: str = "/") -> str:
    """``http://host:port<path>``, an IPv6 host in brackets."""
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def bind(ip: str, port: int, role: Role) -> socket.socket:
    """A socket listening on ``ip:port`` (0: a free port), or a ``StartupError`` naming
    the setting to change."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.create_server((ip, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise StartupError(cannot_listen(ip, port, role, exc)) from exc


def check_free(ip: str, port: int, role: Role) -> None:
    """Raise a ``StartupError`` now if a proxy started in another process could not listen on
    ``ip:port`` (it would only exit with a code)."""
    if port:
        bind(ip, port, role).close()


def cannot_listen(ip: str, port: int, role: Role, exc: OSError) -> str:
    """The one line saying why ``ip:port`` cannot be listened on, and what to change."""
    knobs = _KNOBS[role]
    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else "needs privileges"
        setting, variable, option = knobs.port
        other = knobs.example
        return (
            f"port {port} ({knobs.what}, on {ip}) {reason}: choose another with"
            f" {setting} = {other} in chronohub.toml, {variable}={other} or {option} {other}"
            f' (make run ARGS="{option} {other}")'
        )
    setting, variable, option = knobs.ip
    return (
        f"cannot listen on {ip}:{port} ({knobs.what}): {exc.strerror or exc}; set {setting}"
        f" = … in chronohub.toml, {variable}=… or {option} … to an address of this machine"
    )


def banner(
    config: hub_settings.Settings,
    *,
    public: str | None,
    hub_address: tuple[str, int],
    database: str,
) -> list[str]:
    """The start-up lines: the one URL to open, where the hub listens, where the database is.

    ``public`` is the address of the proxy this process runs (None: it runs none).
    """
    hub_host, hub_port = hub_address
    hub_at = url(hub_host, hub_port, "").removeprefix("http://")
    if config.proxy == "builtin":
        where = f"{hub_at} (internal), behind the built-in proxy"
    elif config.proxy == "chp" and config.chp_api_url is None:
        where = f"{hub_at} (internal), behind the configurable-http-proxy chronohub started"
    elif config.proxy == "chp":
        where = (
            f"{hub_at} (internal), behind the external configurable-http-proxy at chp_api_url,"
            " which must serve the public address (else set public_url to the one it serves)"
        )
    else:
        where = (
            f"{hub_at}, with no proxy (proxy = none): the hub's own address is the public one"
            " and /user/ servers are not routed (ip and port are unused)"
        )
    if config.public_url:
        opened = config.public_url.rstrip("/") + "/hub/"
    elif public is not None:
        opened = public.rstrip("/") + "/hub/"
    else:
        opened = url(hub_host, hub_port, "/hub/")
    return [f"chronohub serving at {opened}", f"hub: {where}", f"database: {database}"]
