"""Reads coalesced (hub/reads/coalesce.py): keys asked for while a query is in flight go
together in the next one; each caller gets its own row; a cancelled leader's waiters are
still answered; an error reading is every waiting caller's."""

from __future__ import annotations

import asyncio
import contextlib
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
        self.fail = fail

    async def fetch(self, conn: Any, keys: list[str]) -> Mapping[str, str]:
        self.calls.append(sorted(keys))
        await self.gate.wait()
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
