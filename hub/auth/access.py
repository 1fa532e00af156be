"""Who is calling and what they may do: token authentication and scope checks for handlers.

Every request with ``Authorization: token <t>`` (or ``bearer``) is resolved once, by the
middleware, into a ``Caller``: the token's owner, the owner's roles, and the token's
effective scopes (what the token asks for, intersected with what the owner holds).
Handlers then call ``require``, which answers JupyterHub's way: 403 when the scope is not
held at all, 404 when it is held but not on this resource, so existence does not leak.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from aiohttp import web

from events import models, sql
from hub import errors
from hub.auth import roles, scope_table, scopes, token_acks, token_cache, tokens
from hub.context import HUB
from hub.errors import Handler
from hub.web import client_address

queries = sql.Queries(__package__ or "hub.auth", "auth.sql")

MISSING_CREDENTIALS = "Missing or invalid credentials."
# Token and user activity from API use is written at most this often per token (JupyterHub's
# activity_resolution): it is telemetry, not worth a write per request.
ACTIVITY_RESOLUTION_S = 30.0


@dataclass(frozen=True)
class Caller:
    """The authenticated owner of the request's token and what the token may do."""

    kind: Literal["user", "service"]
    name: str
    user_id: UUID | None
    admin: bool
    token_id: str
    roles: tuple[str, ...]
    expanded: frozenset[scopes.Scope]
    grants: scopes.Grants


REQUEST_CALLER: web.RequestKey[Caller | None] = web.RequestKey("chronohub.caller")
# What the request's token resolved to (with the caller, the profile of its user): whoami
# answers from it.
REQUEST_TOKEN: web.RequestKey[token_cache.Entry] = web.RequestKey("chronohub.token")


def parse_authorization(header: str | None) -> str | None:
    """The token in ``Authorization: token|bearer <token>``, scheme case-insensitive."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() not in ("token", "bearer") or not value or " " in value:
        return None
    return value


async def authenticate(conn: sql.Connection, secret: str) -> Caller | None:
    """The caller a token belongs to, or None if it is unknown, revoked or expired."""
    entry = await lookup(conn, tokens.digest(secret))
    return entry.caller if entry is not None else None


async def lookup(conn: sql.Connection, digest: bytes) -> token_cache.Entry | None:
    """What the token of hash ``digest`` resolves to (its caller, expiry, and for a user's
    token the profile whoami shows), or None if it is unknown, revoked or expired."""
    row = await conn.fetchrow(queries["token_owner"], digest)
    if row is None:
        return None
    profile: dict[str, Any] | None = None
    if row["user_id"] is not None:
        if row["user_name"] is None:
            return None
        kind: Literal["user", "service"] = "user"
        name, admin = row["user_name"], bool(row["user_admin"])
        owner = scopes.Owner.for_user(name)
        implicit: tuple[str, ...] = ("user", "admin") if admin else ("user",)
        profile = {
            "name": name,
            "admin": admin,
            "groups": list(row["groups"]),
            "created": row["user_created"],
            "last_activity": row["last_activity"],
        }
    else:
        kind, name, admin = "service", row["service"], bool(row["service_admin"])
        owner = scopes.Owner.for_service(name)
        implicit = ("admin",) if admin else ()
    # Scopes shared with a user (hub/api/shares.py) count as the user's own, as in JupyterHub.
    granted = {*row["role_scopes"], *(row["share_scopes"] if kind == "user" else ())}
    owner_scopes = _owner_scopes(implicit, tuple(sorted(granted)), owner)
    membership = {name: set(row["groups"])} if kind == "user" else {}
    others = _users_in_filters(owner_scopes, row["scopes"]) - membership.keys()
    if others:
        membership.update(await groups_of_users(conn, others))
    effective, grants = _token_grants(
        tuple(row["scopes"]),
        owner_scopes,
        owner,
        tuple(sorted((user, frozenset(groups)) for user, groups in membership.items())),
    )
    caller = Caller(
        kind=kind,
        name=name,
        user_id=row["user_id"],
        admin=admin,
        token_id=row["token_id"],
        roles=tuple(sorted({*implicit, *row["role_names"]})),
        expanded=effective,
        grants=grants,
    )
    expires = row["expires_at"]
    return token_cache.Entry(caller, expires.timestamp() if expires else None, profile)


@functools.lru_cache(maxsize=4096)
def _token_grants(
    requested: tuple[str, ...],
    owner_scopes: frozenset[scopes.Scope],
    owner: scopes.Owner,
    membership: tuple[tuple[str, frozenset[str]], ...],
) -> tuple[frozenset[scopes.Scope], scopes.Grants]:
    """A token's effective scopes and their index; pure, so remembered: working them out
    was a fifth of the hub's CPU per whoami, and a token's next request asks the same."""
    effective = scopes.effective_token_scopes(
        requested, owner_scopes, owner=owner, groups_of=dict(membership)
    )
    return effective, scopes.Grants.of(effective)


@functools.lru_cache(maxsize=4096)
def _owner_scopes(
    implicit: tuple[str, ...], granted: tuple[str, ...], owner: scopes.Owner
) -> frozenset[scopes.Scope]:
    """Expanded scopes of an owner's roles; pure, so remembered (most requests repeat it)."""
    raw = [scope for role in implicit for scope in roles.DEFAULT_ROLES[role].scopes]
    return scopes.expand([*raw, *granted], owner=owner)


async def user_scopes(
    conn: sql.Connection, user_id: UUID, name: str, admin: bool
) -> tuple[frozenset[scopes.Scope], tuple[str, ...]]:
    """A user's expanded scopes and role names: ``user``, ``admin`` if admin, granted roles
    (directly or through groups), and the scopes shared with them."""
    implicit: tuple[str, ...] = ("user", "admin") if admin else ("user",)
    row: Any = await conn.fetchrow(queries["user_scopes"], user_id)  # one row, always
    granted = {*row["role_scopes"], *row["share_scopes"]}
    owner = scopes.Owner.for_user(name)
    return _owner_scopes(implicit, tuple(sorted(granted)), owner), tuple(
        sorted({*implicit, *row["role_names"]})
    )


def _users_in_filters(owner_scopes: Iterable[scopes.Scope], raw: Iterable[str]) -> set[str]:
    names = {s.filter.value for s in owner_scopes if s.filter and s.filter.kind == "user"}
    for text in raw:
        _, _, rest = text.partition("!user=")
        if rest:
            names.add(rest)
    return {n for n in names if n}


async def groups_of_users(conn: sql.Connection, names: Collection[str]) -> dict[str, set[str]]:
    """Group names of each named user (for ``!group=`` filters)."""
    membership: dict[str, set[str]] = {name: set() for name in names}
    if not names:
        return membership
    rows = await conn.fetch(queries["groups_of_users"], list(names))
    for row in rows:
        membership[row["user_name"]].add(row["group_name"])
    return membership


async def listable_users(
    caller: Caller, members_of: Callable[[tuple[str, ...]], Awaitable[set[str]]]
) -> tuple[str, ...] | None:
    """None when the caller may list every user, else the names its ``list:users`` filters
    cover (``!user=`` names and the members of ``!group=`` groups, read by ``members_of``
    with the groups' names, sorted)."""
    filters = caller.grants.filters(scope_table.LIST_USERS)
    if filters.everything:
        return None
    names = set(filters.users)
    if filters.groups:
        names |= await members_of(tuple(sorted(filters.groups)))
    return tuple(sorted(names))


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller; 403 with JupyterHub's message when there is none."""
    caller = request.get(REQUEST_CALLER)
    if not isinstance(caller, Caller):
        raise errors.Forbidden(MISSING_CREDENTIALS)
    return caller


async def require(
    request: web.Request,
    conn: sql.Connection,
    any_of: Sequence[str],
    target: scopes.Filter | None = None,
) -> Caller:
    """The caller, if one of ``any_of`` covers ``target``; else 403 or 404 (see module doc)."""
    caller = caller_of(request)
    groups_of = None
    if target is not None and target.kind in ("user", "server") and target.value:
        user = target.value.split("/", 1)[0]
        if any(caller.grants.filters(s).groups for s in any_of):
            groups_of = await groups_of_users(conn, [user])
    decision = caller.grants.authorize(any_of, target, groups_of=groups_of)
    if not decision.allowed:
        raise errors.HubError.with_status(decision.status, decision.message)
    return caller


def require_list(request: web.Request, scope: str, kinds: Collection[scopes.Kind]) -> Caller:
    """The caller, if it holds ``scope`` in a form a list endpoint can filter rows by."""
    caller = caller_of(request)
    decision = caller.grants.authorize_list(scope, kinds=kinds)
    if not decision.allowed:
        raise errors.HubError.with_status(decision.status, decision.message)
    return caller


async def check_token_request(conn: sql.Connection, owner: Any, requested: list[str]) -> None:
    """400, as JupyterHub answers, if a new token of user ``owner`` (a ``user_by_name`` row)
    asks for a malformed scope or one its owner lacks."""
    who = scopes.Owner.for_user(owner["name"])
    try:
        parsed = [scopes.parse_scope(text) for text in requested]
        # A scope on one project (!project=) is held through that project's members, which is
        # data, not a role: it is checked when used (hub/projects/access.py), where it only
        # ever narrows what the owner may do there.
        checked = [str(s) for s in parsed if s.filter is None or s.filter.kind != "project"]
        if all(text == scopes.INHERIT for text in checked):
            return  # what the owner holds, whatever that is: nothing to look up (the default)
        owner_scopes, _ = await user_scopes(conn, owner["user_id"], owner["name"], owner["admin"])
        scopes.check_token_scopes(
            checked, owner_scopes, owner=who, groups_of={owner["name"]: set(owner["groups"])}
        )
    except scopes.ScopeError as exc:
        raise errors.BadRequest(str(exc)) from exc


def request_metadata(request: web.Request, actor: models.Actor) -> models.Metadata:
    """The metadata of the events ``request`` causes on behalf of ``actor``: its request id
    and the client's address (through the trusted proxies)."""
    return models.Metadata(
        actor=actor,
        request_id=request.headers.get("X-Request-Id"),
        client_address=client_address.of(request),
    )


def event_metadata(request: web.Request, caller: Caller) -> models.Metadata:
    """Who made this request, for the events it causes."""
    return request_metadata(request, models.Actor(kind=caller.kind, name=caller.name))


class ActivityRecorder:
    """Writes token and user activity from API use, at most once per resolution per token.

    A server's own token (``JUPYTERHUB_API_TOKEN``, used by jupyterhub-singleuser for its API
    calls) counts as the token's activity, not its user's, as in JupyterHub: otherwise a
    server checking its users would keep its idle user looking active.
    """

    def __init__(self, resolution_s: float = ACTIVITY_RESOLUTION_S) -> None:
        self.resolution_s = resolution_s
        self._last: dict[str, float] = {}

    def due(self, token_id: str) -> bool:
        """Whether this token's activity should be written now (and note that it was)."""
        now = time.monotonic()
        last = self._last.get(token_id)
        if last is not None and now - last < self.resolution_s:
            return False
        if len(self._last) > 100_000:  # bound the memory of a long-running hub
            self._last.clear()
        self._last[token_id] = now
        return True

    async def record_browser(self, pool: Any, user_id: UUID) -> None:
        """Write the activity of a user signed in with the login cookie, if it is due
        (JupyterHub counts a browser's requests to the hub as its user's activity)."""
        if self.due(f"browser:{user_id}"):
            await pool.execute(queries["activity_touch"], user_id, "", datetime.now(UTC))

    async def record(self, conn: sql.Connection, caller: Caller) -> datetime | None:
        """Write the activity of ``caller``'s token (and user) if it is due; the user's
        activity written, if it was (not for a server's own token)."""
        if not self.due(caller.token_id):
            return None
        return await self._write(conn, caller)

    async def _write(self, conn: sql.Connection, caller: Caller) -> datetime | None:
        now = datetime.now(UTC)
        await conn.execute(queries["token_touch"], caller.token_id, now)
        if caller.user_id is None:
            return None
        written: datetime | None = await conn.fetchval(
            queries["activity_touch_unless_server_token"], caller.user_id, caller.token_id, now
        )
        return written

    async def record_entry(self, pool: Any, entry: token_cache.Entry) -> None:
        """``record`` for a resolved token, borrowing a connection only when it is due (the
        resolution may have come from the cache, without one); the user's activity written
        moves the profile whoami answers from."""
        if not self.due(entry.caller.token_id):
            return
        async with pool.acquire() as conn:
            written = await self._write(conn, entry.caller)
        profile = entry.profile
        if written is not None and profile is not None:
            last = profile["last_activity"]
            profile["last_activity"] = written if last is None else max(last, written)
            entry.whoami = None


ACTIVITY = web.AppKey("chronohub.activity", ActivityRecorder)

# Whether a user is blocked now (a JupyterHub authenticator's ``blocked_users``): their tokens
# then authenticate nobody, as JupyterHub strips a blocked user's roles. Unset: nobody is.
Blocked = Callable[[str], Awaitable[bool]]
BLOCKED: web.AppKey[Blocked] = web.AppKey("chronohub.blocked")


async def authenticate_in(app: web.Application, conn: sql.Connection, secret: str) -> Caller | None:
    """``authenticate``, and None for a user the app's authenticator blocks now."""
    caller = await authenticate(conn, secret)
    if caller is None or await _blocked(app, caller):
        return None
    return caller


async def _blocked(app: web.Application, caller: Caller) -> bool:
    blocked = app.get(BLOCKED)
    return caller.kind == "user" and blocked is not None and await blocked(caller.name)


async def resolve(app: web.Application, secret: str) -> token_cache.Entry | None:
    """What a token resolves to (None: unknown, revoked, expired, or its user blocked): from
    the hub's token cache when it holds it, else from the database (and then remembered)."""
    hub = app[HUB]
    cache = hub.token_cache
    digest = tokens.digest(secret)
    entry = cache.get(digest) if cache is not None else None
    if entry is None:
        generation = cache.generation if cache is not None else 0
        async with hub.store.pool.acquire() as conn:
            entry = await lookup(conn, digest)
        if entry is None:
            return None
        if cache is not None:
            cache.put(digest, entry, generation)
    # The authenticator's blocked users are its configuration, asked at each use.
    return None if await _blocked(app, entry.caller) else entry


def middleware(recorder: ActivityRecorder) -> Any:
    """Resolve the request's token into a ``Caller`` (or none) before any handler runs."""

    @web.middleware
    async def authenticate_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        secret = parse_authorization(request.headers.get("Authorization"))
        if secret is not None:
            entry = await resolve(request.app, secret)
            if entry is None:
                request[REQUEST_CALLER] = None
            else:
                await recorder.record_entry(request.app[HUB].store.pool, entry)
                request[REQUEST_CALLER] = entry.caller
                request[REQUEST_TOKEN] = entry
        # A request that commits an event changing what tokens resolve to (or what the read
        # cache holds) answers once every other process's cache acknowledged it
        # (hub/auth/token_acks.py). Here, outside the idempotency middleware (the innermost),
        # which commits an idempotent request's events when it returns: they are committed by
        # the time this waits. The token's activity, written above, is not watched: it
        # notifies nothing (the caches bound its staleness by age instead).
        committed = token_acks.watching()  # each request runs on a task of its own
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception:
            if committed:
                await acknowledged(request, committed)
            raise
        if committed:
            await acknowledged(request, committed)
        return response

    return authenticate_request


async def acknowledged(request: web.Request, kinds: Collection[str]) -> None:
    """Wait for the other processes' token caches to acknowledge this request's invalidating
    changes, of ``kinds`` (bounded: ``token_acks.Membership.wait_for_others``)."""
    hub = request.app[HUB]
    if hub.token_cache is not None:
        await hub.token_cache.acknowledged(hub.store.pool, tokens=token_acks.AUTH in kinds)


def token_of(request: web.Request) -> token_cache.Entry | None:
    """What the token that authenticated ``request`` resolved to (None: no token did)."""
    return request.get(REQUEST_TOKEN)


def idempotency_owner(request: web.Request) -> str | None:
    """Whose idempotency keys a request's are (None: nobody authenticated): the very token (or
    browser session) that sent it, with what it may do. Another token of the same user (a
    narrower one: the server's, an OAuth client's) holds other keys, so it cannot replay an
    answer (a token's secret) it could not have got itself; nor can the same token once its
    scopes shrank (its retry then runs afresh, and is refused or not as it would be)."""
    caller = request.get(REQUEST_CALLER)
    if caller is None:
        return None
    # a user by id: a user deleted and made again under the name is someone else
    who = f"user:{caller.user_id}" if caller.user_id is not None else f"service:{caller.name}"
    sent_by = f"token:{caller.token_id}" if caller.token_id else "browser"
    may = hashlib.sha256("\n".join(sorted(map(str, caller.expanded))).encode()).hexdigest()
    return f"{who}/{sent_by}/{may}"
