"""The audit API: ``GET /hub/api/events`` (history) and ``/hub/api/events/stream`` (live, SSE).

Events are shown in one public JSON shape (``render``). What a caller may see is what its
``read:events`` scopes cover: the whole log, or one kind of event (``read:events:servers``
shows ``server.*``), each everywhere or only about the users (``!user=``) and groups
(``!group=``) it names, an event being about a user when its data names the user's id
(``user_id``, ``user_ids`` or a role grant's ``principal``) and about a group when it names
the group's id or one of its members. Project events (``project.*``,
``read:events:projects``) are about the projects' owners and the users and groups given
roles on them; ``!project=<owner>/<name>`` reaches one project's. Collaboration events
(``collab.*``, ``collab_session.*``, ``read:events:collab``) name rooms and participants, not
user ids, so only unfiltered scopes show them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from events import errors as event_errors
from events import models, sql, store
from hub import errors
from hub.audit import feed as audit_feed
from hub.auth import access, scopes
from hub.context import HUB
from hub.web import pagination

queries = sql.Queries(__package__ or "hub.audit", "audit.sql")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
HEARTBEAT_S = 15.0
# A restricted caller's history page reads at most this many pages of the log.
SCAN_PAGES = 10
NOT_FOUND = "No access to resources or resources not found"
FEED = web.AppKey("audit-feed", audit_feed.Feed)


def render(event: models.RecordedEvent) -> dict[str, Any]:
    """The public JSON shape of an event (documented in the OpenAPI spec as ``Event``)."""
    return audit_feed.render(event)


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
    except ValueError as exc:
        raise errors.BadRequest(f"{name} must be an ISO 8601 time, got {raw!r}") from exc
    if value.tzinfo is None:
        raise errors.BadRequest(f"{name} must include a timezone (e.g. 'Z'), got {raw!r}")
    return value


async def subjects(
    conn: sql.Connection,
    users: Iterable[str],
    groups: Iterable[str],
    projects: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """The JSON objects an event's data contains when it is about these users, groups or
    projects (``owner/name``).

    A project event is about its owner (every project the user or group ever created, found
    in the log, so a deleted project's history stays reachable), about the user or group it
    grants a role to, and about the project itself.
    """
    found: list[dict[str, Any]] = []
    user_ids: list[UUID] = [
        row["user_id"] for row in await conn.fetch(queries["user_ids"], sorted(set(users)))
    ]
    group_ids: list[UUID] = []
    for row in await conn.fetch(queries["group_ids_and_members"], sorted(set(groups))):
        found.append({"group_id": str(row["group_id"])})
        found.append({"principal": str(row["group_id"])})
        group_ids.append(row["group_id"])
        user_ids += row["members"]
    for user_id in dict.fromkeys(user_ids):
        found += [
            {"user_id": str(user_id)},
            {"user_ids": [str(user_id)]},
            {"principal": str(user_id)},
        ]
    owners = [str(i) for i in dict.fromkeys([*user_ids, *group_ids])]
    if owners:
        found += [{"member_id": owner} for owner in owners]
        owned = await conn.fetch(
            queries["project_ids_owned"], [json.dumps({"owner_id": o}) for o in owners]
        )
        found += [{"project_id": row["project_id"]} for row in owned]
    named = sorted(set(projects))
    if named:
        for row in await conn.fetch(queries["project_ids_named"], named):
            found.append({"project_id": str(row["project_id"])})
    return found


Subjects = list[dict[str, Any]]


# The keys of an event's data that name a user or a group by id (as ``subjects`` finds them).
SUBJECT_KEYS = ("user_id", "user_ids", "principal", "group_id", "member_id", "owner_id")


def subject_ids(data: dict[str, Any]) -> list[str]:
    """The ids of the users and groups an event's data names, in order, once each."""
    found: list[str] = []
    for key in SUBJECT_KEYS:
        value = data.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item not in found:
                found.append(item)
    return found


async def names_of(conn: sql.Connection, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Each id of a user or group that exists now: (kind, name), kind ``user`` or ``group``;
    ids that are not UUIDs, or of someone deleted, are left out."""
    valid: list[UUID] = []
    for raw in dict.fromkeys(ids):
        try:
            valid.append(UUID(raw))
        except ValueError:
            continue
    if not valid:
        return {}
    rows = await conn.fetch(queries["names_of_ids"], valid)
    return {str(row["id"]): (row["kind"], row["name"]) for row in rows}


@dataclass(frozen=True)
class Permission:
    """What of the log a caller may read: per kind of event (type prefix), its subjects.

    ``None`` for a kind means every event of that kind; a kind missing means none.
    """

    kinds: dict[str, Subjects | None]

    @property
    def unrestricted(self) -> bool:
        """Every kind, every subject."""
        return len(self.kinds) == len(scopes.EVENT_SCOPES) and all(
            v is None for v in self.kinds.values()
        )

    def prefilter(self) -> Subjects | None:
        """A subject filter no narrower than the permission (for the SQL query)."""
        if any(v is None for v in self.kinds.values()):
            return None
        return [subject for v in self.kinds.values() for subject in v or ()]

    def allows(self, event: models.RecordedEvent, data: dict[str, Any] | None = None) -> bool:
        """Whether the caller may see ``event`` (``data``: its payload, if already dumped)."""
        prefix = event.type.split(".", 1)[0] + "."
        if prefix not in self.kinds:
            return False
        return matches(event, self.kinds[prefix], data)


async def permission(conn: sql.Connection, caller: access.Caller) -> Permission:
    """What the caller's ``read:events`` scopes (whole or by kind) let it read; 403 if none."""
    decision = caller.grants.authorize(list(scopes.EVENT_SCOPES), post_filter=True)
    if not decision.allowed:
        raise errors.Forbidden(
            "Action is not authorized with current scopes; requires any of [read:events]"
        )
    kinds: dict[str, Subjects | None] = {}
    cache: dict[tuple[frozenset[str], frozenset[str], frozenset[str]], Subjects] = {}
    for scope, prefix in scopes.EVENT_SCOPES.items():
        held = caller.grants.filters(scope)
        if held.everything:
            kinds[prefix] = None
        elif held.users or held.groups or held.projects:
            key = (held.users, held.groups, held.projects)
            if key not in cache:
                cache[key] = await subjects(conn, held.users, held.groups, held.projects)
            kinds[prefix] = cache[key]
    return Permission(kinds)


async def asked_subjects(
    conn: sql.Connection, caller: access.Caller, query: Query
) -> Subjects | None:
    """The subjects the query asks for (``user=``, ``group=``), None if it asks for none;
    404 when the caller's scopes name users or groups and these are not among them."""
    if query.users is None and query.groups is None:
        return None
    held_users: set[str] = set()
    held_groups: set[str] = set()
    everywhere = False
    for scope in scopes.EVENT_SCOPES:
        held = caller.grants.filters(scope)
        everywhere = everywhere or held.everything
        held_users |= held.users
        held_groups |= held.groups
    if not everywhere:
        outside = set(query.users or ()) - held_users
        if (query.groups and not set(query.groups) <= held_groups) or (outside and not held_groups):
            raise errors.NotFound(NOT_FOUND)
    return await subjects(conn, query.users or (), query.groups or ())


def matches(
    event: models.RecordedEvent,
    allowed: list[dict[str, Any]] | None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Whether ``event``'s data contains one of ``allowed`` (as ``@>`` does in SQL);
    ``data`` is the payload, if the caller has dumped it already."""
    if allowed is None:
        return True
    if data is None:
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


def history_args(query: Query, allowed: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    """The parameters of the ``history_*`` queries for ``query`` and subjects ``allowed``."""
    patterns = store.EventFilter(type_prefixes=query.type_prefixes).like_patterns()
    cursor = query.cursor
    if cursor is None:
        cursor = 2**62 if query.descending else 0
    common = (
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
    )
    if allowed is None:
        return (*common, None)
    # {"user_id": id} apart: history_about_* reads those through an index in position order.
    user_ids = [s["user_id"] for s in allowed if _user_id_only(s)]
    others = [json.dumps(s) for s in allowed if not _user_id_only(s)]
    return (*common, others, user_ids)


def _user_id_only(subject: dict[str, Any]) -> bool:
    return list(subject) == ["user_id"] and isinstance(subject["user_id"], str)


def history_query(query: Query, allowed: Subjects | None) -> str:
    """The name of the SQL query that answers ``query`` about subjects ``allowed``: found
    through the index on data first when there are subjects, in position order otherwise."""
    direction = "descending" if query.descending else "ascending"
    return f"history_about_{direction}" if allowed is not None else f"history_{direction}"


async def history(
    conn: sql.Connection,
    registry: models.Registry,
    query: Query,
    allowed: Subjects | None,
    permitted: Permission | None = None,
) -> tuple[list[models.RecordedEvent], int | None]:
    """One page of the log matching ``query``, in position order (newest first if asked),
    and the position to continue from (None at the end).

    ``allowed`` narrows the SQL query to events about these subjects; ``permitted`` then drops
    what the caller may not see. A restricted caller's page may come back short: at most
    ``SCAN_PAGES`` pages of the log are read for it, and the cursor says where to go on.
    """
    if allowed == []:
        return [], None
    name = history_query(query, allowed)
    found: list[models.RecordedEvent] = []
    cursor = query.cursor
    for _ in range(SCAN_PAGES if permitted is not None else 1):
        async with conn.transaction():
            await conn.execute(queries["custom_plans"])
            text = await conn.fetchval(
                queries[name], *history_args(replace(query, cursor=cursor), allowed)
            )
        page = registry.decode_page(text)
        found += [e for e in page if permitted is None or permitted.allows(e)]
        if len(page) < query.limit:
            return found[: query.limit], None
        cursor = page[-1].position
        if len(found) >= query.limit:
            break
    if len(found) > query.limit:
        found = found[: query.limit]
        cursor = found[-1].position
    return found, cursor


async def list_events(request: web.Request) -> web.Response:
    """``GET /hub/api/events``: the history, filtered, paginated by position."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    query = parse_query(request)
    async with hub.store.pool.acquire() as conn:
        permitted = await permission(conn, caller)
        asked = await asked_subjects(conn, caller, query)
        allowed = asked if asked is not None else permitted.prefilter()
        found, cursor = await history(
            conn,
            hub.store.registry,
            query,
            allowed,
            None if permitted.unrestricted else permitted,
        )
    items = [render(event) for event in found]
    if not pagination.wants_pagination(request):
        return web.json_response(items)
    next_page = None
    if cursor is not None:
        key = "before" if query.descending else "after"
        url = request.url.update_query({key: str(cursor)})
        next_page = {key: cursor, "limit": query.limit, "url": str(url)}
    return web.json_response(
        {"items": items, "_pagination": {"limit": query.limit, "next": next_page}}
    )


async def stream_events(request: web.Request) -> web.StreamResponse:
    """``GET /hub/api/events/stream``: catch up from ``Last-Event-ID`` or ``?after=``, then
    follow live, as server-sent events; a comment line every 15 s keeps the line open.

    Live events come from the process's shared feed (``audit_feed``); a stream that falls
    too far behind is closed, and its client resumes with ``Last-Event-ID``.
    """
    hub = request.app[HUB]
    feed = request.app[FEED]
    caller = access.caller_of(request)
    query = replace(parse_query(request, history=False), descending=False)
    raw_after = request.headers.get("Last-Event-ID") or request.query.get("after") or ""
    after = models.ORIGIN
    if raw_after:
        try:
            after = models.Checkpoint.parse(raw_after)
        except event_errors.InvalidEvent as exc:
            raise errors.BadRequest(f"after/Last-Event-ID: {exc}") from exc
    async with hub.store.pool.acquire() as conn:
        permitted = await permission(conn, caller)
        asked = await asked_subjects(conn, caller, query)

    def allowed(event: models.RecordedEvent, data: dict[str, Any]) -> bool:
        return permitted.allows(event, data) and matches(event, asked, data)

    everything = permitted.unrestricted and asked is None

    selection = audit_feed.Selection(
        types=frozenset(query.types) if query.types else None,
        type_prefixes=query.type_prefixes,
        streams=frozenset(query.streams) if query.streams else None,
        actor=query.actor,
        since=query.since,
        until=query.until,
        permitted=None if everything else allowed,
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    follower, joined = await feed.follow(selection)
    transport = request.transport
    if transport is not None:
        follower.abort = transport.abort
    try:
        await response.prepare(request)
        # The log up to where the feed stood when this stream joined, then the feed: what
        # it hands out comes after that point, and after ``after`` unless the client is
        # ahead of this process's feed (then what it has already is skipped).
        await _catch_up(hub.store, response, selection, after, joined)
        while (items := await follower.take(HEARTBEAT_S)) is not None:
            if not items:
                await response.write(b": keepalive\n\n")
                continue
            chunk = b"".join(data for checkpoint, data in items if checkpoint > after)
            if chunk:
                await response.write(chunk)
    except ConnectionResetError:
        pass  # the client went away (or was dropped for falling behind): the stream ends
    finally:
        feed.unfollow(follower)
    return response


async def _catch_up(
    event_store: store.EventStore,
    response: web.StreamResponse,
    selection: audit_feed.Selection,
    after: models.Checkpoint,
    upto: models.Checkpoint,
) -> None:
    """Write the admitted events after ``after`` up to ``upto`` (inclusive)."""
    wanted = selection.event_filter(upto)
    cursor = after
    while cursor < upto:
        page = await event_store.read_all(cursor, filter=wanted, limit=audit_feed.PAGE)
        if not page:
            break
        parts = []
        for event in page:
            data = event.data.model_dump(mode="json")
            if selection.permitted is None or selection.permitted(event, data):
                parts.append(audit_feed.sse(event, data))
        chunk = b"".join(parts)
        if chunk:
            await response.write(chunk)
        cursor = page[-1].checkpoint
        if len(page) < audit_feed.PAGE:
            break


def install(app: web.Application) -> None:
    """Give ``app`` the process's live feed for its lifetime; streams end at shutdown,
    before the server waits for its handlers."""
    app.cleanup_ctx.append(_feed_context)
    app.on_shutdown.append(_end_streams)


async def _feed_context(app: web.Application) -> AsyncIterator[None]:
    async with audit_feed.Feed(app[HUB].store) as feed:
        app[FEED] = feed
        yield


async def _end_streams(app: web.Application) -> None:
    await app[FEED].stop()


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api/events", list_events),
        web.get("/hub/api/events/stream", stream_events),
    ]
