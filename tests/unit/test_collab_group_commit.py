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


async def test_a_leader_cancelled_mid_statement_hands_the_others_to_the_next_leader() -> None:
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
    assert (await rest[1]).seqs == [1]  # c's batch went back to the queue; c wrote it alone
    with pytest.raises(asyncio.CancelledError):
        await rest[0]
    assert store.alone == ["a", "c"]
    assert store.seqs == {"a": 1, "c": 1}
