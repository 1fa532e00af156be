"""The hub's side of collab's gatekeeper: hub tokens and the ``read:collab``/``write:collab``
scopes.

A connection authenticates with ``Authorization: token <t>`` (or ``bearer``), or ``?token=<t>``
(browsers cannot set headers on a WebSocket). A browser's hub login cookie is the third way:
the ``cookie_auth`` seam takes the handshake's cookies and returns the ``Caller``
(``cookie_caller`` below, on hub/auth/login_cookies.py's signed cookie). A WebSocket upgrade is
a GET that carries no XSRF token, and browsers send cookies on cross-site WebSocket upgrades,
so a cookie is accepted only from a page of the hub's own origin: the ``Origin`` header a
browser always sends must name the host the request was sent to (jupyter_server's and
JupyterHub's ``check_origin``); an upgrade without ``Origin`` does not come from a browser page.

Rooms belong to the user who created them, so ``!user=``/``!group=`` filters reach the rooms
of that user or of the group's members, and ``!room=<name>`` one room. As everywhere in the
hub, a scope held but not on this room answers "not found", so rooms do not leak.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal
from urllib.parse import urlsplit

from collab import access as collab_access
from collab import errors as collab_errors
from events import sql, store
from hub.auth import access, identity, login_cookies, scope_table, scopes

READ = scope_table.READ_COLLAB
WRITE = scope_table.WRITE_COLLAB

CookieAuth = Callable[[Mapping[str, str]], Awaitable[access.Caller | None]]

Level = Literal["write", "read", "forbidden", "not_found"]

ProjectRooms = Callable[[sql.Connection, access.Caller, str], Awaitable["Level | None"]]
"""What the caller's role on the project gives on a room opened on one of its notebooks
(None: the room is no project's); hub/app.py hands hub/projects/sessions.py's ``room_level``,
called on an open connection of the store."""

CROSS_ORIGIN = (
    "cross-origin WebSocket refused: the login cookie is only accepted from the hub's pages"
)


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a cookie-authenticated upgrade comes from the hub's own origin: pure.

    No ``Origin`` (not a browser page) is allowed; otherwise its host and port must be the
    ``Host`` the request was sent to.
    """
    origin = headers.get("Origin")
    if origin is None:
        return True
    host = headers.get("Host")
    if not host or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def cookie_caller(event_store: store.EventStore, cookies: login_cookies.Cookies) -> CookieAuth:
    """The ``cookie_auth`` seam on the hub's login cookie (hub/auth/login_cookies.py)."""

    async def resolve(jar: Mapping[str, str]) -> access.Caller | None:
        async with event_store.connection() as conn:
            row = await login_cookies.user_of(conn, cookies, jar.get(login_cookies.COOKIE_NAME))
            return await identity.session_caller(conn, row) if row is not None else None

    return resolve


def decide(
    grants: scopes.Grants,
    room: collab_access.RoomInfo,
    owner: str | None,
    groups_of: scopes.Membership | None = None,
    project: Level | None = None,
) -> Level:
    """What ``grants`` allow on ``room`` of ``owner``: pure, no I/O.

    ``project``: what the caller's role on the project gives, when the room was opened on a
    project's notebook (``write`` for its write members and admins, ``read`` for its readers,
    ``not_found`` otherwise; None: not a project's room). Such a room belongs to the project,
    not to whoever opened it: ``!user=``/``!group=`` filters do not reach it, and a collab
    scope held at all (its filters aside) is what lets the role be used, so a token without
    ``write:collab`` only watches even a project its owner may write.
    """
    if project is not None:
        owner, groups_of = None, None
    if grants.filters(WRITE).covers_room(room.name, owner, groups_of=groups_of):
        return "write"
    if project == "write" and grants.holds(WRITE):
        return "write"
    if grants.filters(READ).covers_room(room.name, owner, groups_of=groups_of):
        return "read"
    if project in ("write", "read") and (grants.holds(READ) or grants.holds(WRITE)):
        return "read"
    if grants.holds(WRITE) or grants.holds(READ):
        return "not_found"
    return "forbidden"


class TokenGatekeeper:
    """Admits connections holding a hub token with a collab scope on the room."""

    def __init__(
        self,
        event_store: store.EventStore,
        cookie_auth: CookieAuth | None = None,
        project_rooms: ProjectRooms | None = None,
        blocked: access.Blocked | None = None,
    ) -> None:
        self.store = event_store
        self.cookie_auth = cookie_auth
        self.project_rooms = project_rooms
        self.blocked = blocked  # a JupyterHub authenticator's blocked_users: nobody gets in

    async def admit(
        self, handshake: collab_access.Handshake, room: collab_access.RoomInfo
    ) -> collab_access.Participant:
        """The participant, or ``ConnectionRefused`` (4401, 4403, 4404) saying why not."""
        secret = access.parse_authorization(handshake.headers.get("Authorization"))
        if secret is None:
            secret = handshake.query.get("token") or None
        caller: access.Caller | None = None
        if (
            secret is None
            and self.cookie_auth is not None
            and login_cookies.COOKIE_NAME in handshake.cookies
        ):
            if not same_origin(handshake.headers):
                raise collab_errors.ConnectionRefused(collab_errors.FORBIDDEN, CROSS_ORIGIN)
            caller = await self.cookie_auth(handshake.cookies)
        async with self.store.connection() as conn:
            if secret is not None:
                caller = await access.authenticate(conn, secret)
            if caller is not None and caller.kind == "user" and self.blocked is not None:
                caller = None if await self.blocked(caller.name) else caller
            if caller is None:
                raise collab_errors.ConnectionRefused(
                    collab_errors.UNAUTHORIZED, access.MISSING_CREDENTIALS
                )
            # A room that does not exist yet would be the caller's own.
            owner = room.owner if room.exists else (caller.name if caller.kind == "user" else None)
            groups_of = None
            if owner is not None and any(caller.grants.filters(s).groups for s in (READ, WRITE)):
                groups_of = await access.groups_of_users(conn, [owner])
            project = None
            if self.project_rooms is not None and room.exists:
                project = await self.project_rooms(conn, caller, room.name)
        level = decide(caller.grants, room, owner, groups_of, project)
        if level == "forbidden":
            raise collab_errors.ConnectionRefused(
                collab_errors.FORBIDDEN,
                f"Action is not authorized with current scopes; requires any of [{READ}, {WRITE}]",
            )
        if level == "not_found":
            raise collab_errors.ConnectionRefused(collab_errors.NOT_FOUND, scopes.NOT_FOUND_MESSAGE)
        return collab_access.Participant(caller.kind, caller.name, can_write=level == "write")
