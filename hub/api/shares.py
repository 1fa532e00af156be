"""JupyterHub 5's sharing API: ``/hub/api/shares`` and the ``/hub/api/users|groups/{name}/shared``
views of it; share codes are ``share_codes.py``, which uses this module's rules and lookups.

A share gives a user or a group scopes on one server of another user; every scope must be
filtered to that server (``access:servers!server=alice/`` by default), and the granter must
hold it there. The scopes shared with a user count as the user's own at every request
(``hub/auth/access.py``), so a group's share follows its members at once, and the server's
``HubOAuth`` sees ``access:servers!server=alice/`` in a recipient's ``/hub/api/user``. Every
list is paginated
(``{items, _pagination}``), with or without the pagination media type, as in JupyterHub.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events import sql
from events.catalog import shares as share_events
from events.catalog.names import Name
from hub import errors
from hub.api import models as api_models
from hub.auth import access, scope_table, scopes
from hub.context import HUB
from hub.reads import groups as groups_read
from hub.reads import users as users_read
from hub.servers import rules
from hub.web import body, pagination

queries = sql.Queries(__package__ or "hub.api", "shares.sql")

MAX_SCOPES = 100
# The server name in a path: empty for the default server (the path ends with '/').
SERVER = "{server_name:[^/]*}"


class Grant(BaseModel):
    """``POST /shares/{owner}/{server_name}``: give ``user`` xor ``group`` these scopes."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(default=None, max_length=MAX_SCOPES)
    user: Name | None = None
    group: Name | None = None


class Revoke(BaseModel):
    """``PATCH /shares/{owner}/{server_name}``: take these scopes (all if none) back."""

    model_config = ConfigDict(extra="forbid")

    scopes: list[str] | None = Field(default=None, max_length=MAX_SCOPES)
    user: Name | None = None
    group: Name | None = None


# --- replies (the spec's SharedServer, Share, ShareCode) --------------------------------------


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SharedServerOwner(Reply):
    """The server's owner."""

    name: str


class SharedServer(Reply):
    """Where a shared server is, whose it is, and whether it is ready."""

    name: str
    url: str
    full_url: str | None
    ready: bool
    user: SharedServerOwner


class Named(Reply):
    """A user or group, by name."""

    name: str


class Share(Reply):
    """One share: a user's or a group's scopes on one server."""

    server: SharedServer
    scopes: list[str]
    user: Named | None
    group: Named | None
    kind: Literal["user", "group"]
    created_at: str


class SharePage(Reply):
    """A page of shares."""

    items: list[Share]
    pagination: api_models.Pagination = Field(alias="_pagination")


# --- pure rules ------------------------------------------------------------------------------


def default_scopes(owner: str, server_name: str) -> list[str]:
    """What a share gives when it names no scopes: using the server."""
    return [f"access:servers!server={owner}/{server_name}"]


def share_scopes(requested: list[str] | None, owner: str, server_name: str) -> list[str]:
    """The scopes of a share of ``owner/server_name``: the default when none are asked for;
    ``errors.BadRequest`` naming a scope that is unknown or not filtered to that server."""
    if not requested:
        return default_scopes(owner, server_name)
    target = scopes.Filter.server(owner, server_name)
    checked: list[str] = []
    for text in requested:
        try:
            parsed = scopes.parse_scope(text)
        except scopes.ScopeError as exc:
            raise errors.BadRequest(f"scopes: {exc}") from None
        if parsed.filter != target:
            raise errors.BadRequest(
                f"scopes: {text!r} is not filtered to this server; a share's scopes must end"
                f" with !server={owner}/{server_name}"
            )
        checked.append(str(parsed))
    return sorted(set(checked))


def one_recipient(command: Grant | Revoke) -> tuple[Literal["user", "group"], str]:
    """(``"user"`` or ``"group"``, name): exactly one of the two must be given."""
    if command.user is not None and command.group is None:
        return "user", _normalize(command.user)
    if command.group is not None and command.user is None:
        return "group", command.group
    raise errors.BadRequest("user, group: specify exactly one of 'user' and 'group'")


def _normalize(name: str) -> str:
    """User names are compared in lower case (JupyterHub's default normalisation)."""
    return name.lower()


# --- rendering -------------------------------------------------------------------------------


def server_model(
    owner: str, server_name: str, ready: bool, public_url: str | None
) -> dict[str, Any]:
    """The spec's ``SharedServer``."""
    url = rules.prefix(owner, server_name)
    return {
        "user": {"name": owner},
        "name": server_name,
        "url": url,
        "full_url": public_url.rstrip("/") + url if public_url else None,
        "ready": ready,
    }


def filtered(names: list[str], owner: str, server_name: str) -> list[str]:
    """Stored scope names as the share's scopes, each filtered to its server."""
    return [f"{name}!server={owner}/{server_name}" for name in names]


def render_share(row: Any, public_url: str | None) -> dict[str, Any]:
    """The spec's ``Share`` (plus JupyterHub's ``kind``) for a ``shares_select`` row."""
    owner, server_name = row["owner"], row["server_name"]
    recipient = {"name": row["recipient"]}
    return {
        "server": server_model(owner, server_name, row["ready"], public_url),
        "scopes": filtered(list(row["scopes"]), owner, server_name),
        "user": recipient if row["recipient_kind"] == "user" else None,
        "group": recipient if row["recipient_kind"] == "group" else None,
        "kind": row["recipient_kind"],
        "created_at": body.iso(row["created"]),
    }


# --- lookups ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Select:
    """The filters of ``shares_select`` (see shares.sql)."""

    owner_id: UUID | None = None
    server_name: str | None = None
    user_id: UUID | None = None
    with_groups: bool = False
    group_id: UUID | None = None
    kind: str | None = None
    recipient_id: UUID | None = None

    def args(self) -> tuple[Any, ...]:
        return (
            self.owner_id,
            self.server_name,
            self.user_id,
            self.with_groups,
            self.group_id,
            self.kind,
            self.recipient_id,
        )


async def select_page(
    conn: sql.Connection, where: Select, offset: int, limit: int
) -> tuple[list[Any], int]:
    """A page of shares and how many there are in all."""
    rows = list(await conn.fetch(queries["shares_select"], *where.args(), offset, limit))
    if rows:
        return rows, int(rows[0]["total"])
    return rows, int(await conn.fetchval(queries["shares_count"], *where.args()))


async def select_one(conn: sql.Connection, where: Select) -> Any:
    """The one share ``where`` names, or None."""
    rows = await conn.fetch(queries["shares_select"], *where.args(), 0, 1)
    return rows[0] if rows else None


async def owner_of(conn: sql.Connection, name: str) -> Any:
    """The ``user_by_name`` row of a server's owner; 404 if there is no such user."""
    row = await users_read.find(conn, name)
    if row is None:
        raise errors.NotFound(f"No such user: {name}")
    return row


async def require_server(conn: sql.Connection, owner: Any, server_name: str) -> str | None:
    """The server's state (None: the default server, never started); 404 if there is no such
    named server."""
    state: str | None = await conn.fetchval(queries["server_state"], owner["user_id"], server_name)
    if state is None and server_name:
        raise errors.NotFound(f"No such server: {owner['name']}/{server_name}")
    return state


def server_target(request: web.Request) -> tuple[str, str, scopes.Filter]:
    owner = request.match_info["owner"]
    server_name = request.match_info["server_name"]
    try:
        target = scopes.Filter.server(owner, server_name)
    except scopes.ScopeError:
        raise errors.NotFound(f"No such server: {owner}/{server_name}") from None
    return owner, server_name, target


def page_of(request: web.Request) -> pagination.Page:
    hub = request.app[HUB]
    page = pagination.parse(
        request,
        default_limit=hub.settings.api_page_default_limit,
        max_limit=hub.settings.api_page_max_limit,
    )
    return dataclasses.replace(page, paginated=True)  # always paginated, as in JupyterHub


async def check_held(
    conn: sql.Connection, caller: access.Caller, wanted: list[str], owner: str
) -> None:
    """403, as JupyterHub answers, if the caller would share scopes it does not hold."""
    groups_of = await access.groups_of_users(conn, [owner])
    excess = [
        text
        for text in wanted
        if not all(
            caller.grants.allows(s.name, s.filter, groups_of=groups_of)
            for s in scopes.expand([text])
        )
    ]
    if excess:
        raise errors.Forbidden(
            f"Not assigning requested scopes {','.join(excess)}"
            f" not held by {caller.kind.title()} {caller.name}"
        )


@dataclasses.dataclass(frozen=True)
class Recipient:
    """Whom a share is for."""

    kind: Literal["user", "group"]
    id: UUID
    name: str


async def recipient_named(
    conn: sql.Connection, caller: access.Caller, kind: Literal["user", "group"], name: str
) -> Recipient:
    """The user or group ``name`` a share is for: the caller must be allowed to name it
    (``read:users:name`` / ``read:groups:name``, JupyterHub's rule) and it must exist (400)."""
    if kind == "user":
        if not caller.grants.allows(
            scope_table.READ_USERS_NAME,
            scopes.Filter.user(name),
            groups_of=await access.groups_of_users(conn, [name]),
        ):
            raise errors.Forbidden("Need scope 'read:users:name' to share with users by name")
        row = await users_read.find(conn, name)
        if row is None:
            raise errors.BadRequest(f"user: no such user: {name}")
        return Recipient("user", row["user_id"], row["name"])
    if not caller.grants.allows(scope_table.READ_GROUPS_NAME, scopes.Filter.group(name)):
        raise errors.Forbidden("Need scope 'read:groups:name' to share with groups by name")
    group = await groups_read.find(conn, name)
    if group is None:
        raise errors.BadRequest(f"group: no such group: {name}")
    return Recipient("group", group["group_id"], group["name"])


def concerning(owner: Any, recipient: Recipient) -> dict[str, Any]:
    """The fields of a share event that say whom it concerns (for the audit's filters)."""
    user_ids = [owner["user_id"]]
    if recipient.kind == "user":
        user_ids.append(recipient.id)
    return {
        "owner_id": owner["user_id"],
        "owner": owner["name"],
        "user_ids": user_ids,
        "recipient_kind": recipient.kind,
        "recipient_id": recipient.id,
        "recipient": recipient.name,
        "group_id": recipient.id if recipient.kind == "group" else None,
    }


async def _share_row(
    conn: sql.Connection, owner: Any, server_name: str, recipient: Recipient
) -> Any:
    return await select_one(
        conn,
        Select(
            owner_id=owner["user_id"],
            server_name=server_name,
            kind=recipient.kind,
            recipient_id=recipient.id,
        ),
    )


# --- /shares ---------------------------------------------------------------------------------


async def list_owner_shares(request: web.Request) -> web.Response:
    """``GET /shares/{owner}``: shares of any of the owner's servers."""
    hub = request.app[HUB]
    owner_name = request.match_info["owner"]
    page = page_of(request)
    async with hub.store.pool.acquire() as conn:
        await access.require(
            request, conn, [scope_table.READ_SHARES], scopes.Filter.user(owner_name)
        )
        owner = await owner_of(conn, owner_name)
        rows, total = await select_page(
            conn, Select(owner_id=owner["user_id"]), page.offset, page.limit
        )
    items = [render_share(r, hub.settings.public_url) for r in rows]
    return web.json_response(pagination.reply(request, page, items, total, hub.settings.public_url))


async def list_server_shares(request: web.Request) -> web.Response:
    """``GET /shares/{owner}/{server_name}``: shares of one server."""
    hub = request.app[HUB]
    owner_name, server_name, target = server_target(request)
    page = page_of(request)
    async with hub.store.pool.acquire() as conn:
        await access.require(request, conn, [scope_table.READ_SHARES], target)
        owner = await owner_of(conn, owner_name)
        await require_server(conn, owner, server_name)
        rows, total = await select_page(
            conn,
            Select(owner_id=owner["user_id"], server_name=server_name),
            page.offset,
            page.limit,
        )
    items = [render_share(r, hub.settings.public_url) for r in rows]
    return web.json_response(pagination.reply(request, page, items, total, hub.settings.public_url))


async def grant(request: web.Request) -> web.Response:
    """``POST /shares/{owner}/{server_name}``: add scopes to a user's or group's share; 200
    with the share."""
    hub = request.app[HUB]
    owner_name, server_name, target = server_target(request)
    command = await body.parse(request, Grant)
    kind, name = one_recipient(command)
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.SHARES], target)
        owner = await owner_of(conn, owner_name)
        await require_server(conn, owner, server_name)
        wanted = share_scopes(command.scopes, owner["name"], server_name)
        recipient = await recipient_named(conn, caller, kind, name)
        if recipient.kind == "user" and recipient.id == owner["user_id"]:
            raise errors.BadRequest(f"user: {name} owns this server; it cannot be shared with them")
        await check_held(conn, caller, wanted, owner["name"])
        await session.append(
            share_events.stream_id(owner["user_id"], server_name),
            [
                share_events.ShareGranted(
                    server_name=server_name, scopes=wanted, **concerning(owner, recipient)
                )
            ],
            metadata=access.event_metadata(request, caller),
        )
        row = await _share_row(conn, owner, server_name, recipient)
    return web.json_response(render_share(row, hub.settings.public_url))


async def revoke(request: web.Request) -> web.Response:
    """``PATCH /shares/{owner}/{server_name}``: take scopes back (all if none are named); 200
    with what is left of the share, ``{}`` when nothing is."""
    hub = request.app[HUB]
    owner_name, server_name, target = server_target(request)
    command = await body.parse(request, Revoke)
    kind, name = one_recipient(command)
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.SHARES], target)
        owner = await owner_of(conn, owner_name)
        await require_server(conn, owner, server_name)
        revoked = share_scopes(command.scopes, owner["name"], server_name) if command.scopes else []
        recipient = await recipient_named(conn, caller, kind, name)
        row = await _share_row(conn, owner, server_name, recipient)
        if row is None:
            return web.json_response({})  # revoking what is not held is not an error
        held = set(filtered(list(row["scopes"]), owner["name"], server_name))
        taking = sorted(held & set(revoked)) if revoked else []
        if taking or not revoked:
            await session.append(
                share_events.stream_id(owner["user_id"], server_name),
                [
                    share_events.ShareRevoked(
                        server_name=server_name, scopes=taking, **concerning(owner, recipient)
                    )
                ],
                metadata=access.event_metadata(request, caller),
            )
        row = await _share_row(conn, owner, server_name, recipient)
    return web.json_response(render_share(row, hub.settings.public_url) if row else {})


async def revoke_all(request: web.Request) -> web.Response:
    """``DELETE /shares/{owner}/{server_name}``: end every share of the server; 204."""
    hub = request.app[HUB]
    owner_name, server_name, target = server_target(request)
    async with hub.store.session() as session:
        conn = session.conn
        caller = await access.require(request, conn, [scope_table.SHARES], target)
        owner = await owner_of(conn, owner_name)
        await require_server(conn, owner, server_name)
        gone = [
            share_events.ShareRevoked(
                server_name=server_name,
                **concerning(
                    owner, Recipient(r["recipient_kind"], r["recipient_id"], r["recipient"])
                ),
            )
            for r in await conn.fetch(queries["share_recipients"], owner["user_id"], server_name)
        ]
        if gone:
            await session.append(
                share_events.stream_id(owner["user_id"], server_name),
                gone,
                metadata=access.event_metadata(request, caller),
            )
    return web.Response(status=204)


# --- /users/{name}/shared, /groups/{name}/shared ---------------------------------------------


def _recipient_target(kind: Literal["user", "group"], name: str) -> scopes.Filter:
    return scopes.Filter.user(name) if kind == "user" else scopes.Filter.group(name)


async def _find_recipient(
    conn: sql.Connection, kind: Literal["user", "group"], name: str
) -> Recipient:
    if kind == "user":
        row = await users_read.find(conn, name)
        if row is None:
            raise errors.NotFound(f"No such user: {name}")
        return Recipient("user", row["user_id"], row["name"])
    group = await groups_read.find(conn, name)
    if group is None:
        raise errors.NotFound(f"No such group: {name}")
    return Recipient("group", group["group_id"], group["name"])


def _shared_handlers(
    kind: Literal["user", "group"], read_scope: str, leave_scope: str
) -> tuple[Any, Any, Any]:
    """The three handlers of ``/{kind}s/{name}/shared[/{owner}/{server_name}]``."""

    async def list_shared(request: web.Request) -> web.Response:
        hub = request.app[HUB]
        name = request.match_info["name"]
        page = page_of(request)
        async with hub.store.pool.acquire() as conn:
            await access.require(request, conn, [read_scope], _recipient_target(kind, name))
            recipient = await _find_recipient(conn, kind, name)
            where = (
                Select(user_id=recipient.id, with_groups=True)
                if kind == "user"
                else Select(group_id=recipient.id)
            )
            rows, total = await select_page(conn, where, page.offset, page.limit)
        items = [render_share(r, hub.settings.public_url) for r in rows]
        return web.json_response(
            pagination.reply(request, page, items, total, hub.settings.public_url)
        )

    async def get_shared(request: web.Request) -> web.Response:
        hub = request.app[HUB]
        name = request.match_info["name"]
        owner_name, server_name, _ = server_target(request)
        async with hub.store.pool.acquire() as conn:
            await access.require(request, conn, [read_scope], _recipient_target(kind, name))
            recipient = await _find_recipient(conn, kind, name)
            owner = await owner_of(conn, owner_name)
            row = await _share_row(conn, owner, server_name, recipient)
        if row is None:
            raise errors.NotFound(f"No share of {owner_name}/{server_name} with {kind} {name}")
        return web.json_response(render_share(row, hub.settings.public_url))

    async def leave_shared(request: web.Request) -> web.Response:
        hub = request.app[HUB]
        name = request.match_info["name"]
        owner_name, server_name, _ = server_target(request)
        async with hub.store.session() as session:
            conn = session.conn
            caller = await access.require(
                request, conn, [leave_scope], _recipient_target(kind, name)
            )
            recipient = await _find_recipient(conn, kind, name)
            owner = await owner_of(conn, owner_name)
            row = await _share_row(conn, owner, server_name, recipient)
            if row is None:
                raise errors.NotFound(f"No share of {owner_name}/{server_name} with {kind} {name}")
            await session.append(
                share_events.stream_id(owner["user_id"], server_name),
                [
                    share_events.ShareRevoked(
                        server_name=server_name, left=True, **concerning(owner, recipient)
                    )
                ],
                metadata=access.event_metadata(request, caller),
            )
        return web.Response(status=204)

    return list_shared, get_shared, leave_shared


list_user_shared, get_user_shared, leave_user_shared = _shared_handlers(
    "user", scope_table.READ_USERS_SHARES, scope_table.USERS_SHARES
)
list_group_shared, get_group_shared, leave_group_shared = _shared_handlers(
    "group", scope_table.READ_GROUPS_SHARES, scope_table.GROUPS_SHARES
)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    server = f"/hub/api/shares/{{owner}}/{SERVER}"
    return [
        web.get("/hub/api/shares/{owner}", list_owner_shares),
        web.get(server, list_server_shares),
        web.post(server, grant),
        web.patch(server, revoke),
        web.delete(server, revoke_all),
        web.get("/hub/api/users/{name}/shared", list_user_shared),
        web.get(f"/hub/api/users/{{name}}/shared/{{owner}}/{SERVER}", get_user_shared),
        web.delete(f"/hub/api/users/{{name}}/shared/{{owner}}/{SERVER}", leave_user_shared),
        web.get("/hub/api/groups/{name}/shared", list_group_shared),
        web.get(f"/hub/api/groups/{{name}}/shared/{{owner}}/{SERVER}", get_group_shared),
        web.delete(f"/hub/api/groups/{{name}}/shared/{{owner}}/{SERVER}", leave_group_shared),
    ]
