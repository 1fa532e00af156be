"""Token cache acknowledgements (hub/auth/token_acks.py, issue 20 part 4): the membership rows
and numbered notifications, and end to end with ``chronohub serve`` processes on one database:
a revocation waits for a stopped process at most its lease (and names it), and a dead
process's row expires and is no longer waited for. The strict cross-process revocation test
(the very next request to the other process is refused) is in test_token_cache.py."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from events import store
from events.catalog import users as user_events
from hub.auth import token_acks, token_cache
from tests.helpers import service_toml, wait_for
from tests.integration.serve_process import Served, serving
from tests.integration.test_token_cache import OPERATOR, call

pytestmark = pytest.mark.integration


async def members(pool: Any) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT member, seen, alive_until > now() AS alive FROM token_cache_members"
    )
    return {row["member"]: row for row in rows}


async def test_a_cache_joins_acknowledges_what_it_handled_and_leaves(
    db_url: str, pool: Any, event_store: store.EventStore
) -> None:
    async with token_cache.TokenCache(db_url) as cache:
        await wait_for(cache.serving)
        name = cache.membership.name
        assert (await members(pool))[name]["alive"]
        user_id = uuid.uuid4()
        stream = user_events.stream_id(user_id)
        await event_store.append(
            stream, [user_events.UserCreated(user_id=user_id, name="fay")], expected=store.NO_STREAM
        )
        await event_store.append(
            stream, [user_events.UserDeleted(user_id=user_id, name="fay")], expected=1
        )
        drawn = await pool.fetchval("SELECT last_value FROM chronohub_auth_seq")

        async def acknowledged() -> bool:
            return bool((await members(pool))[name]["seen"] >= drawn)

        await wait_for(acknowledged)
    assert name not in await members(pool)


async def test_one_numbered_notification_per_transaction_in_commit_order(
    db_url: str, event_store: store.EventStore
) -> None:
    received: list[str] = []
    conn = await asyncpg.connect(db_url)
    try:
        await conn.add_listener(token_cache.CHANNEL, lambda *args: received.append(args[3]))
        for name in ("gus", "hal"):
            user_id = uuid.uuid4()
            async with event_store.session() as session:
                await session.append(
                    user_events.stream_id(user_id),
                    [
                        user_events.UserCreated(user_id=user_id, name=name),
                        user_events.UserRenamed(user_id=user_id, old_name=name, name=name + "2"),
                        user_events.UserDeleted(user_id=user_id, name=name + "2"),
                    ],
                    expected=store.NO_STREAM,
                )
        # each transaction: one for its user.created (only the read cache's: hub/reads/cache.py)
        # and one for its renaming and deletion (the token cache's), however many events
        await wait_for(lambda: len(received) >= 4)
        assert [text.partition(" ")[2] for text in received] == ["reads", "", "reads", ""]
        numbers = [int(text.partition(" ")[0]) for text in received]
        assert numbers == sorted(set(numbers))
    finally:
        await conn.close()


# --- processes -----------------------------------------------------------------------------


@pytest.fixture
async def hubs(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Served, Served, Any]]:
    """Hubs A and B (``Served``: address, process, log) on one database, and a client."""
    config = tmp_path / "chronohub.toml"
    config.write_text(service_toml(OPERATOR, ["admin:users", "tokens"]))
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        a = await stack.enter_async_context(
            serving(db_url, tmp_path, config, tmp_path / "state-a", name="a")
        )
        b = await stack.enter_async_context(
            serving(db_url, tmp_path, config, tmp_path / "state-b", name="b")
        )
        yield a, b, session


async def member_of(pool: Any, served: Served) -> str:
    """The token cache member name of a hub process (host:pid:tail)."""

    async def named() -> str | None:
        for name in await members(pool):
            if name.split(":")[-2] == str(served.process.pid):
                return name
        return None

    await wait_for(named)
    name = await named()
    assert name is not None
    return name


async def issue(session: Any, base: str, user: str) -> dict[str, Any]:
    status, issued = await call(session, base, "POST", f"/users/{user}/tokens", OPERATOR, json={})
    assert status == 201, issued
    return dict(issued)


async def test_a_stopped_process_delays_a_revocation_at_most_its_lease_and_is_named(
    pool: Any, hubs: tuple[Served, Served, Any]
) -> None:
    a, b, session = hubs
    assert (await call(session, a.url, "POST", "/users/ivy", OPERATOR))[0] == 201
    issued = await issue(session, a.url, "ivy")
    assert (await call(session, b.url, "GET", "/user", issued["token"]))[0] == 200  # cached
    b_member = await member_of(pool, b)
    os.kill(b.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        path = f"/users/ivy/tokens/{issued['id']}"
        assert (await call(session, a.url, "DELETE", path, OPERATOR))[0] == 204
        waited = time.monotonic() - started
        # B's lease (renewed until it stopped) runs out; the hard bound is beyond it
        assert waited < token_acks.LEASE_S + token_acks.EXTRA_WAIT_S + 1.0
        await wait_for(lambda: b_member in a.log.read_text())
        assert "not acknowledged" in a.log.read_text()
    finally:
        os.kill(b.process.pid, signal.SIGCONT)
    # B's lease ran out while it was stopped: it serves nothing from memory until it joined
    # again (emptied), so the very next request is refused.
    assert (await call(session, b.url, "GET", "/user", issued["token"]))[0] == 403
    # and once it is back, revocations are acknowledged again without a warning
    b_back = await member_of(pool, b)

    async def joined() -> bool:
        row = (await members(pool)).get(b_back)
        return row is not None and bool(row["alive"])

    await wait_for(joined)
    second = await issue(session, a.url, "ivy")
    assert (await call(session, b.url, "GET", "/user", second["token"]))[0] == 200
    warnings = a.log.read_text().count("not acknowledged")
    path = f"/users/ivy/tokens/{second['id']}"
    assert (await call(session, a.url, "DELETE", path, OPERATOR))[0] == 204
    assert (await call(session, b.url, "GET", "/user", second["token"]))[0] == 403
    assert a.log.read_text().count("not acknowledged") == warnings


async def test_a_dead_process_row_expires_and_is_not_waited_for(
    pool: Any, hubs: tuple[Served, Served, Any]
) -> None:
    a, b, session = hubs
    b_member = await member_of(pool, b)
    b.kill()
    await b.process.wait()

    async def gone() -> bool:  # expired, and deleted by A's heartbeat
        return b_member not in await members(pool)

    await wait_for(gone, timeout_s=token_acks.LEASE_S * 3)
    assert (await call(session, a.url, "POST", "/users/jo", OPERATOR))[0] == 201
    issued = await issue(session, a.url, "jo")
    path = f"/users/jo/tokens/{issued['id']}"
    assert (await call(session, a.url, "DELETE", path, OPERATOR))[0] == 204
    assert b_member not in a.log.read_text()  # not waited for, not warned about
    assert (await call(session, a.url, "GET", "/user", issued["token"]))[0] == 403
