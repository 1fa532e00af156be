"""``/hub/api/collab/sessions``: shared execution sessions (a room, its notebook, one kernel).

chronohub's own API (JupyterHub has none like it). Who may do what is decided on the
session's room with the collab scopes, as for joining the room: ``write:collab`` to create
a session, run a cell, interrupt, restart or end it; ``read:collab`` to see it. A scope
held but not on this room answers 404, as the rest of the API does; no collab scope at all
answers 403. Every input is checked before anything is written: a bad notebook, kernel
name, room name, cell id (unknown, or not a code cell) is a 4xx naming the problem.

The sessions themselves are ``collab.sessions.SessionManager``'s; the hub hands it
``may_write`` (below), which asks again, at each request, whether the participant's own
roles still allow ``write:collab`` on the room. A session runs in the hub process that
opened it; a call of one made to another process is forwarded there (``anywhere``,
hub/api/collab_forward.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from collab import access as room_access
from collab import execution, notebook, persistence, rooms, sessions
from collab import kernel as kernels
from collab import session_errors as errors
from events import sql, store
from hub import data_dir
from hub import errors as hub_errors
from hub.api import collab_forward
from hub.auth import access, collab_access, roles, scopes
from hub.context import HUB
from hub.projects import sessions as project_sessions
from hub.reads import users as users_read
from hub.servers import isolation, local_spawner
from hub.web import body

queries = sql.Queries(__package__ or "hub.api", "collab.sql")

SESSIONS: web.AppKey[sessions.SessionManager] = web.AppKey(
    "chronohub.collab_sessions", sessions.SessionManager
)
PREFIX = "/hub/api/collab/sessions"


# --- request and reply models ----------------------------------------------------------------


class CreateSession(BaseModel):
    """``POST /collab/sessions``."""

    model_config = ConfigDict(extra="forbid")

    notebook: dict[str, Any] | None = Field(
        default=None,
        description="An nbformat 4 notebook for a new room (default: one empty code cell)",
    )
    room: str | None = Field(
        default=None,
        max_length=200,
        description="The room to hold the notebook; new or existing (default: a new one)",
    )
    kernel_name: str = Field(default="python3", min_length=1, max_length=255)


class ExecuteCell(BaseModel):
    """``POST /collab/sessions/{id}/execute``."""

    model_config = ConfigDict(extra="forbid")

    cell_id: str = Field(min_length=1, max_length=255)


class CollabSession(BaseModel):
    """A shared execution session."""

    id: str
    room: str
    ws_url: str = Field(description="Where a y-websocket client joins the session's room")
    kernel_name: str
    created_by: str
    runs_as: str = Field(
        description="The system account the kernel runs as: the creator's. Everyone who may"
        " write to the room runs code as this account"
    )
    state: Literal["new", "running", "ending", "ended"]
    kernel_state: str
    running_cell: str | None
    queued: int
    participants: int


class ExecutionAccepted(BaseModel):
    """A queued execution request."""

    request_id: str
    cell_id: str
    status: Literal["queued", "aborted"]


class KernelRestarted(BaseModel):
    """The kernel was restarted."""

    aborted_requests: int


class CollabSessions(BaseModel):
    """The sessions the caller may see."""

    sessions: list[CollabSession]


def _manager(request: web.Request) -> sessions.SessionManager:
    manager = request.app.get(SESSIONS)
    if manager is None:
        raise hub_errors.Unavailable("this hub runs no shared execution sessions")
    return manager


def room_url(request_url: URL, public_url: str | None, room: str) -> str:
    """A room's websocket address: under ``public_url`` when it is set (behind a TLS
    terminator the request itself came in as plain http, yet browsers must use wss://), else
    under the address the request came to."""
    base = URL(public_url) if public_url else request_url
    scheme = "wss" if base.scheme == "https" else "ws"
    return str(base.with_scheme(scheme).with_path(f"/collab/{room}").with_query(None))


def render(request: web.Request, bound: sessions.Bound) -> CollabSession:
    """The reply model of a session."""
    status = bound.session.status()
    ws_url = room_url(request.url, request.app[HUB].settings.public_url, status.room)
    return CollabSession(
        id=str(status.session_id),
        room=status.room,
        ws_url=ws_url,
        kernel_name=bound.session.kernel.kernel_name,
        created_by=bound.session.created_by.name,
        runs_as=bound.session.kernel.account,
        state=status.state,
        kernel_state=status.kernel_state,
        running_cell=status.running_cell,
        queued=status.queued,
        participants=status.participants,
    )


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


# --- access ----------------------------------------------------------------------------------


async def _level(
    conn: sql.Connection,
    grants: scopes.Grants,
    room: str,
    owner: str | None,
    project: collab_access.Level | None,
) -> collab_access.Level:
    """What ``grants`` allow on ``room``; ``project``: what a role on the project gives when
    the room is a project's (``project_sessions.room_level``)."""
    groups_of = None
    if owner is not None and any(
        grants.filters(s).groups for s in (collab_access.READ, collab_access.WRITE)
    ):
        groups_of = await access.groups_of_users(conn, [owner])
    info = room_access.RoomInfo(room, True, owner)
    return collab_access.decide(grants, info, owner, groups_of, project)


async def caller_level(
    conn: sql.Connection, caller: access.Caller, room: str, owner: str | None
) -> collab_access.Level:
    """What ``caller`` may do in ``room`` of ``owner``: its scopes, and its role on the project
    when the room was opened on a project's notebook."""
    project = await project_sessions.room_level(conn, caller, room)
    return await _level(conn, caller.grants, room, owner, project)


def _refuse(grants: scopes.Grants, needed: str) -> hub_errors.HubError:
    """404 when a scope that would do is held, but not on this room; else 403."""
    enough = (collab_access.WRITE,) if needed == collab_access.WRITE else (
        collab_access.READ, collab_access.WRITE)  # fmt: skip
    if any(grants.holds(scope) for scope in enough):
        return hub_errors.NotFound(scopes.NOT_FOUND_MESSAGE)
    return hub_errors.Forbidden(
        f"Action is not authorized with current scopes; requires any of [{needed}]"
    )


async def authorized(request: web.Request, needed: Literal["read", "write"]) -> sessions.Bound:
    """The session in the path, if the caller may ``needed`` it; else 403 / 404."""
    caller = access.caller_of(request)
    scope = collab_access.WRITE if needed == "write" else collab_access.READ
    if not (caller.grants.holds(collab_access.WRITE) or caller.grants.holds(scope)):
        raise _refuse(caller.grants, scope)
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError as exc:
        raise hub_errors.NotFound(f"No such session: {request.match_info['session_id']}") from exc
    bound = _manager(request).get(session_id)
    if bound is None:
        raise hub_errors.NotFound(f"No such session: {session_id}")
    async with request.app[HUB].store.pool.acquire() as conn:
        level = await caller_level(conn, caller, bound.session.room, bound.owner)
    if level == "write" or (level == "read" and needed == "read"):
        return bound
    if level == "read":  # may see the room, not change it
        raise hub_errors.Forbidden(
            f"Action is not authorized with current scopes; requires any of [{scope}]"
        )
    raise hub_errors.NotFound(f"No such session: {session_id}")


def participant(caller: access.Caller) -> execution.Participant:
    """The caller as a session participant."""
    return execution.Participant(caller.name, caller.kind)


# --- handlers --------------------------------------------------------------------------------


async def create_session(request: web.Request) -> web.Response:
    """``POST /collab/sessions``: 201 with the session, its room and where to join it."""
    hub = request.app[HUB]
    manager = _manager(request)
    caller = access.caller_of(request)
    if not caller.grants.holds(collab_access.WRITE):
        raise _refuse(caller.grants, collab_access.WRITE)
    command = await body.parse(request, CreateSession, allow_empty=True)
    room = command.room or f"session-{uuid.uuid4().hex[:16]}"
    # Checked before anything is written; their typed errors answer through the middleware.
    persistence.check_room_name(room)
    manager.initial_update(command.notebook)
    await manager.check_kernel(command.kernel_name)
    manager.check_room_free(room)
    info = await hub.rooms.describe(room) if hub.rooms is not None else None
    if info is None:
        raise hub_errors.Unavailable("this hub serves no collaboration rooms")
    owner = info.owner if info.exists else (caller.name if caller.kind == "user" else None)
    async with hub.store.pool.acquire() as conn:
        if await caller_level(conn, caller, room, owner) != "write":
            raise _refuse(caller.grants, collab_access.WRITE)
    creator = room_access.Participant(caller.kind, caller.name, can_write=True)
    bound = await manager.create(
        room, creator, nb=command.notebook, kernel_name=command.kernel_name, owner=owner
    )
    await collab_forward.claim(request, bound)
    return _json(render(request, bound), 201)


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /collab/sessions``: the running sessions whose rooms the caller may read, in
    every hub process."""
    caller = access.caller_of(request)
    if not (caller.grants.holds(collab_access.READ) or caller.grants.holds(collab_access.WRITE)):
        raise _refuse(caller.grants, collab_access.READ)
    visible = []
    async with request.app[HUB].store.pool.acquire() as conn:
        for bound in _manager(request).all():
            level = await caller_level(conn, caller, bound.session.room, bound.owner)
            if level in ("read", "write"):
                visible.append(render(request, bound))
    # and those other hub processes run, as each lists them for the caller (issue 20)
    seen = {session.id for session in visible}
    for listed in await collab_forward.listed_elsewhere(request):
        other = CollabSession.model_validate(listed)
        if other.id not in seen:  # (one being taken over may be listed twice)
            seen.add(other.id)
            visible.append(other)
    return _json(CollabSessions(sessions=visible))


async def get_session(request: web.Request) -> web.Response:
    """``GET /collab/sessions/{id}``."""
    return _json(render(request, await authorized(request, "read")))


async def execute(request: web.Request) -> web.Response:
    """``POST /collab/sessions/{id}/execute``: 202 with the request id; outputs go to the room."""
    bound = await authorized(request, "write")
    command = await body.parse(request, ExecuteCell)
    # Checked here first, so that a bad cell id is refused without an event.
    notebook.find_code_cell(bound.session.doc, command.cell_id)
    queued = await bound.session.execute(command.cell_id, participant(access.caller_of(request)))
    status: Literal["queued", "aborted"] = "aborted" if queued.done.done() else "queued"
    return _json(ExecutionAccepted(request_id=queued.request_id, cell_id=queued.cell_id,
                                   status=status), 202)  # fmt: skip


async def interrupt(request: web.Request) -> web.Response:
    """``POST /collab/sessions/{id}/interrupt``: 200 with the session."""
    bound = await authorized(request, "write")
    await bound.session.interrupt(participant(access.caller_of(request)))
    return _json(render(request, bound))


async def restart(request: web.Request) -> web.Response:
    """``POST /collab/sessions/{id}/restart``: 200 with how many queued requests were aborted."""
    bound = await authorized(request, "write")
    aborted = await bound.session.restart(participant(access.caller_of(request)))
    return _json(KernelRestarted(aborted_requests=aborted))


async def delete_session(request: web.Request) -> web.Response:
    """``DELETE /collab/sessions/{id}``: 204; the kernel stops, the room and notebook stay."""
    bound = await authorized(request, "write")
    await _manager(request).shutdown(bound.session.session_id)
    await collab_forward.release(request, bound.session.session_id)
    return web.Response(status=204)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def anywhere(handler: Handler) -> Handler:
    """``handler`` for a session of this process; another process's is asked there."""

    async def forwarding(request: web.Request) -> web.StreamResponse:
        try:
            session_id = uuid.UUID(request.match_info["session_id"])
        except ValueError:
            return await handler(request)  # which says so
        manager = request.app.get(SESSIONS)
        here = manager is not None and manager.get(session_id) is not None
        answer = await collab_forward.elsewhere(request, session_id, here)
        return answer if answer is not None else await handler(request)

    return forwarding


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    one = PREFIX + "/{session_id}"
    return [
        web.post(PREFIX, create_session),
        web.get(PREFIX, list_sessions),
        web.get(one, anywhere(get_session)),
        web.delete(one, anywhere(delete_session)),
        web.post(one + "/execute", anywhere(execute)),
        web.post(one + "/interrupt", anywhere(interrupt)),
        web.post(one + "/restart", anywhere(restart)),
    ]


# --- what the hub hands to the session manager -------------------------------------------------


def may_write(event_store: store.EventStore, room_set: rooms.Rooms) -> sessions.RoomMayWrite:
    """Whether a participant's own roles (not a token's) allow ``write:collab`` on a room now:
    a role revoked after joining stops that participant's further requests."""

    async def check(room: str, who: execution.Participant) -> bool:
        info = await room_set.describe(room)
        async with event_store.pool.acquire() as conn:
            user_id = None
            if who.kind == "user":
                row = await users_read.find(conn, who.name)
                if row is None:
                    return False
                user_id = row["user_id"]
                held, _ = await access.user_scopes(conn, row["user_id"], row["name"], row["admin"])
            else:
                row = await conn.fetchrow(queries["service_role_scopes"], who.name)
                if row is None:
                    return False
                implicit = roles.DEFAULT_ROLES["admin"].scopes if row["admin"] else []
                held = scopes.expand(
                    [*implicit, *row["scopes"]], owner=scopes.Owner.for_service(who.name)
                )
            grants = scopes.Grants.of(held)
            project = await project_sessions.own_room_level(
                conn, room, kind=who.kind, name=who.name, user_id=user_id, grants=grants
            )
            return await _level(conn, grants, room, info.owner, project) == "write"

    return check


def kernel_account(
    event_store: store.EventStore, code: isolation.Isolation
) -> sessions.KernelAccount:
    """The account a session's kernel runs as: its creator's, as their server would.

    A service has no system account of its own, so it may start a session only where code
    runs as the hub's account (single-user mode, for every user).
    """

    async def account(creator: execution.Participant) -> kernels.RunAs | None:
        admin = False
        if creator.kind == "user":
            async with event_store.pool.acquire() as conn:
                row = await users_read.find(conn, creator.name)
            admin = bool(row and row["admin"])
        elif code.mode != "single_user" or not code.all_users:
            raise errors.KernelRefused(
                f"service {creator.name} cannot start a session: a session's kernel runs as its"
                " creator's system account, and a service has none"
            )
        try:
            identity = await code.identity(creator.name, admin=admin)
        except isolation.CodeRefused as exc:
            raise errors.KernelRefused(str(exc)) from exc
        except isolation.AccountError as exc:
            raise errors.KernelStartFailed(str(exc)) from exc
        if identity is None:
            return None
        env = identity.environment(local_spawner.environment_bin())
        if identity.sandboxed:
            sandboxed = identity
            await asyncio.to_thread(data_dir.private_subdir, sandboxed.home)
            return kernels.RunAs(
                account=f"{identity.account} (sandboxed)",
                home=identity.home,
                env=env,
                # JPY_PARENT_PID names the hub, which is not in the sandbox's PID namespace:
                # ipykernel would take its parent for dead and exit.
                wrap=lambda command, runtime: local_spawner.sandboxed(
                    sandboxed, command, writable=[runtime], unset=["JPY_PARENT_PID"]
                ),
            )
        return kernels.RunAs(
            account=identity.account,
            home=identity.home,
            env=env,
            uid=identity.uid,
            gid=identity.gid,
            groups=identity.groups,
        )

    return account
