"""Projections: inline read-your-writes, async exactly-once through crashes, rebuild and verify."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import errors, models, sql, store
from events.catalog import users as user_events
from projections import base, catalog, rebuild, runner
from projections import users as users_projection
from tests.helpers import Touched, wait_for

pytestmark = pytest.mark.integration


async def create_user(event_store: store.EventStore, name: str, admin: bool = False) -> UUID:
    user_id = uuid4()
    await event_store.append(
        user_events.stream_id(user_id),
        [user_events.UserCreated(user_id=user_id, name=name, admin=admin)],
        expected=store.NO_STREAM,
    )
    return user_id


async def table(pool: asyncpg.Pool[Any], name: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT * FROM {rebuild.ident(name)} ORDER BY 1")
    return [dict(r) for r in rows]


# --- inline ---------------------------------------------------------------------------------


async def test_inline_projection_reads_its_own_writes(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    user_id = await create_user(event_store, "ada")
    row = await pool.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
    assert row is not None
    assert (row["name"], row["admin"]) == ("ada", False)

    stream = user_events.stream_id(user_id)
    await event_store.append(
        stream,
        [
            user_events.UserRenamed(user_id=user_id, old_name="ada", name="lovelace"),
            user_events.UserAdminChanged(user_id=user_id, admin=True),
        ],
        expected=1,
    )
    row = await pool.fetchrow("SELECT * FROM users WHERE user_id = $1", user_id)
    assert row is not None
    assert (row["name"], row["admin"]) == ("lovelace", True)
    stored = await event_store.read_stream(stream)
    assert row["created"] == stored[0].recorded_at
    assert row["updated"] == stored[-1].recorded_at
    assert row["last_position"] == stored[-1].position

    await event_store.append(
        stream, [user_events.UserDeleted(user_id=user_id, name="lovelace")], expected=3
    )
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


async def test_a_failing_inline_projection_writes_nothing(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    ghost = uuid4()
    with pytest.raises(base.ProjectionError, match="does not exist"):
        await event_store.append(
            user_events.stream_id(ghost), [user_events.UserAdminChanged(user_id=ghost, admin=True)]
        )
    await create_user(event_store, "taken")
    with pytest.raises(asyncpg.UniqueViolationError):
        await create_user(event_store, "taken")
    assert await pool.fetchval("SELECT count(*) FROM events") == 1


# --- async ----------------------------------------------------------------------------------


class TouchLog:
    """An async test projection that records every event it applies, one row each.

    ``gate`` lets a test stop it in the middle of a batch, after it wrote part of it.
    """

    name = "touch_log"
    mode: base.Mode = "async"
    tables = ("touch_log",)
    handles = frozenset({Touched.type})

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        half = len(events) // 2
        for i, event in enumerate(events):
            if i == half and self.gate is not None:
                self.entered.set()
                await self.gate.wait()
            await conn.execute(
                "INSERT INTO touch_log (position, thing) VALUES ($1, $2)",
                event.position,
                event.data.thing,  # type: ignore[attr-defined]
            )


@pytest.fixture
async def touch_log(pool: asyncpg.Pool[Any]) -> TouchLog:
    await pool.execute("CREATE TABLE touch_log (position bigint NOT NULL, thing uuid NOT NULL)")
    return TouchLog()


async def append_touches(event_store: store.EventStore, count: int) -> None:
    for i in range(count):
        await event_store.append(f"thing-{i % 7}", [Touched(thing=uuid4())])


async def assert_each_applied_once(pool: asyncpg.Pool[Any], expected: int) -> None:
    positions = [r[0] for r in await pool.fetch("SELECT position FROM touch_log")]
    assert len(positions) == expected
    assert len(set(positions)) == expected
    logged = await pool.fetch(
        "SELECT global_position FROM events WHERE event_type = 'test.touched'"
    )
    assert set(positions) == {r[0] for r in logged}


async def test_async_projection_follows_the_log(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], touch_log: TouchLog
) -> None:
    await append_touches(event_store, 30)
    async with runner.AsyncRunner(event_store, [touch_log], batch_size=8, poll_interval_s=30):
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 30 FROM touch_log"))
        await append_touches(event_store, 5)
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 35 FROM touch_log"))
    await assert_each_applied_once(pool, 35)


async def test_a_projection_cancelled_mid_batch_resumes_exactly_once(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], touch_log: TouchLog
) -> None:
    await append_touches(event_store, 20)
    touch_log.gate = asyncio.Event()  # stops half-way through the first batch
    first = runner.AsyncRunner(event_store, [touch_log], batch_size=10, poll_interval_s=30)
    await first.start()
    await asyncio.wait_for(touch_log.entered.wait(), 10)
    await first.stop()  # cancelled with 5 rows of its batch written but not committed
    assert await pool.fetchval("SELECT count(*) FROM touch_log") == 0

    touch_log.gate = None
    async with runner.AsyncRunner(event_store, [touch_log], batch_size=10, poll_interval_s=30):
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 20 FROM touch_log"))
    await assert_each_applied_once(pool, 20)


async def test_a_projection_whose_connection_dies_mid_batch_resumes_exactly_once(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], touch_log: TouchLog
) -> None:
    await append_touches(event_store, 20)
    touch_log.gate = asyncio.Event()
    worker = runner.AsyncRunner(
        event_store, [touch_log], batch_size=10, poll_interval_s=30, retry_s=0.05
    )
    async with worker:
        await asyncio.wait_for(touch_log.entered.wait(), 10)
        # Kill the backend in the middle of the batch, as a crash of the database session would.
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_xid IS NOT NULL"
        )
        touch_log.gate.set()
        touch_log.gate = None
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 20 FROM touch_log"))
    await assert_each_applied_once(pool, 20)
    checkpoint = await pool.fetchrow(
        "SELECT tx_id::text AS tx, position FROM projection_checkpoints WHERE name = 'touch_log'"
    )
    assert checkpoint is not None


async def test_two_runners_never_apply_the_same_batch(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], touch_log: TouchLog
) -> None:
    await append_touches(event_store, 50)
    async with (
        runner.AsyncRunner(event_store, [touch_log], batch_size=5, poll_interval_s=0.05),
        runner.AsyncRunner(event_store, [touch_log], batch_size=5, poll_interval_s=0.05),
    ):
        await wait_for(lambda: pool.fetchval("SELECT count(*) >= 50 FROM touch_log"))
    await assert_each_applied_once(pool, 50)


async def test_rebuild_and_verify_an_async_projection(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], touch_log: TouchLog
) -> None:
    await append_touches(event_store, 25)
    async with runner.AsyncRunner(event_store, [touch_log], batch_size=10, poll_interval_s=30):
        await wait_for(lambda: pool.fetchval("SELECT count(*) = 25 FROM touch_log"))
    assert (await rebuild.verify(event_store, touch_log)).differences == ()
    await pool.execute(
        "DELETE FROM touch_log WHERE position = (SELECT min(position) FROM touch_log)"
    )
    broken = await rebuild.verify(event_store, touch_log)
    assert [(d.table, d.side) for d in broken.differences] == [("touch_log", "rebuilt")]
    result = await rebuild.rebuild(event_store, touch_log)
    assert result.events == 25
    await assert_each_applied_once(pool, 25)
    assert (await rebuild.verify(event_store, touch_log)).differences == ()


# --- rebuild and verify of the inline users projection --------------------------------------

USERS = users_projection.UsersProjection()


async def test_verify_finds_a_tampered_row_and_rebuild_repairs_it(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    for name in ("a", "b", "c"):
        await create_user(event_store, name)
    assert (await rebuild.verify(event_store, USERS)).differences == ()
    live_before = await table(pool, "users")

    await pool.execute("UPDATE users SET admin = true WHERE name = 'b'")
    result = await rebuild.verify(event_store, USERS)
    sides = sorted((d.side, d.row["name"], d.row["admin"]) for d in result.differences)
    assert sides == [("live", "b", True), ("rebuilt", "b", False)]

    progress: list[tuple[int, int]] = []
    rebuilt = await rebuild.rebuild(
        event_store, USERS, progress=lambda d, t: progress.append((d, t))
    )
    assert rebuilt.events == 3
    assert progress[-1] == (3, 3)
    assert await table(pool, "users") == live_before
    # The swapped-in table is the real thing: constraints and all.
    with pytest.raises(asyncpg.UniqueViolationError):
        await create_user(event_store, "a")
    assert (
        await pool.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rebuild_%'") == 0
    )


async def test_rebuild_while_users_are_being_created(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    for i in range(200):
        await create_user(event_store, f"pre{i}")
    stop = asyncio.Event()
    created = 0

    async def keep_creating() -> None:
        nonlocal created
        while not stop.is_set():
            await create_user(event_store, f"during{created}")
            created += 1

    writer = asyncio.create_task(keep_creating())
    try:
        await rebuild.rebuild(event_store, USERS, batch_size=50)
        await wait_for(lambda: created >= 3)
    finally:
        stop.set()
        await writer
    assert await pool.fetchval("SELECT count(*) FROM users") == 200 + created
    assert (await rebuild.verify(event_store, USERS)).differences == ()


# Commands a hub would issue; invalid ones (unknown user, taken name) are skipped by the model.
commands = st.lists(
    st.tuples(
        st.sampled_from(["create", "rename", "admin", "delete"]),
        st.integers(min_value=0, max_value=5),  # which user (by index)
        st.integers(min_value=0, max_value=5),  # which name
        st.booleans(),
    ),
    max_size=25,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=commands, batched=st.booleans())
async def test_rebuild_reproduces_the_live_state_exactly(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], script: list[Any], batched: bool
) -> None:
    """Random histories: a rebuild (pages of 3, cutting through streams) equals the live tables."""
    prefix = uuid4().hex[:8]  # examples share the database: keep their names apart
    live: dict[int, tuple[UUID, str, int]] = {}  # index -> (id, name, version)
    names = {name for _, name, _ in live.values()}
    for action, who, which, flag in script:
        name = f"{prefix}-{which}"
        names = {n for _, n, _ in live.values()}
        if action == "create" and who not in live and name not in names:
            user_id = await create_user(event_store, name, flag)
            live[who] = (user_id, name, 1)
            continue
        if who not in live:
            continue
        user_id, current, version = live[who]
        event: models.Event
        if action == "rename" and name not in names:
            event = user_events.UserRenamed(user_id=user_id, old_name=current, name=name)
            current = name
        elif action == "admin":
            event = user_events.UserAdminChanged(user_id=user_id, admin=flag)
        elif action == "delete":
            event = user_events.UserDeleted(user_id=user_id, name=current)
        else:
            continue
        extra = [user_events.UserAdminChanged(user_id=user_id, admin=not flag)] if batched else []
        if action == "delete":
            extra = []
        await event_store.append(user_events.stream_id(user_id), [*extra, event], expected=version)
        if action == "delete":
            del live[who]
        else:
            live[who] = (user_id, current, version + 1 + len(extra))
    result = await rebuild.verify(event_store, USERS, batch_size=3)
    assert result.differences == ()
    mine = await pool.fetch("SELECT name FROM users WHERE name LIKE $1", f"{prefix}-%")
    assert sorted(r[0] for r in mine) == sorted(name for _, name, _ in live.values())


def test_catalog_projection_names_are_unique() -> None:
    names = [p.name for p in catalog.ALL]
    assert len(names) == len(set(names))
    known = (
        "known: groups, oauth_clients, projects, roles, routes, servers, services, shares,"
        " signups, tokens, users"
    )
    with pytest.raises(base.ProjectionError, match=known):
        base.by_name(catalog.ALL, "nope")


async def test_conflicting_appends_keep_projection_and_log_consistent(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    user_id = await create_user(event_store, "same")
    stream = user_events.stream_id(user_id)

    async def flip(admin: bool) -> Any:
        with contextlib.suppress(errors.ConcurrencyConflict):
            await event_store.append(
                stream, [user_events.UserAdminChanged(user_id=user_id, admin=admin)], expected=1
            )

    await asyncio.gather(*(flip(i % 2 == 0) for i in range(6)))
    assert await event_store.stream_version(stream) == 2
    assert (await rebuild.verify(event_store, USERS)).differences == ()
