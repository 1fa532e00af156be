"""Scratch schemas of rebuild, verify and time travel (``state --at``): each run has its own, so
runs side by side on one database never drop each other's tables; each is dropped at the end,
and the connection's ``search_path`` is reset even when the drop fails."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import store
from events.catalog import users as user_events
from hub.audit import moment
from hub.cli import events as events_cli
from projections import rebuild
from projections import users as users_projection

pytestmark = pytest.mark.integration

USERS = users_projection.UsersProjection()
SCRATCH = "SELECT nspname FROM pg_namespace WHERE nspname ~ '^(rebuild|verify|state)_'"


async def create_users(event_store: store.EventStore, count: int) -> None:
    for number in range(count):
        user_id = uuid4()
        await event_store.append(
            user_events.stream_id(user_id),
            [user_events.UserCreated(user_id=user_id, name=f"user{number}")],
            expected=store.NO_STREAM,
        )


async def test_runs_side_by_side_on_one_database_keep_their_own_schemas(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await create_users(event_store, 200)
    middle = (await event_store.read_all(limit=120))[-1].checkpoint

    async def travel() -> int:
        async with (
            pool.acquire() as conn,
            rebuild.as_of(conn, event_store, USERS, middle, batch_size=10),
        ):
            count: int = await conn.fetchval("SELECT count(*) FROM users")
            return count

    # Small pages: each run gives way to the others between pages, while its schema exists.
    results = await asyncio.gather(
        rebuild.verify(event_store, USERS, batch_size=10),
        rebuild.verify(event_store, USERS, batch_size=10),
        travel(),
        travel(),
    )
    first, second, *counts = results
    assert isinstance(first, rebuild.Result)
    assert isinstance(second, rebuild.Result)
    assert (first.differences, second.differences) == ((), ())
    assert (first.events, second.events) == (200, 200)
    assert counts == [120, 120]
    assert await pool.fetch(SCRATCH) == []


async def test_two_state_at_commands_at_once_on_one_database(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    await create_users(event_store, 50)
    positions = [e.position for e in await event_store.read_all()]
    codes = await asyncio.gather(
        events_cli.state(event_store, positions[9], "users"),
        events_cli.state(event_store, positions[39], "users"),
    )
    assert codes == [0, 0]
    out = capsys.readouterr().out
    assert "10 in all" in out
    assert "40 in all" in out
    assert await pool.fetch(SCRATCH) == []


async def test_search_path_is_reset_when_the_scratch_schema_cannot_be_dropped(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await create_users(event_store, 3)
    upto = (await event_store.read_all())[-1].checkpoint
    built: list[str] = []
    async with pool.acquire() as conn, pool.acquire() as other:
        before = await conn.fetchval("SHOW search_path")
        holding = other.transaction()

        async def travel_while_another_session_reads_the_past() -> None:
            async with rebuild.as_of(conn, event_store, USERS, upto) as schema:
                built.append(schema)
                assert schema in await conn.fetchval("SHOW search_path")
                # A scratch table locked by another session: the DROP cannot get its lock.
                await holding.start()
                await other.execute(f"LOCK TABLE {rebuild.ident(schema)}.users IN SHARE MODE")

        await conn.execute("SET lock_timeout = '200ms'")
        try:
            with pytest.raises(asyncpg.LockNotAvailableError):
                await travel_while_another_session_reads_the_past()
            assert await conn.fetchval("SHOW search_path") == before
            assert await conn.fetchval("SELECT count(*) FROM users") == 3  # the live table
        finally:
            await holding.rollback()
            await conn.execute("RESET lock_timeout")
        assert [row["nspname"] for row in await conn.fetch(SCRATCH)] == built
        # left over, and no longer held: the sweep at a hub's start drops it
        assert await rebuild.drop_unused(conn) == built
    assert await pool.fetch(SCRATCH) == []


async def test_a_cancelled_replay_drops_its_scratch_schema(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    """A replay cancelled midway (the hub stopping, a client's handler cancelled) still drops
    its schema and releases its hold, and leaves the connection's search_path as it was."""
    await create_users(event_store, 30)
    checkpoint = (await event_store.read_all())[-1].checkpoint
    applied = asyncio.Event()
    async with pool.acquire() as conn:
        before = await conn.fetchval("SHOW search_path")
        replay = asyncio.create_task(
            moment.views_at(
                conn, event_store, checkpoint, ["users"], progress=lambda *_: applied.set()
            )
        )
        await asyncio.wait_for(applied.wait(), 30)  # the scratch schema exists, filled
        replay.cancel()
        with pytest.raises(asyncio.CancelledError):
            await replay
        assert await conn.fetchval("SHOW search_path") == before
        assert await rebuild.drop_unused(conn) == []  # nothing left to sweep
    assert await pool.fetch(SCRATCH) == []


def test_scratch_names_differ_between_runs() -> None:
    names = {rebuild.scratch_name("verify_users") for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith("verify_users_") and len(name) <= 63 for name in names)
    assert len(rebuild.scratch_name("x" * 80)) <= 63
