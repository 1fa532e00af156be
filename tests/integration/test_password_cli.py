"""``chronohub password NAME`` (how the first admin logs in) and the refusal to start with
a dummy authenticator nobody enabled, as a newcomer would run them."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import asyncpg
import pytest

pytestmark = pytest.mark.integration


async def run(args: list[str], stdin: bytes, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_password_command_creates_the_first_admin_and_keeps_the_password_out_of_the_log(
    db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    env = {"CHRONOHUB_DATABASE_URL": db_url, "CHRONOHUB_ADMIN_USERS": '["ada"]'}
    code, out = await run(["password", "ada"], b"ada's first password\n", **env)
    assert code == 0, out
    assert "created user ada and set the password" in out
    row = await pool.fetchrow(
        "SELECT u.admin, c.password_hash FROM users u JOIN credentials c USING (user_id)"
        " WHERE u.name = 'ada'"
    )
    assert row is not None
    assert row["admin"] is True
    assert row["password_hash"].startswith("$argon2id$")

    code, out = await run(["password", "ada"], b"short\n", **env)
    assert code == 1
    assert "the password must be at least 8 characters long" in out
    code, out = await run(["password", "a/b"], b"long enough password\n", **env)
    assert code == 1
    assert "invalid username" in out

    log = "\n".join(r[0] for r in await pool.fetch("SELECT row_to_json(e)::text FROM events e"))
    assert "ada's first password" not in log
    assert "$argon2" not in log
    by = [
        r[0]
        for r in await pool.fetch(
            "SELECT data->>'by' FROM events WHERE event_type = 'user.password_set'"
        )
    ]
    assert by == ["cli"]


async def test_the_first_user_of_a_hub_without_an_admin_becomes_one(
    db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    env = {"CHRONOHUB_DATABASE_URL": db_url}
    code, out = await run(["password", "ben"], b"ben's first password\n", **env)
    assert code == 0, out
    assert "ben is an admin: the hub had none" in out
    code, out = await run(["password", "cara"], b"cara's first password\n", **env)
    assert code == 0, out
    assert "admin" not in out
    rows = await pool.fetch("SELECT name, admin FROM users ORDER BY name")
    assert [(r["name"], r["admin"]) for r in rows] == [("ben", True), ("cara", False)]


async def test_serve_refuses_a_dummy_authenticator_nobody_enabled(db_url: str) -> None:
    code, out = await run(
        ["serve", "--port", "0", "--hub-port", "0"],
        b"",
        CHRONOHUB_DATABASE_URL=db_url,
        CHRONOHUB_AUTHENTICATOR="dummy",
    )
    assert code == 2
    assert "needs dummy_authenticator_enabled = true" in out
