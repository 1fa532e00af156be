"""Snapshots of the read models: time travel from a snapshot gives exactly the tables a replay
from the start gives; a snapshot of other projection code is not used (and time travel says
so); only the newest ``keep`` are kept; a serving hub takes them as the log grows."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import asyncpg
import pytest

from events import models, store
from projections import base, catalog, rebuild, snapshots
from projections import users as users_projection
from tests.helpers import wait_for
from tests.integration.api_fixtures import Api
from tests.integration.test_events_cli import cli
from tests.integration.test_projections import create_user
from tests.integration.test_workflow import run_workflow

pytestmark = pytest.mark.integration

ALL = base.Together(catalog.ALL)
SNAPSHOTS = "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^snapshot_'"


async def tables(conn: Any, projection: base.Projection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projection's tables as ``conn``'s ``search_path`` finds them, sorted."""
    found = {}
    for table in projection.tables:
        rows = await conn.fetch(f"SELECT * FROM {rebuild.ident(table)}")
        found[table] = sorted((tuple(r) for r in rows), key=repr)
    return found


async def both_ways(
    pool: asyncpg.Pool[Any], event_store: store.EventStore, upto: models.Checkpoint
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The read models at ``upto`` from the newest snapshot, and replayed from the start; and
    what the snapshot way said."""
    said: list[str] = []
    async with pool.acquire() as conn:
        async with snapshots.as_of(conn, event_store, ALL, upto, batch_size=7, note=said.append):
            fast = await tables(conn, ALL)
        async with rebuild.as_of(conn, event_store, ALL, upto):
            slow = await tables(conn, ALL)
    return fast, slow, said


async def test_time_travel_from_snapshots_equals_a_replay_from_the_start(
    api: Api, event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await run_workflow(api)
    log = await event_store.read_all(limit=10_000)
    assert len(log) > 30
    first = await snapshots.take(event_store, catalog.ALL, at=log[len(log) // 3].checkpoint)
    second = await snapshots.take(event_store, catalog.ALL, at=log[2 * len(log) // 3].checkpoint)
    assert first.checkpoint < second.checkpoint
    assert second.events == 2 * len(log) // 3 + 1  # built from the first, counted in all
    points = [0, len(log) // 3 - 1, len(log) // 3, len(log) // 2, 2 * len(log) // 3, len(log) - 1]
    for index in points:
        upto = log[index].checkpoint
        fast, slow, said = await both_ways(pool, event_store, upto)
        assert fast == slow, f"at position {upto.position}"
        expected = [s for s in (first, second) if s.checkpoint <= upto]
        if expected:
            assert said == [
                f"starting from the snapshot at position {expected[-1].checkpoint.position}"
            ]
        else:
            assert said == ["no snapshot at or before this point: replaying the log from the start"]
    assert any(v for v in (await both_ways(pool, event_store, log[-1].checkpoint))[1].values())


async def test_a_snapshot_of_other_projection_code_is_not_used(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(5):
        await create_user(event_store, f"user{number}")
    head = await event_store.head()
    await snapshots.take(event_store, catalog.ALL, at=head)
    # The users projection's code changes (an explicit version is part of its digest).
    monkeypatch.setattr(users_projection.UsersProjection, "version", 2, raising=False)
    fast, slow, said = await both_ways(pool, event_store, head)
    assert fast == slow
    assert said == [
        f"the snapshot at position {head.position} was built by other code of users:"
        " replaying the log from the start"
    ]
    # Taking one again builds it from the start, and the stale one goes first.
    again = await snapshots.take(event_store, catalog.ALL, at=head, keep=1)
    async with pool.acquire() as conn:
        assert [s.schema for s in await snapshots.listed(conn)] == [again.schema]


async def test_at_most_keep_snapshots_are_kept(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    points = []
    for number in range(4):
        await create_user(event_store, f"user{number}")
        points.append(await event_store.head())
    for point in points:
        await snapshots.take(event_store, catalog.ALL, at=point, keep=2)
    async with pool.acquire() as conn:
        kept = [s.checkpoint for s in await snapshots.listed(conn)]
    assert len(kept) == 2
    assert kept[-1] == points[-1]  # the newest stays; which other, ``thinned`` decides
    assert await pool.fetchval(SNAPSHOTS) == 2  # nothing else left behind (no build schema)
    # One at a point that has one already is not taken twice.
    said: list[str] = []
    await snapshots.take(event_store, catalog.ALL, at=points[-1], keep=2, note=said.append)
    assert said == [f"a snapshot at position {points[-1].position} exists already"]
    with pytest.raises(snapshots.SnapshotError, match="at least 1"):
        await snapshots.take(event_store, catalog.ALL, keep=0)


async def test_one_snapshot_is_taken_at_a_time(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    await create_user(event_store, "ann")
    async with pool.acquire() as conn:
        assert await conn.fetchval(snapshots.queries["take_lock"])
        try:
            with pytest.raises(snapshots.SnapshotError, match="another snapshot"):
                await snapshots.take(event_store, catalog.ALL)
        finally:
            await conn.fetchval(snapshots.queries["take_unlock"])


async def test_a_serving_hub_takes_snapshots_as_the_log_grows(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with snapshots.Snapshotter(
        event_store, catalog.ALL, every=3, keep=2, check_s=0.05, first_check_s=0, jitter_s=0
    ):
        for number in range(3):
            await create_user(event_store, f"user{number}")
        head = await event_store.head()

        async def taken() -> list[snapshots.Snapshot]:
            async with pool.acquire() as conn:
                return await snapshots.listed(conn)

        # a build makes and fills a schema of every read model: seconds on a loaded machine
        await wait_for(lambda: _at(taken, head), timeout_s=60, every_s=0.1)
        for number in range(3, 9):
            await create_user(event_store, f"user{number}")
        last = await event_store.head()
        await wait_for(lambda: _at(taken, last), timeout_s=60, every_s=0.1)
    async with pool.acquire() as conn:
        assert len(await snapshots.listed(conn)) <= 2


async def _at(taken: Any, point: models.Checkpoint) -> bool:
    return any(s.checkpoint >= point for s in await taken())


async def test_the_snapshot_command_and_state_at_from_it(
    event_store: store.EventStore, db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    for number in range(6):
        await create_user(event_store, f"user{number}")
    positions = [e.position for e in await event_store.read_all()]
    code, out = await cli(db_url, "projections", "snapshot", "--at", str(positions[2]))
    assert code == 0, out
    assert f"at position {positions[2]}" in out
    code, out = await cli(db_url, "projections", "snapshot", "--list")
    assert code == 0, out
    assert "1 snapshots" in out
    code, out = await cli(db_url, "state", "--at", str(positions[4]))
    assert code == 0, out
    assert f"starting from the snapshot at position {positions[2]}" in out
    assert "5 in all" in out
    code, out = await cli(db_url, "projections", "snapshot", "--at", str(positions[-1] + 10))
    assert code == 1
    assert "past the end of the log" in out


async def test_a_snapshot_of_another_log_is_not_used(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    """A log truncated and imported again may hold other events at a snapshot's position: the
    snapshot keeps the id of the event at its checkpoint, and is used only while it matches."""
    for number in range(3):
        await create_user(event_store, f"user{number}")
    head = await event_store.head()
    taken = await snapshots.take(event_store, catalog.ALL, at=head)
    assert taken.event_id is not None
    await pool.execute(
        f"UPDATE {rebuild.ident(taken.schema)}.{snapshots.INFO} SET event_id = gen_random_uuid()"
    )
    fast, slow, said = await both_ways(pool, event_store, head)
    assert fast == slow
    assert said == [
        f"the snapshot at position {head.position} was taken of another log (the event at its"
        " position differs): replaying the log from the start"
    ]


async def test_a_snapshot_before_the_first_event_is_refused(
    event_store: store.EventStore,
) -> None:
    with pytest.raises(snapshots.SnapshotError, match="before the log's first event"):
        await snapshots.take(event_store, catalog.ALL)  # the log is empty
    await create_user(event_store, "ann")
    with pytest.raises(snapshots.SnapshotError, match="before the log's first event"):
        await snapshots.take(event_store, catalog.ALL, at=models.ORIGIN)


async def test_the_snapshot_just_taken_is_never_pruned(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    points = []
    for number in range(6):
        await create_user(event_store, f"user{number}")
        points.append(await event_store.head())
    await snapshots.take(event_store, catalog.ALL, at=points[3], keep=2)
    await snapshots.take(event_store, catalog.ALL, at=points[5], keep=2)
    # Thinning alone would drop this one again (its neighbours are the closest together).
    early = await snapshots.take(event_store, catalog.ALL, at=points[0], keep=2)
    async with pool.acquire() as conn:
        kept = [s.schema for s in await snapshots.listed(conn)]
    assert early.schema in kept
    assert len(kept) == 2


CHILD = [sys.executable, "-m", "hub.cli", "projections", "snapshot"]


async def test_a_serving_hub_builds_snapshots_in_a_child_process(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], db_url: str
) -> None:
    for number in range(3):
        await create_user(event_store, f"user{number}")
    head = await event_store.head()
    env = {**os.environ, "CHRONOHUB_DATABASE_URL": db_url}
    taker = snapshots.Snapshotter(
        event_store, catalog.ALL, every=3, check_s=0.05, first_check_s=0, jitter_s=0,
        command=CHILD, env=env,
    )  # fmt: skip

    async def taken() -> list[snapshots.Snapshot]:
        async with pool.acquire() as conn:
            return await snapshots.listed(conn)

    async with taker:
        await wait_for(lambda: _at(taken, head), timeout_s=60)
    assert taker.failures == 0


async def test_a_failing_snapshot_child_is_retried_with_backoff(
    event_store: store.EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    await create_user(event_store, "ann")
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]
    taker = snapshots.Snapshotter(
        event_store, catalog.ALL, every=1, check_s=0.01, first_check_s=0, jitter_s=0,
        max_backoff_s=0.08, command=failing,
    )  # fmt: skip
    with caplog.at_level(logging.ERROR, logger=snapshots.log.name):
        async with taker:
            await wait_for(lambda: taker.failures >= 3, timeout_s=30)
    waits = []
    for failures in (0, 1, 2, 3, 10):
        taker.failures = failures
        waits.append(taker.next_wait())
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.08]  # doubling, capped at max_backoff_s
    failed = [r.getMessage() for r in caplog.records if "snapshot failed" in r.getMessage()]
    assert failed
    assert "exited with status 3: boom" in failed[0]
    assert "(1 in a row;" in failed[0]


async def test_a_busy_snapshot_child_is_no_failure(event_store: store.EventStore) -> None:
    await create_user(event_store, "ann")
    busy = [sys.executable, "-c", f"import sys; sys.exit({snapshots.BUSY_EXIT})"]
    ran = 0
    real_take = snapshots.Snapshotter._take

    taker = snapshots.Snapshotter(
        event_store, catalog.ALL, every=1, check_s=0.01, first_check_s=0, jitter_s=0,
        command=busy,
    )  # fmt: skip

    async def counted(self: snapshots.Snapshotter) -> None:
        nonlocal ran
        ran += 1
        await real_take(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshots.Snapshotter, "_take", counted)
        async with taker:
            await wait_for(lambda: ran >= 3, timeout_s=30)
    assert taker.failures == 0


async def test_stopping_kills_the_snapshot_child(
    event_store: store.EventStore, tmp_path: Any
) -> None:
    await create_user(event_store, "ann")
    started = tmp_path / "pid"
    sleeper = [
        sys.executable, "-c",
        f"import os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(600)",
    ]  # fmt: skip
    taker = snapshots.Snapshotter(
        event_store, catalog.ALL, every=1, first_check_s=0, jitter_s=0, command=sleeper
    )
    async with taker:
        await wait_for(lambda: started.exists() and started.read_text() != "", timeout_s=30)
    pid = int(started.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: gone


async def test_a_drop_waiting_on_a_reader_of_the_tables_is_skipped(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A pg_dump holds a lock on every table it dumps: a pruning waits at most 2 s for it,
    then leaves that snapshot for the next one (time travel would queue behind its lock)."""
    await create_user(event_store, "ann")
    taken = await snapshots.take(event_store, catalog.ALL)
    table = f"{rebuild.ident(taken.schema)}.{rebuild.ident(catalog.ALL[0].tables[0])}"
    async with pool.acquire() as dumper, dumper.transaction():
        await dumper.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
        async with pool.acquire() as conn:
            with caplog.at_level(logging.WARNING, logger=snapshots.log.name):
                # Stale for these versions, and over keep=0: due to go.
                dropped = await snapshots.prune(conn, 0, {"other": "version"})
    assert dropped == []
    assert f"snapshot {taken.schema} not dropped" in caplog.text
    async with pool.acquire() as conn:
        assert await snapshots.prune(conn, 0, {"other": "version"}) == [taken.schema]
