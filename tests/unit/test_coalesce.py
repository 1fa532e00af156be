"""Reads coalesced (hub/reads/coalesce.py): keys asked for while a query is in flight go
together in the next one; each caller gets its own row; a cancelled leader's waiters are
still answered, also those sharing its key with a caller that came meanwhile; an error reading
is every waiting caller's, and warns of none that nobody awaits."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import pytest

from events import store
from hub.reads import coalesce
from tests.helpers import wait_for


class FakeStore:
    """What ``Coalesced`` uses of the store: a connection (none needed here), not pinned."""

    def pinned_here(self) -> bool:
        return False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        yield None


class Reader:
    """A fetch that records the keys of each query and holds it until ``gate`` is set."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.held: dict[int, asyncio.Event] = {}
        self.fail = fail

    def hold(self, call: int) -> asyncio.Event:
        """Hold query number ``call`` (from 0) until the event returned is set, whatever
        ``gate`` says."""
        self.held[call] = asyncio.Event()
        return self.held[call]

    async def fetch(self, conn: Any, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(sorted(keys))
        await self.held.get(len(self.calls) - 1, self.gate).wait()
        await asyncio.sleep(0)  # a query yields, as a real one does (a loop of them too)
        if self.fail is not None:
            raise self.fail
        return {key: key.upper() for key in keys if key != "missing"}


def coalesced(reader: Reader) -> coalesce.Coalesced[str, str]:
    return coalesce.Coalesced(cast("store.EventStore", FakeStore()), reader.fetch)


async def test_keys_asked_for_meanwhile_go_in_one_query() -> None:
    reader = Reader()
    reads = coalesced(reader)
    first = asyncio.ensure_future(reads.get("a"))
    await wait_for(lambda: len(reader.calls) == 1)
    later = [asyncio.ensure_future(reads.get(key)) for key in ("b", "c", "missing", "b")]
    await asyncio.sleep(0)
    reader.gate.set()
    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", None, "B"]
    assert reader.calls == [["a"], ["b", "c", "missing"]]
    assert reads.queries == 2


async def test_a_cancelled_leader_leaves_its_waiters_answered() -> None:
    reader = Reader()
    reads = coalesced(reader)
    leader = asyncio.ensure_future(reads.get("a"))
    await wait_for(lambda: len(reader.calls) == 1)
    waiter = asyncio.ensure_future(reads.get("b"))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    reader.gate.set()
    assert await waiter == "B"


async def test_an_error_reading_is_every_waiting_callers() -> None:
    reader = Reader(fail=RuntimeError("database gone"))
    reads = coalesced(reader)
    first = asyncio.ensure_future(reads.get("a"))
    await wait_for(lambda: len(reader.calls) == 1)
    second = asyncio.ensure_future(reads.get("a"))  # the same key: the same answer
    reader.gate.set()
    for each in (first, second):
        with pytest.raises(RuntimeError, match="database gone"):
            await each


async def test_a_cancelled_leader_whose_key_a_waiter_and_a_newcomer_share() -> None:
    # A and C ask for "alice" while another query is in flight: one future, F1. A leads the
    # next query, for "alice"; D asks for "alice" meanwhile (F2, for the query after); A is
    # cancelled. C leads next and must answer both F1 and F2 in one query, and run no query
    # without keys (it was a livelock of empty queries, C's request hanging).
    reader = Reader()
    reader.gate.set()
    first_query = reader.hold(0)
    reader.hold(1)  # A's: never answered, A is cancelled in it
    reads = coalesced(reader)
    zero = asyncio.ensure_future(reads.get("zero"))
    await wait_for(lambda: len(reader.calls) == 1)
    leader = asyncio.ensure_future(reads.get("alice"))  # A
    same = asyncio.ensure_future(reads.get("alice"))  # C
    await asyncio.sleep(0)
    first_query.set()
    await wait_for(lambda: len(reader.calls) == 2)
    assert await zero == "ZERO"
    newcomer = asyncio.ensure_future(reads.get("alice"))  # D
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    try:
        await wait_for(lambda: same.done() and newcomer.done(), timeout_s=2)
    finally:
        for task in (same, newcomer):
            task.cancel()
    assert (same.result(), newcomer.result()) == ("ALICE", "ALICE")
    assert reader.calls == [["zero"], ["alice"], ["alice"]]
    assert reads.queries == 3


def test_an_error_for_a_caller_cancelled_meanwhile_warns_of_nothing() -> None:
    # its own event loop: once it is closed, nothing holds the futures any more
    reported: list[dict[str, Any]] = []

    async def read_with_one_caller_gone() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: reported.append(c))
        reader = Reader(fail=RuntimeError("database gone"))
        reads = coalesced(reader)
        first = asyncio.ensure_future(reads.get("a"))
        await wait_for(lambda: len(reader.calls) == 1)
        gone = asyncio.ensure_future(reads.get("b"))  # waits for the next query, then leaves
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        reader.gate.set()
        with pytest.raises(RuntimeError, match="database gone"):
            await first
        third = asyncio.ensure_future(reads.get("c"))  # leads the query "b" is still in
        with pytest.raises(RuntimeError, match="database gone"):
            await third
        assert reader.calls == [["a"], ["b", "c"]]

    asyncio.run(read_with_one_caller_gone())
    gc.collect()  # "b"'s future goes, its error never awaited
    assert reported == [], "a future's error that nobody awaited was logged"
