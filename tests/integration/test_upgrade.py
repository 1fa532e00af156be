"""Upgrades: today's migrations applied to a database made by the previous release.

No release is tagged yet. "The previous release" here is main as it stood before the first
migration added today: commit 91da56c (the parent of 2fe77f8, which added
``0009_projects.sql``), whose schema is migrations 0001-0008, byte for byte those of today.
The test runs that commit's own code (extracted with ``git archive``) to make a database with
a user, a password and a token, then today's ``chronohub migrate`` applies 0009 onwards,
and the projections, the token and the password must still hold. A checkout without that
commit (a shallow clone) skips it, saying so.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from events import store
from hub import database
from migrations import runner
from projections import base, catalog
from tests.integration.browser import PASSWORD, Browser, running_hub

pytestmark = pytest.mark.integration

PREVIOUS_RELEASE = "91da56c"
PREVIOUS_SCHEMA = 8
REPOSITORY = Path(__file__).resolve().parents[2]


def previous_release(target: Path) -> Path:
    """The previous release's code, extracted into ``target``; skip when git lacks it."""
    found = subprocess.run(
        ["git", "-C", str(REPOSITORY), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_RELEASE} is not in this checkout (a shallow clone?)")
    archive = target.with_suffix(".tar")
    subprocess.run(
        ["git", "-C", str(REPOSITORY), "archive", "-o", str(archive), PREVIOUS_RELEASE],
        check=True,
    )
    target.mkdir()
    # The tar command: Python 3.11's tarfile has no safe extraction filter until 3.11.4.
    subprocess.run(["tar", "-xf", str(archive), "-C", str(target)], check=True)
    return target


async def chronohub(code: Path, db_url: str, *args: str, stdin: str = "") -> str:
    """Run the ``chronohub`` of the code in ``code`` on ``db_url``; its output (must succeed)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CHRONOHUB_", "PG")) and name != "DATABASE_URL"
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args,
        env={**env, "PYTHONPATH": str(code), "CHRONOHUB_DATABASE_URL": db_url, "COLUMNS": "200"},
        cwd=code,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_the_previous_releases_database_is_upgraded(
    empty_db_url: str, tmp_path: Path
) -> None:
    old = previous_release(tmp_path / "previous")
    await chronohub(old, empty_db_url, "password", "alice", stdin=PASSWORD + "\n")
    token = (await chronohub(old, empty_db_url, "token", "alice")).strip().splitlines()[-1]
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 8
    finally:
        await conn.close()

    out = await chronohub(REPOSITORY, empty_db_url, "migrate")
    for version in range(PREVIOUS_SCHEMA + 1, runner.latest_version() + 1):
        assert f"applied {version:04d}_" in out
    out = await chronohub(REPOSITORY, empty_db_url, "projections", "verify")
    assert "differ" not in out

    pool = await database.create_pool(empty_db_url, min_size=1, max_size=4)
    try:
        upgraded = store.EventStore(pool, inline=base.Inline(catalog.ALL))
        async with running_hub(upgraded) as (api, base_url):
            status, me = await api.call("GET", "/user", token)
            assert status == 200, me
            assert me["name"] == "alice"
            browser = Browser(base_url)
            try:
                page = await browser.login("alice", PASSWORD)
                assert page.status == 302, page.text
            finally:
                await browser.close()
            # The upgraded hub takes new work: a project, which needs migration 0009.
            status, project = await api.call("POST", "/projects", token, json={"name": "p"})
            assert status == 201, project
    finally:
        await pool.close()


async def test_migrating_up_to_a_version_then_the_rest(empty_db_url: str) -> None:
    conn = await asyncpg.connect(empty_db_url)
    try:
        first = await runner.migrate(conn, target=PREVIOUS_SCHEMA)
        assert [m.version for m in first] == list(range(1, PREVIOUS_SCHEMA + 1))
        with pytest.raises(runner.MigrationError, match="needs"):
            await runner.check_current(conn)
        rest = await runner.migrate(conn)
        assert [m.version for m in rest] == list(
            range(PREVIOUS_SCHEMA + 1, runner.latest_version() + 1)
        )
        await runner.check_current(conn)
        with pytest.raises(runner.MigrationError, match="no schema version"):
            await runner.migrate(conn, target=runner.latest_version() + 1)
    finally:
        await conn.close()
