"""``/hub/api/groups``: teams. Create, list, read, delete, change members and properties.

Each membership change is an event naming the users by id and by name, so who was in a
team on a given day can be answered from the log.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events import models, sql, store
from events.catalog import groups as group_events
from events.catalog.names import Name
from hub import errors
from hub.api import users as users_api
from hub.auth import access, scope_table, scopes
from hub.context import HUB
from hub.projects import cleanup as project_cleanup
from hub.projects import storage
from hub.reads import cache as reads_cache
from hub.reads import groups as groups_read
from hub.reads import users as users_read
from hub.web import body, idempotency, pagination

FIELDS_BY_SCOPE: dict[str, frozenset[str]] = {
    scope_table.READ_GROUPS: frozenset({"kind", "name", "properties", "users"}),
    scope_table.READ_GROUPS_NAME: frozenset({"kind", "name"}),
    scope_table.READ_ROLES_GROUPS: frozenset({"kind", "name", "roles"}),
}
READ_GROUP_SCOPES = list(FIELDS_BY_SCOPE)
GROUP_KINDS: tuple[scopes.Kind, ...] = ("group",)


class CreateGroups(BaseModel):
    """``POST /groups``."""

    model_config = ConfigDict(extra="forbid")

    groups: list[Name] = Field(min_length=1, max_length=1000)
    users: list[Name] = Field(default_factory=list, max_length=10_000)


class CreateGroup(BaseModel):
    """``POST /groups/{name}``."""

    model_config = ConfigDict(extra="forbid")

    users: list[Name] = Field(default_factory=list, max_length=10_000)


class Members(BaseModel):
    """``POST``/``DELETE /groups/{name}/users``."""

    model_config = ConfigDict(extra="forbid")

    users: list[Name] = Field(min_length=1, max_length=10_000)


def render(row: Any, caller: access.Caller, fields: frozenset[str] | None = None) -> dict[str, Any]:
    """The group model for ``row``, with only the fields the caller's scopes grant."""
    if fields is None:
        fields = users_api.visible_fields(caller, FIELDS_BY_SCOPE)
    if fields is None:  # some scope is filtered: decide for this group
        target = scopes.Filter.group(row["name"])
        fields = frozenset().union(
            *(g for s, g in FIELDS_BY_SCOPE.items() if caller.grants.allows(s, target))
        )
    full = {
        "kind": "group",
        "name": row["name"],
        "roles": list(row["roles"]),
        "users": list(row["users"]),
        "properties": json.loads(row["properties"]),
    }
    return {key: value for key, value in full.items() if key in fields}


async def list_groups(request: web.Request) -> web.Response:
    """``GET /groups``: paginated, restricted by ``!group=`` filters."""
    hub = request.app[HUB]
    caller = access.require_list(request, scope_table.LIST_GROUPS, kinds=GROUP_KINDS)
    page = pagination.parse(
        request,
        default_limit=hub.settings.api_page_default_limit,
        max_limit=hub.settings.api_page_max_limit,
    )
    filters = caller.grants.filters(scope_table.LIST_GROUPS)
    only = None if filters.everything else tuple(sorted(filters.groups))
    # remembered by the read cache (hub/reads/cache.py) under the query and its arguments
    rows, total = await reads_cache.fetch(
        hub.read_cache,
        ("groups_page", page.offset, page.limit, only),
        hub.store.pool,
        lambda conn: groups_read.page(conn, offset=page.offset, limit=page.limit, only=only),
    )
    fields = users_api.visible_fields(caller, FIELDS_BY_SCOPE)
    items = [render(row, caller, fields) for row in rows]
    return web.json_response(pagination.reply(request, page, items, total, hub.settings.public_url))


async def _user_ids(conn: sql.Connection, names: list[str]) -> dict[str, UUID]:
    """Ids of the named users; 400 naming those that do not exist."""
    wanted = list(dict.fromkeys(n.lower() for n in names))
    rows = await users_read.named(conn, wanted)
    found = {row["name"]: row["user_id"] for row in rows}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise errors.BadRequest(f"No such user(s): {', '.join(missing)}")
    return {n: found[n] for n in wanted}


async def _create(
    session: store.Session, name: str, members: dict[str, UUID], meta: models.Metadata
) -> None:
    group_id = uuid4()
    events: list[models.Event] = [group_events.GroupCreated(group_id=group_id, name=name)]
    if members:
        events.append(
            group_events.GroupMembersAdded(
                group_id=group_id, user_ids=list(members.values()), users=list(members)
            )
        )
    await session.append(
        group_events.stream_id(group_id), events, expected=store.NO_STREAM, metadata=meta
    )


async def create_groups(request: web.Request) -> web.Response:
    """``POST /groups``: create several groups, optionally with members; 409 if one exists."""
    hub = request.app[HUB]
    command = await body.parse(request, CreateGroups)
    names = list(dict.fromkeys(command.groups))
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.ADMIN_GROUPS])
        existing = [r["name"] for r in await groups_read.named(conn, names)]
        if existing:
            raise errors.Conflict(f"Group {existing[0]} already exists")
        members = await _user_ids(conn, command.users)
        for name in names:
            await _create(session, name, members, access.event_metadata(request, caller))
        rows = [await groups_read.require(conn, n) for n in names]
    return web.json_response([render(row, caller) for row in rows], status=201)


async def create_group(request: web.Request) -> web.Response:
    """``POST /groups/{name}``: create one group; 409 if it exists."""
    name = body.valid_name(request.match_info["name"], "group name")
    command = await body.parse(request, CreateGroup, allow_empty=True)
    caller, row = await create(request, name, command)
    return web.json_response(render(row, caller), status=201)


async def create(
    request: web.Request, name: str, command: CreateGroup
) -> tuple[access.Caller, Any]:
    """Create group ``name`` with ``command``'s members as the request's caller: the caller
    and the group's row; ``errors.Conflict`` if it exists."""
    hub = request.app[HUB]
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.ADMIN_GROUPS])
        if await groups_read.find(conn, name) is not None:
            raise errors.Conflict(f"Group {name} already exists")
        members = await _user_ids(conn, command.users)
        await _create(session, name, members, access.event_metadata(request, caller))
        row = await groups_read.require(conn, name)
    return caller, row


async def get_group(request: web.Request) -> web.Response:
    """``GET /groups/{name}``."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(request, conn, READ_GROUP_SCOPES, scopes.Filter.group(name))
        row = await groups_read.require(conn, name)
    return web.json_response(render(row, caller))


async def delete_group(request: web.Request) -> web.Response:
    """``DELETE /groups/{name}``: 204."""
    await delete(request, request.match_info["name"])
    return web.Response(status=204)


async def delete(request: web.Request, name: str) -> None:
    """Delete group ``name`` as the request's caller; the team's projects go with it, the
    repositories once that has committed."""
    hub = request.app[HUB]
    async with hub.store.session() as session:
        caller = await access.require(
            request, session.conn, [scope_table.DELETE_GROUPS], scopes.Filter.group(name)
        )
        row = await groups_read.require(session.conn, name)
        projects = await project_cleanup.owned_by(session.conn, "group", row["group_id"])
        await session.append(
            group_events.stream_id(row["group_id"]),
            [group_events.GroupDeleted(group_id=row["group_id"], name=name)],
            metadata=access.event_metadata(request, caller),
        )
    await project_cleanup.remove(request.app.get(storage.STORAGE), projects)


async def change_members(request: web.Request) -> web.Response:
    """``POST /groups/{name}/users`` adds, ``DELETE`` (with a JSON body) removes members."""
    command = await body.parse(request, Members)
    name = request.match_info["name"]
    caller, updated = await members_change(request, name, command, adding=request.method == "POST")
    return web.json_response(render(updated, caller))


async def members_change(
    request: web.Request, name: str, command: Members, *, adding: bool
) -> tuple[access.Caller, Any]:
    """Add (or remove) ``command``'s users to (from) group ``name`` as the request's caller:
    the caller and the group's row afterwards. Users already in (or out) are left alone."""
    hub = request.app[HUB]
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(
            request, conn, [scope_table.GROUPS], scopes.Filter.group(name)
        )
        row = await groups_read.require(conn, name)
        members = await _user_ids(conn, command.users)
        current = await groups_read.member_ids(conn, row["group_id"])
        changed = {n: uid for n, uid in members.items() if (uid not in current) == adding}
        if changed:
            event_type = (
                group_events.GroupMembersAdded if adding else group_events.GroupMembersRemoved
            )
            await session.append(
                group_events.stream_id(row["group_id"]),
                [
                    event_type(
                        group_id=row["group_id"],
                        user_ids=list(changed.values()),
                        users=list(changed),
                    )
                ],
                metadata=access.event_metadata(request, caller),
            )
        updated = await groups_read.require(conn, name)
    return caller, updated


async def set_properties(request: web.Request) -> web.Response:
    """``PUT /groups/{name}/properties``: replace the properties with any JSON object."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    properties = await body.read_json(request)
    if not isinstance(properties, dict):
        raise errors.BadRequest("properties must be a JSON object")
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(
            request, conn, [scope_table.GROUPS], scopes.Filter.group(name)
        )
        row = await groups_read.require(conn, name)
        await session.append(
            group_events.stream_id(row["group_id"]),
            [group_events.GroupPropertiesSet(group_id=row["group_id"], properties=properties)],
            metadata=access.event_metadata(request, caller),
        )
        updated = await groups_read.require(conn, name)
    return web.json_response(render(updated, caller))


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    # each write is one store session: a retry's key and answer commit with its events
    members = idempotency.in_transaction(change_members)
    return [
        web.get("/hub/api/groups", list_groups),
        web.post("/hub/api/groups", idempotency.in_transaction(create_groups)),
        web.get("/hub/api/groups/{name}", get_group),
        web.post("/hub/api/groups/{name}", idempotency.in_transaction(create_group)),
        # not in the key's transaction: it removes the group's repositories from disk once its
        # events committed, which a rolled-back transaction could not undo
        web.delete("/hub/api/groups/{name}", delete_group),
        web.post("/hub/api/groups/{name}/users", members),
        web.delete("/hub/api/groups/{name}/users", members),
        web.put("/hub/api/groups/{name}/properties", idempotency.in_transaction(set_properties)),
    ]
