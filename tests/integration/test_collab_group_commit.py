"""Group commit across rooms (collab/group_commit.py) and the janitor's one-statement poll,
against real PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pycrdt
import pytest

from collab import client, errors, persistence
from collab.limits import Limits
from events import models, store
from tests.helpers import wait_for
from tests.integration.collab_fixtures import serving

pytestmark = pytest.mark.integration


def update(text: str, client_id: int) -> bytes:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


async def stored(event_store: store.EventStore, room: str) -> list[tuple[int, bytes, str]]:
    async with event_store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT seq, data, author FROM collab_updates WHERE room = $1 ORDER BY seq", room
        )
    return [(row["seq"], bytes(row["data"]), row["author"]) for row in rows]


async def made(event_store: store.EventStore, names: list[str]) -> persistence.RoomStore:
    room_store = persistence.RoomStore(event_store, process="one")
    for name in names:
        await room_store.create(name, None, models.Metadata())
    return room_store


async def test_concurrent_appends_of_many_rooms_share_statements_and_each_keeps_its_numbers(
    event_store: store.EventStore,
) -> None:
    names = [f"gc-{i:02d}" for i in range(40)]
    room_store = await made(event_store, names)
    # Three rounds of every room at once; in each, room i brings i % 3 + 1 updates.
    for round_ in range(3):
        batches = {
            name: [update(f"{name}-{round_}-{k}", 100 * i + k) for k in range(i % 3 + 1)]
            for i, name in enumerate(names)
        }
        results = await asyncio.gather(
            *(
                room_store.append(name, batch, [f"user:{name}"] * len(batch))
                for name, batch in batches.items()
            )
        )
        for (name, batch), result in zip(batches.items(), results, strict=True):
            first = round_ * (names.index(name) % 3 + 1) + 1
            assert result == persistence.Appended(list(range(first, first + len(batch))), False)
    # Most rooms went in statements of several rooms (the first caller of a round leads alone).
    assert room_store.group.statements >= 3
    assert room_store.group.rooms_written >= 3 * (len(names) - 1)
    for i, name in enumerate(names):
        rows = await stored(event_store, name)
        n = i % 3 + 1
        assert [seq for seq, _data, _author in rows] == list(range(1, 3 * n + 1))
        expected = [update(f"{name}-{r}-{k}", 100 * i + k) for r in range(3) for k in range(n)]
        assert [data for _seq, data, _author in rows] == expected  # each room's order kept
        assert {author for _seq, _data, author in rows} == {f"user:{name}"}


async def test_a_room_that_does_not_exist_fails_alone_in_a_shared_statement(
    event_store: store.EventStore,
) -> None:
    names = ["gc-a", "gc-b", "gc-c", "gc-d"]
    room_store = await made(event_store, names)
    calls = [
        room_store.append(name, [update(name, i + 1)], ["user:x"])
        for i, name in enumerate([*names[:2], "gc-nowhere", *names[2:]])
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert room_store.group.statements == 1  # the first alone, the four others together
    missing = results[2]
    assert isinstance(missing, errors.CollabError)
    assert "room 'gc-nowhere' does not exist" in str(missing)
    for name, result in zip(names, [*results[:2], *results[3:]], strict=True):
        assert result == persistence.Appended([1], False), name
        assert len(await stored(event_store, name)) == 1


async def test_a_batch_that_fails_the_statement_fails_only_its_own_room(
    event_store: store.EventStore,
) -> None:
    names = ["gc-e", "gc-f", "gc-g"]
    room_store = await made(event_store, names)
    # PostgreSQL's text cannot hold a NUL: this author fails the whole statement, which then
    # goes again room by room.
    authors = {"gc-e": "user:e", "gc-f": "user:\x00f", "gc-g": "user:g"}
    blocker = room_store.append("gc-e", [update("first", 9)], ["user:e"])
    calls = [room_store.append(name, [update(name, 1)], [authors[name]]) for name in names]
    results = await asyncio.gather(blocker, *calls, return_exceptions=True)
    assert results[0] == persistence.Appended([1], False)
    assert results[1] == persistence.Appended([2], False)
    assert isinstance(results[2], Exception)
    assert not isinstance(results[2], errors.CollabError)
    assert results[3] == persistence.Appended([1], False)
    assert await stored(event_store, "gc-f") == []
    assert len(await stored(event_store, "gc-g")) == 1


async def test_appends_of_one_room_never_share_a_statement_and_keep_their_order(
    event_store: store.EventStore,
) -> None:
    room_store = await made(event_store, ["gc-h", "gc-i"])
    first, second, other = await asyncio.gather(
        room_store.append("gc-h", [update("one", 1)], ["user:a"]),
        room_store.append("gc-h", [update("two", 2), update("three", 3)], ["user:b"] * 2),
        room_store.append("gc-i", [update("else", 4)], ["user:c"]),
    )
    assert first.seqs == [1]
    assert second.seqs == [2, 3]
    assert other.seqs == [1]
    texts = [data for _seq, data, _author in await stored(event_store, "gc-h")]
    assert texts == [update("one", 1), update("two", 2), update("three", 3)]


async def test_the_poll_reads_only_the_rooms_behind_their_log(
    event_store: store.EventStore, db_url: str
) -> None:
    """With no notification (no relay), a room learns of another process's append, or of its
    compaction, from the janitor's poll; a room that is not behind reads nothing, though
    someone is connected to it (before, every poll read every connected room's log)."""
    other = persistence.RoomStore(event_store, process="other")
    limits = Limits(poll_s=0.05, room_grace_s=3600)
    async with serving(event_store, db_url, limits, relay=False) as hub:
        here = hub.rooms.store
        reads: list[tuple[str, bool]] = []  # each read's room, and whether a snapshot came
        polls = asking = 0
        unpaused = asyncio.Event()
        unpaused.set()
        catch_up, states = here.catch_up, here.states

        async def read(room: str, seq: int) -> Any:
            snapshot, rows = await catch_up(room, seq)
            reads.append((room, snapshot is not None))
            return snapshot, rows

        async def polled(rooms_: Any) -> Any:
            nonlocal polls, asking
            await unpaused.wait()
            asking += 1
            try:
                return await states(rooms_)
            finally:
                asking -= 1
                polls += 1

        here.catch_up = read  # type: ignore[method-assign]
        here.states = polled  # type: ignore[method-assign]

        async def polled_twice() -> None:
            seen = polls
            await wait_for(lambda: polls >= seen + 2)

        alice = await hub.token("alice")
        async with (
            client.connect(hub.url, "gc-behind", token=alice) as behind,
            client.connect(hub.url, "gc-level", token=alice) as level,
            client.connect(hub.url, "gc-compacted", token=alice) as compacted,
        ):
            await asyncio.wait_for(
                asyncio.gather(behind.synced.wait(), level.synced.wait(), compacted.synced.wait()),
                10,
            )
            level.doc.get("t", type=pycrdt.Text).insert(0, "ours")
            level_room = hub.rooms.get("gc-level")
            assert level_room is not None
            await wait_for(lambda: level_room.seq == 1)  # its own append: not news to it
            await polled_twice()
            reads.clear()

            await other.append("gc-behind", [update("theirs", 7)], ["user:other"])
            await wait_for(lambda: str(behind.doc.get("t", type=pycrdt.Text)) == "theirs")
            await polled_twice()
            assert reads == [("gc-behind", False)]  # read once; the connected level room never

            # Another process appends and compacts its log into a snapshot, past our room
            # (no poll meanwhile, so that the room finds the snapshot, not the update).
            reads.clear()
            unpaused.clear()
            await wait_for(lambda: asking == 0)
            await other.append("gc-compacted", [update("snap", 8)], ["user:other"])
            await other.compact("gc-compacted")
            unpaused.set()
            text = compacted.doc.get("t", type=pycrdt.Text)
            await wait_for(lambda: str(text) == "snap")
            await polled_twice()
            # Caught up to the snapshot's number: read once, not at every poll since.
            assert reads == [("gc-compacted", True)]
            compacted_room = hub.rooms.get("gc-compacted")
            assert compacted_room is not None
            assert compacted_room.seq == 1
