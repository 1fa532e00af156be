"""``/hub/events``: the audit timeline in the browser, for holders of a ``read:events`` scope.

* ``/hub/events``: the log newest first, filtered by a GET form (type or kind, user, group,
  time range), a page of events at a time by position (keyset: the "older" link carries
  ``before``). Each event opens (``<details>``) to its data, links to "everything about" each
  user and group it names, and to the hub at its moment. Everything a caller reads goes
  through the audit API's own rules (``history.permission``, ``asked_subjects``, ``history``).
* ``/hub/events/rows``: the same list's rows for a range of positions, as an HTML fragment:
  the live-follow script (``frontend/src/events.ts``, the bundle's ``events.js``) fetches the
  rows of the events the SSE stream announces, so one template renders every row, with and
  without script.
* ``/hub/events/at/{position}``: users, groups, servers and projects as of that event
  (``moment``: every projection replayed up to it), for callers who may read the whole log.

Event data is hostile (names, descriptions): templates escape everything, and the pages are
sent with a Content-Security-Policy that runs only the hub's own script file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from events import errors as event_errors
from events import models, sql
from hub import errors
from hub.audit import history, moment
from hub.auth import access, identity
from hub.context import HUB
from hub.web import assets, html
from projections import rebuild

log = logging.getLogger(__name__)

PATH = "/hub/events"
ROWS = "/hub/events/rows"
AT = "/hub/events/at"
PAGE_SIZE = 50
LIVE_ROWS = 200
"""The most rows one fetch of the live script returns (a burst beyond shows on reload)."""
AT_LIMIT = 500
"""Rows of each view shown on the at-position page."""
AT_TIMEOUT_S = 30.0
"""How long the at-position page's replay may take (``chronohub state --at`` has no bound)."""
MOMENT_VIEWS = ("users", "groups", "servers", "projects")
# The hub's own script and styles only: event data that slipped a tag through would not run.
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:;"
    " style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# One replay of the log at a time per process: each rebuilds every projection up to a point.
REPLAYS = web.AppKey("chronohub.events-page-replays", asyncio.Semaphore)


@dataclass(frozen=True)
class Filters:
    """The form's fields as typed (shown back in the form and carried by every link)."""

    type: str = ""
    user: str = ""
    group: str = ""
    since: str = ""
    until: str = ""

    def params(self) -> dict[str, str]:
        """The non-empty fields, as query parameters of the page."""
        fields = {
            "type": self.type,
            "user": self.user,
            "group": self.group,
            "from": self.since,
            "to": self.until,
        }
        return {k: v for k, v in fields.items() if v}


def filters_of(request: web.Request) -> Filters:
    """The filters of the page's query string, trimmed."""
    q = request.query
    return Filters(
        type=q.get("type", "").strip(),
        user=q.get("user", "").strip(),
        group=q.get("group", "").strip(),
        since=q.get("from", "").strip(),
        until=q.get("to", "").strip(),
    )


def parse_time(raw: str, field: str) -> datetime | None:
    """A time of the form: ISO 8601 as a ``datetime-local`` field sends it (read as UTC), or
    with a zone; 400 naming ``field`` otherwise."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value.astimezone(UTC)  # a zone that puts it before year 1 or after 9999 overflows
    except (ValueError, OverflowError) as exc:
        raise errors.BadRequest(
            f"{field}: {raw!r} is not a date and time (YYYY-MM-DDTHH:MM, in UTC)"
        ) from exc
    return value


def is_position(raw: str) -> bool:
    """Whether ``raw`` is a position in the log: ASCII digits (``str.isdigit`` alone takes
    '²', which ``int`` refuses) below the log's bound."""
    return raw.isascii() and raw.isdigit() and int(raw) < 2**62


def query_of(
    filters: Filters, known_types: frozenset[str], *, before: int | None, limit: int
) -> history.Query:
    """The audit API's query for ``filters``: a type ending in '.' is a kind (a prefix)."""
    types: tuple[str, ...] | None = None
    prefixes: tuple[str, ...] | None = None
    if filters.type.endswith("."):
        if not any(t.startswith(filters.type) for t in known_types):
            raise errors.BadRequest(f"type: no kind of event is called {filters.type!r}")
        prefixes = (filters.type,)
    elif filters.type:
        if filters.type not in known_types:
            raise errors.BadRequest(
                f"type: no event type is called {filters.type!r}"
                " (a kind ends with '.', e.g. 'user.')"
            )
        types = (filters.type,)
    since = parse_time(filters.since, "from")
    until = parse_time(filters.until, "to")
    if since is not None and until is not None and since >= until:
        raise errors.BadRequest("from: must be before to")
    return history.Query(
        types=types,
        type_prefixes=prefixes,
        users=(filters.user,) if filters.user else None,
        groups=(filters.group,) if filters.group else None,
        since=since,
        until=until,
        descending=True,
        limit=limit,
        cursor=before,
    )


def _position(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name, "")
    if not raw:
        return None
    if not is_position(raw):
        raise errors.BadRequest(f"{name}: must be a position in the log (a whole number)")
    return int(raw)


def page_url(filters: Filters, **extra: str) -> str:
    """The timeline with ``filters`` (and ``extra`` parameters)."""
    params = filters.params() | extra
    return f"{PATH}?{urlencode(params)}" if params else PATH


def stream_url(query: history.Query) -> str:
    """The SSE stream with the same filters as ``query`` (its ``after`` is added by the page)."""
    params: list[tuple[str, str]] = []
    params += [("type", t) for t in query.types or ()]
    params += [("type_prefix", p) for p in query.type_prefixes or ()]
    params += [("user", u) for u in query.users or ()]
    params += [("group", g) for g in query.groups or ()]
    if query.since is not None:
        params.append(("since", html.iso(query.since)))
    if query.until is not None:
        params.append(("until", html.iso(query.until)))
    return "/hub/api/events/stream" + (f"?{urlencode(params)}" if params else "")


def rows(
    found: list[models.RecordedEvent],
    names: dict[str, tuple[str, str]],
    *,
    whole_log: bool,
) -> list[dict[str, Any]]:
    """What the template shows of each event: its public shape, its data as indented JSON,
    its subjects' links, and (for callers who may read the whole log) the moment's link."""
    shown = []
    for event in found:
        public = history.render(event)
        subjects = []
        for subject_id in history.subject_ids(public["data"]):
            if subject_id in names:
                kind, name = names[subject_id]
                href = f"{PATH}?{urlencode({kind: name})}"
                subjects.append({"kind": kind, "name": name, "href": href})
        shown.append(
            public
            | {
                "recorded_at": event.recorded_at,
                "actor_label": event.metadata.actor.label,
                "pretty": json.dumps(public["data"], indent=2, ensure_ascii=False, sort_keys=True),
                "subjects": subjects,
                "at": f"{AT}/{event.position}" if whole_log else None,
            }
        )
    return shown


@dataclass(frozen=True)
class Listing:
    """One page of the timeline, ready for its template."""

    events: list[dict[str, Any]]
    cursor: int | None
    query: history.Query | None
    head: str


async def _listing(
    request: web.Request,
    filters: Filters,
    *,
    before: int | None = None,
    between: tuple[int | None, int | None] = (None, None),
    limit: int | None = None,
) -> Listing:
    """The events the caller may see that match ``filters``: 403 without a ``read:events``
    scope, 400 for a bad filter, 404 for a user or group outside the caller's scopes."""
    hub = request.app[HUB]
    caller = access.caller_of(request)
    async with hub.store.pool.acquire() as conn:
        permitted = await history.permission(conn, caller)
        # Where the stream of live events starts: taken before the page is read, so nothing
        # committed in between is lost (what the page shows already is not inserted twice).
        head = await hub.store.head(conn=conn)
        query = query_of(
            filters, hub.store.registry.types(), before=before, limit=limit or PAGE_SIZE
        )
        query = replace(query, from_position=between[0], to_position=between[1])
        asked = await history.asked_subjects(conn, caller, query)
        allowed = asked if asked is not None else permitted.prefilter()
        found, cursor = await history.history(
            conn,
            hub.store.registry,
            query,
            allowed,
            None if permitted.unrestricted else permitted,
        )
        ids = [i for event in found for i in history.subject_ids(history.render(event)["data"])]
        names = await history.names_of(conn, ids)
    return Listing(rows(found, names, whole_log=permitted.unrestricted), cursor, query, str(head))


def _page(request: web.Request, template: str, **context: Any) -> web.Response:
    return identity.form_page(request, template, csp=CSP, **context)


def _error(request: web.Request, exc: errors.HubError) -> web.Response:
    response = identity.error_page(request, exc.status, exc.message, csp=CSP)
    response.headers.update(exc.headers)  # Retry-After of a refused replay
    return response


def _kinds(request: web.Request) -> list[str]:
    """The form's suggestions: every kind of event, then every type."""
    types = sorted(request.app[HUB].store.registry.types())
    return sorted({t.split(".", 1)[0] + "." for t in types}) + types


async def timeline(request: web.Request) -> web.StreamResponse:
    """``GET /hub/events``: the form, one page of events, the link to older ones."""
    row = identity.signed_in_user(request)
    filters = filters_of(request)
    try:
        before = _position(request, "before")
        listing = await _listing(request, filters, before=before)
    except errors.HubError as exc:
        if exc.status == 403:
            return _error(request, exc)
        # A bad filter, or a subject outside the caller's scopes: the form again, with why.
        return _page(
            request,
            "events.html",
            status=exc.status,
            user=row["name"],
            error=exc.message,
            filters=filters,
            kinds=_kinds(request),
            events=[],
            older=None,
            newest=None,
            live=None,
        )
    live = None
    if before is None and listing.query is not None:
        live = {
            "stream": stream_url(listing.query),
            "rows": f"{ROWS}?{urlencode(filters.params())}",
            "after": listing.head,
        }
    return _page(
        request,
        "events.html",
        user=row["name"],
        filters=filters,
        kinds=_kinds(request),
        events=listing.events,
        older=page_url(filters, before=str(listing.cursor)) if listing.cursor else None,
        newest=page_url(filters) if before is not None else None,
        live=live,
        # the live-follow script: the bundle's events entry (frontend/src/events.ts); without
        # it (not built) the page still works, without live follow
        script=assets.url("events.js"),
    )


async def live_rows(request: web.Request) -> web.StreamResponse:
    """``GET /hub/events/rows?…&from_position=&to_position=``: the timeline's rows of those
    positions (newest first), an HTML fragment for the live-follow script."""
    filters = filters_of(request)
    try:
        between = (_position(request, "from_position"), _position(request, "to_position"))
        listing = await _listing(request, filters, between=between, limit=LIVE_ROWS)
    except errors.HubError as exc:
        return errors.error_response(exc.status, exc.message)
    response = html.render("_event_rows.html", events=listing.events)
    response.headers["Content-Security-Policy"] = CSP  # also when opened by itself
    return response


async def at_position(request: web.Request) -> web.StreamResponse:
    """``GET /hub/events/at/{position}``: the hub as of that event."""
    row = identity.signed_in_user(request)
    hub = request.app[HUB]
    raw = request.match_info["position"]
    try:
        if not is_position(raw):
            raise errors.BadRequest(f"position: {raw!r} is not a position in the log")
        position = int(raw)
        caller = access.caller_of(request)
        async with hub.store.pool.acquire() as conn:
            permitted = await history.permission(conn, caller)
            if not permitted.unrestricted:
                # The hub at a moment shows every user, group, server and project.
                raise errors.Forbidden(
                    "The hub at a moment needs read:events on the whole log (no filter)"
                )
            checkpoint, _ = await moment.checkpoint_at(conn, position)
            found, _ = await history.history(
                conn,
                hub.store.registry,
                history.Query(from_position=position, to_position=position, limit=1),
                None,
            )
        # One replay at a time per process, and none waits for another (aiohttp runs a
        # handler to its end even when its client left: a queue would grow with each
        # reload): a second is refused, told when to try again.
        replays = request.app[REPLAYS]
        if replays.locked():
            raise errors.Busy(
                "The hub is already replaying the log for another view of a moment; try again"
                f" in {moment.RETRY_AFTER_S} seconds",
                moment.RETRY_AFTER_S,
            )
        async with replays, hub.store.pool.acquire() as conn:
            views = await moment.views_at(
                conn, hub.store, checkpoint, MOMENT_VIEWS, limit=AT_LIMIT, timeout_s=AT_TIMEOUT_S
            )
    except errors.HubError as exc:
        return _error(request, exc)
    shown = rows(found, {}, whole_log=True)[0] if found else None
    return _page(
        request,
        "events_at.html",
        user=row["name"],
        position=position,
        event=shown,
        views=views,
        limit=AT_LIMIT,
        back=page_url(Filters(), before=str(position + 1)),
    )


def install(app: web.Application) -> None:
    """The pages' routes, their one-replay-at-a-time limit, and the sweep at start of the
    replays' scratch schemas that a stopped hub left."""
    app[REPLAYS] = asyncio.Semaphore(1)
    app.cleanup_ctx.append(_sweep_scratch)
    app.add_routes(routes())


async def _sweep_scratch(app: web.Application) -> AsyncIterator[None]:
    """Drop the replays' scratch schemas nobody holds (a hub or ``chronohub state --at``
    stopped mid-replay); those in use by another process are held, and kept."""
    try:
        with sql.translated():
            async with app[HUB].store.pool.acquire() as conn:
                dropped = await rebuild.drop_unused(conn)
    except event_errors.DatabaseUnavailable as exc:  # the hub still starts; swept next time
        log.warning("could not sweep the scratch schemas of unfinished replays: %s", exc)
        dropped = []
    if dropped:
        log.info("dropped %d scratch schemas of unfinished replays: %s", len(dropped), dropped)
    yield


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get(PATH, timeline),
        web.get(ROWS, live_rows),
        web.get(AT + "/{position}", at_position),
    ]
