"""examples/hub-stats, run as a subprocess against a running hub: its figures match the log
exactly, and after a hub restart (events appended while the hub was down) it resumes with
no event lost or counted twice."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from events import store
from events.catalog import servers as server_events
from hub import app, bootstrap, context
from hub import settings as hub_settings
from tests.helpers import wait_for
from tests.integration.api_fixtures import CONFIG as API_CONFIG
from tests.integration.browser import Browser, running_hub, set_password
from tests.integration.serve_process import chronohub_serve

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hub-stats" / "hub_stats.py"
STATS_TOKEN = "hub-stats-secret-0123456789abcdef"
CONFIG: dict[str, Any] = {
    "database_url": "postgresql://unused",
    "services": [{"name": "hub-stats", "api_token": STATS_TOKEN}],
    "roles": [
        {
            "name": "hub-stats",
            # least privilege: the kinds of events it counts, nothing else
            "scopes": [
                "read:events:servers",
                "read:events:users",
                "read:events:projects",
                "read:events:collab",
                "read:events:collab_sessions",
            ],
            "services": ["hub-stats"],
        }
    ],
}


async def start_hub(event_store: store.EventStore, port: int = 0) -> web.AppRunner:
    config = hub_settings.Settings(**CONFIG)
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    runner = web.AppRunner(app.make_app(hub), access_log=None, shutdown_timeout=2)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def spawn(
    event_store: store.EventStore, user: str, user_id: UUID, outcome: str, server: str = ""
) -> None:
    """One spawn of ``user``'s server that ends ``ready`` or ``failed``."""
    stream = server_events.stream_id(user_id, server)
    base = {"user_id": user_id, "user": user, "server_name": server}
    await event_store.append(stream, [server_events.ServerSpawnRequested(**base)])
    await event_store.append(stream, [server_events.ServerStarted(**base, url="http://h:1/")])
    if outcome == "ready":
        await event_store.append(stream, [server_events.ServerReady(**base, url="http://h:1/")])
    else:
        await event_store.append(stream, [server_events.ServerFailed(**base, reason="boom")])


async def stop(event_store: store.EventStore, user: str, user_id: UUID) -> None:
    stream = server_events.stream_id(user_id)
    base = {"user_id": user_id, "user": user}
    await event_store.append(stream, [server_events.ServerStopRequested(**base)])
    await event_store.append(stream, [server_events.ServerStopped(**base)])


async def expected(pool: asyncpg.Pool[Any]) -> dict[str, Any]:
    """The figures worked out from the log with SQL and plain Python."""
    rows = await pool.fetch(
        "SELECT event_type, data->>'user' AS u, data->>'server_name' AS s, recorded_at"
        " FROM events WHERE event_type LIKE 'server.%' ORDER BY tx_id, global_position"
    )
    running: set[tuple[str, str]] = set()
    requested: dict[tuple[str, str], Any] = {}
    seconds: list[float] = []
    per_hour: dict[str, int] = {}
    for row in rows:
        key = (row["u"], row["s"])
        if row["event_type"] == "server.spawn_requested":
            requested[key] = row["recorded_at"]
            hour = row["recorded_at"].strftime("%Y-%m-%dT%H:00Z")
            per_hour[hour] = per_hour.get(hour, 0) + 1
        elif row["event_type"] == "server.ready":
            running.add(key)
            seconds.append((row["recorded_at"] - requested.pop(key)).total_seconds())
        elif row["event_type"] in ("server.stopped", "server.failed"):
            running.discard(key)
    return {
        "active_users_now": len({u for u, _ in running}),
        "running_servers": len(running),
        "spawns": sum(per_hour.values()),
        "spawn_failures": sum(r["event_type"] == "server.failed" for r in rows),
        "median_spawn_seconds": statistics.median(seconds),
        "events": len(rows),
    }


async def figures_when(url: str, events: int) -> dict[str, Any]:
    """The service's figures once it has counted ``events`` events (within 30 s)."""
    return await figures_until(url, lambda figures: figures["events"] >= events)


async def test_hub_stats_follows_the_stream_and_resumes_after_a_restart(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    runner = await start_hub(event_store)
    port = runner.addresses[0][1]
    service = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE),
        env={**os.environ, "JUPYTERHUB_API_URL": f"http://127.0.0.1:{port}/hub/api",
             "JUPYTERHUB_API_TOKEN": STATS_TOKEN,
             "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0",
             "JUPYTERHUB_SERVICE_PREFIX": "/services/hub-stats/"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert service.stdout is not None
    try:
        line = (await asyncio.wait_for(service.stdout.readline(), 30)).decode()
        assert line.startswith("hub-stats serving at "), line
        url = line.split(" at ", 1)[1].strip()

        ada, bob, cyd = uuid4(), uuid4(), uuid4()
        await spawn(event_store, "ada", ada, "ready")
        await spawn(event_store, "bob", bob, "failed")
        await spawn(event_store, "bob", bob, "ready")
        await spawn(event_store, "cyd", cyd, "ready", server="lab")
        want = await expected(pool)
        got = await figures_when(url, want["events"])
        assert {k: got[k] for k in want} == want
        assert url.endswith("/services/hub-stats/")
        assert got["active_users"] == 3  # ada, bob, cyd: counts only, never names
        assert (want["spawns"], want["spawn_failures"], want["running_servers"]) == (4, 1, 3)

        # The hub goes away; servers change meanwhile; it comes back on the same port.
        await runner.cleanup()
        await stop(event_store, "ada", ada)
        await spawn(event_store, "ada", ada, "failed")
        runner = await start_hub(event_store, port)
        await spawn(event_store, "dan", uuid4(), "ready")
        want = await expected(pool)
        got = await figures_when(url, want["events"])
        assert {k: got[k] for k in want} == want  # nothing lost, nothing counted twice
        assert got["active_users_now"] == 3  # bob, cyd, dan
        assert got["active_users"] == 4  # and ada, who spawned in the period
        assert (want["spawns"], want["spawn_failures"]) == (6, 2)

        async with aiohttp.ClientSession() as session:
            async with session.get(url, params={"period": "1h"}) as response:
                html = await response.text()
            assert response.status == 200
            assert "<svg" in html
            assert "<tr><th>spawn failures</th><td>2</td></tr>" in html
            assert "<b>1h</b>" in html  # the period chosen
            async with session.get(url + "stats.json", params={"period": "2w"}) as response:
                assert response.status == 400
                assert "period must be one of 1h, 6h, 24h, 7d, 30d" in await response.text()
    finally:
        service.terminate()
        _, err = await asyncio.wait_for(service.communicate(), 30)
        await runner.cleanup()
    assert service.returncode == 0, err.decode()
    assert b"reconnecting" in err


async def figures_until(url: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The service's figures once ``done`` holds for them (within 30 s)."""
    figures: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            nonlocal figures
            async with session.get(url + "stats.json") as response:
                assert response.status == 200, await response.text()
                figures = await response.json()
            return done(figures)

        await wait_for(ready, timeout_s=30, every_s=0.05)
    return figures


async def test_hub_stats_counts_people_who_log_in_and_out_through_the_hub(
    event_store: store.EventStore,
) -> None:
    """Real logins through the hub's login form (user.logged_in / user.logged_out)."""
    services = [*API_CONFIG["services"], *CONFIG["services"]]
    roles = [*API_CONFIG["roles"], *CONFIG["roles"]]
    async with running_hub(event_store, services=services, roles=roles) as (api, base):
        service = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE),
            env={**os.environ, "JUPYTERHUB_API_URL": f"{base}/hub/api",
                 "JUPYTERHUB_API_TOKEN": STATS_TOKEN,
                 "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:0"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert service.stdout is not None
        browser = Browser(base)
        try:
            line = (await asyncio.wait_for(service.stdout.readline(), 30)).decode()
            url = line.split(" at ", 1)[1].strip()
            await set_password(api, "eve")
            assert (await browser.login("eve")).status == 302
            got = await figures_until(url, lambda f: f["logged_in_users"] == 1)
            assert (got["active_users_now"], got["active_users"], got["logins"]) == (1, 1, 1)

            form = await browser.get("/hub/logout")
            out = await browser.post("/hub/logout", data={"_xsrf": form.hidden("_xsrf")})
            assert out.status in (200, 302), out.text
            got = await figures_until(url, lambda f: f["logged_in_users"] == 0)
            assert (got["active_users_now"], got["active_users"]) == (0, 1)  # eve, earlier
        finally:
            await browser.close()
            service.terminate()
            _, err = await asyncio.wait_for(service.communicate(), 30)
    assert service.returncode == 0, err.decode()


async def test_hub_stats_runs_as_a_managed_service_from_the_readmes_configuration(
    db_url: str, tmp_path: Path
) -> None:
    """The README's configuration, as written but for the interpreter and the example's path:
    ``chronohub serve`` starts hub-stats, routes /services/hub-stats/ to the port it picked,
    and the page (with its chart) and the figures answer through the hub's public address."""
    config = (
        "[[services]]\n"
        'name = "hub-stats"\n'
        'url = "http://127.0.0.1:0"\n'
        f"command = [{json.dumps(sys.executable)}, {json.dumps(str(EXAMPLE))}]\n"
        "\n"
        "[[roles]]\n"
        'name = "hub-stats"\n'
        f"scopes = {json.dumps(CONFIG['roles'][0]['scopes'])}\n"
        'services = ["hub-stats"]\n'
    )
    async with (
        chronohub_serve(db_url, tmp_path, config) as public,
        aiohttp.ClientSession() as session,
    ):
        base = public + "services/hub-stats/"

        async def answers() -> bool:
            try:
                async with session.get(base + "stats.json?period=1h") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await wait_for(answers, timeout_s=60, every_s=0.2)
        async with session.get(base + "?period=24h") as response:
            assert response.status == 200, await response.text()
            assert "<svg" in await response.text()
        async with session.get(base + "stats.json?period=7d") as response:
            assert response.status == 200
            assert (await response.json())["period"] == "7d"
        async with session.get(base + "?period=forever") as response:
            assert response.status == 400
            assert "period must be one of" in await response.text()
