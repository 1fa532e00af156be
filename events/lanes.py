"""Lanes: concurrent callers' items coalesced into batches, each written by one statement.

The machinery shared by the event store's group commit (``events.group_commit``: appends
to streams) and the collab rooms' (``collab.group_commit``: rooms' update batches). It lives
in ``events``, the lowest layer, so that ``collab`` may use it; it knows nothing of events.

A caller hands in one item (``Lanes.submit``) and waits for its own result. The first caller
that finds a free lane leads: it takes the items queued meanwhile, its own among them (at
most one per key, none of a key that a batch in flight holds, bounded in count and bytes),
and starts a task that writes them with the owner's ``write`` callback, which settles each
item with its result or its error. One batch runs at a time; another lane opens only while
every batch in flight has run for ``spare_lane_after_s`` (up to ``lanes``), looked at when a
caller arrives or a batch ends.

Each batch runs in a task of its own, owned by the ``Lanes`` (cancelled at ``close``), not in
its leader's: a caller cancelled while a batch carries its item (or leads one carrying
others') interrupts nothing, and every other caller gets its result as if nobody had gone;
the cancelled caller's item is written or not, like any write whose caller gave up. A caller
cancelled while its item is still queued takes it out of the queue, and passes the lead on
to the first queued item whose caller waits, so nothing is left queued with nobody to lead it.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from events import tasks

R = TypeVar("R")


@dataclass(eq=False, kw_only=True)
class Queued(Generic[R]):
    """One caller's item, waiting to be written: a subclass adds what is written and says
    its ``key`` (a batch holds one item per key), ``count`` and ``size``."""

    queued: bool = True
    result: R | None = None
    error: BaseException | None = None
    wake: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        raise NotImplementedError

    @property
    def count(self) -> int:
        """What the item weighs against ``max_count`` (events, updates)."""
        return 1

    @property
    def size(self) -> int:
        """What the item weighs against ``max_bytes``."""
        return 0

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def settle(self, result: R | None = None, error: BaseException | None = None) -> None:
        """Hand the caller its result or its error."""
        self.result, self.error = result, error
        self.nudge()

    def nudge(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


Q = TypeVar("Q", bound=Queued[Any])


class Lanes(Generic[Q]):
    """Coalesces concurrent callers' items into batches (see the module docstring).

    ``write`` writes one batch and settles every item of it (an exception it lets out fails
    the items it left unsettled with ``closed(...)``'s error, as does a ``close`` mid-batch);
    ``closed`` makes the error of an item that ``close`` leaves unwritten."""

    def __init__(
        self,
        what: str,
        write: Callable[[Sequence[Q]], Awaitable[None]],
        *,
        closed: Callable[[str], BaseException],
        lanes: int,
        spare_lane_after_s: float,
        max_count: int,
        max_bytes: int | None = None,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"{what} needs at least one lane, got {lanes}")
        self.what = what
        self._write = write
        self._closed = closed
        self._lanes = lanes
        self._spare_after_s = spare_lane_after_s
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._last_start = 0.0
        self._queue: collections.deque[Q] = collections.deque()
        self._running = 0
        self._in_flight: set[str] = set()  # the keys of the batches being written
        self._batches = tasks.TaskOwner(what)
        self._closing = False

    @property
    def running(self) -> int:
        """Batches in flight."""
        return self._running

    @property
    def queue(self) -> tuple[Q, ...]:
        """The items waiting, first in line first."""
        return tuple(self._queue)

    @property
    def last_start(self) -> float:
        """When the latest batch started (the event loop's clock)."""
        return self._last_start

    async def submit(self, item: Q) -> None:
        """Queue ``item`` and return once it is settled (its ``result`` or ``error`` set)."""
        self._queue.append(item)
        while not item.done:
            if item.queued and self._may_lead() and self._lead():
                continue
            item.wake = asyncio.get_running_loop().create_future()
            try:
                await item.wake
            except asyncio.CancelledError:
                if item.queued:
                    self._queue.remove(item)
                    # We may have been the one nudged to lead: pass it on.
                    self._nudge_first()
                # Not queued: a batch carries our item; it runs on without us.
                raise
            finally:
                item.wake = None

    async def close(self) -> None:
        """Cancel the batches in flight and fail every item still queued. A submit after this
        starts afresh."""
        self._closing = True
        try:
            await self._batches.close()
            while self._queue:
                item = self._queue.popleft()
                item.queued = False
                item.settle(error=self._closed("nothing was written"))
        finally:
            self._closing = False
            self._nudge_first()  # a close cancelled midway: whoever still waits may lead

    def _nudge_first(self) -> None:
        """If a batch may start now, wake the first queued item's caller to lead it."""
        if not self._may_lead():
            return
        for item in self._queue:
            # A caller nudged already but not yet resumed will lead what it can: the next one
            # may take another free lane.
            if item.wake is not None and not item.wake.done():
                item.nudge()
                return

    def _may_lead(self) -> bool:
        """Whether a batch may start now: no lane is busy, or a spare lane is free and every
        batch in flight has run for ``spare_lane_after_s`` (none while closing)."""
        if self._closing:
            return False
        if self._running == 0:
            return True
        return (
            self._running < self._lanes
            and asyncio.get_running_loop().time() - self._last_start >= self._spare_after_s
        )

    def _take(self) -> list[Q]:
        """The next batch from the front of the queue: one item per key, none of a key a
        batch in flight holds (it would wait on that batch, holding a spare lane back behind
        the very batch it opened to get past), bounded in count and bytes."""
        taken: list[Q] = []
        keys: set[str] = set(self._in_flight)
        count = size = 0
        held: list[Q] = []
        max_bytes = self._max_bytes
        while self._queue:
            item = self._queue.popleft()
            if taken and (
                count + item.count > self._max_count
                or (max_bytes is not None and size + item.size > max_bytes)
            ):
                self._queue.appendleft(item)
                break
            if item.key in keys:
                held.append(item)  # behind an item of the same key: a later batch
                continue
            item.queued = False
            taken.append(item)
            keys.add(item.key)
            count += item.count
            size += item.size
        self._queue.extendleft(reversed(held))
        return taken

    def _lead(self) -> bool:
        """Start the next batch, in a task of its own (False: none could start, every queued
        item being behind one in flight, whose end nudges the first in line)."""
        batch = self._take()
        if not batch:
            return False
        taken = {item.key for item in batch}
        self._in_flight |= taken
        self._running += 1
        self._last_start = asyncio.get_running_loop().time()
        # In a context of its own, not the leader's: what the write marks in a context variable
        # (e.g. token_acks' commits of a request) is no request's.
        self._batches.start(
            self._run(batch, taken),
            f"chronohub-{self.what}-{len(batch)}",
            context=contextvars.Context(),
        )
        return True

    async def _run(self, batch: Sequence[Q], taken: set[str]) -> None:
        """One batch's task: write it, then hand out its results and free its lane."""
        failure: BaseException | None = None
        try:
            await self._write(batch)
        except Exception as exc:
            failure = exc  # each caller left unsettled gets an error of its own, below
            raise
        finally:
            self._running -= 1
            self._in_flight -= taken
            for item in batch:
                if not item.done:  # cancelled by ``close``, or ``write`` failed
                    item.settle(
                        error=self._closed("the write was interrupted")
                        if failure is None
                        else _failed(self.what, failure)
                    )
                item.nudge()
            self._nudge_first()  # a lane is free: the first in line may lead next


def _failed(what: str, exc: BaseException) -> RuntimeError:
    """The error of one caller whose batch's write raised ``exc`` (its own object: one raised
    in many tasks would pile their tracebacks onto one another)."""
    error = RuntimeError(f"{what}: the write failed: {exc}")
    error.__cause__ = exc
    return error
