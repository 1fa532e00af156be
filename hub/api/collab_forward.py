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

A process that stops forgets the sessions it owned (``forget_owned``). Sessions that end on
their own (the grace period after the last participant left) keep their row until someone
asks: the owner then answers 404 itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from events import sql
from hub import errors as hub_errors
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
    serves, and then sessions are neither recorded nor looked up."""

    origin: str | None = None


OWNERSHIP = web.AppKey("collab_ownership", Ownership)


def _origin(request: web.Request) -> str | None:
    ownership = request.app.get(OWNERSHIP)
    return ownership.origin if ownership is not None else None


async def claim(request: web.Request, session_id: uuid.UUID, room: str) -> None:
    """Record this process as the owner of a session it just opened."""
    origin = _origin(request)
    if origin is None:
        return
    async with request.app[HUB].store.pool.acquire() as conn:
        await conn.execute(queries["claim"], session_id, room, origin)


async def release(request: web.Request, session_id: uuid.UUID) -> None:
    """Forget the owner of a session that ended here."""
    if _origin(request) is None:
        return
    async with request.app[HUB].store.pool.acquire() as conn:
        await conn.execute(queries["release_session"], session_id)


async def forget_owned(app: web.Application) -> None:
    """At shutdown: forget the sessions this process owned (they end with it)."""
    ownership = app.get(OWNERSHIP)
    if ownership is None or ownership.origin is None:
        return
    try:
        async with app[HUB].store.pool.acquire() as conn:
            await conn.execute(queries["release_owned"], ownership.origin)
    except Exception:  # noqa: BLE001 - a database gone first leaves rows; callers clean them
        log.warning("could not forget the collaboration sessions of %s", ownership.origin)


async def elsewhere(
    request: web.Request, session_id: uuid.UUID, here: bool
) -> web.StreamResponse | None:
    """The owner's answer when another process runs the session; None to answer here
    (``here``: this process holds it; or nobody does, or the caller may not use sessions)."""
    origin = _origin(request)
    if here or origin is None or FORWARDED in request.headers:
        return None
    grants = access.caller_of(request).grants
    if not (grants.holds(collab_access.READ) or grants.holds(collab_access.WRITE)):
        return None  # refused here, as without forwarding: no relay for strangers
    async with request.app[HUB].store.pool.acquire() as conn:
        owner = await conn.fetchval(queries["owner"], session_id)
    if owner is None or owner == origin:
        return None
    return await _forward(request, session_id, owner)


async def _forward(request: web.Request, session_id: uuid.UUID, owner: str) -> web.Response:
    headers = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED
    )
    headers[FORWARDED] = "1"
    if request.remote:  # the owner sees the caller's address if it trusts this process
        headers.add("X-Forwarded-For", request.remote)
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
        log.warning("collab session %s: its owner %s does not answer; forgotten", session_id, owner)
        async with request.app[HUB].store.pool.acquire() as conn:
            await conn.execute(queries["release_gone"], session_id, owner)
        raise hub_errors.NotFound(f"No such session: {session_id}") from None
