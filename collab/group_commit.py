"""Group commit across rooms: the update batches of many rooms written by one statement.

A room appends its updates before it broadcasts them (``collab/room.py``), one batch at a
time. With a thousand busy rooms on one process, one statement per room is a thousand pool
borrows, round trips and commits a second, and the rooms queue for the pool's few
connections. ``RoomStore.append`` hands each room's batch to the store's ``GroupCommit``
instead: the first caller that finds a free lane leads (one statement at a time, more only
while every one in flight is slow: ``SPARE_LANE_AFTER_S``, up to ``lanes``). It takes the
batches queued meanwhile, its own among them, writes them all with one statement
(``append_rooms`` in ``collab.sql``) and hands every room its own result. A batch alone is
written as before, with the one-room statement (``append_updates``).

What each room still gets, exactly as from an append of its own:

* its updates numbered in one piece, in their order, after everything the room had: each
  room's row is the counter (locked in name order, so two processes' statements over the same
  rooms queue rather than deadlock);
* an acknowledgement only after commit: results are handed out once the statement, its own
  transaction, has committed, so "appended before broadcast" holds for every room, and a
  process dying mid-statement loses nothing acknowledged;
* per-room order: a statement holds at most one batch per room, and none of a room whose
  batch is in flight (a room sends its next batch only after the last one is written anyway);
* its own error: a room that does not exist fails alone (the statement writes the others); a
  database that cannot serve fails every batch of the statement with ``DatabaseUnavailable``
  (a room keeps its updates and retries, as before); anything else that fails the statement as
  a whole (a bad value in one room's batch) makes each batch go again alone, in its own
  statement, so one bad batch fails only its own room's append.

Each statement runs in a task of its own, owned by the ``GroupCommit`` (cancelled at
``close``), not in its leader's: a caller cancelled while a statement carries its batch (or
leads one carrying others') interrupts nothing, and every other room gets its result as if
nobody had gone; the cancelled caller's batch is written or not, like any append whose caller
gave up. A caller cancelled while its batch is still queued takes it out of the queue.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collab import errors
from events import errors as event_errors
from events import sql, tasks

if TYPE_CHECKING:
    from collab import persistence

queries = sql.Queries(__package__ or "collab", "group_commit.sql")

DEFAULT_LANES = 2
"""At most this many statements in flight at once."""
SPARE_LANE_AFTER_S = 0.02
"""Another lane opens only when every statement in flight has run this long: one lane makes
the biggest statements, the cheapest per update, and a spare lane keeps one slow statement (a
room's row locked by another process's compaction or append) from holding every room back."""
MAX_BATCH_UPDATES = 5000
"""A statement takes rooms' batches until it holds this many updates..."""
MAX_BATCH_BYTES = 8 * 1024 * 1024
"""...or this many bytes (a room's batch alone may hold more: it is never split)."""


@dataclass(eq=False)
class Pending:
    """One room's batch of updates, waiting to be written."""

    room: str
    updates: Sequence[bytes]
    authors: Sequence[str]
    size: int
    queued: bool = True
    result: persistence.Appended | None = None
    error: BaseException | None = None
    wake: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return len(self.updates)

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def settle(
        self, result: persistence.Appended | None = None, error: BaseException | None = None
    ) -> None:
        self.result, self.error = result, error
        self.nudge()

    def nudge(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


class GroupCommit:
    """Coalesces concurrent appends of many rooms into statements (see the module docstring)."""

    def __init__(
        self,
        store: persistence.RoomStore,
        *,
        lanes: int = DEFAULT_LANES,
        spare_lane_after_s: float = SPARE_LANE_AFTER_S,
        max_updates: int = MAX_BATCH_UPDATES,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"group commit needs at least one lane, got {lanes}")
        self._store = store
        self._lanes = lanes
        self._spare_after_s = spare_lane_after_s
        self._max_updates = max_updates
        self._max_bytes = max_bytes
        self._last_start = 0.0
        self._queue: collections.deque[Pending] = collections.deque()
        self._running = 0
        self._in_flight: set[str] = set()  # the rooms of the statements being written
        self._statements = tasks.TaskOwner("collab group commit")
        self._closing = False
        self.statements = 0
        """Statements of several rooms written so far (for tests and the benchmark)."""
        self.rooms_written = 0
        """Room batches those statements carried."""

    async def append(
        self, room: str, updates: Sequence[bytes], authors: Sequence[str]
    ) -> persistence.Appended:
        """Write one room's batch as part of whatever statement it joins; its own result."""
        item = Pending(room, updates, authors, sum(map(len, updates)))
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
                # Not queued: a statement carries our batch; it runs on without us.
                raise
            finally:
                item.wake = None
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def close(self) -> None:
        """Cancel the statements in flight and fail every batch still waiting: for a process
        that stops (``Rooms.stop``), once its rooms have stored what they could. An append
        after this starts afresh."""
        self._closing = True
        try:
            await self._statements.close()
            while self._queue:
                item = self._queue.popleft()
                item.queued = False
                item.settle(error=errors.CollabError("the room store closed; nothing was appended"))
        finally:
            self._closing = False

    def _nudge_first(self) -> None:
        """If a statement may start now, wake the first queued batch's caller to lead it."""
        if not self._may_lead():
            return
        for item in self._queue:
            if item.wake is not None:
                item.nudge()
                return

    def _may_lead(self) -> bool:
        """Whether a statement may start now: no lane is busy, or a spare lane is free and
        every statement in flight has run for ``spare_lane_after_s`` (none while closing)."""
        if self._closing:
            return False
        if self._running == 0:
            return True
        return (
            self._running < self._lanes
            and asyncio.get_running_loop().time() - self._last_start >= self._spare_after_s
        )

    def _take(self) -> list[Pending]:
        """The next statement's batches from the front of the queue: one per room, none of a
        room whose batch is in flight, bounded in updates and bytes."""
        taken: list[Pending] = []
        rooms: set[str] = set(self._in_flight)
        updates = size = 0
        held: list[Pending] = []
        while self._queue:
            item = self._queue.popleft()
            if taken and (
                updates + item.count > self._max_updates or size + item.size > self._max_bytes
            ):
                self._queue.appendleft(item)
                break
            if item.room in rooms:
                held.append(item)  # behind a batch of the same room: a later statement
                continue
            item.queued = False
            taken.append(item)
            rooms.add(item.room)
            updates += item.count
            size += item.size
        self._queue.extendleft(reversed(held))
        return taken

    def _lead(self) -> bool:
        """Start the next statement, in a task of its own (False: none could start, every
        queued batch being behind one in flight, whose end nudges the first in line)."""
        batch = self._take()
        if not batch:
            return False
        taken = {item.room for item in batch}
        self._in_flight |= taken
        self._running += 1
        self._last_start = asyncio.get_running_loop().time()
        self._statements.start(
            self._run(batch, taken), f"chronohub-collab-group-commit-{len(batch)}"
        )
        return True

    async def _run(self, batch: Sequence[Pending], taken: set[str]) -> None:
        """One statement's task: write ``batch``, then hand out its results and free its lane."""
        try:
            await self._write(batch)
        finally:
            self._running -= 1
            self._in_flight -= taken
            for item in batch:
                if not item.done:  # cancelled by ``close``
                    item.settle(error=errors.CollabError("the room store closed mid-append"))
                item.nudge()
            self._nudge_first()  # a lane is free: the first in line may lead next

    async def _write(self, batch: Sequence[Pending]) -> None:
        """Write ``batch``, settling every room's append with its result or its error."""
        store = self._store
        try:
            async with store.events.connection() as conn:
                if len(batch) == 1:
                    await self._write_alone(conn, batch)
                    return
                self.statements += 1
                self.rooms_written += len(batch)
                try:
                    rows = await conn.fetch(queries["append_rooms"], *self._arguments(batch))
                except Exception as exc:
                    if sql.unavailable(exc) is not None:
                        raise
                    # Something in one batch failed the statement as a whole (nothing of it
                    # was written): each batch on its own, so only that one fails.
                    await self._write_alone(conn, batch)
                    return
                by_room = {row["room"]: row for row in rows}
                for item in batch:
                    try:
                        item.settle(store.appended(item.room, by_room.get(item.room), item.count))
                    except errors.CollabError as exc:
                        item.settle(error=exc)
        except Exception as exc:  # noqa: BLE001 - handed to every caller, none left waiting
            # The database could not serve (borrowing, writing or committing): every batch
            # not yet answered gets that error, each its own (raised in its own task), the
            # original as its cause. Nothing unanswered was acknowledged.
            for item in batch:
                if not item.done:
                    item.settle(error=_fresh(exc))

    async def _write_alone(self, conn: sql.Connection, batch: Sequence[Pending]) -> None:
        """Each batch with the one-room statement (its own transaction)."""
        for item in batch:
            try:
                item.settle(
                    await self._store.append_on(conn, item.room, item.updates, item.authors)
                )
            except Exception as exc:
                if sql.unavailable(exc) is not None:
                    raise
                item.settle(error=exc)

    def _arguments(self, batch: Sequence[Pending]) -> list[object]:
        """``append_rooms``' arguments for ``batch`` (one entry per room)."""
        rooms: list[str] = []
        counts: list[int] = []
        update_rooms: list[str] = []
        places: list[int] = []
        data: list[bytes] = []
        authors: list[str] = []
        for item in batch:
            rooms.append(item.room)
            counts.append(item.count)
            update_rooms += [item.room] * item.count
            places += range(1, item.count + 1)
            data += item.updates
            authors += item.authors
        store = self._store
        return [
            rooms,
            counts,
            update_rooms,
            places,
            data,
            authors,
            store.commit_mode,
            store.process,
        ]


def _fresh(exc: Exception) -> Exception:
    """An error of its own for one room's append that ``exc`` failed (an exception object is
    raised in one task only: raised in many, their tracebacks would pile up on it)."""
    unavailable = sql.unavailable(exc)
    fresh: Exception
    if unavailable is not None:
        fresh = event_errors.DatabaseUnavailable(str(unavailable))
    else:
        fresh = errors.CollabError(f"appending failed: {type(exc).__name__}: {exc}")
    fresh.__cause__ = exc
    return fresh
