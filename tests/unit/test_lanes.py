"""The lane machinery both group commits share (``events.lanes``): a write that fails gives
each caller an error of its own, a batch's write runs in a context of its own, and a close
cancelled midway strands nobody."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from events import lanes

REQUEST = contextvars.ContextVar[str]("request", default="none")


@dataclass(eq=False, kw_only=True)
class Item(lanes.Queued[str]):
    name: str

    @property
    def key(self) -> str:
        return self.name


class Writer:
    """Settles each item with its name; a name in ``held`` waits for ``release``; a name in
    ``failing`` makes the whole write raise."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.failing: set[str] = set()
        self.release = asyncio.Event()
        self.contexts: list[str] = []
        self.slow_to_stop = False

    async def write(self, batch: Sequence[Item]) -> None:
        self.contexts.append(REQUEST.get())
        if any(item.name in self.failing for item in batch):
            raise ValueError("the statement broke")
        if any(item.name in self.held for item in batch):
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                if self.slow_to_stop:  # a statement that takes a while to give up
                    await asyncio.sleep(0.1)
                raise
        for item in batch:
            item.settle(result=item.name)


def make(writer: Writer, *, lanes_: int = 2, spare: float = 0.05) -> lanes.Lanes[Item]:
    return lanes.Lanes(
        "test lanes",
        writer.write,
        closed=lambda what: RuntimeError(f"closed; {what}"),
        lanes=lanes_,
        spare_lane_after_s=spare,
        max_count=100,
    )


async def test_a_failed_write_gives_each_caller_an_error_of_its_own() -> None:
    writer = Writer()
    writer.failing.add("a")
    writer.held.add("ahead")
    line = make(writer, lanes_=1)
    ahead = asyncio.create_task(line.submit(Item(name="ahead")))
    await asyncio.sleep(0)  # holds the one lane: a and b queue, then go in one batch
    first, second = Item(name="a"), Item(name="b")
    both = asyncio.gather(line.submit(first), line.submit(second))
    await asyncio.sleep(0)
    writer.release.set()
    await asyncio.gather(ahead, both)
    assert isinstance(first.error, RuntimeError)
    assert isinstance(second.error, RuntimeError)
    assert first.error is not second.error
    assert "the write failed: the statement broke" in str(first.error)
    assert isinstance(first.error.__cause__, ValueError)
    after = Item(name="c")
    await line.submit(after)  # the lane is free again
    assert after.result == "c"


async def test_a_batch_is_written_in_a_context_of_its_own() -> None:
    writer = Writer()
    line = make(writer)
    REQUEST.set("alice's request")
    await line.submit(Item(name="x"))
    assert writer.contexts == ["none"]


async def test_a_close_cancelled_midway_strands_nobody() -> None:
    writer = Writer()
    writer.held.add("stuck")
    writer.slow_to_stop = True
    line = make(writer, lanes_=1)
    stuck = asyncio.create_task(line.submit(Item(name="stuck")))
    await asyncio.sleep(0)
    queued = Item(name="queued")
    waiting = asyncio.create_task(line.submit(queued))
    await asyncio.sleep(0)
    assert line.queue == (queued,)
    closing = asyncio.create_task(line.close())
    await asyncio.sleep(0.01)  # the close waits for the stuck batch to stop (it takes 0.1 s)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    # The batch ended during the close; the queued caller is not left without a leader.
    await asyncio.wait_for(waiting, timeout=2)
    assert queued.result == "queued"
    await asyncio.gather(stuck, return_exceptions=True)
