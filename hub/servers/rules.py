"""The pure rules of servers: whether to spawn or stop, names and paths, and JupyterHub's
spawner environment. No I/O: ``hub.servers.manager`` acts on what these decide."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from hub.servers import spawner
from projections import servers as server_projection

ACTIVE = frozenset({"spawning", "started", "ready", "stopping"})
PENDING_SPAWN = frozenset({"spawning", "started"})
ENDED = frozenset({"defined", "stopped", "failed"})

Decision = Literal["spawn", "pending"]
StopDecision = Literal["stop", "pending", "remove"]


class ServerNotFound(spawner.PolicyError):
    """No such server."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=404)


@dataclass(frozen=True)
class Limits:
    """What a spawn request is checked against."""

    allow_named: bool
    named_limit: int
    named_count: int
    spawn_limit: int
    pending_spawns: int


def label(user: str, server_name: str) -> str:
    """How messages name a server, as JupyterHub's do (``alice``'s server, ``alice/lab``)."""
    return f"{user}/{server_name}" if server_name else f"{user}'s server"


def decide_spawn(state: str | None, user: str, server_name: str, limits: Limits) -> Decision:
    """Whether to spawn, or that a spawn is already pending; ``PolicyError`` if refused."""
    if server_name and not limits.allow_named:
        raise spawner.PolicyError("Named servers are not enabled.")
    if state in PENDING_SPAWN:
        return "pending"
    if state == "ready":
        raise spawner.PolicyError(f"{label(user, server_name)} is already running")
    if state == "stopping":
        raise spawner.PolicyError(f"{label(user, server_name)} is pending stop, please wait")
    if (
        server_name
        and state is None
        and limits.named_limit
        and limits.named_count >= limits.named_limit
    ):
        raise spawner.PolicyError(
            f"User {user} already has the maximum of {limits.named_limit} named servers."
            " One must be deleted before a new server can be created"
        )
    if limits.spawn_limit and limits.pending_spawns >= limits.spawn_limit:
        raise spawner.PolicyError(
            f"Too many servers starting ({limits.pending_spawns}, the limit is"
            f" {limits.spawn_limit}). Try again in a minute.",
            status=429,
        )
    return "spawn"


def decide_stop(state: str | None, user: str, server_name: str, remove: bool) -> StopDecision:
    """Stop, already stopping, or remove a stopped named server; ``PolicyError`` if refused."""
    if remove and not server_name:
        raise spawner.PolicyError("Cannot delete the default server")
    if state is None:
        if server_name:
            raise ServerNotFound(f"{user} has no server named {server_name!r}")
        raise spawner.PolicyError(f"{label(user, server_name)} is not running")
    if state == "stopping":
        return "pending"
    if state in ACTIVE:
        return "stop"
    if remove:
        return "remove"
    raise spawner.PolicyError(f"{label(user, server_name)} is not running")


def prefix(user: str, server_name: str) -> str:
    """The server's URL path: ``/user/<name>/[<server>/]``."""
    return server_projection.routespec(user, server_name)


def client_id(user: str, server_name: str) -> str:
    """The server's OAuth client id, as JupyterHub names it."""
    suffix = f"-{quote(server_name, safe='')}" if server_name else ""
    return f"jupyterhub-user-{quote(user, safe='')}{suffix}"


def contract_env(
    *,
    user: str,
    server_name: str,
    api_token: str,
    hub_url: str,
    service_url: str,
    public_url: str | None,
    extra: dict[str, str],
) -> dict[str, str]:
    """JupyterHub's spawner environment (``Spawner.get_env``), for jupyterhub-singleuser."""
    path = prefix(user, server_name)
    api_url = hub_url.rstrip("/") + "/api"
    access = [f"access:servers!server={user}/{server_name}", f"access:servers!user={user}"]
    env = {
        **extra,
        "JUPYTERHUB_API_TOKEN": api_token,
        "JPY_API_TOKEN": api_token,
        "JUPYTERHUB_CLIENT_ID": client_id(user, server_name),
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{path}oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps(access),
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(access),
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": json.dumps([]),
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": server_name,
        "JUPYTERHUB_API_URL": api_url,
        "JUPYTERHUB_ACTIVITY_URL": f"{api_url}/users/{quote(user, safe='')}/activity",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": path,
        "JUPYTERHUB_SERVICE_URL": service_url,
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
    }
    if public_url:
        env["JUPYTERHUB_PUBLIC_URL"] = public_url.rstrip("/") + path
        env["JUPYTERHUB_PUBLIC_HUB_URL"] = public_url.rstrip("/") + "/hub/"
    return env


def server_token_scopes(user: str, server_name: str, *, projects: bool = False) -> list[str]:
    """The ``server`` role, resolved for this server: report activity, let its users in; with
    ``projects``, also what ``chronohub project`` needs from inside the server: manage the
    user's own projects, and write those shared with them (a token's ``write:projects`` counts
    only where its user holds the role, through a membership, so it grants nothing more)."""
    role = [f"access:servers!server={user}/{server_name}", f"users:activity!user={user}"]
    if projects:
        role += [f"admin:projects!user={user}", "write:projects"]
    return role
