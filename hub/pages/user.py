"""The browser's way to servers: what ``/user/<name>/...`` shows when the proxy has no route
for it, the start and stop buttons, and the "starting" page. No JavaScript: plain forms with
the ``_xsrf`` token (checked by ``identity.middleware``) and a page that refreshes itself.

As in JupyterHub (``UserUrlHandler``): the proxy sends ``/user/<name>/...`` to the hub when
the server has no route; the hub redirects it to ``/hub/user/<name>/...``, where the login
cookie (path ``/hub/``) is sent. There:

* not signed in → the login page, coming back here after;
* no ``access:servers`` on that server → 404 (existence does not leak);
* the server is ready → back to ``/user/...`` (the proxy routes it now);
* an API request (``Accept: application/json`` or an ``api`` path segment) → 424 JSON;
* starting or stopping → ``/hub/spawn-pending/...``, which refreshes until it is ready;
* otherwise → 424 with a "Start my server" form that posts to ``/hub/spawn/...``.

The decision is the pure function ``decide``; the handlers read, act and render.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import web

from events import sql
from hub import errors
from hub.api import projects as projects_api
from hub.api import servers as servers_api
from hub.auth import access, identity, scope_table, scopes
from hub.context import HUB
from hub.reads import users as users_read
from hub.servers import manager as servers
from hub.servers import rules as server_rules
from hub.servers import spawner
from hub.web import html

queries = sql.Queries("hub.servers", "servers.sql")

# Redirects from /hub/user/... back to a ready server's /user/... before giving up (the
# proxy is not routing it): JupyterHub's guard against a redirect loop.
MAX_REDIRECTS = 4
# How often the "starting" page reloads itself.
REFRESH_S = 1

Outcome = Literal["login", "not_found", "redirect", "api_error", "pending", "not_running"]


@dataclass(frozen=True)
class Visit:
    """What is known of a visit to ``/hub/user/<name>/...``."""

    signed_in: bool
    has_access: bool
    state: str | None  # the server's state, None if it has none
    api_request: bool


def decide(visit: Visit) -> Outcome:
    """Where a visit to a server the proxy did not route goes (see the module doc)."""
    if not visit.signed_in:
        return "login"
    if not visit.has_access:
        return "not_found"
    if visit.state == "ready":
        return "redirect"
    if visit.api_request:
        return "api_error"
    if visit.state in server_rules.PENDING_SPAWN or visit.state == "stopping":
        return "pending"
    return "not_running"


def is_api_request(path_segments: list[str], accept: str) -> bool:
    """JupyterHub's test: JSON preferred over HTML, or an ``api`` segment in the path."""
    if "api" in path_segments:
        return True
    json_at = accept.find("application/json")
    html_at = accept.find("text/html")
    return json_at >= 0 and (html_at < 0 or json_at < html_at)


def server_path(user: str, server_name: str) -> str:
    """``{user}`` or ``{user}/{server}``, escaped, as in ``/hub/spawn/...``."""
    path = quote(user, safe="")
    return f"{path}/{quote(server_name, safe='')}" if server_name else path


# --- handlers --------------------------------------------------------------------------------


async def to_hub_prefix(request: web.Request) -> web.StreamResponse:
    """``/user/<name>/...`` reached the hub: go on at ``/hub/user/<name>/...`` (GET), where the
    login cookie is sent; anything else is an API call to a server that is not running."""
    if request.method not in ("GET", "HEAD"):
        return _api_error(request, request.match_info["name"], "")
    raise web.HTTPFound("/hub" + request.path_qs)


async def not_routed(request: web.Request) -> web.StreamResponse:
    """``GET /hub/user/<name>/...``: sign in, start, wait, or go back to the server."""
    hub = request.app[HUB]
    user_name = request.match_info["name"]
    tail = request.match_info.get("tail", "")
    if request.method not in ("GET", "HEAD"):
        return _api_error(request, user_name, "")
    session = identity.session_user(request)
    caller = request.get(access.REQUEST_CALLER)
    segments = tail.split("/")
    async with hub.store.pool.acquire() as conn:
        user = await users_read.find(conn, user_name)
        server_name = ""
        row = None
        if user is not None:
            if segments[0] and hub.settings.allow_named_servers:
                named = await conn.fetchrow(queries["server"], user["user_id"], segments[0])
                if named is not None:
                    server_name, row = segments[0], named
            if row is None:
                row = await conn.fetchrow(queries["server"], user["user_id"], "")
        has_access = False
        if user is not None and isinstance(caller, access.Caller):
            groups_of = None
            if caller.grants.filters(scope_table.ACCESS_SERVERS).groups:
                groups_of = await access.groups_of_users(conn, [user_name])
            has_access = caller.grants.allows(
                scope_table.ACCESS_SERVERS,
                scopes.Filter.server(user_name, server_name),
                groups_of=groups_of,
            )
    visit = Visit(
        signed_in=session is not None or isinstance(caller, access.Caller),
        has_access=has_access,
        state=row["state"] if row is not None else None,
        api_request=is_api_request(segments, request.headers.get("Accept", "")),
    )
    outcome = decide(visit)
    here = request.path_qs
    if outcome == "login":
        raise web.HTTPFound("/hub/login?" + urlencode({"next": here}))
    if outcome == "not_found":
        return identity.error_page(request, 404, "No access to resources or resources not found")
    if outcome == "redirect":
        return _back_to_server(request)
    if outcome == "api_error":
        return _api_error(request, user_name, server_name)
    next_url = request.path_qs.removeprefix("/hub")
    if outcome == "pending":
        raise web.HTTPSeeOther(
            f"/hub/spawn-pending/{server_path(user_name, server_name)}?"
            + urlencode({"next": next_url})
        )
    return _start_page(request, user_name, server_name, next_url, status=424)


def _back_to_server(request: web.Request) -> web.StreamResponse:
    """Back to ``/user/...``, counting the round trips (the proxy may be a moment late)."""
    try:
        redirects = int(request.query.get("redirects", "0"))
    except ValueError:
        redirects = 0
    if redirects >= MAX_REDIRECTS:
        return identity.error_page(
            request, 503, "The server is running but the proxy does not route to it; try again soon"
        )
    query = {k: v for k, v in request.query.items() if k != "redirects"}
    query["redirects"] = str(redirects + 1)
    raise web.HTTPFound(request.path.removeprefix("/hub") + "?" + urlencode(query))


def _api_error(request: web.Request, user: str, server_name: str) -> web.Response:
    """JupyterHub's answer to an API call to a server that is not running: 424, JSON."""
    spawn = f"/hub/spawn/{server_path(user, server_name)}"
    message = (
        f"JupyterHub server no longer running at {request.path.removeprefix('/hub')}."
        f" Restart the server at {spawn}"
    )
    return web.json_response({"message": message}, status=424)


def _start_page(
    request: web.Request,
    user: str,
    server_name: str,
    next_url: str,
    *,
    status: int = 200,
    error: str | None = None,
    options_form: str = "",
) -> web.Response:
    session = identity.session_user(request)
    return identity.form_page(
        request,
        "not_running.html",
        status=status,
        user=session["name"] if session else None,
        owner=user,
        server_label=server_rules.label(user, server_name),
        action=f"/hub/spawn/{server_path(user, server_name)}",
        next=next_url,
        error=error,
        options_form=options_form,
    )


# The spawn form's own fields, never passed to a spawner's options_from_form.
FORM_FIELDS = frozenset({"_xsrf", "next", "server_name"})


async def _options_form(request: web.Request, user: str, server_name: str) -> str:
    """A JupyterHub spawner class's options form (its HTML, as the admin configured it), or ""."""
    adapter = servers_api.manager(request).spawner
    if not isinstance(adapter, spawner.FormSpawner):
        return ""
    return await adapter.options_form(user=user, server_name=server_name, user_id=None)


def _options(
    manager: servers.ServerManager, form: Any, user: Any, server_name: str
) -> dict[str, Any]:
    """The user options of a submitted spawn form: through the JupyterHub spawner class's
    ``options_from_form`` (each field a list of strings, as JupyterHub passes them), else none."""
    adapter = manager.spawner
    if not isinstance(adapter, spawner.FormSpawner):
        return {}
    fields = {
        key: [str(value) for value in form.getall(key)] for key in set(form.keys()) - FORM_FIELDS
    }
    return adapter.options_from_form(
        fields, user=user["name"], server_name=server_name, user_id=user["user_id"]
    )


async def _server_target(
    request: web.Request, scope: str, server_name: str | None = None
) -> tuple[servers.ServerManager, access.Caller, Any, str]:
    """The manager, the signed-in caller (``scope`` checked on the server), the user row and
    the server name of a ``/hub/spawn|stop/<name>[/<server>]`` request (or ``server_name``)."""
    manager = servers_api.manager(request)
    user_name = request.match_info["name"]
    if server_name is None:
        server_name = request.match_info.get("server_name", "")
    if server_name and not servers_api.SERVER_NAME.match(server_name):
        raise errors.BadRequest(f"Invalid server_name: {server_name!r}")
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(
            request, conn, [scope], scopes.Filter.server(user_name, server_name)
        )
        user = await users_read.require(conn, user_name)
    return manager, caller, user, server_name


def _next(request: web.Request, form: Any, user: str, server_name: str) -> str:
    value = form.get("next") if form is not None else None
    value = value if isinstance(value, str) and value else request.query.get("next")
    return html.safe_next(request, value or server_rules.prefix(user, server_name))


async def spawn_form(request: web.Request) -> web.StreamResponse:
    """``GET /hub/spawn/<name>[/<server>]``: the start form (starting changes state: a POST)."""
    if identity.session_user(request) is None:
        raise web.HTTPFound("/hub/login?" + urlencode({"next": request.path_qs}))
    user = request.match_info["name"]
    server_name = request.match_info.get("server_name", "")
    return _start_page(
        request,
        user,
        server_name,
        _next(request, None, user, server_name),
        options_form=await _options_form(request, user, server_name),
    )


async def spawn(request: web.Request) -> web.StreamResponse:
    """``POST /hub/spawn/<name>[/<server>]`` (XSRF checked): start the server, then go to
    ``next`` once it is ready, or to the page following its start. The home page's "new
    named server" form names the server in a ``server_name`` field instead of the path."""
    if identity.session_user(request) is None:
        return identity.error_page(request, 403, "Sign in to start a server")
    form = await request.post()
    named = request.match_info.get("server_name") or str(form.get("server_name", "")).strip()
    try:
        manager, caller, user, server_name = await _server_target(
            request, scope_table.START_SERVERS, named
        )
        await identity.check_spawn(request, caller, user["user_id"], user["name"])
    except errors.HubError as exc:
        return identity.error_page(request, exc.status, exc.message)
    next_url = _next(request, form, user["name"], server_name)
    try:
        options = _options(manager, form, user, server_name)
        outcome = await manager.spawn(
            user["user_id"],
            user["name"],
            server_name,
            options,
            access.event_metadata(request, caller),
        )
    except spawner.SpawnError as exc:
        return _start_page(
            request,
            user["name"],
            server_name,
            next_url,
            status=exc.status,
            error=exc.reply,
            options_form=await _options_form(request, user["name"], server_name),
        )
    if outcome == "ready":
        return html.redirect(next_url)
    raise web.HTTPSeeOther(
        f"/hub/spawn-pending/{server_path(user['name'], server_name)}?"
        + urlencode({"next": next_url})
    )


async def spawn_pending(request: web.Request) -> web.StreamResponse:
    """``GET /hub/spawn-pending/<name>[/<server>]``: a page that reloads itself while the
    server starts, then goes to ``next``."""
    session = identity.session_user(request)
    if session is None:
        raise web.HTTPFound("/hub/login?" + urlencode({"next": request.path_qs}))
    try:
        manager, _, user, server_name = await _server_target(request, scope_table.READ_SERVERS)
    except errors.HubError as exc:
        return identity.error_page(request, exc.status, exc.message)
    next_url = _next(request, None, user["name"], server_name)
    async with request.app[HUB].store.pool.acquire() as conn:
        row = await conn.fetchrow(queries["server"], user["user_id"], server_name)
    state = row["state"] if row is not None else None
    if state == "ready":
        return html.redirect(next_url)
    if state in server_rules.PENDING_SPAWN or state == "stopping":
        latest = manager.latest_progress(user["user_id"], server_name)
        message = (latest or {}).get("message") or (
            "Stopping..." if state == "stopping" else "Starting..."
        )
        return identity.form_page(
            request,
            "spawn_pending.html",
            user=session["name"],
            server_label=server_rules.label(user["name"], server_name),
            message=message,
            refresh=REFRESH_S,
        )
    reason = row["reason"] if row is not None and state == "failed" else None
    error = f"Spawn failed: {reason}" if reason else None
    return _start_page(request, user["name"], server_name, next_url, error=error)


async def stop(request: web.Request) -> web.StreamResponse:
    """``POST /hub/stop/<name>[/<server>]`` (XSRF checked): stop the server, then back to
    ``next`` (a page of this hub; home by default)."""
    if identity.session_user(request) is None:
        return identity.error_page(request, 403, "Sign in to stop a server")
    form = await request.post()
    back = form.get("next")
    try:
        manager, caller, user, server_name = await _server_target(
            request, scope_table.DELETE_SERVERS
        )
        await manager.stop(
            user["user_id"], user["name"], server_name, access.event_metadata(request, caller)
        )
    except errors.HubError as exc:
        return identity.error_page(request, exc.status, exc.message)
    except spawner.SpawnError as exc:
        status = exc.status if isinstance(exc, spawner.PolicyError) else 500
        return identity.error_page(request, status, exc.message)
    return html.redirect(html.safe_next(request, back if isinstance(back, str) else None))


async def home_servers(request: web.Request, user_id: Any, user: str) -> list[dict[str, Any]]:
    """The user's servers for the home page: the default one first (even never started)."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        rows = await conn.fetch(queries["servers_of_users"], [user_id], False)
    found = {row["server_name"]: row for row in rows}
    listed = []
    for name in ["", *sorted(n for n in found if n)]:
        row = found.get(name)
        state = row["state"] if row is not None else None
        listed.append(
            {
                "name": name,
                "label": name or "Default server",
                "url": server_rules.prefix(user, name),
                "state": state or "stopped",
                "active": state in server_rules.ACTIVE,
                "ready": state == "ready",
                "start": f"/hub/spawn/{server_path(user, name)}",
                "stop": f"/hub/stop/{server_path(user, name)}",
                "options": json.loads(row["options"]) if row is not None else {},
                "last_activity": row["last_activity"] if row is not None else None,
            }
        )
    return listed


async def home_shared_projects(request: web.Request) -> list[dict[str, Any]]:
    """The projects shared with the signed-in user (or a team of theirs), for the home page:
    the read of ``GET /hub/api/projects?shared_with_me=true``, rendered as the API does."""
    caller = access.caller_of(request)
    async with request.app[HUB].store.pool.acquire() as conn:
        rows = await projects_api.readable_projects(conn, caller, owner=None, shared_only=True)
    return [projects_api.render(request, row) for row in rows]


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.route("*", "/user/{name}", to_hub_prefix),
        web.route("*", "/user/{name}/{tail:.*}", to_hub_prefix),
        web.route("*", "/hub/user/{name}", not_routed),
        web.route("*", "/hub/user/{name}/{tail:.*}", not_routed),
        web.get("/hub/spawn/{name}", spawn_form),
        web.get("/hub/spawn/{name}/{server_name}", spawn_form),
        web.post("/hub/spawn/{name}", spawn),
        web.post("/hub/spawn/{name}/{server_name}", spawn),
        web.get("/hub/spawn-pending/{name}", spawn_pending),
        web.get("/hub/spawn-pending/{name}/{server_name}", spawn_pending),
        web.post("/hub/stop/{name}", stop),
        web.post("/hub/stop/{name}/{server_name}", stop),
    ]
