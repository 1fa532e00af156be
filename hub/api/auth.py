"""REST endpoints of accounts with passwords: set a password, answer signup requests.

* ``PUT /hub/api/users/{name}/password`` ``{"password", "current_password"?}``: an admin
  (``admin:users`` on the user) sets it; the user themself changes it with the current one.
* ``GET /hub/api/signups``, ``POST /hub/api/signups/{name}`` (approve: 201, the new user),
  ``DELETE /hub/api/signups/{name}`` (reject: 204); all need ``admin:users``.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from hub import errors
from hub.api import users as users_api
from hub.auth import access, identity, scope_table, scopes, signups
from hub.context import HUB
from hub.reads import users as users_read
from hub.web import body


class SetPassword(BaseModel):
    """``PUT /users/{name}/password``."""

    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024)
    current_password: str | None = Field(default=None, max_length=1024)


class Signup(BaseModel):
    """A signup request waiting for an admin."""

    name: str
    requested: str


async def set_password(request: web.Request) -> web.Response:
    """``PUT /hub/api/users/{name}/password``: 204; never echoes the password."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    command = await body.parse(request, SetPassword)
    caller = access.caller_of(request)
    min_length = request.app[identity.AUTH].settings.min_password_length
    metadata = access.event_metadata(request, caller)
    async with hub.store.pool.acquire() as conn:
        owner = await users_read.find(conn, name)
        groups = {name: list(owner["groups"])} if owner else None
        as_admin = owner is not None and caller.grants.allows(
            scope_table.ADMIN_USERS, scopes.Filter.user(name), groups_of=groups
        )
        if not as_admin and (caller.kind != "user" or caller.name != name or owner is None):
            await access.require(request, conn, [scope_table.ADMIN_USERS], scopes.Filter.user(name))
            raise errors.NotFound(f"No such user: {name}")
    if as_admin:
        await signups.set_password(
            hub.store, name, command.password, min_length=min_length, by="admin", metadata=metadata
        )
    else:
        if command.current_password is None:
            raise errors.BadRequest("current_password is required to change your own password")
        await signups.change_own_password(
            hub.store,
            owner,
            current=command.current_password,
            new=command.password,
            min_length=min_length,
            metadata=metadata,
        )
    return web.Response(status=204)


async def list_signups(request: web.Request) -> web.Response:
    """``GET /hub/api/signups``: the requests waiting for an answer."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.ADMIN_USERS])
        rows = await conn.fetch(signups.queries["signups_all"])
    return web.json_response(
        [{"name": r["name"], "requested": body.iso(r["requested"])} for r in rows]
    )


async def approve_signup(request: web.Request) -> web.Response:
    """``POST /hub/api/signups/{name}``: create the user; 201 with the user model."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(request, conn, [scope_table.ADMIN_USERS])
    row = await signups.approve(
        hub.store, request.match_info["name"], metadata=access.event_metadata(request, caller)
    )
    return web.json_response(users_api.render(row, caller), status=201)


async def reject_signup(request: web.Request) -> web.Response:
    """``DELETE /hub/api/signups/{name}``: 204."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(request, conn, [scope_table.ADMIN_USERS])
    await signups.reject(
        hub.store, request.match_info["name"], metadata=access.event_metadata(request, caller)
    )
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.put("/hub/api/users/{name}/password", set_password),
        web.get("/hub/api/signups", list_signups),
        web.post("/hub/api/signups/{name}", approve_signup),
        web.delete("/hub/api/signups/{name}", reject_signup),
    ]
