"""The real jupyterhub-idle-culler 2.0.0 against ``chronohub serve``.

The culler runs as its own process (its imports would trip ``filterwarnings = error`` here),
with ``--api-page-size=5`` so that its user lists take several pages, and ``--cull-every=600``
so that exactly one cycle runs (the first starts at once) while its log is watched. The last
test has the hub itself run the culler, from ``examples/cull-idle/chronohub.toml``.

What one cycle of the culler does (``jupyterhub_idle_culler.cull_idle``), since chronohub
reports JupyterHub 6.x (>= 1.3.0, so the ``state`` filter is used):

* ``GET /hub/api/``;
* with ``--cull-users=True`` only: ``GET /users?state=inactive&limit=5``, following
  ``_pagination.next.url`` page after page; every user listed there is a cull candidate;
* ``GET /users?limit=5&state=ready``: where no server runs, this is one empty page,
  and without ``--cull-users`` that is the whole cycle: there is nothing to paginate or cull;
* per server of a user listed as ready: inactive = now - the server's last_activity (or
  ``started``), stopped by ``DELETE /users/{name}/server`` when inactive >= ``--timeout``;
* per candidate user, after all pages are fetched: inactive = now - last_activity (or
  now - created when there was no activity), culled by ``DELETE /users/{name}`` when
  inactive >= ``--timeout`` (admins only if ``--cull-admin-users``; ``--max-age`` unset).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from tests.helpers import hub_process_env, service_toml, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.interop]

SETUP_TOKEN = "setup-secret-0123456789abcdef0123"
CULLER_TOKEN = "idle-culler-secret-0123456789abcdef"
USER_CULLER_TOKEN = "idle-culler-users-secret-0123456789ab"
PAGE_SIZE = 5
USERS = [f"u{i:02d}" for i in range(25)]
PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}

FAKE_SERVER = Path(__file__).resolve().parent.parent / "spawners" / "fake_server.py"

FAKE_SERVER_CMD = [sys.executable, str(FAKE_SERVER), "serve"]

CONFIG = f"""
admin_users = ["admin"]
spawner_cmd = {json.dumps(FAKE_SERVER_CMD)}
{service_toml(SETUP_TOKEN, ["admin:users", "admin:servers"], name="setup")}
[[services]]
name = "idle-culler"
api_token = "{CULLER_TOKEN}"

[[services]]
name = "idle-culler-users"
api_token = "{USER_CULLER_TOKEN}"

# What the culler needs to cull servers (its README).
[[roles]]
name = "idle-culler-role"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["idle-culler"]

# With --cull-users, the README's admin:users: delete:users would do to delete (list:users
# already shows `admin`), but without read:users the culler does not see `created`, so a user
# who never reported activity would have no age and could never be culled.
[[roles]]
name = "idle-culler-users-role"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:users"]
services = ["idle-culler-users"]
"""

SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:\d+/hub/)")
# The culler's log lines: "[I 2025-01-01 12:00:00.000 IdleCuller __init__:123] message".
LOG_RECORD = re.compile(r"^\[([DIWEC]) [^\]]*\] (.*)$")
DECISION = re.compile(r"(?:Not culling user|Finished culling|Error processing) (\S+)")


@dataclass
class Hub:
    url: str  # http://127.0.0.1:PORT/hub/
    db_url: str
    session: aiohttp.ClientSession
    started: datetime

    @property
    def api(self) -> str:
        return self.url + "api"

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"token {SETUP_TOKEN}", **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.api + path, headers=headers, **kwargs
        ) as response:
            text = await response.text()
            return response.status, (await response.json(content_type=None)) if text else None

    async def user_names(self) -> list[str]:
        status, users = await self.call("GET", "/users", params={"limit": "200"})
        assert status == 200, users
        return [user["name"] for user in users]


async def _stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if proc.returncode is None:
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def serving(db_url: str, tmp_path: Path, config_text: str) -> AsyncIterator[Hub]:
    """``chronohub serve`` with ``config_text`` on the test database and 127.0.0.1, with users
    u00..u24; stopped (SIGTERM) at the end, and it must exit cleanly."""
    config = tmp_path / "chronohub.toml"
    config.write_text(config_text)
    env = hub_process_env(db_url, config, tmp_path / "state")
    started = datetime.now(UTC)
    with open(tmp_path / "hub.log", "wb") as hub_log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "serve",
            "--ip",
            "127.0.0.1",
            "--port",
            "0",
            "--hub-port",
            "0",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=hub_log,
        )
        try:
            assert proc.stdout is not None
            first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            match = SERVING.match(first)
            assert match, first + (tmp_path / "hub.log").read_text()
            async with aiohttp.ClientSession() as session:
                running = Hub(match[1], db_url, session, started)
                status, created = await running.call("POST", "/users", json={"usernames": USERS})
                assert status == 201, created
                yield running
        finally:
            await _stop(proc)
    assert proc.returncode == 0, (tmp_path / "hub.log").read_text()


@pytest.fixture
async def hub(db_url: str, tmp_path: Path) -> AsyncIterator[Hub]:
    """``chronohub serve`` with ``CONFIG``: the culler is run by each test."""
    async with serving(db_url, tmp_path, CONFIG) as running:
        yield running


async def run_culler(
    hub: Hub, token: str, *options: str, done: Callable[[str], bool], cwd: Path
) -> str:
    """Run the culler until its log shows ``done`` (one cycle), a traceback, or 30 s pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["JUPYTERHUB_API_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--url={hub.api}",
        f"--api-page-size={PAGE_SIZE}",
        "--cull-every=600",
        "--timeout=3600",
        "--concurrency=5",
        "--IdleCuller.log_level=DEBUG",
        *options,
        env=env,
        cwd=cwd,  # no idle_culler_config.py there
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def watch() -> None:
        assert proc.stdout is not None
        while not (done(text := "".join(lines)) or "Traceback" in text):
            line = await proc.stdout.readline()
            if not line:  # the culler exited
                return
            lines.append(line.decode())

    try:
        await asyncio.wait_for(watch(), 30)
    except TimeoutError:
        pass
    finally:
        await _stop(proc)
    output = "".join(lines)
    assert done(output), f"the culler did not finish a cycle:\n{output}"
    return output


def assert_clean(output: str) -> list[tuple[str, str]]:
    """No traceback, error or unexpected warning in the culler's log; returns its records."""
    assert "Traceback" not in output, output
    records = [(m[1], m[2]) for line in output.splitlines() if (m := LOG_RECORD.match(line))]
    assert records, output
    problems = [
        (level, message)
        for level, message in records
        if level in "EC" or (level == "W" and "pycurl" not in message)
    ]
    assert not problems, output
    return records


async def events(db_url: str, event_type: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(
            "SELECT data->>'name' AS name, actor FROM events"
            " WHERE event_type = $1 ORDER BY global_position",
            event_type,
        )
    finally:
        await conn.close()


async def service_token_activity(db_url: str, service: str) -> datetime | None:
    conn = await asyncpg.connect(db_url)
    try:
        value: datetime | None = await conn.fetchval(
            "SELECT a.last_activity FROM tokens t JOIN token_activity a USING (token_id)"
            " WHERE t.service = $1",
            service,
        )
        return value
    finally:
        await conn.close()


async def test_culler_with_server_scopes_reads_and_deletes_nothing(
    hub: Hub, tmp_path: Path
) -> None:
    """Without --cull-users, the culler lists users with ready servers: none has one here."""
    ready_url = f"{hub.api}/users?limit={PAGE_SIZE}&state=ready"
    output = await run_culler(
        hub,
        CULLER_TOKEN,
        done=lambda out: "Got 0 users with ready servers" in out,
        cwd=tmp_path,
    )
    assert_clean(output)
    assert f"Fetched 0 items from {ready_url} in 1 pages" in output, output
    assert "state=inactive" not in output
    assert "Culling" not in output

    assert sorted(await hub.user_names()) == sorted(["admin", *USERS])
    assert await events(hub.db_url, "user.deleted") == []
    # The culler's requests reached the hub and authenticated as its service.
    seen = await service_token_activity(hub.db_url, "idle-culler")
    assert seen is not None
    assert seen >= hub.started


async def test_culler_pages_through_inactive_users_and_culls_the_idle_ones(
    hub: Hub, tmp_path: Path
) -> None:
    """With --cull-users, every user is a candidate (no server runs), fetched 5 per page.

    With --timeout=3600 a user is culled when their last activity is older than an hour;
    a user who never reported activity counts from ``created`` (seconds ago) and is kept.
    """
    now = datetime.now(UTC)
    long_ago = (now - timedelta(days=2)).isoformat()
    stale = ["u03", "u08", "u13", "u18", "u23"]  # one on each full page
    for name in stale:
        status, reply = await hub.call(
            "POST", f"/users/{name}/activity", json={"last_activity": long_ago}
        )
        assert status == 200, reply
    # Idle long ago, but active again since: activity only moves forward, so u12 is kept.
    for stamp in (long_ago, now.isoformat()):
        status, reply = await hub.call("POST", "/users/u12/activity", json={"last_activity": stamp})
        assert status == 200, reply
    # An idle admin, spared by --cull-admin-users=False (the culler reads `admin`).
    status, reply = await hub.call("POST", "/users/boss", json={"admin": True})
    assert status == 201, reply
    status, reply = await hub.call("POST", "/users/boss/activity", json={"last_activity": long_ago})
    assert status == 200, reply

    everyone = ["admin", *USERS, "boss"]  # creation order, the order of the list
    status, page = await hub.call("GET", "/users", headers=PAGINATED, params={"limit": "5"})
    assert status == 200, page
    assert page["_pagination"]["total"] == len(everyone), page

    def cycle_done(out: str) -> bool:
        return set(DECISION.findall(out)) >= set(everyone)

    output = await run_culler(
        hub,
        USER_CULLER_TOKEN,
        "--cull-users=True",
        "--cull-admin-users=False",
        done=cycle_done,
        cwd=tmp_path,
    )
    records = assert_clean(output)

    # Pagination: pages 2..6 fetched by following next.url, absolute and on the hub.
    inactive_url = f"{hub.api}/users?state=inactive&limit={PAGE_SIZE}"
    followed = [
        message.split(" ", 3)[2:]
        for level, message in records
        if level == "I" and message.startswith("Fetching page ")
    ]
    assert [int(number) for number, _ in followed] == [2, 3, 4, 5, 6], output
    for number, url in followed:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{hub.api}/users", url
        assert parse_qs(parts.query) == {
            "state": ["inactive"],
            "limit": [str(PAGE_SIZE)],
            "offset": [str((int(number) - 1) * PAGE_SIZE)],
        }, url
    assert f"Fetched {len(everyone)} items from {inactive_url} in 6 pages" in output, output
    assert "Got 0 users with ready servers" in output
    # Every user was seen exactly once across the pages: none skipped, none repeated.
    decisions = Counter(DECISION.findall(output))
    assert decisions == Counter(everyone), output

    culled = [m[1] for m in re.finditer(r"\] Culling user (\S+) \(inactive for", output)]
    assert sorted(culled) == stale, output
    finished = re.findall(r"Finished culling (\S+)", output)
    assert sorted(finished) == stale, output

    assert await hub.user_names() == [name for name in everyone if name not in stale]
    deleted = await events(hub.db_url, "user.deleted")
    assert sorted(row["name"] for row in deleted) == stale
    assert {row["actor"] for row in deleted} == {"service:idle-culler-users"}


async def test_culler_stops_an_idle_server_and_leaves_an_active_one_running(
    hub: Hub, tmp_path: Path
) -> None:
    """Two users with running servers: u01's last activity is two days old, u02's is now."""
    now = datetime.now(UTC)
    for name, stamp in (("u01", now - timedelta(days=2)), ("u02", now)):
        status, reply = await hub.call("POST", f"/users/{name}/server")
        assert status == 201, reply
        status, reply = await hub.call(
            "POST",
            f"/users/{name}/activity",
            json={"servers": {"": {"last_activity": stamp.isoformat()}}},
        )
        assert status == 200, reply
    status, ready = await hub.call("GET", "/users", params={"state": "ready"})
    assert status == 200, ready
    assert sorted(user["name"] for user in ready) == ["u01", "u02"]

    def cycle_done(out: str) -> bool:
        return "Culling server u01 " in out and "Not culling server u02 " in out

    output = await run_culler(hub, CULLER_TOKEN, done=cycle_done, cwd=tmp_path)
    assert_clean(output)
    assert "Got 2 users with ready servers" in output, output
    assert "slow to stop" not in output

    async def server_of(name: str) -> dict[str, Any]:
        status, user = await hub.call("GET", f"/users/{name}")
        assert status == 200, user
        servers: dict[str, Any] = user["servers"]
        return servers

    assert await server_of("u01") == {}
    assert (await server_of("u02"))[""]["ready"] is True
    conn = await asyncpg.connect(hub.db_url)
    try:
        stops = await conn.fetch(
            "SELECT data->>'user' AS name, actor FROM events"
            " WHERE event_type IN ('server.stop_requested', 'server.stopped')"
            " ORDER BY global_position"
        )
    finally:
        await conn.close()
    assert [(row["name"], row["actor"]) for row in stops] == [
        ("u01", "service:idle-culler"),
        ("u01", "service:idle-culler"),
    ]
    # The culler stopped the server; it did not delete the user.
    assert "u01" in await hub.user_names()


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cull-idle" / "chronohub.toml"


async def test_the_hub_runs_the_culler_from_this_example(db_url: str, tmp_path: Path) -> None:
    """examples/cull-idle: the hub starts the culler from configuration (the example's file,
    only ``--cull-every`` shortened to 1 s and its log made verbose); it stops the idle
    server and spares the active one."""
    example = EXAMPLE.read_text()
    assert "--cull-every=600" in example
    config = (
        f'admin_users = ["admin"]\nspawner_cmd = {json.dumps(FAKE_SERVER_CMD)}\n'
        + service_toml(SETUP_TOKEN, ["admin:users", "admin:servers", "read:services"], "setup")
        # and its log at DEBUG, where it says which servers it spares
        + example.replace("--cull-every=600", '--cull-every=1", "--IdleCuller.log_level=DEBUG')
    )
    async with serving(db_url, tmp_path, config) as hub:

        async def culler_running() -> bool:
            status, culler = await hub.call("GET", "/services/cull-idle")
            assert status == 200, culler
            return bool(culler["state"] == "running" and culler["pid"] > 0)

        await wait_for(culler_running, timeout_s=30, every_s=0.1)
        status, culler = await hub.call("GET", "/services/cull-idle")
        assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"]
        assert culler["url"] == ""  # no url: no route, nothing to wait for
        now = datetime.now(UTC)
        for name, stamp in (("u01", now - timedelta(days=2)), ("u02", now)):
            status, reply = await hub.call("POST", f"/users/{name}/server")
            assert status == 201, reply
            status, reply = await hub.call(
                "POST",
                f"/users/{name}/activity",
                json={"servers": {"": {"last_activity": stamp.isoformat()}}},
            )
            assert status == 200, reply

        async def servers_of(name: str) -> dict[str, Any]:
            status, user = await hub.call("GET", f"/users/{name}")
            assert status == 200, user
            servers: dict[str, Any] = user["servers"]
            return servers

        async def u01_culled() -> bool:
            return await servers_of("u01") == {}

        await wait_for(u01_culled, timeout_s=60, every_s=0.2)
        log_path = tmp_path / "state" / "logs" / "services" / "cull-idle.log"
        # a cycle that saw u02's server and spared it
        await wait_for(lambda: "Not culling server u02" in log_path.read_text(), timeout_s=30)
        assert (await servers_of("u02"))[""]["ready"] is True
        log = log_path.read_text()
        assert "Culling server u01" in log, log
        assert "Traceback" not in log, log
    conn = await asyncpg.connect(hub.db_url)
    try:
        stops = await conn.fetch(
            "SELECT data->>'user' AS name, actor FROM events"
            " WHERE event_type = 'server.stop_requested' ORDER BY global_position"
        )
        lifecycle = await conn.fetch(
            "SELECT event_type FROM events WHERE stream_id = 'service-cull-idle'"
            " ORDER BY global_position"
        )
    finally:
        await conn.close()
    # the culler stopped u01 only (u02 was stopped by the hub, at its shutdown)
    by_culler = [row["name"] for row in stops if row["actor"] == "service:cull-idle"]
    assert by_culler == ["u01"]
    assert [row["event_type"] for row in lifecycle] == [
        "service.registered",
        "service.started",
        "service.ready",
        "service.stopped",
    ]
