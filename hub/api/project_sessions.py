"""Sessions on a project's notebook: open one together, list them, commit the room back.

* ``POST /hub/api/projects/{owner}/{name}/sessions`` ``{path, ref?, kernel_name?}``: a shared
  execution session (``hub/api/collab.py``'s) on a new room seeded from the notebook at
  ``ref`` (the default branch's head when not given). Opening one starts a kernel that runs
  as the opener and lets write members run code in it, so it needs the write role on the
  project and ``write:collab``: a reader who may see the project is answered 403 (readers
  join, read-only, the sessions writers open); a caller who may not read it, 404.
* ``GET …/sessions``: the project's running sessions, to whoever may read the project.
* ``POST /hub/api/collab/sessions/{id}/commit`` ``{message?}``: the room's notebook committed
  to the project's branch (``hub/projects/sessions.py``), authored by the requester, with a
  ``Co-authored-by`` trailer for everyone else who edited the room. 201 when it went to the
  session's branch; 409 when that branch had moved since the session's base (a push won the
  race) and the commit went to ``collab/<session>`` instead: the body says where, as for 201,
  plus the error's ``message``.

Who may join the room is not copied anywhere at open time: the room is bound to the project
(``project.session_opened``) and every check asks the project (``collab_access.decide``).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from collab import access as room_access
from collab import notebook
from events.catalog import projects as project_events
from hub import errors
from hub.api import collab as collab_api
from hub.api import collab_forward
from hub.auth import access, collab_access
from hub.context import HUB
from hub.projects import access as project_access
from hub.projects import browse, push, storage
from hub.projects import sessions as project_sessions
from hub.web import body


class OpenSession(BaseModel):
    """``POST /projects/{owner}/{name}/sessions``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="The notebook's path")
    ref: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="A branch, tag or commit (default: the default branch's head). Commits"
        " from a session opened on a tag or a commit go to collab/<session>",
    )
    kernel_name: str = Field(default="python3", min_length=1, max_length=255)


class CommitSession(BaseModel):
    """``POST /collab/sessions/{id}/commit``."""

    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(default=None, max_length=10_000)


class ProjectSession(BaseModel):
    """A shared execution session opened on a project's notebook."""

    session: collab_api.CollabSession
    project: str = Field(description="owner/name")
    path: str
    ref: str = Field(description="The ref as it was asked for")
    branch: str | None = Field(
        description="Where a commit from the session goes (null: collab/<session>)"
    )
    head: str = Field(description="The commit the session's next commit builds on")


class ProjectSessions(BaseModel):
    """``GET /projects/{owner}/{name}/sessions``: the running ones, newest first."""

    sessions: list[ProjectSession]


class SessionCommit(BaseModel):
    """Where a session's commit went."""

    commit: str
    branch: str
    diverted: bool = Field(
        description="The session's branch had moved: the commit is on collab/<session>"
    )
    parent: str
    participants: list[str] = Field(description="The author first, then the co-authors")
    message: str | None = Field(default=None, description="Why it was diverted, when it was")
    status: int | None = Field(default=None, description="409 when diverted")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def _host(request: web.Request) -> str:
    """The host co-authors' addresses are given (``name@host``): the public URL's."""
    public = request.app[HUB].settings.public_url
    host = urlsplit(public).hostname if public else None
    return host or request.url.host or "chronohub"


def _render(request: web.Request, full_name: str, row: Any) -> ProjectSession | None:
    bound = request.app[collab_api.SESSIONS].get(row["session_id"])
    if bound is None:
        return None
    return ProjectSession(
        session=collab_api.render(request, bound),
        project=full_name,
        path=row["path"],
        ref=row["ref"],
        branch=row["branch"],
        head=row["head"],
    )


async def open_session(request: web.Request) -> web.Response:
    """``POST /projects/{owner}/{name}/sessions``: 201 with the session and where to join."""
    command = await body.parse(request, OpenSession)
    opened = await open_on_project(
        request, request.match_info["owner"], request.match_info["name"], command
    )
    return _json(opened, 201)


async def open_on_project(
    request: web.Request, owner: str, name: str, command: OpenSession
) -> ProjectSession:
    """Open a session on a notebook of ``owner/name`` as the request's caller (the API's
    command; the project page's "open together" form calls it too)."""
    hub = request.app[HUB]
    manager = request.app.get(collab_api.SESSIONS)
    if manager is None or hub.rooms is None:
        raise errors.Unavailable("this hub runs no shared execution sessions")
    caller = access.caller_of(request)
    async with hub.store.pool.acquire() as conn:
        found = await project_access.lookup(conn, owner, name, caller)
        if found is None:
            raise errors.NotFound(f"No such project: {owner}/{name}")
        row, holder = found
        role = project_access.best_role(project_access.target_of(row), holder)
        if role is None:
            raise errors.NotFound(f"No such project: {owner}/{name}")
        refs = await push.current_refs(conn, row["project_id"])
    full_name = f"{row['owner']}/{row['name']}"
    if project_access.RANK[role] < project_access.RANK["write"]:
        raise errors.Forbidden(
            f"opening a session on {full_name} needs the write role on it; readers join the"
            " sessions its writers open, read-only"
        )
    if not caller.grants.holds(collab_access.WRITE):
        raise errors.Forbidden(
            f"Action is not authorized with current scopes; requires any of [{collab_access.WRITE}]"
        )
    project_sessions.check_path(command.path)
    ref = command.ref or row["default_branch"]
    place = request.app[storage.STORAGE]
    opened: project_sessions.NotebookAt = await place.workers.run(
        _read, place.repositories, row, refs, ref, command.path
    )
    manager.initial_update(opened.notebook)  # NotebookInvalid (400) before anything is written
    await manager.check_kernel(command.kernel_name)
    session_id = uuid.uuid4()
    room = f"project-{session_id.hex}"
    creator = room_access.Participant(caller.kind, caller.name, can_write=True)
    # The kernel first, the event after: a start that is refused or fails (KernelRefused,
    # KernelStartFailed, answered through the middleware) leaves no session_opened for a
    # session that never opened; the collab session's own stream tells its start and failure
    # (collab_session.created, then .ended with kernel_failed), as for any session. Until the
    # event binds the room to the project, the room's random name is known to nobody but this
    # request, and its owner is the opener, who may write it anyway.
    bound = await manager.create(
        room,
        creator,
        nb=opened.notebook,
        kernel_name=command.kernel_name,
        session_id=session_id,
        # the hub loads the notebook: the room's update authors are then its editors
        seed_author=room_access.SYSTEM.label,
    )
    try:
        async with hub.store.session() as session:
            await session.append(
                project_events.stream_id(row["project_id"]),
                [
                    project_events.ProjectSessionOpened(
                        project_id=row["project_id"],
                        session_id=session_id,
                        room=room,
                        path=opened.path,
                        ref=ref,
                        branch=opened.branch,
                        base_commit=opened.commit,
                    )
                ],
                metadata=access.event_metadata(request, caller),
            )
    except BaseException:
        # not recorded (the database failed, the request was cancelled): no session runs
        # unbound to its project
        await manager.shutdown(session_id)
        raise
    await collab_forward.claim(request, bound)  # reached from other hub processes
    return ProjectSession(
        session=collab_api.render(request, bound),
        project=full_name,
        path=opened.path,
        ref=ref,
        branch=opened.branch,
        head=opened.commit,
    )


def _read(
    repositories: storage.Repositories, row: Any, refs: dict[str, str], ref: str, path: str
) -> project_sessions.NotebookAt:
    repo = repositories.open(row["project_id"])
    try:
        source = browse.Source(
            repo=repo,
            refs=refs,
            default_branch=row["default_branch"],
            full_name=f"{row['owner']}/{row['name']}",
        )
        return project_sessions.notebook_at(source, ref, path)
    finally:
        repo.close()


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /projects/{owner}/{name}/sessions``: the project's running sessions."""
    caller = request.get(access.REQUEST_CALLER)
    owner, name = request.match_info["owner"], request.match_info["name"]
    async with request.app[HUB].store.pool.acquire() as conn:
        found = await project_access.lookup(conn, owner, name, caller)
        if found is None or not project_access.decide(
            "read", project_access.target_of(found[0]), found[1]
        ):
            raise errors.NotFound(f"No such project: {owner}/{name}")
    return _json(ProjectSessions(sessions=await running(request, found[0])))


async def running(request: web.Request, project: Any) -> list[ProjectSession]:
    """The running sessions of a project (a ``project_by_name`` row the caller may read)."""
    manager = request.app.get(collab_api.SESSIONS)
    if manager is None:
        return []
    ids = [bound.session.session_id for bound in manager.all()]
    async with request.app[HUB].store.pool.acquire() as conn:
        rows = await project_sessions.running_of_project(conn, project["project_id"], ids)
    full_name = f"{project['owner']}/{project['name']}"
    shown = (_render(request, full_name, item) for item in rows)
    return [one for one in shown if one is not None]


async def commit_session(request: web.Request) -> web.Response:
    """``POST /collab/sessions/{id}/commit``: 201 on the session's branch, 409 on
    ``collab/<session>`` (its branch had moved); both say where the commit went."""
    hub = request.app[HUB]
    bound = await collab_api.authorized(request, "write")  # 403 to a reader, 404 to others
    caller = access.caller_of(request)
    command = await body.parse(request, CommitSession, allow_empty=True)
    session_id = bound.session.session_id
    async with hub.store.pool.acquire() as conn:
        binding = await project_sessions.binding_of_session(conn, session_id)
        if binding is None:
            raise errors.BadRequest(
                f"session {session_id} was not opened on a project: there is nowhere to commit"
                " its notebook (open one with POST /hub/api/projects/{owner}/{name}/sessions)"
            )
        found = await project_access.lookup(conn, binding["owner"], binding["name"], caller)
    if found is None or not project_access.decide(
        "write", project_access.target_of(found[0]), found[1]
    ):
        raise errors.Forbidden(
            f"committing to {binding['owner']}/{binding['name']} needs the write role on it"
        )
    await bound.room.flushed()  # every edit stored, so its author is known
    nb = notebook.read(bound.session.doc)
    authors = await hub.rooms.store.authors(bound.session.room) if hub.rooms else []
    done = await project_sessions.commit(
        hub.store,
        request.app[storage.STORAGE],
        session_id,
        notebook_bytes=project_sessions.serialise(nb),
        authors=authors,
        requester=caller,
        message=command.message or f"Edit {binding['path']} together",
        host=_host(request),
        metadata=access.event_metadata(request, caller),
    )
    reply = SessionCommit(
        commit=done.commit,
        branch=done.branch,
        diverted=done.diverted,
        parent=done.parent,
        participants=done.participants,
    )
    if binding["branch"] is None or done.branch == binding["branch"]:
        return _json(reply, 201)  # where the session's commits go
    reply.status = 409
    reply.message = (
        f"{binding['branch']} moved since the session's base {done.parent[:12]}: the commit is"
        f" on {done.branch}; merge it into {binding['branch']} with git"
    )
    return _json(reply, 409)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    one = "/hub/api/projects/{owner}/{name}/sessions"
    return [
        web.post(one, open_session),
        web.get(one, list_sessions),
        web.post(collab_api.PREFIX + "/{session_id}/commit", collab_api.anywhere(commit_session)),
    ]
