"""`chronohub backup` and `chronohub restore`: a hub with users, a password, tokens, a group
and a project with pushes is backed up and restored into a fresh installation (its own
embedded PostgreSQL and data directory), which then serves the same hub; and bad backups or
targets are refused, saying why."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import store
from hub import database, embedded_db
from hub.backup import archive, pgtools
from hub.cli import events as events_cli
from migrations import runner
from projections import base, catalog
from tests.integration.browser import PASSWORD, Browser, set_password
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub

pytestmark = pytest.mark.integration

FILES = {"README.md": b"# Course\n", "week1/intro.ipynb": b'{"cells": []}\n'}


async def chronohub(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``chronohub`` with ``env`` as its only CHRONOHUB_/PG settings: status and output."""
    base_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CHRONOHUB_", "PG")) and name != "DATABASE_URL"
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args,
        env={**base_env, "COLUMNS": "200", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def snapshot(env: dict[str, str], position: int, export: Path) -> dict[str, str]:
    """What must be the same after a restore: ``state --at`` of every view, and the export."""
    seen = {}
    for view in events_cli.STATE_VIEWS:
        code, out = await chronohub(env, "state", "--at", str(position), view)
        assert code == 0, out
        # The progress line's rate (events/s) differs from run to run; the rest must not.
        seen[view] = "\n".join(line for line in out.splitlines() if "events/s" not in line)
    code, out = await chronohub(env, "events", "export", "-o", str(export))
    assert code == 0, out
    seen["export"] = export.read_text()
    return seen


async def last_position(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        position: int = await conn.fetchval("SELECT max(global_position) FROM events")
        return position
    finally:
        await conn.close()


@pytest.fixture
async def fresh_embedded(reachable_tmp: Path) -> AsyncIterator[tuple[Path, str]]:
    """A new installation: an empty data directory and its embedded PostgreSQL, running (so
    the test can serve from it after the restore command has left)."""
    data_dir = reachable_tmp / "restored"
    server = embedded_db.EmbeddedPostgres(data_dir)
    url = await asyncio.to_thread(server.start)
    yield data_dir, url
    await asyncio.to_thread(server.remove)


async def test_a_restored_hub_is_the_same_hub(
    projects_hub: ProjectsHub,
    db_url: str,
    tmp_path: Path,
    fresh_embedded: tuple[Path, str],
) -> None:
    hub = projects_hub
    git = Git(tmp_path / "home")
    alice = await hub.user_token("alice")
    bob = await hub.user_token("bob", scopes=["read:users:name!user=bob"])
    await set_password(hub, "alice")
    await hub.group("team", "alice", "bob")
    project = await hub.project(alice, "course")
    url = project["clone_url"]
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", with_token(url, alice, "alice"), "main", cwd=work)
    await git.commit(work, {"week2/more.ipynb": b"{}\n"}, "week 2")
    head = await git.commit(work, {"README.md": b"# Course, updated\n"}, "readme")
    await git.ok("push", "-q", with_token(url, alice, "alice"), "main", cwd=work)
    history = (await git.ok("log", "--format=%H %s", cwd=work)).out

    source_env = {"CHRONOHUB_DATABASE_URL": db_url, "CHRONOHUB_DATA_DIR": str(hub.data_dir)}
    backup_dir = tmp_path / "backup"
    code, out = await chronohub(source_env, "backup", str(backup_dir))
    assert code == 0, out
    assert "backed up" in out
    manifest = json.loads((backup_dir / archive.MANIFEST).read_text())
    assert manifest["schema_version"] == runner.latest_version()
    assert manifest["events"]["count"] > 0
    assert any(name.startswith("projects/") for name in manifest["files"])
    assert oct((backup_dir / archive.DUMP).stat().st_mode & 0o777) == "0o600"
    position = await last_position(db_url)
    before = await snapshot(source_env, position, tmp_path / "before.jsonl")

    data_dir, restored_url = fresh_embedded
    target_env = {"CHRONOHUB_DATA_DIR": str(data_dir)}
    code, out = await chronohub(target_env, "restore", str(backup_dir))
    assert code == 0, out
    assert "restored" in out
    assert "identical" in out
    after = await snapshot(target_env, position, tmp_path / "after.jsonl")
    assert after == before

    pool = await database.create_pool(restored_url, min_size=1, max_size=4)
    try:
        restored_store = store.EventStore(pool, inline=base.Inline(catalog.ALL))
        async with open_projects_hub(restored_store, data_dir) as restored:
            browser = Browser(restored.base_url)
            try:
                page = await browser.login("alice", PASSWORD)
                assert page.status == 302, page.text
                assert page.location == "/hub/home"
            finally:
                await browser.close()
            status, me = await restored.call("GET", "/user", bob)
            assert status == 200, me
            assert me["name"] == "bob"
            status, group = await restored.call("GET", "/groups/team")
            assert status == 200
            assert sorted(group["users"]) == ["alice", "bob"]
            clone = tmp_path / "clone"
            restored_url_of = url.replace(hub.base_url, restored.base_url)
            await git.ok("clone", "-q", with_token(restored_url_of, alice, "alice"), str(clone))
            assert await git.head(clone) == head
            assert (await git.ok("log", "--format=%H %s", cwd=clone)).out == history
            # New events sort after the restored ones (the transaction counter moved on).
            await restored.user_token("carol")
            code, out = await chronohub(target_env, "events", "tail", "-n", "1")
            assert code == 0, out
            assert "carol" in out
    finally:
        await pool.close()


@pytest.fixture
async def small_backup(db_url: str, tmp_path: Path) -> Path:
    """A backup of a hub with no events beyond its migrations and no projects."""
    target = tmp_path / "small"
    code, out = await chronohub(
        {"CHRONOHUB_DATABASE_URL": db_url, "CHRONOHUB_DATA_DIR": str(tmp_path / "data")},
        "backup",
        str(target),
    )
    assert code == 0, out
    return target


def _target(url: str, tmp_path: Path) -> dict[str, str]:
    return {"CHRONOHUB_DATABASE_URL": url, "CHRONOHUB_DATA_DIR": str(tmp_path / "target")}


async def test_a_backup_restores_into_an_empty_external_database(
    small_backup: Path, empty_db_url: str, tmp_path: Path
) -> None:
    code, out = await chronohub(_target(empty_db_url, tmp_path), "restore", str(small_backup))
    assert code == 0, out
    conn = await asyncpg.connect(empty_db_url)
    try:
        await runner.check_current(conn)
    finally:
        await conn.close()


async def test_a_non_empty_database_is_refused(
    small_backup: Path, db_url: str, tmp_path: Path
) -> None:
    code, out = await chronohub(_target(db_url, tmp_path), "restore", str(small_backup))
    assert code == 1
    assert "is not empty" in out
    assert "restore only into a new installation" in out


async def test_a_tampered_file_is_refused_before_anything_is_written(
    small_backup: Path, empty_db_url: str, tmp_path: Path
) -> None:
    dump = small_backup / archive.DUMP
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    code, out = await chronohub(_target(empty_db_url, tmp_path), "restore", str(small_backup))
    assert code == 1
    assert "database.dump" in out
    assert "does not match its checksum" in out
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
    finally:
        await conn.close()


async def test_a_missing_manifest_is_refused(
    small_backup: Path, empty_db_url: str, tmp_path: Path
) -> None:
    (small_backup / archive.MANIFEST).unlink()
    code, out = await chronohub(_target(empty_db_url, tmp_path), "restore", str(small_backup))
    assert code == 1
    assert "has no manifest.json" in out


async def test_a_backup_of_a_newer_schema_is_refused(
    small_backup: Path, empty_db_url: str, tmp_path: Path
) -> None:
    path = small_backup / archive.MANIFEST
    manifest: dict[str, Any] = json.loads(path.read_text())
    manifest["schema_version"] = runner.latest_version() + 1
    path.write_text(json.dumps(manifest))
    code, out = await chronohub(_target(empty_db_url, tmp_path), "restore", str(small_backup))
    assert code == 1
    assert "newer than this chronohub knows" in out


async def test_backing_up_into_a_non_empty_directory_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "something").write_text("x")
    code, out = await chronohub(
        {"CHRONOHUB_DATABASE_URL": db_url, "CHRONOHUB_DATA_DIR": str(tmp_path / "data")},
        "backup",
        str(target),
    )
    assert code == 1
    assert "not an empty directory" in out


async def test_snapshots_and_scratch_schemas_are_not_backed_up(db_url: str, tmp_path: Path) -> None:
    """They are derived from the log, and a backup would hold snapshot_keep copies of the read
    models; any other schema is dumped."""
    left_out = [
        "snapshot_0123456789abcdef",
        "snapshot_build_0123456789abcdef",
        "state_0123456789abcdef",
        "rebuild_users_0123456789abcdef",
        "verify_users_0123456789abcdef",
    ]
    kept = ["state_of_the_art"]
    conn = await asyncpg.connect(db_url)
    try:
        for name in left_out + kept:
            await conn.execute(f'CREATE SCHEMA "{name}"')
            await conn.execute(f'CREATE TABLE "{name}".rows (id int)')
    finally:
        await conn.close()
    target = tmp_path / "backup"
    env = {"CHRONOHUB_DATABASE_URL": db_url, "CHRONOHUB_DATA_DIR": str(tmp_path / "data")}
    code, out = await chronohub(env, "backup", str(target))
    assert code == 0, out
    proc = await asyncio.create_subprocess_exec(
        str(pgtools.binary("pg_restore", None)), "--list", str(target / archive.DUMP),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    listing, _ = await proc.communicate()
    assert proc.returncode == 0
    schemas = {line.split()[-2] for line in listing.decode().splitlines() if " SCHEMA - " in line}
    assert "state_of_the_art" in schemas
    assert not schemas & set(left_out)
