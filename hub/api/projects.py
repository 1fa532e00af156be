"""``/hub/api/projects``: git projects. Create, list, read, change, rename, delete; members.

Who may do what is decided by ``hub.projects.access`` (scopes, members, visibility). A
project the caller may not read answers 404 with the same message as one that does not
exist; one it may read but not manage answers 403. Bodies are validated whole before
anything is written, and a field the API does not know is refused by name.
"""

from __future__ import annotations

import logging
from typing import Any, Literal
from uuid import uuid4

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events import models, sql, store
from events.catalog import projects as project_events
from events.catalog.names import Name
from hub import errors
from hub.auth import access
from hub.context import HUB
from hub.projects import access as project_access
from hub.projects import past_access, storage
from hub.web import body, pagination

log = logging.getLogger(__name__)

queries = sql.Queries(__package__ or "hub.api", "projects.sql")


class CreateProject(BaseModel):
    """``POST /projects``."""

    model_config = ConfigDict(extra="forbid")

    owner: Name | None = None
    name: project_events.ProjectName
    description: project_events.Description = ""
    visibility: project_events.Visibility = "private"
    default_branch: project_events.Branch = "main"
    import_url: str | None = Field(default=None, max_length=2000)


class UpdateProject(BaseModel):
    """``PATCH /projects/{owner}/{name}``: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    name: project_events.ProjectName | None = None
    description: project_events.Description | None = None
    visibility: project_events.Visibility | None = None
    default_branch: project_events.Branch | None = None


class Membership(BaseModel):
    """``PUT /projects/{owner}/{name}/members/{users|groups}/{member}``."""

    model_config = ConfigDict(extra="forbid")

    role: project_events.Role


def _base_url(request: web.Request) -> str:
    public = request.app[HUB].settings.public_url
    if public:
        return public.rstrip("/")
    return f"{request.scheme}://{request.host}"


def render(request: web.Request, row: Any) -> dict[str, Any]:
    """The project model of ``row`` (a row with the ``projects`` columns and ``owner``)."""
    base = _base_url(request)
    full_name = f"{row['owner']}/{row['name']}"
    return {
        "owner": row["owner"],
        "name": row["name"],
        "full_name": full_name,
        "description": row["description"],
        "visibility": row["visibility"],
        "default_branch": row["default_branch"],
        "clone_url": f"{base}/hub/git/{full_name}.git",
        "web_url": f"{base}/hub/projects/{full_name}",
        "created": body.iso(row["created"]),
        "last_push": body.iso(row["last_push"]),
    }


def _not_found(owner: str, name: str) -> errors.NotFound:
    # The same answer whether the project is missing or hidden from the caller.
    return errors.NotFound(f"No such project: {owner}/{name}")


async def _project(
    conn: sql.Connection,
    request: web.Request,
    need: project_access.Role,
    caller: access.Caller | None,
) -> Any:
    """The URL's project if the caller has role ``need`` on it; 404 if it cannot read it,
    403 if it can read but not this."""
    owner, name = request.match_info["owner"], request.match_info["name"]
    found = await project_access.lookup(conn, owner, name, caller)
    if found is None:
        if (now := await project_access.renamed(conn, owner, name, caller)) is not None:
            url = f"{_base_url(request)}/hub/git/{now}.git"
            raise errors.NotFound(project_access.renamed_message(f"{owner}/{name}", now, url))
        raise _not_found(owner, name)
    row, holder = found
    target = project_access.target_of(row)
    if project_access.decide(need, target, holder):
        return row
    if not project_access.decide("read", target, holder):
        raise _not_found(owner, name)
    raise errors.Forbidden(
        f"Action is not authorized with current scopes; requires any of"
        f" [{project_access.SCOPE[need]}] on {target.full_name}"
    )


async def create_project(request: web.Request) -> web.Response:
    """``POST /projects``: 201 with the new project; 409 if the owner has one of that name."""
    hub = request.app[HUB]
    command = await body.parse(request, CreateProject)
    caller = access.caller_of(request)
    if command.import_url is not None:
        raise errors.BadRequest("import_url: importing a repository is not available yet")
    owner_name = command.owner
    if owner_name is None:
        if caller.kind != "user":
            raise errors.BadRequest("owner: required when a service creates a project")
        owner_name = caller.name
    async with hub.store.session() as session:
        conn = session.conn
        owner = await conn.fetchrow(queries["owner_by_name"], owner_name)
        if owner is None:
            raise errors.BadRequest(f"owner: no user or group is called {owner_name!r}")
        if not project_access.may_create(caller.grants, owner["kind"], owner["name"], command.name):
            raise errors.Forbidden(
                "Action is not authorized with current scopes; requires any of"
                f" [admin:projects] for {owner['kind']} {owner['name']}"
            )
        if await conn.fetchval(queries["project_exists"], owner["id"], command.name):
            raise errors.Conflict(f"Project {owner['name']}/{command.name} already exists")
        project_id = uuid4()
        event = project_events.ProjectCreated(
            project_id=project_id,
            owner_kind=owner["kind"],
            owner_id=owner["id"],
            owner=owner["name"],
            name=command.name,
            description=command.description,
            visibility=command.visibility,
            default_branch=command.default_branch,
        )
        try:
            await session.append(
                project_events.stream_id(project_id),
                [event],
                expected=store.NO_STREAM,
                metadata=access.event_metadata(request, caller),
            )
        except asyncpg.UniqueViolationError:  # a concurrent create of the same name won
            raise errors.Conflict(
                f"Project {owner['name']}/{command.name} already exists"
            ) from None
        found = await project_access.lookup(conn, owner["name"], command.name, caller)
    assert found is not None
    return web.json_response(render(request, found[0]), status=201)


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise errors.BadRequest(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1")


async def list_projects(request: web.Request) -> web.Response:
    """``GET /projects``: the projects the caller can read; ``?owner=``, ``?shared_with_me=``."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    page = pagination.parse(
        request,
        default_limit=hub.settings.api_page_default_limit,
        max_limit=hub.settings.api_page_max_limit,
    )
    shared_only = _flag(request, "shared_with_me")
    owner = request.query.get("owner") or None
    user_id = caller.user_id if caller.kind == "user" else None
    async with hub.store.pool.acquire() as conn:
        rows = await conn.fetch(queries["projects_with_roles"], user_id, owner)
        holders: dict[Any, project_access.Holder] = {}
        readable = []
        for row in rows:
            if shared_only and not row["shared"]:
                continue
            role = row["member_role"]
            if role not in holders:
                holders[role] = await project_access.holder_of(conn, caller, role)
            if project_access.decide("read", project_access.target_of(row), holders[role]):
                readable.append(row)
    # Filtered in Python: whether a project is shown depends on scopes, filters, grants and
    # visibility together. Fine for thousands of projects; past that, push it into SQL.
    items = [render(request, r) for r in readable[page.offset : page.offset + page.limit]]
    reply = pagination.reply(request, page, items, len(readable), hub.settings.public_url)
    return web.json_response(reply)


async def get_project(request: web.Request) -> web.Response:
    """``GET /projects/{owner}/{name}`` (anonymous callers see public projects)."""
    hub = request.app[HUB]
    caller = request.get(access.REQUEST_CALLER)
    async with hub.store.pool.acquire() as conn:
        row = await _project(conn, request, "read", caller)
    return web.json_response(render(request, row))


async def update_project(request: web.Request) -> web.Response:
    """``PATCH /projects/{owner}/{name}``: change settings, or rename (``name``)."""
    hub = request.app[HUB]
    command = await body.parse(request, UpdateProject)
    caller = access.caller_of(request)
    async with hub.store.session() as session:
        conn = session.conn
        row = await _project(conn, request, "admin", caller)
        project_id = row["project_id"]
        meta = access.event_metadata(request, caller)
        new: list[models.Event] = []
        if command.name is not None and command.name != row["name"]:
            if command.name.lower() != row["name"].lower() and await conn.fetchval(
                queries["project_exists"], row["owner_id"], command.name
            ):
                raise errors.Conflict(f"Project {row['owner']}/{command.name} already exists")
            new.append(
                project_events.ProjectRenamed(
                    project_id=project_id,
                    owner=row["owner"],
                    old_name=row["name"],
                    name=command.name,
                )
            )
        changes = {
            field: value
            for field in ("description", "visibility", "default_branch")
            if (value := getattr(command, field)) is not None and value != row[field]
        }
        if changes:
            new.append(project_events.ProjectUpdated(project_id=project_id, **changes))
        if new:
            await session.append(project_events.stream_id(project_id), new, metadata=meta)
        name = command.name or row["name"]
        found = await project_access.lookup(conn, row["owner"], name, caller)
    assert found is not None
    return web.json_response(render(request, found[0]))


async def delete_project(request: web.Request) -> web.Response:
    """``DELETE /projects/{owner}/{name}``: 204; the repository goes after the event commits."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    async with hub.store.session() as session:
        row = await _project(session.conn, request, "admin", caller)
        await session.append(
            project_events.stream_id(row["project_id"]),
            [
                project_events.ProjectDeleted(
                    project_id=row["project_id"], owner=row["owner"], name=row["name"]
                )
            ],
            metadata=access.event_metadata(request, caller),
        )
    place = request.app.get(storage.STORAGE)
    if place is not None:
        try:
            await place.workers.run(place.repositories.remove, row["project_id"])
        except OSError:
            # The project is gone from the hub; its objects are unreachable and can go later.
            log.exception("could not remove the repository of project %s", row["project_id"])
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    """``GET /projects/{owner}/{name}/members``: who holds which role, users then groups."""
    hub = request.app[HUB]
    caller = request.get(access.REQUEST_CALLER)
    async with hub.store.pool.acquire() as conn:
        row = await _project(conn, request, "read", caller)
        members = await conn.fetch(queries["members"], row["project_id"])
    return web.json_response(
        [{"kind": m["kind"], "name": m["name"], "role": m["role"]} for m in members]
    )


async def set_member(request: web.Request) -> web.Response:
    """``PUT …/members/{users|groups}/{member}`` with ``{"role"}``; ``DELETE`` revokes."""
    hub = request.app[HUB]
    kind: Literal["user", "group"] = "user" if request.match_info["kind"] == "users" else "group"
    member = request.match_info["member"]
    command = await body.parse(request, Membership) if request.method == "PUT" else None
    caller = access.caller_of(request)
    async with hub.store.session() as session:
        conn = session.conn
        row = await _project(conn, request, "admin", caller)
        query = "user_id_by_name" if kind == "user" else "group_id_by_name"
        member_id = await conn.fetchval(queries[query], member)
        if member_id is None:
            raise errors.BadRequest(f"{kind}: no {kind} is called {member!r}")
        current = await conn.fetchval(queries["member_role"], row["project_id"], kind, member_id)
        event: models.Event | None = None
        if command is not None and command.role != current:
            event = project_events.ProjectMemberGranted(
                project_id=row["project_id"],
                member_kind=kind,
                member_id=member_id,
                member=member,
                role=command.role,
            )
        elif command is None and current is not None:
            event = project_events.ProjectMemberRevoked(
                project_id=row["project_id"], member_kind=kind, member_id=member_id, member=member
            )
        if event is not None:
            await session.append(
                project_events.stream_id(row["project_id"]),
                [event],
                metadata=access.event_metadata(request, caller),
            )
    if command is None:
        return web.Response(status=204)
    return web.json_response({"kind": kind, "name": member, "role": command.role})


async def access_at(request: web.Request) -> web.Response:
    """``GET /projects/{owner}/{name}/access?at=<position or ISO time>``: who could read, write
    or manage the project then, and through what; for its admins and for auditors holding
    ``read:events:projects`` on it. Without ``at``: now."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    when = past_access.parse_at(request.query.get("at"))
    owner, name = request.match_info["owner"], request.match_info["name"]
    async with hub.store.pool.acquire() as conn:
        found = await project_access.lookup(conn, owner, name, caller)
        if found is not None and past_access.may_audit(
            caller.grants, project_access.target_of(found[0])
        ):
            row = found[0]
        else:
            row = await _project(conn, request, "admin", caller)
        answer = await past_access.at(conn, hub.store, row["project_id"], when)
    return web.json_response(answer)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    one = "/hub/api/projects/{owner}/{name}"
    return [
        web.get("/hub/api/projects", list_projects),
        web.post("/hub/api/projects", create_project),
        web.get(one, get_project),
        web.patch(one, update_project),
        web.delete(one, delete_project),
        web.get(one + "/members", list_members),
        web.get(one + "/access", access_at),
        web.put(one + "/members/{kind:users|groups}/{member}", set_member),
        web.delete(one + "/members/{kind:users|groups}/{member}", set_member),
    ]
