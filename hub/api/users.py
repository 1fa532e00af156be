"""``/hub/api/users``: list, create, read, modify and delete users, and report their activity.

Every change is a command decided against the users read model and appended as events
(``user.created``, ``user.renamed``, ``user.admin_changed``, ``user.deleted``); every read
comes from the projections, so a caller reads its own writes. Fields of the user model
appear only where a scope of the caller grants them, as in JupyterHub.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from events import models, sql, store
from events.catalog import users as user_events
from events.catalog.names import Name
from hub import errors
from hub.api import servers as servers_api
from hub.auth import access, scope_table, scopes
from hub.context import HUB
from hub.projects import cleanup as project_cleanup
from hub.projects import storage
from hub.reads import cache as reads_cache
from hub.reads import users as users_read
from hub.servers import rules as server_rules
from hub.servers import spawner
from hub.web import body, idempotency, pagination

# Activity is telemetry kept out of the log, in the tables of its owners (auth, servers).
auth_queries = sql.Queries("hub.auth", "auth.sql")
server_queries = sql.Queries("hub.servers", "servers.sql")

# Which fields each scope reveals (JupyterHub's model filtering).
FIELDS_BY_SCOPE: dict[str, frozenset[str]] = {
    scope_table.READ_USERS: frozenset(
        {
            "kind",
            "name",
            "admin",
            "roles",
            "groups",
            "server",
            "pending",
            "created",
            "last_activity",
            "user_info",
        }
    ),
    scope_table.READ_USERS_NAME: frozenset({"kind", "name", "admin", "user_info"}),
    scope_table.READ_USERS_GROUPS: frozenset({"kind", "name", "groups"}),
    scope_table.READ_USERS_ACTIVITY: frozenset({"kind", "name", "last_activity"}),
    scope_table.READ_SERVERS: frozenset({"kind", "name", "servers"}),
    scope_table.READ_ROLES_USERS: frozenset({"kind", "name", "roles", "admin"}),
    scope_table.ADMIN_AUTH_STATE: frozenset({"kind", "name", "auth_state"}),
}
READ_USER_SCOPES = list(FIELDS_BY_SCOPE)
ALL_FIELDS = frozenset().union(*FIELDS_BY_SCOPE.values())
SERVER_FIELDS = frozenset({"server", "pending", "servers"})  # from the servers read model
JSON = {"Content-Type": "application/json; charset=utf-8"}  # as web.json_response says
STATES = ("active", "ready", "inactive")
SORTS = ("id", "name", "last_activity", "-id", "-name", "-last_activity")
# Activity more than this far in the future is refused, as JupyterHub does.
MAX_FUTURE_ACTIVITY = timedelta(minutes=59)


class CreateUsers(BaseModel):
    """``POST /users``."""

    model_config = ConfigDict(extra="forbid")

    usernames: list[Name] = Field(min_length=1, max_length=1000)
    admin: StrictBool = False


class CreateUser(BaseModel):
    """``POST /users/{name}``."""

    model_config = ConfigDict(extra="forbid")

    admin: StrictBool = False


class ModifyUser(BaseModel):
    """``PATCH /users/{name}``."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    admin: StrictBool | None = None


class ServerActivity(BaseModel):
    """One server's activity in an activity report."""

    model_config = ConfigDict(extra="forbid")

    last_activity: datetime


class Activity(BaseModel):
    """``POST /users/{name}/activity``: the user's, or their servers', last activity."""

    model_config = ConfigDict(extra="forbid")

    last_activity: datetime | None = None
    servers: dict[str, ServerActivity] = Field(default_factory=dict)


def normalize(name: str) -> str:
    """JupyterHub's default username normalisation: lower case."""
    return name.lower()


def render(
    row: Any,
    caller: access.Caller,
    fields: frozenset[str] | None = None,
    servers: list[Any] | None = None,
) -> dict[str, Any]:
    """The user model for ``row``, with only the fields the caller's scopes grant.

    ``fields`` is ``visible_fields`` worked out once for a whole list, when it can be;
    ``servers`` the user's rows of the servers read model.
    """
    if fields is None:
        fields = visible_fields(caller, FIELDS_BY_SCOPE)
    if fields is None:  # some scope is filtered: decide for this user
        target = scopes.Filter.user(row["name"])
        membership = {row["name"]: list(row["groups"])}  # for !group= filters
        fields = frozenset().union(
            *(
                granted
                for scope, granted in FIELDS_BY_SCOPE.items()
                if caller.grants.allows(scope, target, groups_of=membership)
            )
        )
    roles = ["user", *(["admin"] if row["admin"] else []), *row["roles"]]
    full: dict[str, Any] = {
        "kind": "user",
        "name": row["name"],
        "admin": row["admin"],
        "roles": sorted(set(roles)),
        "groups": list(row["groups"]),
        "server": None,
        "pending": None,
        "created": body.iso(row["created"]),
        "last_activity": body.iso(row["last_activity"]),
        "servers": {},
        "auth_state": None,
        "user_info": {"name": row["name"], "display_name": row["name"]},
    }
    if servers:
        with_state = caller.grants.allows(
            scope_table.ADMIN_SERVER_STATE, scopes.Filter.user(row["name"])
        )
        full.update(servers_api.server_fields(servers, row["name"], with_state=with_state))
    return {key: value for key, value in full.items() if key in fields}


def visible_fields(
    caller: access.Caller, by_scope: dict[str, frozenset[str]]
) -> frozenset[str] | None:
    """The fields the caller sees on every resource, or None if it depends on the resource.

    Most callers hold each read scope everywhere or nowhere; their answer is the same for
    every row of a list, so it is worked out once.
    """
    fields: set[str] = set()
    for scope, granted in by_scope.items():
        held = caller.grants.filters(scope)
        if held.everything:
            fields |= granted
        elif held.held:
            return None
    return frozenset(fields)


async def list_users(request: web.Request) -> web.Response:
    """``GET /users``: paginated, filtered by state and name, restricted by list filters."""
    hub = request.app[HUB]
    caller = access.require_list(request, scope_table.LIST_USERS, kinds=("user", "group"))
    page = pagination.parse(
        request,
        default_limit=hub.settings.api_page_default_limit,
        max_limit=hub.settings.api_page_max_limit,
    )
    state = request.query.get("state") or None
    if state is not None and state not in STATES:
        raise errors.BadRequest(f"state must be one of {', '.join(STATES)}, got {state!r}")
    sort = request.query.get("sort") or "id"
    if sort not in SORTS:
        raise errors.BadRequest(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    name_filter = request.query.get("name_filter") or None
    fields = visible_fields(caller, FIELDS_BY_SCOPE)
    include_stopped = _include_stopped(request)
    # Each read below is remembered by the process's read cache (hub/reads/cache.py), keyed
    # by the query and all its arguments; what this caller may see is decided here, from
    # those arguments, at every request. A connection is borrowed only for what is not held.
    cache, pool = hub.read_cache, hub.store.pool
    only = await _listable_users(cache, pool, caller)
    if fields is not None and only is None and (sort, state, name_filter) == ("id", None, None):
        # The common case (the idle culler's, an admin's): every user, in the default
        # order, and the caller sees the same fields of each; PostgreSQL builds the page's
        # JSON and it is sent on as it is.
        hidden = tuple(sorted(ALL_FIELDS - fields))
        found = await reads_cache.fetch(
            cache,
            ("users_page_json", page.offset, page.limit, hidden, include_stopped),
            pool,
            lambda conn: users_read.page_json(
                conn,
                offset=page.offset,
                limit=page.limit,
                hidden=list(hidden),
                include_stopped=include_stopped,
            ),
        )
        # Users with servers to show: their server models are the hub's (URLs, options)
        if not found["with_servers"] or not fields & SERVER_FIELDS:
            encoded = pagination.reply_encoded(
                request,
                page,
                found["items"],
                found["count"],
                found["total"],
                hub.settings.public_url,
            )
            return web.Response(body=encoded, headers=JSON)
    rows, total = await reads_cache.fetch(
        cache,
        ("users_page", page.offset, page.limit, name_filter, only, state, sort),
        pool,
        lambda conn: users_read.page(
            conn,
            offset=page.offset,
            limit=page.limit,
            name_filter=name_filter,
            only=only,
            state=state,
            sort=sort,
        ),
    )
    ids = tuple(row["user_id"] for row in rows)
    servers = await reads_cache.fetch(
        cache,
        ("servers_of_users", ids, include_stopped),
        pool,
        lambda conn: servers_api.servers_by_user(conn, list(ids), include_stopped=include_stopped),
    )
    items = [render(row, caller, fields, servers[row["user_id"]]) for row in rows]
    return web.json_response(pagination.reply(request, page, items, total, hub.settings.public_url))


async def _listable_users(
    cache: reads_cache.ReadCache | None, pool: Any, caller: access.Caller
) -> tuple[str, ...] | None:
    """``access.listable_users``, the members of its groups read through the read cache."""

    async def members_of(groups: tuple[str, ...]) -> set[str]:
        return await reads_cache.fetch(
            cache,
            ("group_member_names", groups),
            pool,
            lambda conn: users_read.members_of(conn, groups),
        )

    return await access.listable_users(caller, members_of)


def _include_stopped(request: web.Request) -> bool:
    return request.query.get("include_stopped_servers", "").lower() not in ("", "0", "false")


async def create_users(request: web.Request) -> web.Response:
    """``POST /users``: create several users; 409 if all of them exist."""
    command = await body.parse(request, CreateUsers)
    caller, rows = await create_many(request, command)
    return web.json_response([render(row, caller) for row in rows], status=201)


async def create_many(
    request: web.Request, command: CreateUsers
) -> tuple[access.Caller, list[Any]]:
    """Create those of ``command``'s users that do not exist yet, as the request's caller: the
    caller and the new users' rows. ``errors.Conflict`` if every one of them exists."""
    hub = request.app[HUB]
    names = list(dict.fromkeys(normalize(n) for n in command.usernames))
    async with hub.store.session() as session:
        caller = await access.require(request, session.conn, [scope_table.ADMIN_USERS])
        existing = {r["name"] for r in await users_read.named(session.conn, names)}
        new = [n for n in names if n not in existing]
        if not new:
            raise errors.Conflict(f"All {len(names)} users already exist")
        for name in new:
            await _append_created(
                session, name, command.admin, access.event_metadata(request, caller)
            )
        rows = [await users_read.require(session.conn, n) for n in new]
    return caller, rows


async def _append_created(
    session: store.Session, name: str, admin: bool, meta: models.Metadata
) -> UUID:
    user_id = uuid4()
    await session.append(
        user_events.stream_id(user_id),
        [user_events.UserCreated(user_id=user_id, name=name, admin=admin)],
        expected=store.NO_STREAM,
        metadata=meta,
    )
    return user_id


async def get_user(request: web.Request) -> web.Response:
    """``GET /users/{name}``."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(request, conn, READ_USER_SCOPES, scopes.Filter.user(name))
        row = await users_read.require(conn, name)
        servers = await servers_api.servers_by_user(
            conn, [row["user_id"]], include_stopped=_include_stopped(request)
        )
    return web.json_response(render(row, caller, None, servers[row["user_id"]]))


async def create_user(request: web.Request) -> web.Response:
    """``POST /users/{name}``: create one user; 409 if it exists."""
    hub = request.app[HUB]
    command = await body.parse(request, CreateUser, allow_empty=True)
    name = normalize(body.valid_name(request.match_info["name"], "username"))
    async with hub.store.session() as session:
        caller = await access.require(request, session.conn, [scope_table.ADMIN_USERS])
        if await users_read.exists(session.conn, name):
            raise errors.Conflict(f"User {name} already exists")
        await _append_created(session, name, command.admin, access.event_metadata(request, caller))
        row = await users_read.require(session.conn, name)
    return web.json_response(render(row, caller), status=201)


async def modify_user(request: web.Request) -> web.Response:
    """``PATCH /users/{name}``: rename, or make or unmake an admin."""
    command = await body.parse(request, ModifyUser)
    caller, updated = await modify(request, request.match_info["name"], command)
    return web.json_response(render(updated, caller))


async def modify(request: web.Request, name: str, command: ModifyUser) -> tuple[access.Caller, Any]:
    """Rename user ``name`` or change whether they are an admin, as the request's caller: the
    caller and the user's row afterwards."""
    hub = request.app[HUB]
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(
            request, conn, [scope_table.ADMIN_USERS], scopes.Filter.user(name)
        )
        await users_read.lock(conn, name)  # a rename vs. tokens being issued: see lock
        row = await users_read.require(conn, name)
        stream = user_events.stream_id(row["user_id"])
        changes: list[models.Event] = []
        new_name = normalize(command.name) if command.name is not None else name
        if new_name != name:
            if await users_read.exists(conn, new_name):
                raise errors.BadRequest(f"User {new_name} already exists, username must be unique")
            # A running server was started under /user/<old name>/ and answers only there.
            running = (
                await servers_api.servers_by_user(conn, [row["user_id"]], include_stopped=False)
            )[row["user_id"]]
            if running:
                labels = ", ".join(server_rules.label(name, s["server_name"]) for s in running)
                raise errors.BadRequest(f"Stop {labels} before renaming {name}")
            changes.append(
                user_events.UserRenamed(user_id=row["user_id"], old_name=name, name=new_name)
            )
        if command.admin is not None and command.admin != row["admin"]:
            changes.append(
                user_events.UserAdminChanged(user_id=row["user_id"], admin=command.admin)
            )
        if changes:
            await session.append(stream, changes, metadata=access.event_metadata(request, caller))
        updated = await users_read.require(conn, new_name)
    return caller, updated


async def delete_user(request: web.Request) -> web.Response:
    """``DELETE /users/{name}``: 204; a user cannot delete themselves; servers stop first."""
    await delete(request, request.match_info["name"])
    return web.Response(status=204)


async def delete(request: web.Request, name: str) -> None:
    """Delete user ``name`` as the request's caller (their servers stopped first); their
    projects go with them, the repositories once that has committed."""
    hub = request.app[HUB]
    await _stop_servers_of(request, name)
    async with hub.store.session() as session:
        caller = await access.require(
            request, session.conn, [scope_table.DELETE_USERS], scopes.Filter.user(name)
        )
        await users_read.lock(session.conn, name)  # vs. tokens being issued: see lock
        row = await users_read.require(session.conn, name)
        if caller.kind == "user" and caller.name == name:
            raise errors.BadRequest("Cannot delete yourself!")
        projects = await project_cleanup.owned_by(session.conn, "user", row["user_id"])
        await session.append(
            user_events.stream_id(row["user_id"]),
            [user_events.UserDeleted(user_id=row["user_id"], name=name)],
            metadata=access.event_metadata(request, caller),
        )
    await project_cleanup.remove(request.app.get(storage.STORAGE), projects)


async def _stop_servers_of(request: web.Request, name: str) -> None:
    """Stop a user's running servers before the user is deleted (400 if one will not stop)."""
    manager = request.app.get(servers_api.SERVER_APP)
    if manager is None:
        return
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(
            request, conn, [scope_table.DELETE_USERS], scopes.Filter.user(name)
        )
        row = await users_read.find(conn, name)
        if row is None:
            return
        if caller.kind == "user" and caller.name == name:
            raise errors.BadRequest("Cannot delete yourself!")
        running = (
            await servers_api.servers_by_user(conn, [row["user_id"]], include_stopped=False)
        )[row["user_id"]]
    for server in running:
        try:
            outcome = await manager.stop(
                row["user_id"], name, server["server_name"], access.event_metadata(request, caller)
            )
        except spawner.PolicyError:
            continue  # stopped meanwhile
        if outcome == "pending":
            raise errors.BadRequest(
                f"{name}'s server {server['server_name']!r} is still stopping; try again"
            )


async def post_activity(request: web.Request) -> web.Response:
    """``POST /users/{name}/activity``: activity only moves forward; kept out of the log."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    report = await body.parse(request, Activity)
    if report.last_activity is None and not report.servers:
        raise errors.BadRequest("last_activity or servers is required")
    now = datetime.now(UTC)
    stamps = [report.last_activity] if report.last_activity else []
    stamps += [s.last_activity for s in report.servers.values()]
    for stamp in stamps:
        if stamp.tzinfo is None:
            raise errors.BadRequest("last_activity must include a timezone (e.g. 'Z')")
        if stamp > now + MAX_FUTURE_ACTIVITY:
            raise errors.BadRequest(f"last_activity {body.iso(stamp)} is in the future")
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.USERS_ACTIVITY], scopes.Filter.user(name))
        row = await users_read.require(conn, name)
        known = await servers_api.servers_by_user(conn, [row["user_id"]], include_stopped=True)
        names = {server["server_name"] for server in known[row["user_id"]]}
        for server in report.servers:
            if server not in names:
                raise errors.BadRequest(f"No such server: {server!r}")
        async with conn.transaction():
            for stamp in stamps:  # a server's activity is its user's too, as in JupyterHub
                await conn.execute(auth_queries["activity_touch"], row["user_id"], "", stamp)
            if report.servers:
                await conn.execute(
                    server_queries["server_activity_touch"],
                    [row["user_id"]] * len(report.servers),
                    list(report.servers),
                    [activity.last_activity for activity in report.servers.values()],
                )
    return web.json_response({})


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    # one store session each: a retry's key and answer commit with the events (not delete:
    # servers stop before it and repositories go after it)
    return [
        web.get("/hub/api/users", list_users),
        web.post("/hub/api/users", idempotency.in_transaction(create_users)),
        web.get("/hub/api/users/{name}", get_user),
        web.post("/hub/api/users/{name}", idempotency.in_transaction(create_user)),
        web.patch("/hub/api/users/{name}", idempotency.in_transaction(modify_user)),
        web.delete("/hub/api/users/{name}", delete_user),
        web.post("/hub/api/users/{name}/activity", post_activity),
    ]
