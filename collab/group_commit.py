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

The lanes, the queue and who leads are ``events.lanes``, the machinery the event store's
group commit uses too; this module keeps what is the rooms' own (the statements, the sizes,
the errors). Each statement runs in a task of its own, owned by the ``GroupCommit``'s lanes
(cancelled at ``close``), not in its leader's: a caller cancelled while a statement carries
its batch (or leads one carrying others') interrupts nothing, and every other room gets its
result as if nobody had gone; the cancelled caller's batch is written or not, like any append
whose caller gave up. A caller cancelled while its batch is still queued takes it out of the
queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab import errors
from events import errors as event_errors
from events import lanes as _lanes
from events import sql

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
class Pending(_lanes.Queued["persistence.Appended"]):
    """One room's batch of updates, waiting to be written."""

    room: str
    updates: Sequence[bytes]
    authors: Sequence[str]
    nbytes: int

    @property
    def key(self) -> str:
        return self.room

    @property
    def count(self) -> int:
        return len(self.updates)

    @property
    def size(self) -> int:
        return self.nbytes


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
        self._store = store
        self.lanes: _lanes.Lanes[Pending] = _lanes.Lanes(
            "collab-group-commit",
            self._write,
            closed=_closed,
            lanes=lanes,
            spare_lane_after_s=spare_lane_after_s,
            max_count=max_updates,
            max_bytes=max_bytes,
        )
        """The statements' lanes and queue (``events.lanes``)."""
        self.statements = 0
        """Statements of several rooms written so far (for tests and the benchmark)."""
        self.rooms_written = 0
        """Room batches those statements carried."""

    async def append(
        self, room: str, updates: Sequence[bytes], authors: Sequence[str]
    ) -> persistence.Appended:
        """Write one room's batch as part of whatever statement it joins; its own result."""
        item = Pending(room, updates, authors, sum(map(len, updates)))
        await self.lanes.submit(item)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def close(self) -> None:
        """Cancel the statements in flight and fail every batch still waiting: for a process
        that stops (``Rooms.stop``), once its rooms have stored what they could. An append
        after this starts afresh."""
        await self.lanes.close()

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


def _closed(what: str) -> errors.CollabError:
    """The error of a batch that ``close`` left unwritten (or whose statement died)."""
    return errors.CollabError(f"the room store closed; {what}")


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
