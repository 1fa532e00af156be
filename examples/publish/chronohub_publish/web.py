"""The pages: ``<prefix><owner>/<name>/`` (latest), ``<prefix><owner>/<name>/@<commit>/``
(immutable), ``<prefix>_log`` (what the service did), and HubOAuth's callback.

Who may read follows the project (asked of the hub's REST API with the service's token):
``public`` anyone, ``hub`` any signed-in user, ``private`` its members (a user member, a member
group's member, or the owner). Sign-in is JupyterHub's own ``HubOAuth``. A page the caller may
not read answers 404, as the hub does.

Every page is sent with ``Content-Security-Policy: sandbox`` (no ``allow-scripts``, no
``allow-same-origin``) and ``script-src 'none'``: rendered notebooks are not sanitised
(``render.py`` says why), so the browser is what keeps their script from running.
"""

from __future__ import annotations

import html
import json
import mimetypes
import time
from pathlib import PurePosixPath
from typing import Any

from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
    HubOAuthenticated,
)
from tornado import web

from chronohub_publish import hubapi, manifest, publisher, render

CSP = (
    "sandbox; default-src 'none'; script-src 'none'; img-src data: 'self';"
    " style-src 'unsafe-inline' 'self'; font-src data: 'self'; frame-ancestors 'self'"
)
IMMUTABLE = "max-age=31536000, immutable"
PROJECT_TTL_S = 5.0


class Refused(web.HTTPError):
    """An answer other than 200 whose ``message`` (which may quote the URL) goes in the page's
    body, never in the status line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status)
        self.message = message


class Base(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """A page of the service: the CSP on every answer, the publisher at hand."""

    def initialize(self, publisher: publisher.Publisher, prefix: str) -> None:
        self.publisher = publisher
        self.publisher_prefix = prefix

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs["exc_info"][1] if "exc_info" in kwargs else None
        reason = exc.message if isinstance(exc, Refused) else self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            render.page(str(status_code), f"<h1>{status_code}</h1><p>{html.escape(reason)}</p>")
        )

    async def access(self, owner: str, name: str) -> tuple[dict[str, Any], str | None, bool]:
        """The project, the signed-in user (None: anonymous) and whether they are a
        member; 404 if the caller may not read it, a redirect to sign in if signing in might
        let them."""
        project = await _project(self.publisher.api, owner, name)
        if project is None:
            raise Refused(404, f"No such project: {owner}/{name}")
        user = self.get_current_user()
        who = user["name"] if user and user.get("kind", "user") == "user" else None
        member = who is not None and await is_member(self.publisher.api, project, who)
        if project["visibility"] == "public" or member:
            return project, who, member
        if who is None:
            self.redirect(self.get_login_url())
            raise web.Finish
        if project["visibility"] == "hub":
            return project, who, member
        raise Refused(404, f"No such project: {owner}/{name}")


_projects: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}


async def _project(api: hubapi.Api, owner: str, name: str) -> dict[str, Any] | None:
    # A few seconds of cache: every page of a site asks, and visibility rarely changes.
    now = time.monotonic()
    cached = _projects.get((owner, name))
    if cached is not None and now - cached[0] < PROJECT_TTL_S:
        return cached[1]
    try:
        found: dict[str, Any] | None = await api.project(owner, name)
    except hubapi.HubError as exc:
        if exc.status != 404:
            raise
        found = None
    _projects[(owner, name)] = (now, found)
    return found


_members: dict[tuple[str, str, str], tuple[float, bool]] = {}


async def is_member(api: hubapi.Api, project: dict[str, Any], user: str) -> bool:
    """Whether ``user`` holds a role on ``project`` (as a user, through a group, or as its
    owner: a user owning it, or a member of the group owning it); kept a few seconds, as the
    project is."""
    key = (project["owner"], project["name"], user)
    now = time.monotonic()
    cached = _members.get(key)
    if cached is not None and now - cached[0] < PROJECT_TTL_S:
        return cached[1]
    found = await _is_member(api, project, user)
    _members[key] = (now, found)
    return found


async def _is_member(api: hubapi.Api, project: dict[str, Any], user: str) -> bool:
    # users and teams have names apart: a team called like a user owns nothing of theirs
    owned_by_team = project.get("owner_kind") == "group"
    if not owned_by_team and project["owner"] == user:
        return True
    members = await api.members(project["owner"], project["name"])
    if any(m["kind"] == "user" and m["name"] == user for m in members):
        return True
    groups = set(await api.groups_of(user))
    return (owned_by_team and project["owner"] in groups) or any(
        m["kind"] == "group" and m["name"] in groups for m in members
    )


def banner(error: dict[str, Any]) -> str:
    """What members see above the last good version when the newest build failed."""
    return (
        '<div class="publish-banner" role="alert"><strong>The build of commit '
        f"{html.escape(error['commit'][:12])} failed</strong>; this is the last good version."
        f"<pre>{html.escape(error['detail'])}</pre></div>"
    )


class Pages(Base):
    """A published file, latest or at a commit."""

    async def get(self, owner: str, name: str, at: str | None, path: str) -> None:
        project, _, member = await self.access(owner, name)
        project_id = self.publisher.state.project_id(owner, name)
        pages = self.publisher.state.sites.get(project_id or "")
        error = pages.error if pages is not None else None
        commit = at or (pages.latest if pages is not None else None)
        if project_id is None or pages is None or commit is None or commit not in pages.built:
            if error and member and not at:
                self.set_status(404)
                self.finish(render.page("not published", render.TOC_STYLE + banner(error)))
                return
            raise Refused(404, f"{owner}/{name} is not published at this address")
        path = path or "index.html"
        if path.endswith("/"):
            path += "index.html"
        parts = PurePosixPath(path).parts
        if any(p in ("..", ".") or p.startswith(".") for p in parts):
            raise Refused(404, "No such page")
        public = project["visibility"] == "public"
        self.set_header(
            "Cache-Control", f"{'public' if public else 'private'}, {IMMUTABLE}" if at
            else "no-cache" if public else "private, no-cache",
        )  # fmt: skip
        body = await self._dashboard(project_id, commit, path, at is None)
        if body is None:
            file = self.publisher.builder.site_dir(project_id, commit) / path
            if not file.is_file():
                raise Refused(404, "No such page")
            body = file.read_bytes()
        if path.endswith(".html"):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            if error and member and not at:
                body = _with_banner(body, banner(error))
        else:
            self.set_header("Content-Type", _type_of(path))
        self.finish(body)

    async def _dashboard(
        self, project_id: str, commit: str, path: str, latest: bool
    ) -> bytes | None:
        """A dashboard's page: its run with the query's parameters, or its latest refresh."""
        wanted = self.publisher.manifest_of(project_id, commit)
        notebook = path.removesuffix(".html") + ".ipynb"
        dashboard = wanted.dashboard(notebook) if wanted and path.endswith(".html") else None
        if dashboard is None:
            return None
        query = {k: self.get_query_argument(k) for k in self.request.query_arguments}
        try:
            parameters = manifest.parameters_of(dashboard, query)
        except manifest.ParameterError as exc:
            raise Refused(400, str(exc)) from exc
        if parameters:
            page, ok = await self.publisher.dashboard_page(
                project_id, commit, notebook, parameters, dashboard
            )
            if not ok:
                self.set_status(500, "the dashboard failed")
            self.set_header("Cache-Control", "private, no-cache")
            return page.encode()
        refreshed = self.publisher.builder.runs_dir(project_id, commit, notebook) / "default.html"
        if latest and refreshed.exists():
            return refreshed.read_bytes()
        return None


def _with_banner(body: bytes, shown: str) -> bytes:
    return render.with_banner(body.decode(errors="replace"), shown).encode()


def _type_of(path: str) -> str:
    kind, _ = mimetypes.guess_type(path)
    return kind or "application/octet-stream"


class SignIn(Base):
    """``<prefix>_signin?next=<page>``: sign in (HubOAuth), then back to ``next``. A public
    project's pages never ask for it; its members come here to see its build errors."""

    @web.authenticated
    def get(self) -> None:
        target = self.get_query_argument("next", self.publisher_prefix)
        if not target.startswith(self.publisher_prefix) or "//" in target:
            raise Refused(400, f"next must be a page under {self.publisher_prefix}")
        self.redirect(target)


class Log(Base):
    """The service's own log (published, publish failed, dashboard run) of the projects the
    caller may read, newest first, as JSON."""

    async def get(self) -> None:
        user = self.get_current_user()
        who = user["name"] if user else None
        shown = []
        for entry in self.publisher.store.entries():
            owner, _, name = entry["project"].partition("/")
            project = await _project(self.publisher.api, owner, name)
            if project is None:
                continue
            if project["visibility"] == "public" or (
                who
                and (
                    project["visibility"] == "hub"
                    or await is_member(self.publisher.api, project, who)
                )
            ):
                shown.append(entry)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(shown))


def make_app(pub: publisher.Publisher, prefix: str, cookie_secret: bytes) -> web.Application:
    """The tornado application under ``prefix``."""
    kwargs = {"publisher": pub, "prefix": prefix}
    return web.Application(
        [
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "_log", Log, kwargs),
            (prefix + "_signin", SignIn, kwargs),
            (prefix + r"([^/_][^/]*)/([^/@]+)/(?:@([0-9a-f]{40})/)?(.*)", Pages, kwargs),
        ],
        cookie_secret=cookie_secret,
    )
