"""No hub process stops or fails another live process's work (issue 20): several ``chronohub
serve`` processes share one database, each registered with a lease (hub/servers/hub_processes.py).
A process started while another is mid-spawn leaves that spawn alone (it ends ready); stopping
one of two processes leaves users' servers running and reachable through the other (the last
one stops them, cleanup_servers); a killed process's half-done spawn is taken up by another once
its lease expires, and one that only stalled past its lease records nothing more of the spawn
taken over (its steps are fenced by its claim); the collab sessions list shows every process's
sessions."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from hub import processes
from hub.servers import watch_others
from tests.helpers import wait_for
from tests.integration.nginx_hubs import OPERATOR, TOML, UPSTREAM, StartHubs
from tests.integration.serve_process import Served, serving

pytestmark = [pytest.mark.integration, pytest.mark.interop]

LEASE_S = 1.5


def config(tmp_path: Path, *, delay: float, start_timeout: float) -> Path:
    """The processes' shared settings: servers that take ``delay`` seconds to listen."""
    path = tmp_path / "chronohub.toml"
    path.write_text(
        f"process_lease_s = {LEASE_S}\n"
        + TOML.replace("start_timeout = 20\n", f"start_timeout = {start_timeout}\n").replace(
            "single_user_mode = true\n",
            f'single_user_mode = true\nspawner_env = {{FAKE_DELAY = "{delay}"}}\n',
        )
    )
    return path


async def call(served: Served, method: str, path: str) -> tuple[int, Any]:
    """``/hub/api<path>`` of one process, as the operator service."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, served.url + "hub/api" + path, headers={"Authorization": f"token {OPERATOR}"}
        ) as response,
    ):
        text = await response.text()
        return response.status, json.loads(text) if text and text[0] in "{[" else text


async def server_row(db_url: str, user: str) -> dict[str, Any]:
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT state, pid, reason FROM servers WHERE user_name = $1 AND server_name = ''",
            user,
        )
    finally:
        await conn.close()
    return dict(row) if row else {}


async def event_types(db_url: str, user: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT e.event_type FROM events e JOIN servers s"
            " ON e.stream_id = 'server-' || s.user_id || '/' || s.server_name"
            " WHERE s.user_name = $1 AND s.server_name = '' ORDER BY e.stream_version",
            user,
        )
    finally:
        await conn.close()
    return [r["event_type"] for r in rows]


@contextlib.asynccontextmanager
async def hub(db_url: str, tmp_path: Path, name: str) -> AsyncIterator[Served]:
    async with serving(
        db_url, tmp_path, tmp_path / "chronohub.toml", tmp_path / "data", name=name
    ) as served:
        yield served


async def test_a_process_started_mid_spawn_leaves_that_spawn_to_its_process(
    db_url: str, tmp_path: Path
) -> None:
    config(tmp_path, delay=8, start_timeout=60)
    async with hub(db_url, tmp_path, "hub0") as first:
        assert (await call(first, "POST", "/users/alice"))[0] in (201, 409)
        status, body = await call(first, "POST", "/users/alice/server")
        assert status == 202, body
        assert (await server_row(db_url, "alice"))["state"] in ("spawning", "started")
        # A second process starts (and re-adopts) while the first still waits for the server.
        async with hub(db_url, tmp_path, "hub1") as second:
            assert (await server_row(db_url, "alice"))["state"] in ("spawning", "started")

            async def ready() -> bool:
                return (await server_row(db_url, "alice"))["state"] == "ready"

            await wait_for(ready, timeout_s=60, every_s=0.2)
            types = await event_types(db_url, "alice")
            assert "server.failed" not in types  # neither failed by the second process
            assert types.count("server.ready") == 1, types  # nor re-adopted by it
            pid = (await server_row(db_url, "alice"))["pid"]
            assert processes.exists(pid)
            status, _ = await call(second, "DELETE", "/users/alice/server")
            assert status in (202, 204)
        assert "re-adopted" not in (tmp_path / "hub1.log").read_text()


async def test_stopping_one_of_two_processes_leaves_users_servers_to_the_other(
    nginx_hubs: StartHubs, db_url: str
) -> None:
    hubs = await nginx_hubs(2, f"process_lease_s = {LEASE_S}\n")  # cleanup_servers is on
    spawned = await hubs.call("POST", "/users/alice/server")
    assert spawned.status == 202, spawned

    async def ready() -> bool:
        return (await server_row(db_url, "alice"))["state"] == "ready"

    await wait_for(ready, timeout_s=60, every_s=0.1)
    pid = (await server_row(db_url, "alice"))["pid"]
    (starter,) = [p for p in hubs.processes if hubs.upstream_of(p) == spawned.upstream]
    (other,) = [p for p in hubs.processes if p is not starter]

    async def routed_by_other() -> bool:
        # the other process routes a server another spawned once the log wakes its route
        # follower (~0.1 s after server.ready); a starter that stops sooner would race it
        url = f"http://{hubs.upstream_of(other)}/user/alice/api"
        async with hubs.session.get(url, allow_redirects=False) as response:
            return response.status == 200

    await wait_for(routed_by_other, timeout_s=10, every_s=0.05)
    starter.process.send_signal(signal.SIGTERM)
    assert await starter.process.wait() == 0
    assert "other hub process(es) live" in starter.log.read_text()
    assert processes.exists(pid)
    assert (await server_row(db_url, "alice"))["state"] == "ready"
    for _ in range(2):  # whichever way nginx turns, the process left answers
        async with hubs.session.get(hubs.url("/user/alice/api"), allow_redirects=False) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"version": "fake"}
            # (nginx may try the stopped one first: the last address is the one that answered)
            assert r.headers[UPSTREAM].split(", ")[-1] == hubs.upstream_of(other)
    # The last process to stop does stop them (cleanup_servers), those started elsewhere too.
    other.process.send_signal(signal.SIGTERM)
    assert await other.process.wait() == 0
    assert not processes.exists(pid)
    assert (await server_row(db_url, "alice"))["state"] == "stopped"


async def test_a_killed_processs_half_done_spawn_is_taken_up_once_its_lease_expires(
    db_url: str, tmp_path: Path
) -> None:
    # Servers that never listen in time: the spawn a dead process left fails, its process
    # stopped, once another process has taken it up.
    config(tmp_path, delay=120, start_timeout=6)
    async with hub(db_url, tmp_path, "hub1") as survivor:
        async with hub(db_url, tmp_path, "hub0") as doomed:
            assert (await call(doomed, "POST", "/users/alice"))[0] in (201, 409)
            status, body = await call(doomed, "POST", "/users/alice/server")
            assert status == 202, body

            async def started() -> bool:
                return (await server_row(db_url, "alice"))["state"] == "started"

            await wait_for(started, timeout_s=30, every_s=0.1)
            pid = (await server_row(db_url, "alice"))["pid"]
            doomed.kill()
            await doomed.process.wait()
        assert processes.exists(pid)

        async def failed() -> bool:
            return (await server_row(db_url, "alice"))["state"] == "failed"

        await wait_for(failed, timeout_s=LEASE_S + watch_others.CHECK_S + 6 + 15, every_s=0.2)
        assert "after the hub restarted" in (await server_row(db_url, "alice"))["reason"]
        await wait_for(lambda: not processes.exists(pid), timeout_s=10)
        assert "taking up alice/" in survivor.log.read_text()
        assert (await event_types(db_url, "alice")).count("server.failed") == 1
        # and alice can start again, through the process left
        status, _ = await call(survivor, "POST", "/users/alice/server")
        assert status == 202
        status, _ = await call(survivor, "DELETE", "/users/alice/server")
        assert status in (202, 204)


@contextlib.asynccontextmanager
async def stalled_mid_spawn(
    db_url: str, tmp_path: Path, survivor: Served
) -> AsyncIterator[tuple[Served, int]]:
    """A second process spawns alice's server and stalls (SIGSTOP) once it is recorded
    started; it runs again (SIGCONT) when the block ends. Yields it and the server's pid."""
    async with hub(db_url, tmp_path, "hub0") as stalled:
        assert (await call(stalled, "POST", "/users/alice"))[0] in (201, 409)
        status, body = await call(stalled, "POST", "/users/alice/server")
        assert status == 202, body

        async def started() -> bool:
            return (await server_row(db_url, "alice"))["state"] == "started"

        await wait_for(started, timeout_s=30, every_s=0.1)
        stalled.process.send_signal(signal.SIGSTOP)
        try:
            yield stalled, (await server_row(db_url, "alice"))["pid"]
        finally:
            stalled.process.send_signal(signal.SIGCONT)
        # Awake, it finds its spawn taken over, says so, and records nothing more.
        await wait_for(
            lambda: "took over the spawn or stop of alice/" in stalled.log.read_text(),
            timeout_s=30,
        )
        assert "taking up alice/" in survivor.log.read_text()


async def test_a_stalled_processs_spawn_adopted_by_another_gets_no_second_ready(
    db_url: str, tmp_path: Path
) -> None:
    # The server listens 8 s after its start: the process that took the spawn over adopts it.
    config(tmp_path, delay=8, start_timeout=60)
    async with hub(db_url, tmp_path, "hub1") as survivor:
        async with stalled_mid_spawn(db_url, tmp_path, survivor) as (_, pid):

            async def ready() -> bool:
                return (await server_row(db_url, "alice"))["state"] == "ready"

            await wait_for(ready, timeout_s=LEASE_S + watch_others.CHECK_S + 8 + 15, every_s=0.2)
        types = await event_types(db_url, "alice")
        assert types.count("server.ready") == 1, types
        assert types.count("server.started") == 1, types
        assert "server.failed" not in types, types
        # the stalled process left the server it started to the one that adopted it
        assert processes.exists(pid)
        assert (await server_row(db_url, "alice"))["state"] == "ready"
        status, _ = await call(survivor, "DELETE", "/users/alice/server")
        assert status in (202, 204)


async def test_a_stalled_processs_spawn_failed_by_another_gets_no_second_failure(
    db_url: str, tmp_path: Path
) -> None:
    # Servers that never listen in time: the process that took the spawn over fails it; the
    # stalled one, awake past its own deadline, must not record a failure of its own.
    config(tmp_path, delay=120, start_timeout=6)
    async with hub(db_url, tmp_path, "hub1") as survivor:
        async with stalled_mid_spawn(db_url, tmp_path, survivor) as (_, pid):

            async def failed() -> bool:
                return (await server_row(db_url, "alice"))["state"] == "failed"

            await wait_for(failed, timeout_s=LEASE_S + watch_others.CHECK_S + 6 + 15, every_s=0.2)
        types = await event_types(db_url, "alice")
        assert types.count("server.failed") == 1, types
        assert types[-1] == "server.failed", types
        await wait_for(lambda: not processes.exists(pid), timeout_s=10)
        status, _ = await call(survivor, "POST", "/users/alice/server")
        assert status == 202
        status, _ = await call(survivor, "DELETE", "/users/alice/server")
        assert status in (202, 204)


@pytest.mark.collab
async def test_the_sessions_list_shows_every_processs_sessions(nginx_hubs: StartHubs) -> None:
    hubs = await nginx_hubs(2)
    alice = (await hubs.call("POST", "/users/alice/tokens", json={})).body["token"]
    made = await hubs.call("POST", "/collab/sessions", alice, json={})
    assert made.status == 201, made
    listed = [await hubs.call("GET", "/collab/sessions", alice) for _ in range(2)]
    assert {answer.upstream for answer in listed} == {hubs.upstream_of(p) for p in hubs.processes}
    for answer in listed:  # the owner's own, and the other's through the owner
        assert answer.status == 200, answer
        assert [s["id"] for s in answer.body["sessions"]] == [made.body["id"]]
        assert answer.body["sessions"][0]["state"] in ("new", "running")
    # one who may not read alice's room sees it listed by neither (each owner filters)
    carol = await hubs.call("POST", "/users/carol")
    assert carol.status in (201, 409), carol
    token = (await hubs.call("POST", "/users/carol/tokens", json={})).body["token"]
    for _ in range(2):
        answer = await hubs.call("GET", "/collab/sessions", token)
        assert answer.status == 200, answer
        assert answer.body["sessions"] == []
    ended = await hubs.call("DELETE", f"/collab/sessions/{made.body['id']}", alice)
    assert ended.status == 204, ended
    for _ in range(2):
        assert (await hubs.call("GET", "/collab/sessions", alice)).body["sessions"] == []


async def test_a_restart_on_the_same_machine_takes_up_the_killed_processs_spawn_at_once(
    db_url: str, tmp_path: Path
) -> None:
    config(tmp_path, delay=4, start_timeout=30)
    # A lease far longer than the test: the process's restart knows its pid is gone.
    path = tmp_path / "chronohub.toml"
    path.write_text(
        path.read_text().replace(f"process_lease_s = {LEASE_S}", "process_lease_s = 600")
    )
    async with hub(db_url, tmp_path, "hub0") as doomed:
        assert (await call(doomed, "POST", "/users/alice"))[0] in (201, 409)
        status, body = await call(doomed, "POST", "/users/alice/server")
        assert status == 202, body

        async def started() -> bool:
            return (await server_row(db_url, "alice"))["state"] == "started"

        await wait_for(started, timeout_s=30, every_s=0.1)
        doomed.kill()
        await doomed.process.wait()
    async with hub(db_url, tmp_path, "hub0-again") as again:

        async def ready() -> bool:
            return (await server_row(db_url, "alice"))["state"] == "ready"

        await wait_for(ready, timeout_s=40, every_s=0.2)  # its spawn completed, adopted
        assert "re-adopted alice/" in again.log.read_text()
        status, _ = await call(again, "DELETE", "/users/alice/server")
        assert status in (202, 204)
