"""Gap-free global reading and subscriptions: the fence, live, wake-ups across processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from events import models, notify, store, subscription
from hub import database
from tests.helpers import Noted, wait_for

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def collecting(sub: subscription.Subscription) -> AsyncIterator[list[models.RecordedEvent]]:
    """Run ``sub`` in a task that appends what it delivers to the yielded list."""
    seen: list[models.RecordedEvent] = []

    async def consume() -> None:
        async for event in sub:
            seen.append(event)

    task = asyncio.create_task(consume())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def texts(events: list[models.RecordedEvent]) -> list[str]:
    return [e.data.text for e in events]  # type: ignore[attr-defined]


async def test_a_late_commit_is_never_skipped(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    """Hold a transaction open after it appended, append and commit elsewhere, then commit it.

    A reader trusting positions would see the second event, move past the first one's
    lower position, and lose it for good. The fenced reader must withhold the second
    event until the first commits, then deliver both, in fence order.
    """
    holder = await pool.acquire()
    try:
        held = holder.transaction()
        await held.start()
        early = store.Session(event_store, holder)
        first = await early.append("note-early", [Noted(text="early")])

        late = await event_store.append("note-late", [Noted(text="late")])
        assert late.positions[0] > first.positions[0]

        # What a naive reader sees now: the later position only.
        naive = await pool.fetch(
            "SELECT global_position FROM events WHERE global_position > 0 ORDER BY 1"
        )
        assert [r[0] for r in naive] == [late.positions[0]]
        # The fenced reader sees nothing yet: an older transaction is still in flight.
        assert await event_store.read_all() == []

        sub = subscription.Subscription(event_store, poll_interval_s=0.05)
        async with collecting(sub) as seen:
            await asyncio.wait_for(sub.caught_up.wait(), 10)
            assert seen == []
            await held.commit()
            await wait_for(lambda: len(seen) == 2)
            assert texts(seen) == ["early", "late"]
            assert [e.position for e in seen] == [first.positions[0], late.positions[0]]
    finally:
        await pool.release(holder)


async def test_catch_up_then_follow_live(event_store: store.EventStore) -> None:
    for i in range(5):
        await event_store.append(f"note-{i}", [Noted(text=f"old{i}")])
    sub = subscription.Subscription(event_store, batch_size=2, poll_interval_s=30)
    async with collecting(sub) as seen:
        await wait_for(lambda: len(seen) == 5)
        await event_store.append("note-live", [Noted(text="new")])
        # poll interval 30 s: only the in-process wake-up can deliver this in time
        await wait_for(lambda: len(seen) == 6, timeout_s=5)
    assert texts(seen) == ["old0", "old1", "old2", "old3", "old4", "new"]
    assert sub.checkpoint == seen[-1].checkpoint


async def test_resume_from_a_checkpoint_delivers_each_event_once(
    event_store: store.EventStore,
) -> None:
    for i in range(6):
        await event_store.append("note-r", [Noted(text=str(i))])
    first = subscription.Subscription(event_store, poll_interval_s=30)
    async with collecting(first) as seen:
        await wait_for(lambda: len(seen) == 6)
    checkpoint = seen[2].checkpoint
    resumed = subscription.Subscription(event_store, after=checkpoint, poll_interval_s=30)
    async with collecting(resumed) as again:
        await wait_for(lambda: len(again) == 3)
        await event_store.append("note-r", [Noted(text="next")])
        await wait_for(lambda: len(again) == 4)
    assert texts(again) == ["3", "4", "5", "next"]


async def test_concurrent_writers_and_a_tailing_reader_lose_nothing(
    event_store: store.EventStore,
) -> None:
    writers, per_writer = 8, 40
    sub = subscription.Subscription(event_store, batch_size=50, poll_interval_s=0.05)
    async with collecting(sub) as seen:

        async def write(w: int) -> None:
            for i in range(per_writer):
                await event_store.append(f"note-w{w}", [Noted(text=f"{w}:{i}")])

        await asyncio.gather(*(write(w) for w in range(writers)))
        await wait_for(lambda: len(seen) >= writers * per_writer)
        await event_store.append("note-end", [Noted(text="end")])
        await wait_for(lambda: texts(seen)[-1:] == ["end"])
    assert len(seen) == writers * per_writer + 1
    assert len({e.event_id for e in seen}) == len(seen)
    checkpoints = [e.checkpoint for e in seen]
    assert checkpoints == sorted(checkpoints)


async def test_a_notify_from_another_process_wakes_a_subscriber(db_url: str) -> None:
    """Two hub 'processes' (own pools, own notifiers): a commit in one wakes the other at once."""
    pools = [await database.create_pool(db_url, min_size=1, max_size=2) for _ in range(2)]
    try:
        async with notify.Notifier(db_url) as near, notify.Notifier(db_url) as far:
            await asyncio.wait_for(far.listening.wait(), 10)
            writer = store.EventStore(pools[0], notifier=near)
            reader = store.EventStore(pools[1], notifier=far)
            sub = subscription.Subscription(reader, poll_interval_s=60)
            async with collecting(sub) as seen:
                await asyncio.wait_for(sub.caught_up.wait(), 10)  # now in its 60 s wait
                await writer.append("note-xproc", [Noted(text="across")])
                await wait_for(lambda: len(seen) == 1, timeout_s=5)
    finally:
        for p in pools:
            await p.close()


@pytest.mark.parametrize("poll_interval_s", [0.2])
async def test_a_missed_wake_up_only_delays(
    db_url: str, pool: asyncpg.Pool[Any], poll_interval_s: float
) -> None:
    """A subscriber that never hears of the commit still gets it by polling."""
    deaf = store.EventStore(pool)  # its own wake-up, never fired by the writer below
    writer = store.EventStore(pool)
    sub = subscription.Subscription(deaf, poll_interval_s=poll_interval_s)
    async with collecting(sub) as seen:
        await asyncio.wait_for(sub.caught_up.wait(), 10)
        await writer.append("note-missed", [Noted(text="quiet")])
        await wait_for(lambda: len(seen) == 1, timeout_s=5)


async def test_the_listener_reconnects(db_url: str, pool: asyncpg.Pool[Any]) -> None:
    async with notify.Notifier(db_url, reconnect_s=0.05) as notifier:
        await asyncio.wait_for(notifier.listening.wait(), 10)
        await pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND datname = current_database()"
        )
        await wait_for(lambda: not notifier.listening.is_set(), timeout_s=5)
        await asyncio.wait_for(notifier.listening.wait(), 10)
        token = notifier.wakeup.token()
        await pool.execute("SELECT pg_notify($1, '')", notify.CHANNEL)
        assert await notify.Wakeup.wait(token, 5)
