"""``/hub/admin`` and ``/hub/admin/groups``: the admin pages (JupyterHub's, without its
JavaScript).

Users page by page (filter by name), each with their servers; start and stop a server (the
forms post to ``/hub/spawn`` and ``/hub/stop`` and come back here), make or unmake an admin,
delete a user (a confirmation box), add users. Groups with their members: create a group,
add and remove members, delete a group. Opening a page needs ``admin-ui``; every action
needs its own scope, checked by the same functions the REST API uses (``users_api`` and
``groups_api``), with the same events. Forms are XSRF-checked by ``identity.middleware``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from hub import errors
from hub.api import groups as groups_api
from hub.api import servers as servers_api
from hub.api import users as users_api
from hub.auth import access, identity, scope_table
from hub.context import HUB
from hub.pages import user as user_pages
from hub.reads import groups as groups_read
from hub.reads import users as users_read
from hub.servers import isolation
from hub.servers import rules as server_rules
from hub.web import body

Page = Callable[..., Awaitable[web.Response]]  # renders a page: (request, status=, error=, notice=)
PAGE_SIZE = 50
ADMIN = "/hub/admin"
GROUPS = "/hub/admin/groups"


def names_of(text: str) -> list[str]:
    """The usernames typed in the "add users" box: one per line (or separated by spaces or
    commas), blanks ignored."""
    return [name for name in re.split(r"[\s,]+", text) if name]


def page_links(
    offset: int, total: int, name_filter: str, path: str = ADMIN
) -> dict[str, str | None]:
    """The previous and next pages' URLs (None at either end)."""

    def link(at: int) -> str:
        query = {"offset": str(at)} | ({"name_filter": name_filter} if name_filter else {})
        return f"{path}?{urlencode(query)}"

    return {
        "previous": link(max(offset - PAGE_SIZE, 0)) if offset > 0 else None,
        "next": link(offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None,
    }


def _offset(request: web.Request) -> int:
    value = request.query.get("offset", "0")
    return int(value) if value.isascii() and value.isdigit() else 0


def _server(user: str, server: dict[str, Any] | None, name: str) -> dict[str, Any]:
    state = server["state"] if server else "stopped"
    return {
        "label": name or "default",
        "state": state,
        "active": state in server_rules.ACTIVE,
        "ready": state == "ready",
        "url": server_rules.prefix(user, name),
        "start": f"/hub/spawn/{user_pages.server_path(user, name)}",
        "stop": f"/hub/stop/{user_pages.server_path(user, name)}",
    }


async def _page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> web.Response:
    signed_in = identity.signed_in_user(request)
    hub = request.app[HUB]
    name_filter = request.query.get("name_filter", "").strip()
    offset = _offset(request)
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(request, conn, [scope_table.ADMIN_UI])
        rows, total = await users_read.page(
            conn,
            offset=offset,
            limit=PAGE_SIZE,
            name_filter=name_filter or None,
            only=await access.listable_users(
                caller, lambda groups: users_read.members_of(conn, groups)
            ),
            sort="name",
        )
        servers = await servers_api.servers_by_user(
            conn, [r["user_id"] for r in rows], include_stopped=True
        )
    users = []
    for row in rows:
        found = {s["server_name"]: s for s in servers[row["user_id"]]}
        names = ["", *sorted(n for n in found if n)]
        users.append(
            {
                "name": row["name"],
                "admin": row["admin"],
                "last_activity": row["last_activity"],
                "servers": [_server(row["name"], found.get(n), n) for n in names],
                "is_self": row["name"] == signed_in["name"],
            }
        )
    return identity.form_page(
        request,
        "admin.html",
        status=status,
        user=signed_in["name"],
        error=error,
        notice=notice,
        users=users,
        total=total,
        offset=offset,
        name_filter=name_filter,
        links=page_links(offset, total, name_filter),
        back=request.path_qs if request.method == "GET" else ADMIN,
        spawning=request.app.get(servers_api.SERVER_APP) is not None,
        isolation=_isolation_warning(request),
    )


def _isolation_warning(request: web.Request) -> str | None:
    """What the admin must know about whose account users' code runs as: nothing when each
    user's code is kept apart (own account, or sandbox), else the mode's sentence."""
    code = request.app[HUB].isolation
    if code is None or code.mode in ("system_users", "sandbox"):
        return None
    return isolation.describe(code.mode, code.prefix)


async def _answer(
    request: web.Request,
    action: Callable[[], Awaitable[None]],
    notice: str,
    page: Page | None = None,
) -> web.Response:
    """Run ``action()``; the page (``page``, the users' by default) again, with ``notice`` or
    the action's error."""
    identity.signed_in_user(request)
    render = page or _page
    try:
        await action()
    except errors.HubError as exc:
        try:
            return await render(request, status=exc.status, error=exc.message)
        except errors.HubError as outer:  # not even allowed to see the page
            return identity.error_page(request, outer.status, outer.message)
    return await render(request, notice=notice)


async def _show(request: web.Request, page: Page) -> web.Response:
    """``page`` for a signed-in browser, or an error page (no ``admin-ui``: 403)."""
    identity.signed_in_user(request)
    try:
        return await page(request)
    except errors.HubError as exc:
        return identity.error_page(request, exc.status, exc.message)


async def admin_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/admin``."""
    return await _show(request, _page)


async def add_users(request: web.Request) -> web.StreamResponse:
    """``POST /hub/admin/users``: create the users named in the form."""
    form = await request.post()
    names = names_of(str(form.get("usernames", "")))

    async def create() -> None:
        if not names:
            raise errors.BadRequest("Type at least one username")
        command = body.validate(
            users_api.CreateUsers, {"usernames": names, "admin": form.get("admin") == "1"}
        )
        await users_api.create_many(request, command)

    return await _answer(request, create, f"Added {', '.join(names)}")


async def set_admin(request: web.Request) -> web.StreamResponse:
    """``POST /hub/admin/users/{name}/admin``: ``admin`` = 1 makes an admin, 0 unmakes."""
    form = await request.post()
    name = request.match_info["name"]
    admin = form.get("admin") == "1"

    async def change() -> None:
        await users_api.modify(request, name, users_api.ModifyUser(admin=admin))

    verb = "is now an admin" if admin else "is no longer an admin"
    return await _answer(request, change, f"{name} {verb}")


async def delete_user(request: web.Request) -> web.StreamResponse:
    """``POST /hub/admin/users/{name}/delete``: needs the ``confirm`` box ticked."""
    form = await request.post()
    name = request.match_info["name"]

    async def delete() -> None:
        if form.get("confirm") != "1":
            raise errors.BadRequest(f"Tick the box to confirm deleting {name}")
        await users_api.delete(request, name)

    return await _answer(request, delete, f"Deleted {name}")


# --- groups ---------------------------------------------------------------------------------


async def _groups_page(
    request: web.Request,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> web.Response:
    signed_in = identity.signed_in_user(request)
    hub = request.app[HUB]
    offset = _offset(request) if request.method == "GET" else 0
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(request, conn, [scope_table.ADMIN_UI])
        filters = caller.grants.filters(scope_table.LIST_GROUPS)
        only = None if filters.everything else sorted(filters.groups)
        rows, total = await groups_read.page(conn, offset=offset, limit=PAGE_SIZE, only=only)
    return identity.form_page(
        request,
        "admin_groups.html",
        status=status,
        user=signed_in["name"],
        error=error,
        notice=notice,
        groups=[{"name": r["name"], "users": list(r["users"])} for r in rows],
        total=total,
        offset=offset,
        links=page_links(offset, total, "", GROUPS),
    )


async def groups_page(request: web.Request) -> web.StreamResponse:
    """``GET /hub/admin/groups``."""
    return await _show(request, _groups_page)


async def add_group(request: web.Request) -> web.StreamResponse:
    """``POST /hub/admin/groups``: a new group (``name``) with the ``usernames`` typed."""
    form = await request.post()
    name = str(form.get("name", "")).strip()
    members = names_of(str(form.get("usernames", "")))

    async def create() -> None:
        command = body.validate(groups_api.CreateGroup, {"users": members})
        await groups_api.create(request, body.valid_name(name, "group name"), command)

    return await _answer(request, create, f"Created group {name}", _groups_page)


async def change_members(request: web.Request) -> web.StreamResponse:
    """``POST /hub/admin/groups/{name}/users`` adds the ``usernames`` typed;
    ``…/users/remove`` removes them."""
    form = await request.post()
    name = request.match_info["name"]
    adding = not request.path.endswith("/remove")
    members = names_of(str(form.get("usernames", "")))

    async def change() -> None:
        if not members:
            raise errors.BadRequest("Type at least one username")
        command = body.validate(groups_api.Members, {"users": members})
        await groups_api.members_change(request, name, command, adding=adding)

    done = (
        f"Added {', '.join(members)} to {name}"
        if adding
        else f"Removed {', '.join(members)} from {name}"
    )
    return await _answer(request, change, done, _groups_page)


async def delete_group(request: web.Request) -> web.StreamResponse:
    """``POST /hub/admin/groups/{name}/delete``: needs the ``confirm`` box ticked."""
    form = await request.post()
    name = request.match_info["name"]

    async def delete() -> None:
        if form.get("confirm") != "1":
            raise errors.BadRequest(f"Tick the box to confirm deleting group {name}")
        await groups_api.delete(request, name)

    return await _answer(request, delete, f"Deleted group {name}", _groups_page)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get(ADMIN, admin_page),
        web.post(f"{ADMIN}/users", add_users),
        web.post(ADMIN + "/users/{name}/admin", set_admin),
        web.post(ADMIN + "/users/{name}/delete", delete_user),
        web.get(GROUPS, groups_page),
        web.post(GROUPS, add_group),
        web.post(GROUPS + "/{name}/users", change_members),
        web.post(GROUPS + "/{name}/users/remove", change_members),
        web.post(GROUPS + "/{name}/delete", delete_group),
    ]
