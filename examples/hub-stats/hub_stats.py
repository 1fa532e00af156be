"""hub-stats: statistics of a chronohub over a chosen period, from its event stream alone.

A chronohub service (JupyterHub's service contract: ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``), run by the
hub as a managed service or by hand, that follows ``/hub/api/events/stream`` and serves,
without ever polling the REST API:

* ``<prefix>?period=24h``: a page with users active, servers running, spawns and their
  durations, logins, pushes and collaboration over the period (1h, 6h, 24h, 7d, 30d), and a
  chart of them: drawn with uPlot by the hub's ``stats.js`` script (the hub's front-end
  bundle, linked under the hub's own address, which the proxy shares with this service), a
  server-rendered SVG without script;
* ``<prefix>stats.json?period=24h``: the same figures as JSON.

Aggregate-only: the page shows counts, never a user's name, so it asks for no login (anyone
who reaches ``/services/hub-stats/`` sees the counts). After a disconnect or a hub restart it
reconnects with ``Last-Event-ID`` (the last event it counted), so no event is lost or counted
twice. Its token needs ``read:events:servers``, ``read:events:users``,
``read:events:projects``, ``read:events:collab`` and ``read:events:collab_sessions``; a scope
it lacks only leaves those figures at zero.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import signal
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

log = logging.getLogger("hub-stats")

# Only what the statistics need (the stream's own filter; the token's scopes limit it too).
TYPES = (
    "server.,user.logged_in,user.logged_out,project.pushed,collab.participant_joined,"
    "collab_session.created,collab_session.execution_requested"
)
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
PERIODS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_PERIOD = "24h"
BUCKETS = 24
"""Bars in the chart, whatever the period (1h: 2.5 minutes each; 30d: 30 hours)."""
SERIES = {"spawns": "#f37726", "logins": "#4c72b0", "pushes": "#55a868", "collab_joins": "#8172b2"}
SCRIPT_ENTRY = "stats.js"
"""The hub's front-end bundle entry that draws the chart (frontend/src/stats.ts in chronohub)."""
MANIFEST_TTL_S = 60.0
"""How long the hub's bundle manifest is trusted: a rebuilt hub renames its hashed files."""


def checkpoint(event_id: str) -> tuple[int, int]:
    """An event id ``<tx>:<position>`` as a comparable pair (the stream's order)."""
    tx, position = event_id.split(":")
    return int(tx), int(position)


class BadPeriod(ValueError):
    """A ``period`` the page does not know."""


def period_of(raw: str | None) -> tuple[str, timedelta]:
    """The period a query string asks for (``?period=7d``); ``BadPeriod`` naming the choices."""
    name = raw or DEFAULT_PERIOD
    if name not in PERIODS:
        raise BadPeriod(f"period must be one of {', '.join(PERIODS)}, got {name!r}")
    return name, PERIODS[name]


@dataclass
class Spawn:
    """One spawn: when it was asked for, and how it ended (None while pending)."""

    user: str
    at: datetime
    seconds: float | None = None
    failed: bool = False


@dataclass
class Stats:
    """The statistics, folded from events in stream order. Pure: no I/O.

    What is now (running servers, open sessions) is kept as state; what happened (spawns,
    logins, pushes, collaboration) as timed records, so that any period can be counted.
    Records older than the longest period before the newest event are dropped.
    """

    last_id: str | None = None
    events: int = 0
    running: set[tuple[str, str]] = field(default_factory=set)
    sessions: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    """Open browser sessions: session id -> (user name, expiry)."""
    pending: dict[tuple[str, str], Spawn] = field(default_factory=dict)
    spawns: list[Spawn] = field(default_factory=list)
    happened: dict[str, list[tuple[datetime, str]]] = field(
        default_factory=lambda: {"logins": [], "pushes": [], "collab_joins": [],
                                 "collab_sessions": [], "executions": []}
    )  # fmt: skip
    """Per kind, (time, user) of each login, push, collaboration join, session, execution."""
    commits: list[tuple[datetime, int]] = field(default_factory=list)

    def apply(self, event_id: str, event: dict[str, Any]) -> bool:
        """Count one event; False (and nothing counted) if it is not after the last one."""
        if self.last_id is not None and checkpoint(event_id) <= checkpoint(self.last_id):
            return False
        self.last_id = event_id
        self.events += 1
        kind, data = event["type"], event["data"]
        at = datetime.fromisoformat(event["time"])
        if kind.startswith("server."):
            self._server(kind, data, at)
        elif kind == "user.logged_in":
            expires = data.get("expires_at")
            self.sessions[data["session_id"]] = (
                data["name"],
                datetime.fromisoformat(expires) if expires else None,
            )
            self.happened["logins"].append((at, data["name"]))
        elif kind == "user.logged_out":
            self.sessions.pop(data["session_id"], None)
        elif kind == "project.pushed":
            self.happened["pushes"].append((at, data["pusher"]))
            self.commits.append((at, data.get("commits", 0)))
        elif kind == "collab.participant_joined":
            who = data["participant"]
            if who.startswith("user:"):
                self.happened["collab_joins"].append((at, who.removeprefix("user:")))
        elif kind == "collab_session.created":
            self.happened["collab_sessions"].append((at, data["created_by"]))
        elif kind == "collab_session.execution_requested":
            self.happened["executions"].append((at, data["requester"]))
        self._forget_before(at - max(PERIODS.values()))
        return True

    def _server(self, kind: str, data: dict[str, Any], at: datetime) -> None:
        server = (data["user"], data.get("server_name", ""))
        if kind == "server.spawn_requested":
            spawn = Spawn(data["user"], at)
            self.pending[server] = spawn
            self.spawns.append(spawn)
        elif kind == "server.ready":
            self.running.add(server)
            if (spawn := self.pending.pop(server, None)) is not None:
                spawn.seconds = (at - spawn.at).total_seconds()
        elif kind in ("server.stopped", "server.failed", "server.removed"):
            self.running.discard(server)
            spawn = self.pending.pop(server, None)
            if kind == "server.failed" and spawn is not None:
                spawn.failed = True
                spawn.seconds = (at - spawn.at).total_seconds()

    def _forget_before(self, limit: datetime) -> None:
        # Every 1,000 events, not at each: a pass over the records is linear.
        if self.events % 1000:
            return
        self.spawns = [s for s in self.spawns if s.at >= limit]
        self.commits = [c for c in self.commits if c[0] >= limit]
        for kind, records in self.happened.items():
            self.happened[kind] = [r for r in records if r[0] >= limit]

    def figures(self, now: datetime, period: str = DEFAULT_PERIOD) -> dict[str, Any]:
        """The statistics as JSON-ready counts (no user names: the page is aggregate-only)
        over ``period`` up to ``now``, and what is running ``now``."""
        since = now - PERIODS[period]
        logged_in = {
            name for name, expires in self.sessions.values() if expires is None or expires > now
        }
        active_now = {user for user, _ in self.running} | logged_in
        spawns = [s for s in self.spawns if since <= s.at <= now]
        seconds = sorted(s.seconds for s in spawns if s.seconds is not None and not s.failed)
        within = {
            kind: [(at, who) for at, who in records if since <= at <= now]
            for kind, records in self.happened.items()
        }
        active = active_now | {s.user for s in spawns}
        for records in within.values():
            active |= {who for _, who in records}
        return {
            "period": period,
            "since": _iso(since),
            "until": _iso(now),
            "active_users": len(active),
            "active_users_now": len(active_now),
            "logged_in_users": len(logged_in),
            "running_servers": len(self.running),
            "spawns": len(spawns),
            "spawn_failures": sum(s.failed for s in spawns),
            "median_spawn_seconds": statistics.median(seconds) if seconds else None,
            "max_spawn_seconds": seconds[-1] if seconds else None,
            "logins": len(within["logins"]),
            "pushes": len(within["pushes"]),
            "commits_pushed": sum(n for at, n in self.commits if since <= at <= now),
            "collab_sessions": len(within["collab_sessions"]),
            "collab_joins": len(within["collab_joins"]),
            "executions": len(within["executions"]),
            "chart": self.chart_data(since, now),
            "events": self.events,
            "last_event_id": self.last_id,
        }

    def chart_data(self, since: datetime, now: datetime) -> dict[str, Any]:
        """Counts per bucket of the period, per series (spawns, logins, pushes, joins)."""
        width = (now - since) / BUCKETS
        times = {
            "spawns": [s.at for s in self.spawns],
            **{kind: [at for at, _ in self.happened[kind]] for kind in SERIES if kind != "spawns"},
        }
        series = {}
        for kind, ats in times.items():
            counts = [0] * BUCKETS
            for at in ats:
                if since <= at <= now:
                    counts[min(int((at - since) / width), BUCKETS - 1)] += 1
            series[kind] = counts
        return {"buckets": [_iso(since + width * i) for i in range(BUCKETS)], "series": series}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def chart(data: dict[str, Any]) -> str:
    """The chart data as an SVG of grouped bars, one colour per series.

    Written out by hand: some forty lines of SVG, where a chart library (pygal, matplotlib)
    would be this example's only dependency besides aiohttp.
    """
    series: dict[str, list[int]] = data["series"]
    top = max([1, *(c for counts in series.values() for c in counts)])
    group, bar, height, label = 28, 6, 120, 16
    width = BUCKETS * group
    parts = []
    for i in range(BUCKETS):
        for j, (kind, counts) in enumerate(series.items()):
            h = 100 * counts[i] / top
            parts.append(
                f'<rect x="{i * group + 2 + j * bar}" y="{height - h:.1f}" width="{bar - 1}"'
                f' height="{h:.1f}" fill="{SERIES[kind]}">'
                f"<title>{html.escape(data['buckets'][i])} {kind}: {counts[i]}</title></rect>"
            )
    legend = "".join(
        f'<rect x="{k * 110}" y="{height + 22}" width="10" height="10" fill="{colour}"/>'
        f'<text x="{k * 110 + 14}" y="{height + 31}" font-size="11">{kind}</text>'
        for k, (kind, colour) in enumerate(SERIES.items())
    )
    first, last = data["buckets"][0], data["buckets"][-1]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart-svg" width="{width}"'
        f' height="{height + label + 24}" role="img" aria-label="spawns, logins, pushes and'
        f' collaboration joins over the period, top {top}">{"".join(parts)}'
        f'<text x="0" y="{height + 14}" font-size="11">{html.escape(first)}</text>'
        f'<text x="{width}" y="{height + 14}" font-size="11" text-anchor="end">'
        f"{html.escape(last)}</text>{legend}</svg>"
    )


def chart_label(figures: dict[str, Any]) -> str:
    """What the chart shows, in words (its accessible name)."""
    return (
        f"spawns, logins, pushes and collaboration joins from {figures['since']}"
        f" to {figures['until']}, in {BUCKETS} steps"
    )


def data_block(figures: dict[str, Any]) -> str:
    """The chart's figures as a JSON data block for the script (``</`` cannot end it)."""
    data = {**figures["chart"], "colours": SERIES, "label": chart_label(figures)}
    return json.dumps(data).replace("<", "\\u003c")


def page(figures: dict[str, Any], script: str | None = None) -> str:
    """The HTML page: the figures of the period, links to the other periods, the chart (drawn
    by ``script``, the hub's chart script, when there is one; the SVG otherwise)."""
    median, longest = figures["median_spawn_seconds"], figures["max_spawn_seconds"]
    rows = [
        ("active users (in the period, or now)", figures["active_users"]),
        ("active users now (a server running or logged in)", figures["active_users_now"]),
        ("running servers", figures["running_servers"]),
        ("spawns", figures["spawns"]),
        ("spawn failures", figures["spawn_failures"]),
        ("median spawn time", "-" if median is None else f"{median:.2f} s"),
        ("longest spawn time", "-" if longest is None else f"{longest:.2f} s"),
        ("logins", figures["logins"]),
        ("pushes (commits)", f"{figures['pushes']} ({figures['commits_pushed']})"),
        ("collaboration sessions", figures["collab_sessions"]),
        ("collaboration joins", figures["collab_joins"]),
        ("cells run together", figures["executions"]),
    ]
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    links = " ".join(
        f"<b>{name}</b>" if name == figures["period"] else f'<a href="?period={name}">{name}</a>'
        for name in PERIODS
    )
    head = "<meta http-equiv='refresh' content='30'>"
    if script is not None:
        # With the script, the figures and the chart refresh in place every 30 s (a timed
        # reload of the whole page loses the reader's place and focus); without it, the page
        # reloads itself as before.
        head = (
            f'<noscript>{head}</noscript><script type="module" src="{html.escape(script)}">'
            "</script>"
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>hub-stats</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"{head}</head><body><main><h1>hub-stats</h1>"
        f"<p id='period'>period: {links} (from {html.escape(figures['since'])}"
        f" to {html.escape(figures['until'])})</p>"
        f"<table id='figures'>{table}</table><h2>over the period</h2>"
        f'<div id="chart">{chart(figures["chart"])}</div>'
        f'<script type="application/json" id="chart-data">{data_block(figures)}</script>'
        f"<p id='last-event'>last event {html.escape(str(figures['last_event_id']))}</p>"
        "</main></body></html>"
    )


class ChartScript:
    """Where the hub serves its chart script: read from the hub's bundle manifest (its file
    names are hashed), again after ``MANIFEST_TTL_S``. None when the hub has no such entry
    (its front-end not built): the page keeps the SVG."""

    def __init__(self, api_url: str) -> None:
        # /hub/api -> /hub/static/app/: the hub's static files, under its own base URL
        hub_path = urlsplit(api_url).path.rstrip("/").removesuffix("/api")
        self.prefix = f"{hub_path}/static/app/"
        self.manifest_url = api_url.rstrip("/").removesuffix("/api") + "/static/app/manifest.json"
        self.url: str | None = None
        self.checked = -MANIFEST_TTL_S

    async def get(self, session: aiohttp.ClientSession) -> str | None:
        """The script's path (on the public origin, which the proxy shares with the hub)."""
        if time.monotonic() - self.checked < MANIFEST_TTL_S:
            return self.url
        self.checked = time.monotonic()
        try:
            async with session.get(self.manifest_url) as response:
                response.raise_for_status()
                manifest = await response.json()
            entry = manifest.get(SCRIPT_ENTRY) if isinstance(manifest, dict) else None
            file = entry.get("file") if isinstance(entry, dict) else None
            self.url = self.prefix + file if isinstance(file, str) else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("the hub's chart script: %s (the page shows the SVG chart)", exc)
            self.url = None
        return self.url


async def follow(api_url: str, token: str, stats: Stats) -> None:
    """Follow the event stream forever, reconnecting from the last counted event."""
    failures = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            headers = {"Authorization": f"token {token}", "Accept": "text/event-stream"}
            if stats.last_id is not None:
                headers["Last-Event-ID"] = stats.last_id
            try:
                async with session.get(
                    f"{api_url}/events/stream", params={"type_prefix": TYPES}, headers=headers
                ) as response:
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(
                            response.request_info, (), status=response.status,
                            message=await response.text(),
                        )  # fmt: skip
                    failures = 0
                    await read_events(response, stats)
                log.info("the stream ended; reconnecting")
                await asyncio.sleep(RETRY_S[0])
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("event stream: %s; reconnecting", exc)
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1


async def read_events(response: aiohttp.ClientResponse, stats: Stats) -> None:
    """Apply each server-sent event of ``response`` (comments are heartbeats)."""
    event_id: str | None = None
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            if event_id is not None:
                stats.apply(event_id, json.loads("\n".join(data)))
            data = []


def make_app(stats: Stats, prefix: str, script: ChartScript | None = None) -> web.Application:
    """The statistics' web app, under ``prefix``: ``?period=`` chooses the period; the page's
    chart is drawn by the hub's ``script`` when there is one."""
    session = web.AppKey("session", aiohttp.ClientSession)

    async def client(app: web.Application) -> Any:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as app[session]:
            yield

    def figures(request: web.Request) -> dict[str, Any]:
        try:
            name, _ = period_of(request.query.get("period"))
        except BadPeriod as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return stats.figures(datetime.now(UTC), name)

    async def as_json(request: web.Request) -> web.Response:
        return web.json_response(figures(request))

    async def as_html(request: web.Request) -> web.Response:
        shown = figures(request)
        url = await script.get(request.app[session]) if script is not None else None
        return web.Response(text=page(shown, url), content_type="text/html")

    app = web.Application()
    app.cleanup_ctx.append(client)
    app.add_routes([web.get(f"{prefix}stats.json", as_json), web.get(prefix, as_html)])
    return app


async def main() -> None:
    api_url = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    bind = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/") + "/"
    stats = Stats()
    runner = web.AppRunner(make_app(stats, prefix, ChartScript(api_url)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, bind.hostname or "127.0.0.1", bind.port or 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"hub-stats serving at http://{host}:{port}{prefix}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    follower = asyncio.create_task(follow(api_url, token, stats), name="follow")
    stopping = asyncio.create_task(stop.wait(), name="stop")
    try:
        await asyncio.wait({follower, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (follower, stopping):
            task.cancel()
        await asyncio.gather(follower, stopping, return_exceptions=True)
        await runner.cleanup()
    if not follower.cancelled():
        follower.result()  # the follower's crash, if it crashed


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="hub-stats: %(message)s")
    asyncio.run(main())
