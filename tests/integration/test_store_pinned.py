"""``EventStore.pinned`` against real PostgreSQL: a task's appends join one transaction that
commits, or rolls back, with the block; other tasks (even ones started inside it) do not."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from events import store
from tests.helpers import Noted

pytestmark = pytest.mark.integration


async def test_appends_in_the_block_commit_with_it(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    token = event_store.wakeup.token()
    async with event_store.pinned() as conn:
        await event_store.append("note-p", [Noted(text="one")])
        async with event_store.session() as session:
            assert session.conn is conn  # the pinned connection, its transaction
            await session.append("note-p", [Noted(text="two")])
        # seen inside the block, not outside it until it commits
        assert len(await event_store.read_stream("note-p")) == 2
        assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'note-p'") == 0
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'note-p'") == 2
    assert await event_store.wakeup.wait(token, 1.0)  # subscribers woken after the commit


async def test_an_error_in_the_block_rolls_its_appends_back(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    async def failing() -> None:
        async with event_store.pinned():
            await event_store.append("note-q", [Noted(text="lost")])
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError, match="the handler failed"):
        await failing()
    assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'note-q'") == 0


async def test_a_task_started_in_the_block_uses_connections_of_its_own(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    async with event_store.pinned() as conn:

        async def background() -> bool:
            await event_store.append("note-r", [Noted(text="apart")])
            async with event_store.connection() as own:
                return own is not conn

        assert await asyncio.create_task(background())
        # committed on its own, while the block is still open
        assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'note-r'") == 1


async def test_on_append_is_told_once_the_block_commits(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    # A token cache emptied before the commit could be filled again from the state the block
    # is about to change: the hook hears of the block's appends after its commit, not before.
    heard: list[list[str]] = []

    def hook(types: Any) -> None:
        heard.append(list(types))

    previous, event_store.on_append = event_store.on_append, hook
    try:
        async with event_store.pinned():
            await event_store.append("note-t", [Noted(text="one")])
            async with event_store.session() as session:
                await session.append("note-t", [Noted(text="two")])
            assert heard == []  # not yet: nothing is committed
        assert heard == [["test.noted", "test.noted"]]
        assert await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'note-t'") == 2
        # outside a block, as before: told at once
        await event_store.append("note-t", [Noted(text="three")])
        assert heard[-1] == ["test.noted"]
    finally:
        event_store.on_append = previous
