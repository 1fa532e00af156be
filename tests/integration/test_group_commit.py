"""Group commit against real PostgreSQL: concurrent appends share a statement and a commit,
each caller still gets its own result or error, and nothing is acknowledged before commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import errors, group_commit, models, sql, store
from events.catalog import users as user_events
from projections import base, catalog
from tests.helpers import Noted, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def blocker(pool: asyncpg.Pool[Any]) -> AsyncIterator[sql.Connection]:
    """A connection of its own, to hold a lock on ``events`` that keeps a batch waiting."""
    async with pool.acquire() as conn:
        yield conn


@dataclass
class Queue:
    """Appends queued behind a first one (``opener``) that a lock on ``events`` holds."""

    opener: asyncio.Future[store.AppendResult]
    queued: list[asyncio.Future[Any]]
    lock: Any  # the blocker's transaction
    released: bool = False

    async def release(self) -> None:
        """Let the opener through (the queued appends follow as one batch)."""
        if not self.released:
            self.released = True
            await self.lock.rollback()


@contextlib.asynccontextmanager
async def queue_behind_lock(
    event_store: store.EventStore,
    blocker: sql.Connection,
    opener_stream: str,
    appends: list[Any],
) -> AsyncIterator[Queue]:
    """Start an append to ``opener_stream`` that a lock on ``events`` holds, then ``appends``
    (coroutine factories), which queue behind it; the lock goes at the end at the latest."""
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
    group = event_store.group_commit
    assert group is not None
    opener = asyncio.ensure_future(event_store.append(opener_stream, [Noted(text="first")]))
    await wait_for(lambda: group.lanes.running == 1)
    queued = [asyncio.ensure_future(make()) for make in appends]
    await wait_for(lambda: len(group.lanes.queue) == len(appends))
    queue = Queue(opener, queued, lock)
    try:
        yield queue
    finally:
        await queue.release()


async def held_batch(
    event_store: store.EventStore,
    blocker: sql.Connection,
    appends: list[Any],
) -> list[Any]:
    """Run ``appends`` (coroutine factories) so that all but a first, blocked one queue up and
    then go as one batch: a lock on ``events`` holds the first append until all have queued."""
    group = event_store.group_commit
    assert group is not None
    async with queue_behind_lock(event_store, blocker, "note-opener", appends) as queue:
        batches = group.batches
        await queue.release()
        await queue.opener
        results = await asyncio.gather(*queue.queued, return_exceptions=True)
    assert group.batches == batches + 1, "the queued appends went as one batch"
    return results


@pytest.fixture
def one_lane(pool: asyncpg.Pool[Any]) -> store.EventStore:
    return store.EventStore(pool, inline=base.Inline(catalog.ALL), group_commit_lanes=1)


async def test_concurrent_appends_share_one_transaction(
    one_lane: store.EventStore, blocker: sql.Connection
) -> None:
    results = await held_batch(
        one_lane,
        blocker,
        [
            lambda i=i: one_lane.append(f"note-g{i}", [Noted(text=str(i))], expected=0)
            for i in range(6)
        ],
    )
    assert all(isinstance(r, store.AppendResult) for r in results)
    assert len({r.checkpoint.tx for r in results}) == 1, "one transaction for the batch"
    for i, result in enumerate(results):
        assert result.stream_id == f"note-g{i}"
        assert result.version == 1
        assert [e.data for e in result.events] == [Noted(text=str(i))]
        stored = await one_lane.read_stream(f"note-g{i}")
        assert [(e.position, e.data) for e in stored] == [(result.positions[0], Noted(text=str(i)))]


async def test_a_conflict_fails_its_own_append_only(
    one_lane: store.EventStore, blocker: sql.Connection
) -> None:
    await one_lane.append("note-c1", [Noted(text="there")], expected=0)
    results = await held_batch(
        one_lane,
        blocker,
        [
            lambda: one_lane.append("note-c0", [Noted(text="a"), Noted(text="b")], expected=0),
            lambda: one_lane.append("note-c1", [Noted(text="late")], expected=0),
            lambda: one_lane.append("note-c2", [Noted(text="c")], expected=store.ANY),
        ],
    )
    assert isinstance(results[0], store.AppendResult)
    assert results[0].version == 2
    assert isinstance(results[1], errors.ConcurrencyConflict)
    assert (results[1].expected, results[1].actual) == (0, 1)
    assert isinstance(results[2], store.AppendResult)
    assert results[2].version == 1
    assert results[0].checkpoint.tx == results[2].checkpoint.tx
    assert [e.data for e in await one_lane.read_stream("note-c1")] == [Noted(text="there")]
    assert [e.data for e in await one_lane.read_stream("note-c0")] == [
        Noted(text="a"),
        Noted(text="b"),
    ]


async def test_a_failing_append_does_not_fail_the_batch(
    one_lane: store.EventStore, blocker: sql.Connection
) -> None:
    # An idempotent retry (its event id in the log) and an inline projection refusing an
    # event (a rename of a user who does not exist) each fail the batch statement as a whole:
    # the batch is rolled back and its appends run one by one, each with its own outcome.
    retried_id = uuid4()
    original = await one_lane.append(
        "note-r", [Noted(text="once")], expected=0, event_ids=[retried_id]
    )
    ghost = uuid4()
    alice = uuid4()
    results = await held_batch(
        one_lane,
        blocker,
        [
            lambda: one_lane.append(
                "note-r", [Noted(text="once")], expected=store.ANY, event_ids=[retried_id]
            ),
            lambda: one_lane.append(
                f"user-{ghost}",
                [user_events.UserRenamed(user_id=ghost, old_name="x", name="y")],
            ),
            lambda: one_lane.append(
                f"user-{alice}",
                [user_events.UserCreated(user_id=alice, name="alice-gc", admin=False)],
                expected=0,
            ),
            lambda: one_lane.append("note-ok", [Noted(text="fine")], expected=0),
        ],
    )
    assert isinstance(results[0], store.AppendResult)
    assert results[0].positions == original.positions
    assert isinstance(results[1], base.ProjectionError)
    assert isinstance(results[2], store.AppendResult)
    assert results[2].version == 1
    assert isinstance(results[3], store.AppendResult)
    assert results[3].version == 1
    assert await one_lane.stream_version(f"user-{ghost}") == 0
    assert await one_lane.stream_version("note-r") == 1
    name = await one_lane.pool.fetchval("SELECT name FROM users WHERE user_id = $1", alice)
    assert name == "alice-gc", "the inline projection ran for the appends that were written"


async def test_inline_projection_sees_a_batch_in_order(
    one_lane: store.EventStore, blocker: sql.Connection
) -> None:
    users = [uuid4() for _ in range(4)]
    results = await held_batch(
        one_lane,
        blocker,
        [
            lambda u=u, i=i: one_lane.append(
                f"user-{u}",
                [
                    user_events.UserCreated(user_id=u, name=f"gc-{i}", admin=False),
                    user_events.UserRenamed(user_id=u, old_name=f"gc-{i}", name=f"gc-{i}b"),
                ],
                expected=0,
            )
            for i, u in enumerate(users)
        ],
    )
    assert all(isinstance(r, store.AppendResult) for r in results)
    rows = await one_lane.pool.fetch(
        "SELECT user_id, name, last_position FROM users WHERE user_id = ANY($1::uuid[])", users
    )
    got = {r["user_id"]: (r["name"], r["last_position"]) for r in rows}
    for i, (u, result) in enumerate(zip(users, results, strict=True)):
        assert got[u] == (f"gc-{i}b", result.positions[-1])


async def test_appends_to_one_stream_stay_in_order(one_lane: store.EventStore) -> None:
    # Two appends to one stream never share a batch: the second waits for the first.
    async def add(i: int) -> store.AppendResult:
        return await one_lane.append("note-order", [Noted(text=str(i))], expected=store.ANY)

    results = await asyncio.gather(*(add(i) for i in range(20)))
    assert sorted(r.version for r in results) == list(range(1, 21))
    stored = await one_lane.read_stream("note-order")
    assert [e.stream_version for e in stored] == list(range(1, 21))
    # each caller's result is its own event's, and they are stored in the order they came
    texts = [e.data.text for e in stored]  # type: ignore[attr-defined]
    assert [texts[r.version - 1] for r in results] == [str(i) for i in range(20)]
    assert texts == [str(i) for i in range(20)]


async def test_nothing_acknowledged_when_the_batch_dies_before_commit(
    one_lane: store.EventStore,
    blocker: sql.Connection,
    pool: asyncpg.Pool[Any],
) -> None:
    # The batch's backend is killed while it waits for a lock: every caller in it gets an
    # error, none a result, and nothing of theirs is in the log.
    appends = [
        lambda i=i: one_lane.append(f"note-d{i}", [Noted(text="x")], expected=0)
        for i in range(1, 5)
    ]
    async with queue_behind_lock(one_lane, blocker, "note-d0", appends) as queue:
        opener, queued = queue.opener, queue.queued
        # Kill the lone opener's backend, then the batch's, each while it waits on the lock.
        waiting = (
            "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        for _ in range(2):
            await wait_for(lambda: pool.fetchval(f"SELECT count(*) {waiting}"))
            await pool.execute(f"SELECT pg_terminate_backend(pid) {waiting}")
            if opener.done() and all(q.done() for q in queued):
                break
            await wait_for(lambda: opener.done())
        outcomes = await asyncio.gather(opener, *queued, return_exceptions=True)
    assert all(isinstance(o, errors.DatabaseUnavailable) for o in outcomes), outcomes
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'note-d%'") == 0
    # The store carries on.
    after = await one_lane.append("note-d1", [Noted(text="again")], expected=0)
    assert after.version == 1


async def test_a_cancelled_leader_hands_its_batch_on(
    one_lane: store.EventStore, blocker: sql.Connection
) -> None:
    appends = [
        lambda i=i: one_lane.append(f"note-l{i}", [Noted(text="f")], expected=0)
        for i in range(1, 4)
    ]
    async with queue_behind_lock(one_lane, blocker, "note-l0", appends) as queue:
        queue.opener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queue.opener
        await queue.release()
        results = await asyncio.gather(*queue.queued)
    assert [r.version for r in results] == [1, 1, 1]


async def test_a_leader_cancelled_while_its_own_append_is_held_back_strands_nobody(
    pool: asyncpg.Pool[Any], blocker: sql.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A caller leads the spare lane's batch while its own append stays queued (its stream is
    # in flight, and the batch is full), and is cancelled: a later append must still be
    # written, though nobody appends after it (its append was once left queued with no
    # waiter, first in line, and every nudge went to it).
    monkeypatch.setattr(group_commit, "MAX_BATCH_EVENTS", 2)
    two_lanes = store.EventStore(pool, group_commit_lanes=2)
    group = two_lanes.group_commit
    assert group is not None
    lock = blocker.transaction()
    await lock.start()
    await blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
    try:
        first = asyncio.ensure_future(two_lanes.append("note-sa", [Noted(text="1")]))
        await wait_for(lambda: group.lanes.running == 1)  # held by the lock, in the first lane
        queued = [
            asyncio.ensure_future(two_lanes.append(f"note-s{s}", [Noted(text="1")])) for s in "bc"
        ]
        await wait_for(lambda: len(group.lanes.queue) == 2)
        loop = asyncio.get_running_loop()
        spare = group_commit.SPARE_LANE_AFTER_S
        await wait_for(lambda: loop.time() - group.lanes.last_start >= spare)
        # It leads the spare lane's batch, of b and c; its own append stays queued.
        second = asyncio.ensure_future(two_lanes.append("note-sa", [Noted(text="2")]))
        await wait_for(lambda: group.lanes.running == 2)
        late = asyncio.ensure_future(two_lanes.append("note-se", [Noted(text="1")]))
        await wait_for(lambda: len(group.lanes.queue) == 2)  # a's second and e: no lane free
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
    finally:
        await lock.rollback()
    assert (await first).version == 1
    assert [(await task).version for task in queued] == [1, 1]
    assert (await asyncio.wait_for(late, 10)).version == 1
    assert await two_lanes.stream_version("note-sa") == 1  # the cancelled append is not written
    assert (group.lanes.running, group.lanes.queue) == (0, ())


async def test_closing_the_store_fails_what_waits_and_appends_go_on_after(
    one_lane: store.EventStore, blocker: sql.Connection
) -> None:
    appends = [lambda: one_lane.append("note-x1", [Noted(text="queued")], expected=0)]
    async with queue_behind_lock(one_lane, blocker, "note-x0", appends) as queue:
        await one_lane.aclose()
        outcomes = await asyncio.gather(queue.opener, *queue.queued, return_exceptions=True)
    assert all(isinstance(o, errors.StoreClosed) for o in outcomes), outcomes
    assert await one_lane.stream_version("note-x1") == 0  # the queued one was never written
    group = one_lane.group_commit
    assert group is not None
    assert (group.lanes.running, group.lanes.queue) == (0, ())
    assert (await one_lane.append("note-x1", [Noted(text="after")], expected=0)).version == 1


async def test_without_group_commit(pool: asyncpg.Pool[Any]) -> None:
    plain = store.EventStore(pool, group_commit_lanes=0)
    assert plain.group_commit is None
    results = await asyncio.gather(
        *(plain.append(f"note-p{i}", [Noted(text="p")], expected=0) for i in range(4))
    )
    assert [r.version for r in results] == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="at least one lane"):
        store.EventStore(pool, group_commit_lanes=-1)


async def test_many_writers_lose_nothing(event_store: store.EventStore) -> None:
    writers, each = 16, 25
    metadata = models.Metadata(actor=models.Actor(kind="user", name="gc"))

    async def writer(w: int) -> list[int]:
        versions = []
        for k in range(each):
            result = await event_store.append(
                f"note-w{w}", [Noted(text=f"{w}-{k}")], expected=k, metadata=metadata
            )
            versions.append(result.version)
        return versions

    results = await asyncio.gather(*(writer(w) for w in range(writers)))
    assert all(v == list(range(1, each + 1)) for v in results)
    for w in range(writers):
        stored = await event_store.read_stream(f"note-w{w}")
        assert [e.data.text for e in stored] == [f"{w}-{k}" for k in range(each)]  # type: ignore[attr-defined]


@dataclass
class SlowBatch:
    """A store of two lanes whose first batch (a user's creation) waits on a lock on the users
    read model (its inline projection), with the spare lane's delay passed."""

    events: store.EventStore
    group: group_commit.GroupCommit
    tx: Any
    user: Any
    append: asyncio.Future[store.AppendResult]


async def slow_batch(pool: asyncpg.Pool[Any], blocker: sql.Connection) -> SlowBatch:
    two_lanes = store.EventStore(pool, inline=base.Inline(catalog.ALL), group_commit_lanes=2)
    group = two_lanes.group_commit
    assert group is not None
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE users IN EXCLUSIVE MODE")
    user = uuid4()
    slow = asyncio.ensure_future(
        two_lanes.append(
            f"user-{user}", [user_events.UserCreated(user_id=user, name="held", admin=False)]
        )
    )
    await wait_for(lambda: group.lanes.running == 1)
    loop = asyncio.get_running_loop()
    await wait_for(lambda: loop.time() - group.lanes.last_start >= group_commit.SPARE_LANE_AFTER_S)
    return SlowBatch(two_lanes, group, tx, user, slow)


async def test_a_slow_batch_does_not_hold_back_the_others(
    pool: asyncpg.Pool[Any], blocker: sql.Connection
) -> None:
    # an append that does not touch the users read model goes through a spare lane meanwhile
    held = await slow_batch(pool, blocker)
    quick = await held.events.append("note-quick", [Noted(text="not held")], expected=0)
    assert quick.version == 1
    assert not held.append.done()
    await held.tx.rollback()
    assert (await held.append).version == 1


async def test_a_spare_lane_leaves_a_stream_that_a_slow_batch_holds(
    pool: asyncpg.Pool[Any], blocker: sql.Connection
) -> None:
    # A second append to the stream the slow batch holds waits for it, rather than going
    # through the spare lane to wait on that batch's rows (and fail, and be run again alone);
    # an append to another stream still goes past.
    held = await slow_batch(pool, blocker)
    behind = asyncio.ensure_future(
        held.events.append(
            f"user-{held.user}",
            [user_events.UserRenamed(user_id=held.user, old_name="held", name="moved")],
        )
    )
    await wait_for(lambda: len(held.group.lanes.queue) == 1)  # queued, held behind the slow batch
    quick = await held.events.append("note-past", [Noted(text="not held")], expected=0)
    assert quick.version == 1
    assert not held.append.done()
    assert not behind.done()
    # The spare lane took only the other stream's append (its task ends just after it
    # hands out the result).
    await wait_for(lambda: held.group.lanes.running == 1)
    assert [item.key for item in held.group.lanes.queue] == [f"user-{held.user}"]
    await held.tx.rollback()
    assert (await held.append).version == 1
    assert (await behind).version == 2


# --- rows beside an append ------------------------------------------------------------------


class Refused(Exception):
    """A ``Marked`` item refused by its rows beside."""


@dataclass(frozen=True)
class Marked(group_commit.Beside):
    """A row in ``marks`` written beside an append, or its append refused (``refuse``)."""

    stream: str
    refuse: bool = False
    calls: list[int] | None = None  # told the size of each write_many

    @classmethod
    async def write_many(
        cls, conn: sql.Connection, items: Sequence[Marked]
    ) -> list[Exception | None]:
        if items[0].calls is not None:
            items[0].calls.append(len(items))
        await conn.execute(
            "INSERT INTO marks (stream) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
            [item.stream for item in items if not item.refuse],
        )
        return [Refused(item.stream) if item.refuse else None for item in items]


@pytest.fixture
async def marks(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute("CREATE TABLE marks (stream text PRIMARY KEY)")


async def marked(pool: asyncpg.Pool[Any]) -> set[str]:
    return {row["stream"] for row in await pool.fetch("SELECT stream FROM marks")}


@pytest.mark.usefixtures("marks")
async def test_rows_beside_commit_with_their_batch_and_a_refusal_fails_alone(
    one_lane: store.EventStore, blocker: sql.Connection, pool: asyncpg.Pool[Any]
) -> None:
    calls: list[int] = []
    refused = {"note-b2"}
    results = await held_batch(
        one_lane,
        blocker,
        [
            lambda i=i: one_lane.append(
                f"note-b{i}",
                [Noted(text=str(i))],
                expected=0,
                beside=Marked(f"note-b{i}", f"note-b{i}" in refused, calls),
            )
            for i in range(5)
        ]
        + [lambda: one_lane.append("note-plain", [Noted(text="no rows beside")], expected=0)],
    )
    assert calls == [5], "the batch's rows beside went in one write_many"
    assert isinstance(results[2], Refused)
    written = [r for i, r in enumerate(results) if i != 2]
    assert all(isinstance(r, store.AppendResult) for r in written), results
    assert len({r.checkpoint.tx for r in written}) == 1, "one transaction for the batch"
    assert await marked(pool) == {"note-b0", "note-b1", "note-b3", "note-b4"}
    assert await one_lane.stream_version("note-b2") == 0, "a refused append writes no event"
    for i in (0, 1, 3, 4):
        assert await one_lane.stream_version(f"note-b{i}") == 1
    assert await one_lane.stream_version("note-plain") == 1


@pytest.mark.usefixtures("marks")
async def test_an_append_skipped_with_rows_beside_leaves_none_of_them(
    one_lane: store.EventStore, blocker: sql.Connection, pool: asyncpg.Pool[Any]
) -> None:
    # The batch statement skips an append whose stream is not at its expected version; its
    # rows beside were written already in the batch's transaction: the batch is rolled back
    # and its appends run one by one, so that append fails with none of its rows kept.
    await one_lane.append("note-x1", [Noted(text="there")], expected=0)
    results = await held_batch(
        one_lane,
        blocker,
        [
            lambda i=i: one_lane.append(
                f"note-x{i}", [Noted(text="new")], expected=0, beside=Marked(f"note-x{i}")
            )
            for i in range(3)
        ],
    )
    assert isinstance(results[0], store.AppendResult)
    assert isinstance(results[1], errors.ConcurrencyConflict)
    assert isinstance(results[2], store.AppendResult)
    assert await marked(pool) == {"note-x0", "note-x2"}
    assert [e.data for e in await one_lane.read_stream("note-x1")] == [Noted(text="there")]


@pytest.mark.usefixtures("marks")
async def test_rows_beside_a_lone_append_share_its_transaction(
    pool: asyncpg.Pool[Any],
) -> None:
    for lanes in (1, 0):  # through group commit, and without it
        events = store.EventStore(pool, group_commit_lanes=lanes)
        await events.append("note-s1", [Noted(text="there")], expected=store.ANY)
        with pytest.raises(errors.ConcurrencyConflict):
            await events.append(
                "note-s1", [Noted(text="again")], expected=0, beside=Marked(f"note-s{lanes}a")
            )
        with pytest.raises(Refused):
            await events.append(
                f"note-s{lanes}b",
                [Noted(text="no")],
                expected=0,
                beside=Marked(f"note-s{lanes}b", refuse=True),
            )
        await events.append(
            f"note-s{lanes}c", [Noted(text="yes")], expected=0, beside=Marked(f"note-s{lanes}c")
        )
        assert await events.stream_version(f"note-s{lanes}b") == 0
    assert await marked(pool) == {"note-s1c", "note-s0c"}
