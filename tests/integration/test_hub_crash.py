"""``chronohub serve`` killed with SIGKILL during a spawn, then started again on the same database.

The spawned process lives on in its own process group. The restarted hub re-adopts it if it
answers in time (the spawn completes: ``server.ready``), and otherwise kills it and records
``server.failed``; either way the log, the servers and routes read models and the processes
agree, and the server's token is revoked when the server is gone.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.helpers import hub_process_env, service_toml, wait_for
from tests.integration.spawn_fixtures import fake

pytestmark = pytest.mark.integration

TOKEN = "crash-admin-secret-0123456789abcdef"
# The public address (the built-in proxy's): /hub/ there reaches the hub.
SERVING = re.compile(r"chronohub serving at (http://127\.0\.0\.1:\d+/)hub/")


@dataclass
class Running:
    api: str
    proxy: str
    proc: asyncio.subprocess.Process
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(
            method, self.api + path, headers={"Authorization": f"token {TOKEN}"}, **kwargs
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text.startswith("{") else text


def config(mode: str, start_timeout: float, delay: float) -> str:
    return f"""
spawner_cmd = {json.dumps(fake(mode))}
spawner_env = {{ FAKE_DELAY = "{delay}" }}
start_timeout = {start_timeout}
slow_spawn_timeout = 0
""" + service_toml(TOKEN, ["admin:users", "admin:servers"])


@asynccontextmanager
async def serve(db_url: str, tmp_path: Path, toml: str) -> AsyncIterator[Running]:
    """``python -m hub.cli serve`` on the test database; stopped (SIGTERM) unless killed."""
    path = tmp_path / "chronohub.toml"
    path.write_text(toml)
    env = hub_process_env(db_url, path, tmp_path / "state")
    with open(tmp_path / "hub.log", "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hub.cli", "serve", "--ip", "127.0.0.1", "--port", "0",
            "--hub-port", "0",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in "abc"]
            public = SERVING.match(lines[0])
            assert public, [*lines, (tmp_path / "hub.log").read_text()]
            async with aiohttp.ClientSession() as session:
                yield Running(public[1] + "hub/api", public[1], proc, session)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def fetch(db_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def server_row(db_url: str) -> asyncpg.Record | None:
    rows = await fetch(db_url, "SELECT * FROM servers WHERE user_name = 'una'")
    return rows[0] if rows else None


async def kill_during_spawn(db_url: str, tmp_path: Path, toml: str) -> int:
    """Start a spawn, SIGKILL the hub once the process is recorded as started; its pid."""
    async with serve(db_url, tmp_path, toml) as hub:
        assert (await hub.call("POST", "/users/una"))[0] == 201
        status, reply = await hub.call("POST", "/users/una/server")
        assert status == 202, reply

        async def started() -> bool:
            row = await server_row(db_url)
            return row is not None and row["state"] == "started"

        await wait_for(started, timeout_s=20)
        hub.proc.kill()
        await hub.proc.wait()
    row = await server_row(db_url)
    assert row is not None
    pid: int = row["pid"]
    os.kill(pid, 0)  # the server's process outlived the hub
    return pid


async def types(db_url: str) -> list[str]:
    rows = await fetch(
        db_url,
        "SELECT event_type FROM events WHERE event_type LIKE 'server.%' ORDER BY global_position",
    )
    return [row["event_type"] for row in rows]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_spawn_cut_by_sigkill_is_completed_by_the_next_hub(
    db_url: str, tmp_path: Path
) -> None:
    toml = config("slow", start_timeout=30, delay=2)
    pid = await kill_during_spawn(db_url, tmp_path, toml)
    assert await types(db_url) == ["server.spawn_requested", "server.started"]

    async with serve(db_url, tmp_path, toml) as hub:

        async def ready() -> bool:
            row = await server_row(db_url)
            return row is not None and row["state"] == "ready"

        await wait_for(ready, timeout_s=20)
        assert await types(db_url) == ["server.spawn_requested", "server.started", "server.ready"]
        assert (await server_row(db_url))["pid"] == pid  # type: ignore[index]
        async with hub.session.get(hub.proxy + "user/una/echo") as response:
            assert response.status == 200
        status, user = await hub.call("GET", "/users/una")
        assert user["servers"][""]["ready"] is True
        status, reply = await hub.call("DELETE", "/users/una/server")
        assert status == 204, reply
    assert gone(pid)
    assert (await types(db_url))[-2:] == ["server.stop_requested", "server.stopped"]


async def test_a_spawn_cut_by_sigkill_that_never_answers_is_cleaned_up(
    db_url: str, tmp_path: Path
) -> None:
    toml = config("hang", start_timeout=1, delay=0)
    pid = await kill_during_spawn(db_url, tmp_path, toml)

    async with serve(db_url, tmp_path, toml) as hub:

        async def failed() -> bool:
            row = await server_row(db_url)
            return row is not None and row["state"] == "failed"

        await wait_for(failed, timeout_s=20)
        row = await server_row(db_url)
        assert row is not None
        assert row["reason"].startswith("after the hub restarted: the server did not answer")
        assert row["pid"] is None
        assert gone(pid)
        assert await types(db_url) == [
            "server.spawn_requested",
            "server.started",
            "server.failed",
        ]
        assert await fetch(db_url, "SELECT * FROM routes") == []
        # The server's token was revoked with it.
        assert await fetch(db_url, "SELECT * FROM tokens WHERE note LIKE 'Server at %'") == []
        status, user = await hub.call("GET", "/users/una")
        assert status == 200, user
        assert user["servers"] == {}
        # A clean state: the user can spawn again (and this one fails the same clear way).
        status, reply = await hub.call("POST", "/users/una/server")
        assert status == 202, reply
