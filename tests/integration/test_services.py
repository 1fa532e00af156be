"""Managed services: the supervisor on the test database, with real processes (the fake server
of the spawner tests, in its faulty modes), each fault beside a healthy service that must not
notice: exits at once, crash-loops, never answers, ignores SIGTERM, finds its port taken."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events import store
from hub import bootstrap, processes, startup
from hub import settings as hub_settings
from hub.auth import tokens
from hub.services import environment
from hub.services import supervisor as services
from tests.helpers import service_toml, wait_for
from tests.integration.serve_process import chronohub_serve

pytestmark = pytest.mark.integration

FAKE_SERVER = Path(__file__).resolve().parent.parent / "spawners" / "fake_server.py"
API_URL = "http://127.0.0.1:9/hub/api"  # nothing listens: these services never call the hub
FAST = {
    "service_restart_first_s": 0.05,
    "service_restart_max_s": 1.0,
    "service_stable_s": 30.0,
    "service_crash_loop_deaths": 3,
    "service_crash_loop_window_s": 60.0,
    "service_stop_grace_s": 2.0,
}


def fake(mode: str, name: str, **fields: Any) -> dict[str, Any]:
    """A managed service running the fake server in ``mode`` on a port the hub picks."""
    return {
        "name": name,
        "command": [sys.executable, str(FAKE_SERVER), mode],
        "url": "http://127.0.0.1:0",
        "timeout": 10,
        **fields,
    }


HEALTHY = fake("serve", "healthy")


@contextlib.asynccontextmanager
async def supervising(
    event_store: store.EventStore,
    tmp_path: Path,
    entries: list[dict[str, Any]],
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[services.Supervisor]:
    config = hub_settings.Settings(
        database_url="postgresql://unused",
        data_dir=tmp_path / "data",
        services=entries,
        **{**FAST, **settings},
    )
    await bootstrap.reconcile(event_store, config)
    supervisor = services.Supervisor(
        event_store, config, environment.Addresses(api_url=API_URL), environ=environ
    )
    async with supervisor:
        yield supervisor


async def service_events(event_store: store.EventStore, name: str) -> list[tuple[str, Any]]:
    """The service's lifecycle events: (type, data), in order."""
    async with event_store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_type, data FROM events WHERE stream_id = $1"
            " AND event_type <> 'service.registered' ORDER BY global_position",
            f"service-{name}",
        )
    return [(row["event_type"], json.loads(row["data"])) for row in rows]


async def types(event_store: store.EventStore, name: str) -> list[str]:
    return [kind for kind, _ in await service_events(event_store, name)]


async def running(supervisor: services.Supervisor, name: str) -> bool:
    return supervisor.services[name].state == "running"


def log_of(supervisor: services.Supervisor, name: str) -> str:
    return services.log_path(supervisor.config.data_dir, name).read_text()


async def test_a_managed_service_starts_with_jupyterhubs_environment_and_nothing_secret(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    """The fake server dumps its environment (env.json in its working directory)."""
    hub_environ = {
        **os.environ,
        "CHRONOHUB_DATABASE_URL": "postgresql://hub:db-secret@db/hub",
        "CHRONOHUB_COOKIE_SECRET": "cookie-secret-value",
        "DATABASE_URL": "postgresql://hub:db-secret@db/hub",
        "PGPASSWORD": "db-secret",
        "LC_TIME": "C",
        "TZ": "UTC",
    }
    entry = fake("serve", "dumper", environment={"EXTRA": "yes"}, info={"name": "Dumper"})
    async with supervising(event_store, tmp_path, [entry], environ=hub_environ) as supervisor:
        await wait_for(lambda: running(supervisor, "dumper"), timeout_s=20)
        service = supervisor.services["dumper"]
        assert service.url is not None
        cwd = supervisor.config.data_dir / "services" / "dumper"
        env = json.loads((cwd / "env.json").read_text())
        # reached through its prefix at the port the hub picked
        async with (
            aiohttp.ClientSession() as session,
            session.get(service.url + "/services/dumper/api") as response,
        ):
            assert response.status == 200
        pid = service.pid
        assert pid > 0
        async with event_store.pool.acquire() as conn:
            token_row = await conn.fetchrow(
                "SELECT t.service, t.token_id FROM token_secrets k JOIN tokens t USING (token_id)"
                " WHERE k.hash = $1",
                tokens.digest(env["JUPYTERHUB_API_TOKEN"]),
            )
            moved = await conn.fetchval("SELECT url FROM services WHERE name = 'dumper'")
    assert token_row is not None
    assert token_row["service"] == "dumper"
    assert moved == service.url  # the routes follow the port it was given

    assert env["JUPYTERHUB_SERVICE_NAME"] == "dumper"
    assert env["JUPYTERHUB_API_URL"] == API_URL
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/services/dumper/"
    assert env["JUPYTERHUB_SERVICE_URL"] == service.url
    assert env["JUPYTERHUB_CLIENT_ID"] == "service-dumper"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == "/services/dumper/oauth_callback"
    assert json.loads(env["JUPYTERHUB_OAUTH_ACCESS_SCOPES"]) == ["access:services!service=dumper"]
    assert env["EXTRA"] == "yes"
    assert env["LC_TIME"] == "C"
    assert env["TZ"] == "UTC"
    assert env["PATH"] == os.environ["PATH"]
    leaked = [k for k in env if k.startswith(("CHRONOHUB_", "PG")) or k == "DATABASE_URL"]
    assert leaked == []
    assert not any("db-secret" in v or "cookie-secret-value" in v for v in env.values())

    # Its lifecycle, with no secret in any event; stopped with the supervisor, token revoked.
    events = await service_events(event_store, "dumper")
    assert [kind for kind, _ in events] == ["service.started", "service.ready", "service.stopped"]
    started = events[0][1]
    assert started["pid"] == pid
    assert started["url"] == service.url
    assert started["token_id"] == token_row["token_id"]
    async with event_store.pool.acquire() as conn:
        logged = await conn.fetchval("SELECT string_agg(data::text, ' ') FROM events")
        live = await conn.fetchval(
            "SELECT count(*) FROM tokens WHERE token_id = $1", token_row["token_id"]
        )
    assert env["JUPYTERHUB_API_TOKEN"] not in logged
    assert live == 0
    assert not processes.exists(pid)


async def test_each_start_gets_a_new_token_and_the_last_is_revoked(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    """A service that dies after 0.3 s is started again: with a new token, the old one gone."""
    entry = fake("die", "dying", environment={"FAKE_DELAY": "0.3"})
    async with supervising(event_store, tmp_path, [entry]) as supervisor:

        async def started_twice() -> bool:
            return (await types(event_store, "dying")).count("service.started") >= 2

        await wait_for(started_twice, timeout_s=20)
        events = await service_events(event_store, "dying")
        first, second = [data["token_id"] for kind, data in events if kind == "service.started"][:2]
        assert first != second
        async with event_store.pool.acquire() as conn:
            revoked = await conn.fetchval(
                "SELECT count(*) FROM events WHERE event_type = 'token.revoked'"
                " AND data->>'token_id' = $1",
                first,
            )
        assert revoked == 1
        assert supervisor.services["dying"].restarts >= 1


async def test_a_service_that_exits_at_once_is_restarted_with_backoff_and_named_failed(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    entries = [HEALTHY, fake("exit", "quitter")]
    async with supervising(event_store, tmp_path, entries) as supervisor:
        await wait_for(lambda: running(supervisor, "healthy"), timeout_s=20)
        healthy_pid = supervisor.services["healthy"].pid
        quitter = supervisor.services["quitter"]
        await wait_for(lambda: quitter.state == "failed", timeout_s=20)
        assert quitter.last_exit == 3
        assert quitter.pid == 0
        assert "crash loop" in (quitter.last_error or "")
        assert "exited with code 3 before it answered" in (quitter.last_error or "")
        # the healthy one never noticed
        assert supervisor.services["healthy"].state == "running"
        assert supervisor.services["healthy"].pid == healthy_pid
        log = log_of(supervisor, "quitter")
        assert "fake server: giving up at once" in log  # its own output
        assert "restarting in 0.05 s" in log  # and what the hub did
        assert "failed: crash loop" in log
    events = await service_events(event_store, "quitter")
    assert [kind for kind, _ in events] == [
        "service.started",
        "service.exited",
        "service.restarting",
        "service.started",
        "service.exited",
        "service.restarting",
        "service.started",
        "service.exited",
        "service.failed",
    ]
    assert {data["exit_status"] for kind, data in events if kind == "service.exited"} == {3}
    # the backoff, visible: each wait twice the last
    delays = [data["delay_s"] for kind, data in events if kind == "service.restarting"]
    assert delays == [0.05, 0.1]
    assert await types(event_store, "healthy") == [
        "service.started",
        "service.ready",
        "service.stopped",
    ]


async def test_a_crash_loop_after_answering_marks_the_service_failed_and_stops_restarting(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    """It answers, then dies with code 7 each time: three deaths in the window, then no more."""
    entries = [HEALTHY, fake("die", "crasher", environment={"FAKE_DELAY": "1.5"})]
    async with supervising(event_store, tmp_path, entries) as supervisor:
        crasher = supervisor.services["crasher"]
        await wait_for(lambda: running(supervisor, "healthy"), timeout_s=20)
        await wait_for(lambda: crasher.state == "failed", timeout_s=30)
        assert crasher.last_exit == 7
        assert crasher.restarts == 2
        kinds = await types(event_store, "crasher")
        assert kinds.count("service.ready") == 3
        assert kinds[-1] == "service.failed"
        # no restart after failed: the log does not move on
        failed_at = len(kinds)
        await asyncio.sleep(0.5)  # longer than any wait of the backoff here
        assert len(await types(event_store, "crasher")) == failed_at
        assert supervisor.services["healthy"].state == "running"
    events = await service_events(event_store, "crasher")
    reason = next(data["reason"] for kind, data in events if kind == "service.failed")
    assert "died 3 times within 60 s" in reason
    assert "exited with code 7" in reason


async def test_a_service_that_never_answers_is_stopped_at_its_timeout_and_counted_as_dead(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    entries = [HEALTHY, fake("hang", "mute", timeout=0.5)]
    async with supervising(
        event_store, tmp_path, entries, service_crash_loop_deaths=2
    ) as supervisor:
        mute = supervisor.services["mute"]
        await wait_for(lambda: running(supervisor, "healthy"), timeout_s=20)
        await wait_for(lambda: mute.state == "failed", timeout_s=20)
        assert "did not answer at http://127.0.0.1:" in (mute.last_error or "")
        assert "within 0.5 s" in (mute.last_error or "")
        assert supervisor.services["healthy"].state == "running"
    events = await service_events(event_store, "mute")
    exits = [data for kind, data in events if kind == "service.exited"]
    assert len(exits) == 2
    assert all("did not answer" in data["reason"] for data in exits)
    assert all(data["exit_status"] is not None for data in exits)  # it was stopped
    assert "service.ready" not in [kind for kind, _ in events]


async def test_a_service_that_ignores_sigterm_is_killed_after_the_grace_period(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    entries = [HEALTHY, fake("ignore-term", "stubborn")]
    async with supervising(event_store, tmp_path, entries, service_stop_grace_s=0.5) as supervisor:
        await wait_for(lambda: running(supervisor, "stubborn"), timeout_s=20)
        await wait_for(lambda: running(supervisor, "healthy"), timeout_s=20)
        pids = {name: s.pid for name, s in supervisor.services.items()}
        closing = loop.time()
    took = loop.time() - closing
    assert took < 5  # the grace period, not forever
    assert not any(processes.exists(pid) for pid in pids.values())
    stopped = {
        name: [
            data
            for kind, data in await service_events(event_store, name)
            if kind == "service.stopped"
        ]
        for name in pids
    }
    assert stopped["stubborn"] == [{"name": "stubborn", "forced": True}]
    assert stopped["healthy"] == [{"name": "healthy", "forced": False}]


async def test_a_service_whose_port_is_taken_is_not_started_and_says_so(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        entries = [HEALTHY, fake("serve", "squatted", url=f"http://127.0.0.1:{port}")]
        async with supervising(
            event_store, tmp_path, entries, service_crash_loop_deaths=2
        ) as supervisor:
            squatted = supervisor.services["squatted"]
            await wait_for(lambda: running(supervisor, "healthy"), timeout_s=20)
            await wait_for(lambda: squatted.state == "failed", timeout_s=20)
            assert f"port {port} on 127.0.0.1 is taken by another process" in (
                squatted.last_error or ""
            )
            assert supervisor.services["healthy"].state == "running"
            log = log_of(supervisor, "squatted")
            assert f"port {port} on 127.0.0.1 is taken by another process" in log
    kinds = await types(event_store, "squatted")
    assert "service.started" not in kinds  # nothing was run to fail at binding
    assert kinds == ["service.restarting", "service.failed"]


async def test_a_command_that_does_not_exist_is_named(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    entry = {"name": "ghost", "command": [str(tmp_path / "no-such-program")]}
    async with supervising(
        event_store, tmp_path, [entry], service_crash_loop_deaths=1
    ) as supervisor:
        ghost = supervisor.services["ghost"]
        await wait_for(lambda: ghost.state == "failed", timeout_s=10)
        assert "does not exist" in (ghost.last_error or "")
        assert str(tmp_path / "no-such-program") in (ghost.last_error or "")


async def test_a_working_directory_that_does_not_exist_is_named(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    entry = fake("serve", "lost", cwd=str(tmp_path / "nowhere"))
    async with supervising(
        event_store, tmp_path, [entry], service_crash_loop_deaths=1
    ) as supervisor:
        lost = supervisor.services["lost"]
        await wait_for(lambda: lost.state == "failed", timeout_s=10)
        assert f"its working directory {tmp_path / 'nowhere'} is not a directory" in (
            lost.last_error or ""
        )


async def test_the_hub_picks_a_free_port_at_each_start(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    async with supervising(event_store, tmp_path, [HEALTHY]) as supervisor:
        await wait_for(lambda: running(supervisor, "healthy"), timeout_s=20)
        url = supervisor.services["healthy"].url
    assert url is not None
    port = int(url.rsplit(":", 1)[1])
    assert port > 0
    startup.check_free("127.0.0.1", port, "hub")  # released when it stopped


SETUP_TOKEN = "services-setup-secret-0123456789abcdef"


async def test_chronohub_serve_runs_its_services_and_outlives_the_faulty_ones(
    db_url: str, tmp_path: Path
) -> None:
    """A real hub: a service reached through the proxy at /services/<name>/, one that exits
    at once (failed, the hub unharmed), one that ignores SIGTERM (killed at shutdown, which
    ends in bounded time)."""
    entries = [
        fake("serve", "web"),
        fake("exit", "broken"),
        fake("ignore-term", "stubborn"),
    ]
    config = (
        "service_restart_first_s = 0.05\nservice_crash_loop_deaths = 2\n"
        "service_stop_grace_s = 1.0\n"
        + service_toml(SETUP_TOKEN, ["read:services", "read:hub"], name="setup")
        + "".join(
            f"\n[[services]]\nname = {json.dumps(e['name'])}\n"
            f"command = {json.dumps(e['command'])}\nurl = {json.dumps(e['url'])}\n"
            for e in entries
        )
    )
    headers = {"Authorization": f"token {SETUP_TOKEN}"}
    loop = asyncio.get_running_loop()
    async with chronohub_serve(db_url, tmp_path, config) as public:
        async with aiohttp.ClientSession(headers=headers) as session:

            async def model(name: str) -> dict[str, Any]:
                async with session.get(f"{public}hub/api/services/{name}") as response:
                    assert response.status == 200, await response.text()
                    reply: dict[str, Any] = await response.json()
                    return reply

            async def state_is(name: str, state: str) -> bool:
                return (await model(name))["state"] == state

            await wait_for(lambda: state_is("web", "running"), timeout_s=30, every_s=0.1)
            await wait_for(lambda: state_is("broken", "failed"), timeout_s=30, every_s=0.1)
            await wait_for(lambda: state_is("stubborn", "running"), timeout_s=30, every_s=0.1)
            broken = await model("broken")
            assert "crash loop" in broken["last_error"]
            assert broken["last_exit"] == 3
            # through the proxy, at the port the hub picked
            async with session.get(f"{public}services/web/api") as response:
                assert response.status == 200
                assert await response.json() == {"version": "fake"}
            async with session.get(f"{public}hub/api/info") as response:
                assert response.status == 200  # the hub is unharmed
            pids = [(await model(name))["pid"] for name in ("web", "stubborn")]
            assert all(pid > 0 for pid in pids)
        stopping = loop.time()  # leaving the block stops the hub (SIGTERM), and waits
    took = loop.time() - stopping
    log = (tmp_path / "hub.log").read_text()  # chronohub_serve checked its exit status
    assert took < 15, log  # the grace period of the stubborn one, not forever
    assert not any(processes.exists(pid) for pid in pids)
    assert "service broken failed: crash loop" in log
    assert "service stubborn stopped (SIGKILL)" in log
