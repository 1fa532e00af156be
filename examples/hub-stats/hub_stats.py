"""hub-stats: live statistics of a chronohub, from its event stream alone.

A chronohub service (JupyterHub's service contract: ``JUPYTERHUB_API_URL``,
``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_SERVICE_PREFIX``) that
follows ``/hub/api/events/stream`` and serves, without ever polling the users API:

* ``<prefix>stats.json``: active users, running servers, spawns per hour, spawn failures,
  median spawn time;
* ``<prefix>``: the same as a small HTML page with a server-rendered SVG chart.

After a disconnect or a hub restart it reconnects with ``Last-Event-ID`` (the last event it
counted), so no event is lost or counted twice. Its token needs only ``read:events:servers``
and ``read:events:users`` (for ``user.logged_in`` / ``user.logged_out``).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import signal
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

log = logging.getLogger("hub-stats")

# Only what the statistics need (the stream's own filter; the token's scopes limit it too).
TYPES = "server.,user.logged_in,user.logged_out"
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
CHART_HOURS = 24


def checkpoint(event_id: str) -> tuple[int, int]:
    """An event id ``<tx>:<position>`` as a comparable pair (the stream's order)."""
    tx, position = event_id.split(":")
    return int(tx), int(position)


@dataclass
class Stats:
    """The statistics, folded from events in stream order. Pure: no I/O."""

    last_id: str | None = None
    events: int = 0
    running: set[tuple[str, str]] = field(default_factory=set)
    sessions: dict[str, tuple[str, datetime | None]] = field(default_factory=dict)
    """Open browser sessions: session id -> (user name, expiry)."""
    requested: dict[tuple[str, str], datetime] = field(default_factory=dict)
    spawn_seconds: list[float] = field(default_factory=list)
    spawns_per_hour: dict[str, int] = field(default_factory=dict)
    failures: int = 0

    def apply(self, event_id: str, event: dict[str, Any]) -> bool:
        """Count one event; False (and nothing counted) if it is not after the last one."""
        if self.last_id is not None and checkpoint(event_id) <= checkpoint(self.last_id):
            return False
        self.last_id = event_id
        self.events += 1
        kind, data = event["type"], event["data"]
        at = datetime.fromisoformat(event["time"])
        if kind == "user.logged_in":
            expires = data.get("expires_at")
            self.sessions[data["session_id"]] = (
                data["name"],
                datetime.fromisoformat(expires) if expires else None,
            )
        elif kind == "user.logged_out":
            self.sessions.pop(data["session_id"], None)
        if not kind.startswith("server."):
            return True
        server = (data["user"], data.get("server_name", ""))
        if kind == "server.spawn_requested":
            self.requested[server] = at
            hour = at.astimezone(UTC).strftime("%Y-%m-%dT%H:00Z")
            self.spawns_per_hour[hour] = self.spawns_per_hour.get(hour, 0) + 1
        elif kind == "server.ready":
            self.running.add(server)
            if (began := self.requested.pop(server, None)) is not None:
                self.spawn_seconds.append((at - began).total_seconds())
        elif kind in ("server.stopped", "server.failed", "server.removed"):
            self.running.discard(server)
            self.requested.pop(server, None)
            self.failures += kind == "server.failed"
        return True

    def figures(self, now: datetime) -> dict[str, Any]:
        """The statistics as JSON-ready data; active users are those with a running server
        or a browser session that has not expired by ``now``."""
        logged_in = {
            name for name, expires in self.sessions.values() if expires is None or expires > now
        }
        active = {user for user, _ in self.running} | logged_in
        return {
            "active_users": len(active),
            "active_user_names": sorted(active),
            "logged_in_users": len(logged_in),
            "running_servers": len(self.running),
            "spawns": sum(self.spawns_per_hour.values()),
            "spawns_per_hour": dict(sorted(self.spawns_per_hour.items())),
            "spawn_failures": self.failures,
            "median_spawn_seconds": (
                statistics.median(self.spawn_seconds) if self.spawn_seconds else None
            ),
            "events": self.events,
            "last_event_id": self.last_id,
        }


def chart(spawns_per_hour: dict[str, int], now: datetime) -> str:
    """Spawns in each of the last 24 hours as an SVG bar chart."""
    hours = [
        (now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:00Z")
        for h in range(CHART_HOURS - 1, -1, -1)
    ]
    counts = [spawns_per_hour.get(hour, 0) for hour in hours]
    top = max([*counts, 1])
    width, height, bar = 24 * 20, 120, 16
    bars = "".join(
        f'<rect x="{i * 20 + 2}" y="{height - 100 * c / top:.1f}" width="{bar}"'
        f' height="{100 * c / top:.1f}" fill="#f37726"><title>{hour}: {c}</title></rect>'
        for i, (hour, c) in enumerate(zip(hours, counts, strict=True))
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}"'
        f' role="img" aria-label="spawns per hour, last 24 hours">{bars}'
        f'<text x="0" y="{height + 15}" font-size="11">{hours[0]}</text>'
        f'<text x="{width}" y="{height + 15}" font-size="11" text-anchor="end">{hours[-1]}</text>'
        "</svg>"
    )


def page(figures: dict[str, Any], now: datetime) -> str:
    """The HTML page: the figures and the chart."""
    median = figures["median_spawn_seconds"]
    rows = [
        ("active users", figures["active_users"]),
        ("running servers", figures["running_servers"]),
        ("spawns", figures["spawns"]),
        ("spawn failures", figures["spawn_failures"]),
        ("median spawn time", "-" if median is None else f"{median:.2f} s"),
    ]
    table = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>hub-stats</title>"
        "<meta http-equiv='refresh' content='10'></head><body><h1>hub-stats</h1>"
        f"<table>{table}</table><h2>spawns per hour</h2>"
        f"{chart(figures['spawns_per_hour'], now)}"
        f"<p>last event {html.escape(str(figures['last_event_id']))}</p></body></html>"
    )


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


def make_app(stats: Stats, prefix: str) -> web.Application:
    """The statistics' web app, under ``prefix``."""

    async def as_json(_request: web.Request) -> web.Response:
        return web.json_response(stats.figures(datetime.now(UTC)))

    async def as_html(_request: web.Request) -> web.Response:
        now = datetime.now(UTC)
        return web.Response(text=page(stats.figures(now), now), content_type="text/html")

    app = web.Application()
    app.add_routes([web.get(f"{prefix}stats.json", as_json), web.get(prefix, as_html)])
    return app


async def main() -> None:
    api_url = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
    token = os.environ["JUPYTERHUB_API_TOKEN"]
    bind = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10102"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/") + "/"
    stats = Stats()
    runner = web.AppRunner(make_app(stats, prefix), access_log=None)
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
