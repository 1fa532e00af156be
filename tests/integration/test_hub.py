"""The hub process: HTTP basics, `chronohub serve` on embedded PostgreSQL, the projections CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import test_utils

from events import store
from hub import app, context, version
from hub import settings as hub_settings
from tests.helpers import hub_process_env

pytestmark = pytest.mark.integration


@pytest.fixture
async def client(
    event_store: store.EventStore, tmp_path: Path
) -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    hub = context.Hub(
        # the data dir (the cookie secret's) in tmp_path, not the checkout's .chronohub
        settings=hub_settings.Settings(database_url="postgresql://unused", data_dir=tmp_path),
        store=event_store,
        database="test",
    )
    async with test_utils.TestClient(test_utils.TestServer(app.make_app(hub))) as test_client:
        yield test_client


async def test_api_root_and_version_header(client: test_utils.TestClient[Any, Any]) -> None:
    for path in ("/hub/api", "/hub/api/"):
        response = await client.get(path)
        assert response.status == 200
        assert await response.json() == {"version": version.JUPYTERHUB_API}
        assert response.headers["X-JupyterHub-Version"] == version.JUPYTERHUB_API


async def test_health(client: test_utils.TestClient[Any, Any]) -> None:
    response = await client.get("/hub/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "database": "ok"}


async def test_errors_are_jupyterhub_shaped(client: test_utils.TestClient[Any, Any]) -> None:
    response = await client.get("/hub/api/no-such-thing")
    assert response.status == 404
    assert await response.json() == {"status": 404, "message": "Not Found"}
    assert response.headers["X-JupyterHub-Version"] == version.JUPYTERHUB_API
    response = await client.post("/hub/api/")
    assert response.status == 405
    assert (await response.json())["status"] == 405


async def test_health_reports_a_database_that_does_not_answer(db_url: str, tmp_path: Path) -> None:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    assert pool is not None
    config = hub_settings.Settings(data_dir=tmp_path)
    hub = context.Hub(settings=config, store=store.EventStore(pool), database="x")
    await pool.close()
    async with test_utils.TestClient(test_utils.TestServer(app.make_app(hub))) as test_client:
        response = await test_client.get("/hub/health")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == 503
        assert "database does not answer" in body["message"]


async def test_serve_starts_an_embedded_postgres_and_answers(reachable_tmp: Path) -> None:
    """What `make run` does: no database configured, so one is embedded in the data dir."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CHRONOHUB_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGDATABASE")
    }
    env["CHRONOHUB_DATA_DIR"] = str(reachable_tmp / "state")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "serve",
        "--port",
        "0",
        "--hub-port",
        "0",
        env=env,
        cwd=reachable_tmp,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        second, third = [
            (await asyncio.wait_for(proc.stdout.readline(), 10)).decode() for _ in "23"
        ]
        match = re.match(r"chronohub serving at (http://127\.0\.0\.1:\d+/hub/)", first)
        assert match, first
        assert second.startswith("hub: 127.0.0.1:"), second
        assert "embedded PostgreSQL in" in third
        assert str(reachable_tmp / "state") in third
        async with aiohttp.ClientSession() as session:
            async with session.get(match[1] + "api/") as response:
                assert response.status == 200
                assert response.headers["X-JupyterHub-Version"] == version.JUPYTERHUB_API
                assert await response.json() == {"version": version.JUPYTERHUB_API}
            async with session.get(match[1] + "health") as response:
                assert response.status == 200
        assert (reachable_tmp / "state" / "postgres" / "PG_VERSION").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def run_cli(db_url: str, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        *args,
        env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_projections_cli_verify_and_rebuild(
    db_url: str, event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    from tests.integration.test_projections import create_user

    for name in ("x", "y"):
        await create_user(event_store, name)
    code, out = await run_cli(db_url, "projections", "verify")
    assert code == 0, out
    assert "users: identical" in out

    await pool.execute("UPDATE users SET name = 'tampered' WHERE name = 'x'")
    code, out = await run_cli(db_url, "projections", "verify", "users")
    assert code == 1, out
    assert "tampered" in out

    code, out = await run_cli(db_url, "projections", "rebuild", "users")
    assert code == 0, out
    assert "rebuilt users: 2 events" in out
    assert sorted(r[0] for r in await pool.fetch("SELECT name FROM users")) == ["x", "y"]

    code, out = await run_cli(db_url, "projections", "rebuild", "nope")
    assert code == 1
    assert "no projection named 'nope'" in out


async def test_serve_refuses_a_bad_configuration_with_a_clear_message(
    db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "chronohub.toml"
    config.write_text('[[roles]]\nname = "graders"\nscopes = ["read:nothing"]\n')
    env = hub_process_env(db_url, config, tmp_path / "state")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve", "--port", "0", "--hub-port", "0",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "read:nothing" in err.decode()
    assert "graders" in err.decode()

    config.write_text("unknown_setting = 1\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "serve", "--port", "0", "--hub-port", "0",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "unknown_setting" in err.decode()
