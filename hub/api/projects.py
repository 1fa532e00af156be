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
from hub.projects import cleanup, importer, past_access, push, remote, storage
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
        "owner_kind": row["owner_kind"],
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


async def _creatable(
    conn: sql.Connection, caller: access.Caller, owner_name: str, name: str
) -> Any:
    """The owner row of a project ``owner_name/name`` the caller may create: 400 for an
    unknown owner, 403 without ``admin:projects`` for it, 409 if the name is taken."""
    owner = await conn.fetchrow(queries["owner_by_name"], owner_name)
    if owner is None:
        raise errors.BadRequest(f"owner: no user or group is called {owner_name!r}")
    if not project_access.may_create(caller.grants, owner["kind"], owner["name"], name):
        raise errors.Forbidden(
            "Action is not authorized with current scopes; requires any of"
            f" [admin:projects] for {owner['kind']} {owner['name']}"
        )
    if await conn.fetchval(queries["project_exists"], owner["id"], name):
        raise errors.Conflict(f"Project {owner['name']}/{name} already exists")
    return owner


# How a refused import or sync answers: the URL or its address is the caller's to fix (400),
# the repository cannot be taken (422), the remote was too slow (504).
IMPORT_STATUS: dict[type[remote.RemoteError], int] = {
    remote.BadUrl: 400,
    remote.AddressRefused: 400,
    importer.MissingBranch: 400,
    remote.TimedOut: 504,
}


def _import_error(exc: remote.RemoteError) -> errors.HubError:
    status = next((s for t, s in IMPORT_STATUS.items() if isinstance(exc, t)), 422)
    message = str(exc)
    if not message.startswith("default_branch:"):
        message = f"import_url: {message}"
    return errors.HubError.with_status(status, message)


async def create_project(request: web.Request) -> web.Response:
    """``POST /projects``: 201 with the new project; 409 if the owner has one of that name.
    With ``import_url``, the repository is fetched first (see ``hub.projects.importer``)."""
    command = await body.parse(request, CreateProject)
    row = await create(request, command)
    return web.json_response(render(request, row), status=201)


async def create(request: web.Request, command: CreateProject) -> Any:
    """Create the project ``command`` asks for, as the request's caller: its row (as
    ``project_by_name`` gives it). The command of both the API and the projects page."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    source = None
    if command.import_url is not None:
        try:
            source = remote.parse_url(command.import_url)
        except remote.BadUrl as exc:
            raise _import_error(exc) from exc
    owner_name = command.owner
    if owner_name is None:
        if caller.kind != "user":
            raise errors.BadRequest("owner: required when a service creates a project")
        owner_name = caller.name
    project_id = uuid4()
    default_branch = command.default_branch
    staged = None
    if source is not None:
        # Checked before the fetch (nobody makes the hub fetch for a project they cannot
        # create), and again when the project is created (the name may have gone meanwhile).
        async with hub.store.pool.acquire() as conn:
            await _creatable(conn, caller, owner_name, command.name)
        fetcher = request.app[importer.IMPORTER]
        requested = default_branch if "default_branch" in command.model_fields_set else None
        try:
            staged = await fetcher.stage(source)
            default_branch = importer.choose_default_branch(staged.fetched, requested) or (
                default_branch
            )
            # in place before the project exists: a clone can never make an empty one there
            await fetcher.place_staged(staged, project_id)
        except remote.RemoteError as exc:
            if staged is not None:
                await fetcher.discard(staged)
            raise _import_error(exc) from exc
    try:
        async with hub.store.session() as session:
            owner = await _creatable(session.conn, caller, owner_name, command.name)
            event = project_events.ProjectCreated(
                project_id=project_id,
                owner_kind=owner["kind"],
                owner_id=owner["id"],
                owner=owner["name"],
                name=command.name,
                description=command.description,
                visibility=command.visibility,
                default_branch=default_branch,
                import_url=command.import_url,
            )
            try:
                await session.append(
                    project_events.stream_id(project_id),
                    [event],
                    expected=store.NO_STREAM,
                    metadata=access.event_metadata(request, caller),
                )
            except asyncpg.UniqueViolationError as exc:  # a concurrent create of the same name won
                raise errors.Conflict(
                    f"Project {owner['name']}/{command.name} already exists"
                ) from exc
    except BaseException:
        if staged is not None:
            await request.app[importer.IMPORTER].discard(
                request.app[storage.STORAGE].repositories.path(project_id)
            )
        raise
    if staged is not None:
        try:
            await request.app[importer.IMPORTER].record(
                project_id,
                staged.plan,
                pusher=models.Actor(kind=caller.kind, name=caller.name),
                metadata=access.event_metadata(request, caller),
            )
        except push.PushError as exc:  # deleted, or pushed to, in the moment since creation
            raise errors.Conflict(
                f"Project {owner['name']}/{command.name} changed during its import: {exc}"
            ) from exc
    async with hub.store.pool.acquire() as conn:
        found = await project_access.lookup(conn, owner["name"], command.name, caller)
    assert found is not None
    return found[0]


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
    async with hub.store.pool.acquire() as conn:
        readable = await readable_projects(conn, caller, owner=owner, shared_only=shared_only)
    items = [render(request, r) for r in readable[page.offset : page.offset + page.limit]]
    reply = pagination.reply(request, page, items, len(readable), hub.settings.public_url)
    return web.json_response(reply)


async def readable_projects(
    conn: sql.Connection, caller: access.Caller, *, owner: str | None, shared_only: bool
) -> list[Any]:
    """The projects ``caller`` can read (of ``owner`` when given; only those shared with
    them by a grant when ``shared_only``), as ``projects_with_roles`` rows, by name."""
    user_id = caller.user_id if caller.kind == "user" else None
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
    return readable


async def members(conn: sql.Connection, project_id: Any) -> list[dict[str, str]]:
    """Who holds which role on a project, users then groups."""
    rows = await conn.fetch(queries["members"], project_id)
    return [{"kind": m["kind"], "name": m["name"], "role": m["role"]} for m in rows]


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
    # The project is gone from the hub; a repository that cannot go now goes at the next start.
    await cleanup.remove(request.app.get(storage.STORAGE), [row["project_id"]])
    return web.Response(status=204)


async def list_members(request: web.Request) -> web.Response:
    """``GET /projects/{owner}/{name}/members``: who holds which role, users then groups."""
    hub = request.app[HUB]
    caller = request.get(access.REQUEST_CALLER)
    async with hub.store.pool.acquire() as conn:
        row = await _project(conn, request, "read", caller)
        return web.json_response(await members(conn, row["project_id"]))


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


async def sync_project(request: web.Request) -> web.Response:
    """``POST /projects/{owner}/{name}/sync``: fetch the imported repository again and move
    the refs that fast-forward; diverged ones are listed under ``refused`` with the reason."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    if request.can_read_body and (await request.read()).strip() not in (b"", b"{}"):
        raise errors.BadRequest("sync takes no body")
    async with hub.store.pool.acquire() as conn:
        row = await _project(conn, request, "write", caller)
        current = await push.current_refs(conn, row["project_id"])
    url = await importer.import_source(hub.store, row["project_id"])
    if url is None:
        raise errors.Conflict(
            f"Project {row['owner']}/{row['name']} was not imported: there is nothing to sync from"
        )
    fetcher = request.app[importer.IMPORTER]
    try:
        result = await fetcher.sync(
            row["project_id"],
            remote.parse_url(url),
            current,
            pusher=models.Actor(kind=caller.kind, name=caller.name),
            metadata=access.event_metadata(request, caller),
        )
    except remote.RemoteError as exc:
        raise _import_error(exc) from exc
    except push.StaleRefs as exc:
        raise errors.Conflict(
            f"Project {row['owner']}/{row['name']} was pushed to during the sync; sync again"
        ) from exc
    except push.ProjectGone as exc:
        raise _not_found(row["owner"], row["name"]) from exc
    async with hub.store.pool.acquire() as conn:
        found = await project_access.lookup(conn, row["owner"], row["name"], caller)
    assert found is not None
    return web.json_response(
        {
            "project": render(request, found[0]),
            "import_url": url,
            "updated": [
                {"ref": c.ref, "old": None if c.creates else c.old, "new": c.new}
                for c in result.plan.commands
            ],
            "refused": [
                {"ref": ref, "reason": reason} for ref, reason in result.plan.refused.items()
            ],
            "commits": result.plan.commits,
        }
    )


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
        web.post(one + "/sync", sync_project),
        web.get(one + "/members", list_members),
        web.get(one + "/access", access_at),
        web.put(one + "/members/{kind:users|groups}/{member}", set_member),
        web.delete(one + "/members/{kind:users|groups}/{member}", set_member),
    ]
