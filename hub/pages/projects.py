"""``/hub/projects``: a signed-in user's projects, and each project's content in the browser.

* ``/hub/projects``: the projects the user can read (their own, their teams', those shared
  with them, the hub's) and a form to create one (``projects_api.create``, the API's command).
* ``/hub/projects/{owner}/{name}``: the default branch's (or ``?ref=``) files, its README
  rendered, recent commits, members, and the clone command.
* ``…/tree/{ref}/{path}``: a directory; ``…/blob/{ref}/{path}``: a file, a notebook rendered
  with its outputs, markdown rendered, text with line numbers, images shown.
* ``POST …/sessions``: "open together", a form beside each notebook for those who may write
  the project: a shared execution session on it (``project_sessions_api.open_on_project``, the
  API's command); the project page lists the running ones.

Who may see a project is the REST API's rule (``project_content.readable``): a project the
user may not read is a 404 page. Pushed content is hostile: notebooks and markdown are
sanitized (``hub/web/content.py``), and these pages are sent with a Content-Security-Policy
that allows no script at all, so nothing a notebook carries can run in the hub's origin.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from collab import session_errors
from hub import errors
from hub.api import collab as collab_api
from hub.api import project_content
from hub.api import project_sessions as project_sessions_api
from hub.api import projects as projects_api
from hub.auth import access, collab_access, identity
from hub.context import HUB
from hub.projects import access as project_access
from hub.projects import browse, diffs
from hub.web import body, content

# The pages need no script; pushed content gets none.
CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
RECENT_COMMITS = 10
README_NAMES = ("readme.md", "readme.markdown", "readme.txt", "readme")
# Larger files are offered for download, not shown.
MAX_SHOWN_BYTES = 2 * 1024 * 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    return identity.form_page(request, template, csp=CSP, **context)


def _error(request: web.Request, exc: errors.HubError) -> web.Response:
    return identity.error_page(request, exc.status, exc.message, csp=CSP)


def _q(path: str) -> str:
    return quote(path, safe="/")


class Links:
    """The URLs of one project's pages and files."""

    def __init__(self, owner: str, name: str) -> None:
        self.home = f"/hub/projects/{quote(owner, safe='')}/{quote(name, safe='')}"
        self.api = f"/hub/api/projects/{quote(owner, safe='')}/{quote(name, safe='')}"

    def tree(self, ref: str, path: str = "") -> str:
        return f"{self.home}/tree/{_q(ref)}/{_q(path)}"

    def blob(self, ref: str, path: str) -> str:
        return f"{self.home}/blob/{_q(ref)}/{_q(path)}"

    def raw(self, ref: str, path: str) -> str:
        return f"{self.api}/raw/{_q(ref)}/{_q(path)}"

    def entry(self, ref: str, entry: dict[str, Any]) -> str:
        if entry["type"] == "dir":
            return self.tree(ref, entry["path"])
        return self.blob(ref, entry["path"])


def crumbs(links: Links, ref: str, path: str) -> list[tuple[str, str]]:
    """The breadcrumbs of ``path``: (label, link) from the project down."""
    out = [("/", links.tree(ref))]
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        out.append((part, links.tree(ref, "/".join(parts[: i + 1]))))
    return out


# --- what the worker threads prepare -----------------------------------------------------------


def _readme(source: browse.Source, ref: str, entries: list[dict[str, Any]]) -> str | None:
    for entry in entries:
        if entry["type"] == "file" and entry["name"].lower() in README_NAMES:
            found = browse.read_file(source, ref, entry["path"])
            if diffs.is_binary(found.data) or len(found.data) > MAX_SHOWN_BYTES:
                return None
            text = found.data.decode()
            if entry["name"].lower().endswith((".md", ".markdown")):
                return content.markdown(text)
            return content.sanitize(f"<pre>{_escape(text)}</pre>")
    return None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def overview(source: browse.Source, ref: str) -> dict[str, Any]:
    """The project page's content at ``ref``: files, README (sanitized HTML), recent commits."""
    resolved, _, entries = browse.tree(source, ref, "")
    recent, total, _ = browse.commits(source, ref, "", 0, RECENT_COMMITS)
    return {
        "resolved": resolved,
        "entries": entries,
        "readme": _readme(source, ref, entries),
        "commits": recent,
        "commit_count": total,
    }


def directory(source: browse.Source, ref: str, path: str) -> dict[str, Any]:
    """A directory page's content."""
    resolved, _, entries = browse.tree(source, ref, path)
    return {"resolved": resolved, "entries": entries, "readme": _readme(source, ref, entries)}


def file_view(source: browse.Source, ref: str, path: str) -> dict[str, Any]:
    """A file page's content: how it is shown (notebook, markdown, image, text, binary or
    too large) and what to show."""
    found = browse.read_file(source, ref, path)
    shown: dict[str, Any] = {"file": found, "size": len(found.data), "html": None, "lines": []}
    lower = found.path.lower()
    if lower.endswith(IMAGE_SUFFIXES):
        return shown | {"view": "image"}
    if len(found.data) > MAX_SHOWN_BYTES:
        return shown | {"view": "large"}
    if diffs.is_binary(found.data):
        return shown | {"view": "binary"}
    if lower.endswith(".ipynb"):
        try:
            return shown | {"view": "notebook", "html": content.notebook(found.data)}
        except content.NotANotebook:
            pass  # shown as the text it is
    text = found.data.decode()
    if lower.endswith((".md", ".markdown")):
        return shown | {"view": "markdown", "html": content.markdown(text)}
    return shown | {"view": "text", "lines": text.splitlines()}


# --- handlers ---------------------------------------------------------------------------------


async def _list_page(
    request: web.Request, *, status: int = 200, error: str | None = None
) -> web.Response:
    row = identity.signed_in_user(request)
    caller = access.caller_of(request)
    async with request.app[HUB].store.pool.acquire() as conn:
        rows = await projects_api.readable_projects(conn, caller, owner=None, shared_only=False)
    mine, teams, shared, others = [], [], [], []
    for project in rows:
        item = projects_api.render(request, project)
        if project["owner_kind"] == "user" and project["owner"] == row["name"]:
            mine.append(item)
        elif project["owner_kind"] == "group" and project["member_role"] is not None:
            teams.append(item)
        elif project["shared"]:
            shared.append(item)
        else:
            others.append(item)
    return _page(
        request,
        "projects.html",
        status=status,
        user=row["name"],
        error=error,
        sections=[
            ("Your projects", "mine", mine),
            ("Your teams' projects", "teams", teams),
            ("Shared with you", "shared", shared),
            ("Everyone's on this hub", "hub", others),
        ],
    )


async def list_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/projects``."""
    return await _list_page(request)


async def create(request: web.Request) -> web.StreamResponse:
    """``POST /hub/projects``: create a project, then go to its page."""
    identity.signed_in_user(request)
    form = await request.post()
    data = {
        key: str(form[key]).strip()
        for key in ("name", "description", "visibility", "owner")
        if str(form.get(key, "")).strip()
    }
    try:
        command = body.validate(projects_api.CreateProject, data)
        row = await projects_api.create(request, command)
    except errors.HubError as exc:
        return await _list_page(request, status=exc.status, error=exc.message)
    raise web.HTTPFound(Links(row["owner"], row["name"]).home)


async def _open(request: web.Request) -> tuple[Any, dict[str, str], Links]:
    caller = access.caller_of(request)
    owner, name = request.match_info["owner"], request.match_info["name"]
    async with request.app[HUB].store.pool.acquire() as conn:
        row, refs = await project_content.readable(conn, caller, owner, name)
    return row, refs, Links(row["owner"], row["name"])


async def _may_open_together(request: web.Request, row: Any) -> bool:
    """Whether the user may open a session on the project's notebooks: this hub runs
    sessions, and they hold the write role on it and ``write:collab``."""
    caller = access.caller_of(request)
    if request.app.get(collab_api.SESSIONS) is None or not caller.grants.holds(collab_access.WRITE):
        return False
    async with request.app[HUB].store.pool.acquire() as conn:
        found = await project_access.lookup(conn, row["owner"], row["name"], caller)
    return found is not None and project_access.decide(
        "write", project_access.target_of(found[0]), found[1]
    )


async def project_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/projects/{owner}/{name}``."""
    user = identity.signed_in_user(request)
    try:
        row, refs, links = await _open(request)
        ref = request.query.get("ref") or row["default_branch"]
        shown = None
        if refs:
            shown = await project_content.read(request.app, row, refs, overview, ref)
        async with request.app[HUB].store.pool.acquire() as conn:
            members = await projects_api.members(conn, row["project_id"])
        refs_list = await project_content.read(request.app, row, refs, browse.list_refs)
        sessions = await project_sessions_api.running(request, row)
        together = await _may_open_together(request, row)
    except errors.HubError as exc:
        return _error(request, exc)
    project = projects_api.render(request, row)
    return _page(
        request,
        "project.html",
        user=user["name"],
        project=project,
        links=links,
        ref=ref,
        refs=refs_list,
        shown=shown,
        members=members,
        crumbs=crumbs(links, ref, ""),
        sessions=sessions,
        open_together=together,
    )


async def tree_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/projects/{owner}/{name}/tree/{ref}/{path}``."""
    user = identity.signed_in_user(request)
    try:
        row, refs, links = await _open(request)
        ref, path = browse.split_ref_path(request.match_info["tail"], refs)
        shown = await project_content.read(request.app, row, refs, directory, ref, path)
        together = await _may_open_together(request, row)
    except errors.HubError as exc:
        return _error(request, exc)
    return _page(
        request,
        "project_tree.html",
        user=user["name"],
        project=projects_api.render(request, row),
        links=links,
        ref=ref,
        path=browse.clean_path(path),
        shown=shown,
        crumbs=crumbs(links, ref, path),
        open_together=together,
    )


async def open_together(request: web.Request) -> web.StreamResponse:
    """``POST /hub/projects/{owner}/{name}/sessions``: open a session on a notebook (form
    fields ``path`` and ``ref``), then back to the project's page, which lists it."""
    identity.signed_in_user(request)
    form = await request.post()
    data = {key: str(form[key]) for key in ("path", "ref") if str(form.get(key, "")).strip()}
    owner, name = request.match_info["owner"], request.match_info["name"]
    try:
        command = body.validate(project_sessions_api.OpenSession, data)
        opened = await project_sessions_api.open_on_project(request, owner, name, command)
    except errors.HubError as exc:
        return _error(request, exc)
    except session_errors.SessionError as exc:  # a notebook that is not one, a kernel …
        status = errors.status_of(exc) or 400
        response = identity.error_page(request, status, str(exc))
        response.headers["Content-Security-Policy"] = CSP
        return response
    raise web.HTTPFound(f"/hub/sessions/{opened.session.id}")


async def blob_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/projects/{owner}/{name}/blob/{ref}/{path}``."""
    user = identity.signed_in_user(request)
    try:
        row, refs, links = await _open(request)
        ref, path = browse.split_ref_path(request.match_info["tail"], refs)
        shown = await project_content.read(request.app, row, refs, file_view, ref, path)
    except errors.HubError as exc:
        return _error(request, exc)
    path = shown["file"].path
    return _page(
        request,
        "project_file.html",
        user=user["name"],
        project=projects_api.render(request, row),
        links=links,
        ref=ref,
        path=path,
        shown=shown,
        raw=links.raw(ref, path),
        crumbs=crumbs(links, ref, path.rsplit("/", 1)[0] if "/" in path else ""),
    )


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    one = "/hub/projects/{owner}/{name}"
    return [
        web.get("/hub/projects", list_page),
        web.post("/hub/projects", create),
        web.get(one, project_page),
        web.post(one + "/sessions", open_together),
        web.get(one + "/tree/{tail:.+}", tree_page),
        web.get(one + "/blob/{tail:.+}", blob_page),
    ]
