"""``/hub/api/users/{name}/server[s/...]``: start, stop, create, edit and read servers, and follow
a spawn's progress (server-sent events), as JupyterHub 6 answers them.

Replies: 201 when the server is ready, 202 while it is pending (``text/plain``, empty), 204
once stopped. A refusal that is the request's fault (bad options, a limit, a server already
running) is 400 (429 for the concurrent spawn limit) and writes nothing; a spawn that fails
is 500 with the reason, recorded as ``server.failed``.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from events import sql
from hub import errors
from hub.auth import access, identity, scope_table, scopes
from hub.context import HUB, Hub
from hub.reads import users as users_read
from hub.servers import manager as servers
from hub.servers import rules as server_rules
from hub.servers import spawn_progress as server_progress
from hub.web import body

queries = sql.Queries("hub.servers", "servers.sql")

# JupyterHub 6's rule for named servers.
SERVER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){0,28}(?<!-)$")
# A comment line keeps an idle progress stream open through proxies (JupyterHub: 8 s).
KEEPALIVE_S = 8.0
# The states of a server whose spawn is under way (in this hub process or another).
SPAWNING = frozenset({"spawning", "started"})
SERVER_APP = web.AppKey("servers", servers.ServerManager)


class SpawnBody(BaseModel):
    """JupyterHub 6's ``POST .../server`` body (older clients send the options themselves)."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=255)
    user_options: dict[str, Any] = Field(default_factory=dict)


class DefineBody(BaseModel):
    """``PUT /users/{name}/servers/{server_name}``."""

    model_config = ConfigDict(extra="forbid")

    display_name: str = Field(default="", max_length=255)
    user_options: dict[str, Any] = Field(default_factory=dict)


class ModifyBody(BaseModel):
    """``PATCH /users/{name}/servers/{server_name}``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    display_name: str | None = Field(default=None, max_length=255)
    user_options: dict[str, Any] | None = None


class StopBody(BaseModel):
    """``DELETE /users/{name}/servers/{server_name}``."""

    model_config = ConfigDict(extra="forbid")

    remove: StrictBool = False


def manager(request: web.Request) -> servers.ServerManager:
    """The hub's server manager; 503 on a hub that does not spawn."""
    found = request.app.get(SERVER_APP)
    if found is None:
        raise errors.Unavailable("this hub does not spawn servers")
    return found


def iso(value: datetime | None) -> str | None:
    """JupyterHub's timestamp format: ISO 8601 in UTC with a ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render(row: Any, user: str, *, with_state: bool = False) -> dict[str, Any]:
    """JupyterHub's Server model of a ``servers`` row."""
    state, name = row["state"], row["server_name"]
    active = state in server_rules.ACTIVE
    base = f"/hub/api/users/{user}/server" if not name else f"/hub/api/users/{user}/servers/{name}"
    last_activity = row["last_activity"] or (row["started"] if active else None)
    model: dict[str, Any] = {
        "name": name,
        "display_name": row["display_name"] or name,
        "full_name": f"{user}/{name}",
        "last_activity": iso(last_activity),
        "started": iso(row["started"]) if active else None,
        "pending": "spawn"
        if state in server_rules.PENDING_SPAWN
        else "stop"
        if state == "stopping"
        else None,
        "ready": state == "ready",
        "stopped": not active,
        "url": server_rules.prefix(user, name),
        "user_options": json.loads(row["options"]),
        "progress_url": f"{base}/progress",
        "full_url": None,
        "full_progress_url": None,
    }
    if with_state:
        model["state"] = {"pid": row["pid"]} if row["pid"] else {}
    return model


async def servers_by_user(
    conn: sql.Connection, user_ids: list[UUID], *, include_stopped: bool
) -> dict[UUID, list[Any]]:
    """Each user's servers (active ones only unless ``include_stopped``)."""
    found: dict[UUID, list[Any]] = {user_id: [] for user_id in user_ids}
    if user_ids:
        for row in await conn.fetch(queries["servers_of_users"], user_ids, not include_stopped):
            found[row["user_id"]].append(row)
    return found


def server_fields(rows: list[Any], user: str, *, with_state: bool) -> dict[str, Any]:
    """The user model's ``servers``, ``server`` and ``pending`` from the user's server rows."""
    models = {row["server_name"]: render(row, user, with_state=with_state) for row in rows}
    default = models.get("")
    return {
        "servers": models,
        "server": default["url"] if default and default["ready"] else None,
        "pending": default["pending"] if default else None,
    }


def _server_name(request: web.Request) -> str:
    name = request.match_info.get("server_name", "")
    if name and not SERVER_NAME.match(name):
        raise errors.BadRequest(f"Invalid server_name: {name!r}")
    return name


async def _target(
    request: web.Request, conn: sql.Connection, any_of: list[str]
) -> tuple[access.Caller, Any, str]:
    """The caller (scope-checked on this server), the user row, and the server name."""
    user = request.match_info["name"]
    server_name = _server_name(request)
    caller = await access.require(request, conn, any_of, scopes.Filter.server(user, server_name))
    row = await users_read.require(conn, user)
    return caller, row, server_name


def _text(status: int) -> web.Response:
    return web.Response(status=status, content_type="text/plain")


async def start_server(request: web.Request) -> web.Response:
    """``POST /users/{name}/server`` and ``/servers/{server_name}``: 201 ready, 202 pending."""
    hub = request.app[HUB]
    servers_ = manager(request)
    data = await body.read_json(request)
    if data is None:
        options: dict[str, Any] = {}
    elif isinstance(data, dict) and set(data) <= {"display_name", "user_options"} and data:
        options = body.validate(SpawnBody, data).user_options
    elif isinstance(data, dict):
        options = data  # JupyterHub < 6: the body is the options
    else:
        raise errors.BadRequest(f"user_options must be a JSON object, got {type(data).__name__}")
    async with hub.store.pool.acquire() as conn:
        caller, user, server_name = await _target(request, conn, [scope_table.START_SERVERS])
    await identity.check_spawn(request, caller, user["user_id"], user["name"])
    outcome = await servers_.spawn(
        user["user_id"],
        user["name"],
        server_name,
        options,
        access.event_metadata(request, caller),
    )
    return _text(201 if outcome == "ready" else 202)


async def stop_server(request: web.Request) -> web.Response:
    """``DELETE /users/{name}/server`` and ``/servers/{server_name}`` (``remove``): 204 or 202."""
    hub = request.app[HUB]
    servers_ = manager(request)
    command = await body.parse(request, StopBody, allow_empty=True)
    async with hub.store.pool.acquire() as conn:
        caller, user, server_name = await _target(request, conn, [scope_table.DELETE_SERVERS])
    outcome = await servers_.stop(
        user["user_id"],
        user["name"],
        server_name,
        access.event_metadata(request, caller),
        remove=command.remove,
    )
    return _text(202 if outcome == "pending" else 204)


async def get_server(request: web.Request) -> web.Response:
    """``GET /users/{name}/server`` and ``/servers/{server_name}``: the Server model."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        caller, user, server_name = await _target(request, conn, [scope_table.READ_SERVERS])
        row = await conn.fetchrow(queries["server"], user["user_id"], server_name)
    if row is None:
        raise errors.NotFound(f"{user['name']} has no server named {server_name!r}")
    with_state = caller.grants.allows(
        scope_table.ADMIN_SERVER_STATE, scopes.Filter.server(user["name"], server_name)
    )
    return web.json_response(render(row, user["name"], with_state=with_state))


async def _server_reply(
    hub: Hub, user: Any, server_name: str, *, status: int = 200
) -> web.Response:
    """The server as it now stands in the read model, rendered as JupyterHub's server model."""
    async with hub.store.pool.acquire() as conn:
        row = await conn.fetchrow(queries["server"], user["user_id"], server_name)
    return web.json_response(render(row, user["name"]), status=status)


async def define_server(request: web.Request) -> web.Response:
    """``PUT /users/{name}/servers/{server_name}``: create it stopped; 201, 409 if it exists."""
    hub = request.app[HUB]
    servers_ = manager(request)
    command = await body.parse(request, DefineBody, allow_empty=True)
    async with hub.store.pool.acquire() as conn:
        caller, user, server_name = await _target(request, conn, [scope_table.START_SERVERS])
    await servers_.define(
        user["user_id"],
        user["name"],
        server_name,
        command.display_name,
        command.user_options,
        access.event_metadata(request, caller),
    )
    return await _server_reply(hub, user, server_name, status=201)


async def modify_server(request: web.Request) -> web.Response:
    """``PATCH /users/{name}/servers/{server_name}``: rename a stopped server, or change its
    display name or options."""
    hub = request.app[HUB]
    servers_ = manager(request)
    command = await body.parse(request, ModifyBody)
    if command.name is None and command.display_name is None and command.user_options is None:
        raise errors.BadRequest("Must specify at least one field to modify.")
    async with hub.store.pool.acquire() as conn:
        caller, user, server_name = await _target(request, conn, [scope_table.START_SERVERS])
    new_name = command.name if command.name is not None else server_name
    if new_name != server_name and not SERVER_NAME.match(new_name):
        raise errors.BadRequest(f"Invalid server_name: {new_name!r}")
    meta = access.event_metadata(request, caller)
    user_id, name = user["user_id"], user["name"]
    if new_name != server_name:
        await servers_.rename(
            user_id,
            name,
            server_name,
            new_name,
            command.display_name,
            command.user_options,
            meta,
        )
    else:
        await servers_.modify(
            user_id, name, server_name, command.display_name, command.user_options, meta
        )
    return await _server_reply(hub, user, new_name)


async def progress(request: web.Request) -> web.StreamResponse:
    """``GET .../progress``: the spawn's progress as server-sent events, JupyterHub's shape."""
    hub = request.app[HUB]
    servers_ = manager(request)
    async with hub.store.pool.acquire() as conn:
        _, user, server_name = await _target(request, conn, [scope_table.READ_SERVERS])
        row = await conn.fetchrow(queries["server"], user["user_id"], server_name)
    path = server_rules.prefix(user["name"], server_name)
    follow = servers_.progress(user["user_id"], server_name)
    state = row["state"] if row is not None else None
    events: list[dict[str, Any]] = []
    if follow is None and state in SPAWNING:
        # Another hub process runs this spawn: its steps are in the log.
        follow = servers_.progress_from_log(user["user_id"], user["name"], server_name)
    elif follow is None and state == "ready":
        events = [server_progress.ready_event(path)]
    elif follow is None:
        raise errors.BadRequest(f"{server_rules.label(user['name'], server_name)} is not starting")
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    for event in events:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
    if follow is not None:
        async for event in _with_keepalive(follow):
            if event is None:
                await response.write(b"\n")
            else:
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
    await response.write_eof()
    return response


async def _with_keepalive(source: Any) -> Any:
    """The source's items, with None whenever ``KEEPALIVE_S`` passes without one."""
    iterator = source.__aiter__()
    # One pending read at a time, awaited here and cancelled in the finally: it ends with the
    # request, so it needs no owner (see events/tasks.py).
    pending = asyncio.ensure_future(iterator.__anext__())
    try:
        while True:
            done, _ = await asyncio.wait([pending], timeout=KEEPALIVE_S)
            if not done:
                yield None
                continue
            try:
                item = pending.result()
            except StopAsyncIteration:
                return
            yield item
            pending = asyncio.ensure_future(iterator.__anext__())
    finally:
        pending.cancel()
        await iterator.aclose()


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    one = "/hub/api/users/{name}/server"
    named = "/hub/api/users/{name}/servers/{server_name}"
    return [
        web.post(one, start_server),
        web.delete(one, stop_server),
        web.get(one, get_server),
        web.get(one + "/progress", progress),
        # JupyterHub also reaches the default server as ``servers/`` (an empty name).
        web.patch(one, modify_server),
        web.patch("/hub/api/users/{name}/servers/", modify_server),
        web.post(named, start_server),
        web.delete(named, stop_server),
        web.get(named, get_server),
        web.put(named, define_server),
        web.patch(named, modify_server),
        web.get(named + "/progress", progress),
    ]
