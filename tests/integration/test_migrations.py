"""Migrations: applied once under concurrency, refused when the schema is newer or was edited."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hub import database
from migrations import runner

pytestmark = pytest.mark.integration


async def test_migrate_applies_every_file_once(empty_db_url: str) -> None:
    applied = await database.migrate(empty_db_url)
    assert [m.version for m in applied] == list(range(1, runner.latest_version() + 1))
    assert await database.migrate(empty_db_url) == []
    conn = await asyncpg.connect(empty_db_url)
    try:
        await runner.check_current(conn)
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(applied)
    finally:
        await conn.close()


async def test_two_processes_migrating_together_apply_each_once(empty_db_url: str) -> None:
    env = {**os.environ, "CHRONOHUB_DATABASE_URL": empty_db_url}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.cli",
            "migrate",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied_lines = [
        line for out, _ in outputs for line in out.decode().splitlines() if "applied" in line
    ]
    assert len(applied_lines) == runner.latest_version()  # each file applied by one of them
    conn = await asyncpg.connect(empty_db_url)
    try:
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()
    assert sorted(versions) == list(range(1, runner.latest_version() + 1))


async def test_a_newer_schema_is_refused_with_a_clear_message(db_url: str, tmp_path: Path) -> None:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'future', 'x')",
            runner.latest_version() + 1,
        )
        with pytest.raises(runner.SchemaTooNew, match="newer than this chronohub knows"):
            await runner.migrate(conn)
        with pytest.raises(runner.SchemaTooNew):
            await runner.check_current(conn)
    finally:
        await conn.close()
    env = {**os.environ, "CHRONOHUB_DATABASE_URL": db_url, "CHRONOHUB_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "hub.cli", "serve", "--port", "0", "--hub-port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "newer than this chronohub knows" in result.stderr


async def test_an_edited_migration_is_refused(db_url: str) -> None:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(db_url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(runner.MigrationError, match="changed after it was applied"):
            await runner.migrate(conn)
    finally:
        await conn.close()


async def test_an_unmigrated_database_is_reported(empty_db_url: str) -> None:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(empty_db_url)
    try:
        with pytest.raises(runner.MigrationError, match="run `chronohub migrate`"):
            await runner.check_current(conn)
    finally:
        await conn.close()
