"""Collaboration session calls made to a hub process that does not run the session are
forwarded to the one that does (issue 20: several hub processes, one system).

A session's kernel lives in the hub process that opened it. That process records the
session's owner (``collab_session_owners``: the session id and the origin at which other hub
processes reach its HTTP API) and removes the row when the session is deleted through it.
A process asked about a session it does not hold looks the row up and forwards the request
as it came (method, path, body, the caller's own credentials: headers and cookies) to the
owner, which authenticates the caller and answers as if asked directly; its answer is
relayed as is. A forwarded request is marked (``FORWARDED``) and never forwarded again. An
owner that does not answer is gone, and its sessions with it: its row is removed and the
caller gets 404, as for any unknown session.

An owner is one start of a process: its origin and a random ``incarnation``. A process
restarted at the address of one that died sees the dead one's rows as another owner's: it
does not forward to itself (it would answer 404 for a session it does not run) but treats
that owner as one that does not answer (503 while its lease runs, then it takes over).

The owner holds a lease on each session it runs (hub/api/collab_lease.py). An owner that
does not answer while its lease runs may be stalled or restarting: 503 with ``Retry-After``
(the lease's remaining seconds). Once its lease has expired, the process asked takes the
session over and answers itself. Rows recorded before leases (no creator, kernel) cannot be
taken over: an owner of one that does not answer is forgotten, and the caller gets 404.

A process that stops forgets the sessions it owned (``forget_owned``); their kernels end with
it. Sessions that end on their own (the grace period after the last participant left) lose
their row at their owner's next lease renewal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from collab import sessions
from events import sql
from hub import errors as hub_errors
from hub.api import collab_lease
from hub.auth import access, collab_access
from hub.context import HUB

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.api", "collab_forward.sql")

FORWARDED = "X-Chronohub-Forwarded"
# A forwarded call waits for the owner as long as a caller would for the owner itself; a
# session call is quick (execution is answered 202 once queued).
FORWARD_TIMEOUT_S = 30.0
# Headers of one connection, not of the request (RFC 9110 section 7.6.1), and those the
# client library sets itself.
NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


@dataclass
class Ownership:
    """Where other hub processes reach this one (``scheme://host:port``); None until it
    serves, and then sessions are neither recorded nor looked up. ``incarnation``: this start
    of the process (another start at the same address is another owner)."""

    origin: str | None = None
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex)


OWNERSHIP = web.AppKey("collab_ownership", Ownership)


def _origin(request: web.Request) -> str | None:
    ownership = request.app.get(OWNERSHIP)
    return ownership.origin if ownership is not None else None


def _incarnation(request: web.Request) -> str:
    return request.app[OWNERSHIP].incarnation


async def claim(request: web.Request, bound: sessions.Bound) -> None:
    """Record this process as the owner of a session it just opened, with a lease and what
    another process needs to take it over."""
    origin = _origin(request)
    if origin is None:
        return
    session = bound.session
    leases = request.app.get(collab_lease.LEASES)
    lease_s = request.app[HUB].settings.collab_session_lease_s
    async with request.app[HUB].store.pool.acquire() as conn:
        await conn.execute(
            queries["claim"],
            session.session_id,
            session.room,
            origin,
            session.kernel.kernel_name,
            session.created_by.kind,
            session.created_by.name,
            bound.owner,
            lease_s,
            _incarnation(request),
            # the creator by id: a takeover runs as this user, whatever their name is then
            access.caller_of(request).user_id if session.created_by.kind == "user" else None,
        )
    if leases is not None:
        leases.claimed.add(session.session_id)


async def release(request: web.Request, session_id: uuid.UUID) -> None:
    """Forget the owner of a session that ended here (if this process still owns it)."""
    origin = _origin(request)
    if origin is None:
        return
    async with request.app[HUB].store.pool.acquire() as conn:
        await conn.execute(queries["release_session"], session_id, origin, _incarnation(request))


def serve_at(app: web.Application, origin: str) -> None:
    """The process serves at ``origin``: other processes reach its sessions there, and its
    leases on them are renewed from now on."""
    app[OWNERSHIP].origin = origin
    leases = app.get(collab_lease.LEASES)
    if leases is not None:
        leases.start(origin, app[OWNERSHIP].incarnation, app.get(access.BLOCKED))


async def forget_owned(app: web.Application) -> None:
    """At shutdown: forget the sessions this process owned (they end with it)."""
    ownership = app.get(OWNERSHIP)
    if ownership is None or ownership.origin is None:
        return
    try:
        async with app[HUB].store.pool.acquire() as conn:
            await conn.execute(queries["release_owned"], ownership.origin, ownership.incarnation)
    except Exception:  # noqa: BLE001 - a database gone first leaves rows; callers clean them
        log.warning("could not forget the collaboration sessions of %s", ownership.origin)


async def elsewhere(
    request: web.Request, session_id: uuid.UUID, here: bool
) -> web.StreamResponse | None:
    """The owner's answer when another process runs the session; None to answer here
    (``here``: this process holds it, or has just taken it over; or nobody does, or the
    caller may not use sessions)."""
    origin = _origin(request)
    if here or origin is None or FORWARDED in request.headers:
        return None
    grants = access.caller_of(request).grants
    if not (grants.holds(collab_access.READ) or grants.holds(collab_access.WRITE)):
        return None  # refused here, as without forwarding: no relay for strangers
    async with request.app[HUB].store.pool.acquire() as conn:
        owner = await conn.fetchrow(queries["owner"], session_id)
    leases = request.app.get(collab_lease.LEASES)
    if owner is None:
        return None
    if owner["origin"] == origin and owner["incarnation"] == _incarnation(request):
        if leases is not None:  # a takeover of it may be under way here
            await leases.take_over(session_id)
        return None
    if owner["takeable"] and not owner["leased"] and leases is not None:
        await leases.take_over(session_id)  # whoever wins, the session runs somewhere now
        return await elsewhere(request, session_id, leases.manager.get(session_id) is not None)
    if owner["origin"] == origin:  # an earlier start of this process, dead
        raise await _unanswered(request, session_id, owner)
    return await _forward(request, session_id, owner)


def _headers(request: web.Request) -> CIMultiDict[str]:
    """The caller's request headers as forwarded: its own credentials, marked forwarded."""
    headers = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED
    )
    headers[FORWARDED] = "1"
    if request.remote:  # the owner sees the caller's address if it trusts this process
        headers.add("X-Forwarded-For", request.remote)
    return headers


async def listed_elsewhere(request: web.Request) -> list[Any]:
    """The sessions other live processes run that the caller may see (``GET`` of the
    sessions list): each process holding a live lease is asked once for its own list, with the
    caller's credentials. One that does not answer is left out (its sessions are taken over
    once their leases expire)."""
    origin = _origin(request)
    if origin is None or FORWARDED in request.headers:
        return []
    async with request.app[HUB].store.pool.acquire() as conn:
        rows = await conn.fetch(queries["live_origins"], origin)
    lists = await asyncio.gather(*(_listed_at(request, row["origin"]) for row in rows))
    return [session for listed in lists for session in listed]


async def _listed_at(request: web.Request, owner: str) -> list[Any]:
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as client,
            client.get(owner + str(request.rel_url), headers=_headers(request)) as answer,
        ):
            if answer.status != 200:
                log.warning("hub process %s answered %s to a sessions list", owner, answer.status)
                return []
            listed: list[Any] = (await answer.json()).get("sessions", [])
            return listed
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        log.warning("hub process %s did not list its collaboration sessions: %s", owner, exc)
        return []


async def _forward(request: web.Request, session_id: uuid.UUID, row: Any) -> web.Response:
    owner: str = row["origin"]
    headers = _headers(request)
    payload = await request.read()
    try:
        # A client per call: forwarding is the exception (a balancer that is not sticky),
        # and a call's own connection goes with it.
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as client,
            client.request(
                request.method,
                owner + str(request.rel_url),
                headers=headers,
                data=payload or None,
                allow_redirects=False,
            ) as answer,
        ):
            body = await answer.read()
            relayed = {
                k: v
                for k, v in answer.headers.items()
                if k.lower() in ("content-type", "retry-after")
            }
            return web.Response(status=answer.status, body=body, headers=relayed)
    except TimeoutError:
        raise hub_errors.Unavailable(
            f"collaboration session {session_id}: its hub process did not answer in time"
        ) from None
    except aiohttp.ClientConnectionError:
        raise await _unanswered(request, session_id, row) from None


async def _unanswered(request: web.Request, session_id: uuid.UUID, row: Any) -> hub_errors.HubError:
    """What to answer when the owner of ``session_id`` is dead or restarting: 503 while its
    lease runs (then the session is taken over), or 404 with its row forgotten if it cannot
    be taken over."""
    owner: str = row["origin"]
    if row["takeable"]:
        # Dead, or restarting: its lease says when another process may take over.
        wait = max(1, math.ceil(row["lease_left_s"]))
        log.warning(
            "collab session %s: its owner %s does not answer; taken over when its lease"
            " expires (in %ss)",
            session_id,
            owner,
            wait,
        )
        return hub_errors.Busy(
            f"collaboration session {session_id}: its hub process does not answer; another"
            f" takes it over in {wait}s",
            retry_after_s=wait,
        )
    log.warning("collab session %s: its owner %s does not answer; forgotten", session_id, owner)
    async with request.app[HUB].store.pool.acquire() as conn:
        await conn.execute(queries["release_gone"], session_id, owner)
    return hub_errors.NotFound(f"No such session: {session_id}")
