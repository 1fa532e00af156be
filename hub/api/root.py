"""The root of the REST API, whoami, hub info, the health check, and the site's root."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import Any

from aiohttp import web

from events import errors as event_errors
from hub import database_watch, errors, version
from hub.auth import access, scope_table, scopes
from hub.context import HUB
from hub.reads import users as users_read
from hub.web import body


async def root(request: web.Request) -> web.Response:
    """``GET /hub/api/``: the JupyterHub API version clients switch features on."""
    return web.json_response({"version": version.JUPYTERHUB_API})


async def info(request: web.Request) -> web.Response:
    """``GET /hub/api/info`` (``read:hub``): versions and the hub's components."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.READ_HUB])
    return web.json_response(
        {
            "version": version.JUPYTERHUB_API,
            "chronohub_version": version.CHRONOHUB,
            "python": sys.version,
            "sys_executable": sys.executable,
            "spawner": {"class": "chronohub.local_spawner", "version": version.CHRONOHUB},
            "authenticator": {"class": "chronohub.tokens", "version": version.CHRONOHUB},
        }
    )


JSON = {"Content-Type": "application/json; charset=utf-8"}  # as web.json_response says


@functools.lru_cache(maxsize=4096)
def _rendered(expanded: frozenset[scopes.Scope]) -> tuple[str, ...]:
    """A token's scopes as whoami lists them (pure, so remembered: a token's next request
    asks the same)."""
    return tuple(scopes.render(expanded))


async def whoami(request: web.Request) -> web.Response:
    """``GET /hub/api/user``: the token's owner, with the token's expanded scopes.

    Any valid token may ask who it belongs to: the owner's identify scopes are added for the
    check only, and the reply lists the scopes the token itself carries (what HubAuth checks).
    """
    caller = access.caller_of(request)
    token = access.token_of(request)
    if token is not None and token.whoami is not None:
        return web.Response(body=token.whoami, headers=JSON)
    model: dict[str, Any]
    if caller.kind == "user":
        # Resolved with the token (and kept with it in the token cache); a cookie's caller
        # has none, and its user is read here.
        row: Any = token.profile if token is not None else None
        if row is None:
            async with request.app[HUB].store.pool.acquire() as conn:
                row = await users_read.find(conn, caller.name)
        if row is None:
            raise errors.Forbidden(access.MISSING_CREDENTIALS)
        model = {
            "kind": "user",
            "name": row["name"],
            "admin": row["admin"],
            "roles": list(caller.roles),
            "groups": list(row["groups"]),
            "server": None,
            "pending": None,
            "created": body.iso(row["created"]),
            "last_activity": body.iso(row["last_activity"]),
            "servers": {},
            "auth_state": None,
        }
    else:
        model = {
            "kind": "service",
            "name": caller.name,
            "admin": caller.admin,
            "roles": list(caller.roles),
        }
    model["token_id"] = caller.token_id
    model["session_id"] = None
    model["scopes"] = _rendered(caller.expanded)
    encoded = json.dumps(model).encode()
    if token is not None:
        token.whoami = encoded  # until the profile moves (access.ActivityRecorder)
    return web.Response(body=encoded, headers=JSON)


async def health(request: web.Request) -> web.Response:
    """``GET /hub/health``: 200 when the hub and its database answer; 503 (``degraded``, with
    the reason and ``Retry-After``) while the database does not answer, answers slowly or has
    just failed a request."""
    hub = request.app[HUB]
    watch = request.app.get(database_watch.WATCH)
    if watch is None:  # a hub without the watch (tests of single handlers): ask directly
        async with hub.store.connection(timeout=5) as conn:
            await conn.fetchval("SELECT 1")
        return web.json_response({"status": "ok", "database": "ok"})
    # A probe of its own, so that health tells the present; its failure is recorded by it.
    with contextlib.suppress(event_errors.DatabaseUnavailable):
        await watch.probe()
    status = watch.status()
    if status.ok:
        return web.json_response({"status": "ok", "database": "ok"})
    response = web.json_response(
        {"status": "degraded", "database": status.database, "reason": status.reason},
        status=503,
    )
    response.headers["Retry-After"] = str(database_watch.RETRY_AFTER_S)
    return response


async def site_root(request: web.Request) -> web.Response:
    """``GET /``: the proxy sends it to the hub, which sends it on to ``/hub/``, as
    JupyterHub does."""
    raise web.HTTPFound("/hub/")


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/", site_root),
        web.get("/hub/api", root),
        web.get("/hub/api/", root),
        web.get("/hub/api/info", info),
        web.get("/hub/api/user", whoami),
        web.get("/hub/health", health),
        web.get("/hub/api/health", health),
    ]
