"""The audit API: ``GET /hub/api/events`` (history) and ``/hub/api/events/stream`` (live, SSE).

Events are shown in one public JSON shape (``render``). What a caller may see is what its
``read:events`` scope covers: everything, or the events about the users (``!user=``) and
groups (``!group=``) it names, an event being about a user when its data names the user's
id (``user_id``, ``user_ids`` or a role grant's ``principal``) and about a group when it
names the group's id or one of its members.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from events import errors as event_errors
from events import models, sql, store, subscription
from hub import access, errors, pagination, users_api
from hub.context import HUB

queries = sql.Queries(__package__ or "hub", "audit.sql")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
HEARTBEAT_S = 15.0
NOT_FOUND = "No access to resources or resources not found"


def render(event: models.RecordedEvent) -> dict[str, Any]:
    """The public JSON shape of an event (documented in the OpenAPI spec as ``Event``)."""
    meta = event.metadata
    return {
        "id": str(event.checkpoint),
        "position": event.position,
        "type": event.type,
        # ``data`` is decoded into the current model (upcast if it was stored older)
        "schema_version": type(event.data).schema_version,
        "stream": event.stream_id,
        "version": event.stream_version,
        "time": users_api.iso(event.recorded_at),
        "actor": {"kind": meta.actor.kind, "name": meta.actor.name},
        "data": event.data.model_dump(mode="json"),
        "request_id": meta.request_id,
        "correlation_id": str(meta.correlation_id) if meta.correlation_id else None,
        "causation_id": str(meta.causation_id) if meta.causation_id else None,
    }


@dataclass(frozen=True)
class Query:
    """What a caller asked for: filters, order and page."""

    types: tuple[str, ...] | None = None
    type_prefixes: tuple[str, ...] | None = None
    streams: tuple[str, ...] | None = None
    actor: str | None = None
    users: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    from_position: int | None = None
    to_position: int | None = None
    descending: bool = False
    limit: int = DEFAULT_LIMIT
    cursor: int | None = None


def parse_query(request: web.Request, *, history: bool = True) -> Query:
    """The query string as a ``Query``; 400 naming the parameter at fault.

    For the live stream (``history=False``) ``after`` is a checkpoint, read by the caller.
    """
    q = request.query
    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise errors.BadRequest(f"order must be 'asc' or 'desc', got {order!r}")
    limit = pagination.non_negative(q, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return Query(
        types=_many(q, "type"),
        type_prefixes=_many(q, "type_prefix"),
        streams=_many(q, "stream"),
        actor=q.get("actor") or None,
        users=_many(q, "user"),
        groups=_many(q, "group"),
        since=_time(q, "since"),
        until=_time(q, "until"),
        from_position=pagination.non_negative(q, "from_position", None),
        to_position=pagination.non_negative(q, "to_position", None),
        descending=order == "desc",
        limit=limit,
        cursor=pagination.non_negative(q, "before" if order == "desc" else "after", None)
        if history
        else None,
    )


def _many(q: Any, name: str) -> tuple[str, ...] | None:
    values = tuple(v for raw in q.getall(name, []) for v in raw.split(",") if v)
    return values or None


def _time(q: Any, name: str) -> datetime | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.BadRequest(f"{name} must be an ISO 8601 time, got {raw!r}") from None
    if value.tzinfo is None:
        raise errors.BadRequest(f"{name} must include a timezone (e.g. 'Z'), got {raw!r}")
    return value


async def subjects(
    conn: sql.Connection, users: Iterable[str], groups: Iterable[str]
) -> list[dict[str, Any]]:
    """The JSON objects an event's data contains when it is about these users or groups."""
    found: list[dict[str, Any]] = []
    user_ids: list[UUID] = [
        row["user_id"] for row in await conn.fetch(queries["user_ids"], sorted(set(users)))
    ]
    for row in await conn.fetch(queries["group_ids_and_members"], sorted(set(groups))):
        found.append({"group_id": str(row["group_id"])})
        found.append({"principal": str(row["group_id"])})
        user_ids += row["members"]
    for user_id in dict.fromkeys(user_ids):
        found += [
            {"user_id": str(user_id)},
            {"user_ids": [str(user_id)]},
            {"principal": str(user_id)},
        ]
    return found


async def visible_subjects(
    conn: sql.Connection, caller: access.Caller, query: Query
) -> list[dict[str, Any]] | None:
    """The subjects the caller may see and asked for; None means every event."""
    held = caller.grants.filters("read:events")
    asked = query.users is not None or query.groups is not None
    if held.everything:
        if not asked:
            return None
        return await subjects(conn, query.users or (), query.groups or ())
    if asked:
        outside = set(query.users or ()) - held.users
        if (query.groups and not set(query.groups) <= held.groups) or (outside and not held.groups):
            raise errors.NotFound(NOT_FOUND)
        return await subjects(conn, query.users or (), query.groups or ())
    return await subjects(conn, held.users, held.groups)


def matches(event: models.RecordedEvent, allowed: list[dict[str, Any]] | None) -> bool:
    """Whether ``event``'s data contains one of ``allowed`` (as ``@>`` does in SQL)."""
    if allowed is None:
        return True
    data = event.data.model_dump(mode="json")
    for subject in allowed:
        for key, value in subject.items():
            held = data.get(key)
            if isinstance(value, list):
                if isinstance(held, list) and set(value) <= set(held):
                    return True
            elif held == value:
                return True
    return False


def _args(query: Query, allowed: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    patterns = store.EventFilter(type_prefixes=query.type_prefixes).like_patterns()
    cursor = query.cursor
    if cursor is None:
        cursor = 2**62 if query.descending else 0
    return (
        cursor,
        query.limit,
        list(query.types) if query.types else None,
        patterns,
        list(query.streams) if query.streams else None,
        query.actor,
        query.since,
        query.until,
        query.from_position,
        query.to_position,
        [json.dumps(s) for s in allowed] if allowed is not None else None,
    )


async def history(
    conn: sql.Connection,
    registry: models.Registry,
    query: Query,
    allowed: list[dict[str, Any]] | None,
) -> list[models.RecordedEvent]:
    """One page of the log matching ``query``, in position order (newest first if asked)."""
    if allowed == []:
        return []
    name = "history_descending" if query.descending else "history_ascending"
    page = await conn.fetchval(queries[name], *_args(query, allowed))
    return registry.decode_page(page)


async def list_events(request: web.Request) -> web.Response:
    """``GET /hub/api/events``: the history, filtered, paginated by position."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    decision = caller.grants.authorize(["read:events"], post_filter=True)
    if not decision.allowed:
        raise errors.HubError.with_status(decision.status, decision.message)
    query = parse_query(request)
    async with hub.store.pool.acquire() as conn:
        allowed = await visible_subjects(conn, caller, query)
        found = await history(conn, hub.store.registry, query, allowed)
    items = [render(event) for event in found]
    if not pagination.wants_pagination(request):
        return web.json_response(items)
    next_page = None
    if len(found) == query.limit:
        key = "before" if query.descending else "after"
        url = request.url.update_query({key: str(found[-1].position)})
        next_page = {key: found[-1].position, "limit": query.limit, "url": str(url)}
    return web.json_response(
        {"items": items, "_pagination": {"limit": query.limit, "next": next_page}}
    )


async def stream_events(request: web.Request) -> web.StreamResponse:
    """``GET /hub/api/events/stream``: catch up from ``Last-Event-ID`` or ``?after=``, then
    follow live, as server-sent events; a comment line every 15 s keeps the line open."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    decision = caller.grants.authorize(["read:events"], post_filter=True)
    if not decision.allowed:
        raise errors.HubError.with_status(decision.status, decision.message)
    query = replace(parse_query(request, history=False), descending=False)
    raw_after = request.headers.get("Last-Event-ID") or request.query.get("after") or ""
    after = models.ORIGIN
    if raw_after:
        try:
            after = models.Checkpoint.parse(raw_after)
        except event_errors.InvalidEvent as exc:
            raise errors.BadRequest(f"after/Last-Event-ID: {exc}") from None
    async with hub.store.pool.acquire() as conn:
        allowed = await visible_subjects(conn, caller, query)
    live = subscription.Subscription(
        hub.store,
        after=after,
        filter=store.EventFilter(
            types=frozenset(query.types) if query.types else None,
            type_prefixes=query.type_prefixes,
            streams=frozenset(query.streams) if query.streams else None,
            actor=query.actor,
            since=query.since,
            until=query.until,
        ),
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    pages = live.pages().__aiter__()
    next_page: asyncio.Task[list[models.RecordedEvent]] | None = None
    try:
        while True:
            if next_page is None:
                next_page = asyncio.ensure_future(pages.__anext__())
            done, _ = await asyncio.wait({next_page}, timeout=HEARTBEAT_S)
            if not done:
                await response.write(b": keepalive\n\n")
                continue
            page = next_page.result()
            next_page = None
            chunk = b"".join(_sse(event) for event in page if matches(event, allowed))
            if chunk:
                await response.write(chunk)
    finally:
        if next_page is not None:
            next_page.cancel()
        await pages.aclose()  # type: ignore[attr-defined]


def _sse(event: models.RecordedEvent) -> bytes:
    return f"id: {event.checkpoint}\ndata: {json.dumps(render(event))}\n\n".encode()


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api/events", list_events),
        web.get("/hub/api/events/stream", stream_events),
    ]
