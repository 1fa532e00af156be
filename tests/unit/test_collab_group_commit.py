"""The group commit across rooms (collab/group_commit.py) with a fake store: who leads, what a
statement carries, and what happens to the others when a leader is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from collab import errors, group_commit, persistence
from events import errors as event_errors
from tests.helpers import wait_for


class FakeConnection:
    """Answers ``append_rooms`` for every room but ``missing``, once ``together`` is set."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    async def fetch(self, _query: str, *args: Any) -> list[dict[str, Any]]:
        rooms, counts = args[0], args[1]
        self.store.statements.append(list(rooms))
        await self.store.together.wait()
        if self.store.down:
            raise event_errors.DatabaseUnavailable("down")
        rows = []
        for room, count in zip(rooms, counts, strict=True):
            if room in self.store.missing:
                continue
            base = self.store.seqs.get(room, 0)
            self.store.seqs[room] = base + count
            rows.append({"room": room, "base": base, "appended": count, "shared": False})
        return rows


class FakeEvents:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeConnection]:
        yield FakeConnection(self.store)


class FakeStore:
    commit_mode = "off"
    process = "test"

    def __init__(self) -> None:
        self.events = FakeEvents(self)
        self.gate = asyncio.Event()  # a batch written alone waits for it
        self.gate.set()
        self.slow: dict[str, asyncio.Event] = {}  # a room's batch written alone waits for it
        self.together = asyncio.Event()  # a statement of several rooms waits for it
        self.together.set()
        self.down = False
        self.missing: set[str] = set()
        self.seqs: dict[str, int] = {}
        self.statements: list[list[str]] = []
        self.alone: list[str] = []

    async def append_on(
        self, conn: FakeConnection, room: str, updates: Sequence[bytes], _authors: Sequence[str]
    ) -> persistence.Appended:
        self.alone.append(room)
        await self.gate.wait()
        if room in self.slow:
            await self.slow[room].wait()
        if self.down:
            raise event_errors.DatabaseUnavailable("down")
        if room in self.missing:
            raise errors.CollabError(f"room {room!r} does not exist; nothing was appended")
        base = self.seqs.get(room, 0)
        self.seqs[room] = base + len(updates)
        return persistence.Appended(list(range(base + 1, base + 1 + len(updates))), False)

    appended = staticmethod(persistence.RoomStore.appended)


def make() -> tuple[FakeStore, group_commit.GroupCommit]:
    store = FakeStore()
    return store, group_commit.GroupCommit(store)  # type: ignore[arg-type]


async def test_those_queued_behind_a_statement_go_together_in_the_next() -> None:
    store, group = make()
    store.gate.clear()
    first = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])  # the first leads, alone
    others = [asyncio.ensure_future(group.append(r, [b"2", b"3"], ["x"] * 2)) for r in "bcd"]
    again = asyncio.ensure_future(group.append("a", [b"4"], ["x"]))
    store.gate.set()
    assert (await first).seqs == [1]
    assert [(await task).seqs for task in others] == [[1, 2]] * 3
    assert (await again).seqs == [2]
    assert store.alone == ["a"]
    assert store.statements == [["b", "c", "d", "a"]]
    assert (group.statements, group.rooms_written) == (1, 4)


async def test_a_missing_room_fails_alone_and_an_unavailable_database_fails_everyone() -> None:
    store, group = make()
    store.missing = {"gone"}
    store.gate.clear()
    lead = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])  # the first leads, alone
    rest = [asyncio.ensure_future(group.append(r, [b"1"], ["x"])) for r in ("b", "gone")]
    store.gate.set()
    await lead
    assert (await rest[0]).seqs == [1]
    with pytest.raises(errors.CollabError, match="'gone' does not exist"):
        await rest[1]
    store.down = True
    both = await asyncio.gather(
        group.append("a", [b"2"], ["x"]), group.append("b", [b"2"], ["x"]), return_exceptions=True
    )
    assert all(isinstance(result, event_errors.DatabaseUnavailable) for result in both)


async def test_a_leader_cancelled_mid_statement_leaves_the_statement_running() -> None:
    store, group = make()
    store.gate.clear()
    store.together.clear()
    lead = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])  # the first leads, alone
    rest = [asyncio.ensure_future(group.append(r, [b"1"], ["x"])) for r in "bc"]
    store.gate.set()
    await lead
    # b leads a statement for b and c, which waits; b is cancelled meanwhile.
    await wait_for(lambda: store.statements == [["b", "c"]])
    rest[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest[0]
    store.together.set()
    assert (await rest[1]).seqs == [1]  # c's answer came from that same statement
    # b's batch was written once, by the statement its caller left: nothing went again.
    assert store.statements == [["b", "c"]]
    assert store.alone == ["a"]
    assert store.seqs == {"a": 1, "b": 1, "c": 1}
    assert group.lanes.running == 0


async def test_a_leader_cancelled_while_its_own_batch_is_held_back_strands_nobody() -> None:
    store = FakeStore()
    group = group_commit.GroupCommit(
        store,  # type: ignore[arg-type]
        lanes=2,
        spare_lane_after_s=0.05,
        max_updates=2,
    )
    loop = asyncio.get_running_loop()
    store.gate.clear()
    first = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])  # a leads alone, in the first lane
    queued = [asyncio.ensure_future(group.append(r, [b"1"], ["x"])) for r in "bc"]
    await wait_for(lambda: loop.time() - group.lanes.last_start >= 0.05)  # the spare lane opens
    store.together.clear()
    # a again: it leads the second lane's statement, of b and c; its own batch stays queued
    # (room a is in flight, and the statement is full).
    second = asyncio.ensure_future(group.append("a", [b"2"], ["x"]))
    await wait_for(lambda: store.statements == [["b", "c"]])
    late = asyncio.ensure_future(group.append("e", [b"1"], ["x"]))  # no lane free: queued
    await wait_for(lambda: [item.room for item in group.lanes.queue] == ["a", "e"])
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    store.gate.set()
    store.together.set()
    assert (await first).seqs == [1]
    assert [(await task).seqs for task in queued] == [[1], [1]]
    # Nobody appended after the cancellation: e is written all the same, by its own caller.
    assert (await asyncio.wait_for(late, 5)).seqs == [1]
    assert store.seqs == {"a": 1, "b": 1, "c": 1, "e": 1}  # the cancelled batch is not written
    assert (group.lanes.running, list(group.lanes.queue)) == (0, [])


async def test_the_next_append_after_an_unavailable_database_is_written() -> None:
    store, group = make()
    store.down = True
    store.together.clear()
    store.gate.clear()
    lead = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])
    rest = [asyncio.ensure_future(group.append(r, [b"1"], ["x"])) for r in "bc"]
    store.gate.set()
    await wait_for(lambda: store.statements == [["b", "c"]])
    store.together.set()
    failed = await asyncio.gather(lead, *rest, return_exceptions=True)
    assert all(isinstance(exc, event_errors.DatabaseUnavailable) for exc in failed)
    # Each room its own error (raised in its own task), the statement's as its cause.
    b, c = failed[1:]
    assert b is not c
    assert isinstance(b, BaseException)
    assert isinstance(c, BaseException)
    assert b.__cause__ is not None
    assert b.__cause__ is c.__cause__
    assert group.lanes.running == 0
    store.down = False
    assert (await group.append("a", [b"2"], ["x"])).seqs == [1]
    assert (group.lanes.running, list(group.lanes.queue)) == (0, [])


async def test_close_fails_what_is_in_flight_and_queued_and_appends_go_on_after() -> None:
    store, group = make()
    store.gate.clear()
    lead = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])
    queued = asyncio.ensure_future(group.append("b", [b"1"], ["x"]))
    await wait_for(lambda: len(group.lanes.queue) == 1)
    await group.close()
    for task in (lead, queued):
        with pytest.raises(errors.CollabError, match="closed"):
            await task
    assert (group.lanes.running, list(group.lanes.queue)) == (0, [])
    store.gate.set()
    assert (await group.append("b", [b"1"], ["x"])).seqs == [1]


async def test_a_rooms_next_batch_waits_for_the_one_in_flight_and_the_others_do_not() -> None:
    store = FakeStore()
    group = group_commit.GroupCommit(store, spare_lane_after_s=0)  # type: ignore[arg-type]
    slow = store.slow["a"] = asyncio.Event()  # a's first batch, written alone, waits
    first = asyncio.ensure_future(group.append("a", [b"1"], ["x"]))
    await wait_for(lambda: store.alone == ["a"])
    # A spare lane is free: the next callers lead statements, which leave a's second batch
    # queued behind its first (in flight) and take the others'.
    second = asyncio.ensure_future(group.append("a", [b"2", b"3"], ["x"] * 2))
    others = [asyncio.ensure_future(group.append(r, [b"1"], ["x"])) for r in "bc"]
    assert [(await task).seqs for task in others] == [[1], [1]]
    assert not first.done()
    assert not second.done()
    assert [item.room for item in group.lanes.queue] == ["a"]
    assert store.alone.count("a") == 1
    slow.set()
    assert (await first).seqs == [1]
    assert (await second).seqs == [2, 3]  # after the first, in a statement of its own
    assert store.alone.count("a") == 2
    assert (group.lanes.running, list(group.lanes.queue)) == (0, [])
