"""Group commit: concurrent appends from one process coalesced into one statement and commit.

Each ``EventStore.append`` made outside a session is handed to the store's ``GroupCommit``.
The first caller that finds a free lane leads (one batch at a time, more only while every
batch in flight is slow: ``SPARE_LANE_AFTER_S``, up to ``lanes``): it takes the queued
appends (its own and any that arrived while every lane was busy), writes them with one
statement (``append_many``) and, when an inline projection is concerned,
applies them in the same transaction, then hands every caller its own result. Under load a
lane's batch holds every append that queued while it was busy, so eight writers pay about
one pool borrow, one round trip and one commit between them instead of eight.

What each caller still gets, exactly as from a lone append:

* its own result, or its own error: a stream not at the expected version is found per
  append (the statement skips only that append's rows; the others commit), and anything
  else that fails the batch as a whole (an event id already used, a lost race for a
  stream version with another process, an inline projection refusing one append) rolls
  the batch back and runs its appends again one by one, each in its own transaction, so
  one bad append fails alone;
* an acknowledgement only after commit: results are handed out once the batch's
  transaction has committed, so a process dying mid-batch loses nothing that was
  acknowledged (the whole batch is rolled back by PostgreSQL);
* per-stream order: a batch holds at most one append per stream, and none to a stream that
  a batch in flight holds; a second append to the same stream waits for a later batch,
  behind the first.

An append may carry rows of its own to write in the same transaction (``Beside``: a token's
hash beside its ``token.issued``, with a check that its owner is still there). A batch writes
those of one kind with one statement (``Beside.write_many``), before the events; one that
refuses its item (its owner gone) fails that append alone, and writes nothing of it. An
append with such rows is always written in a transaction, alone or in its batch's, so its
rows and its events commit together or not at all: if the events statement skips one of
them (its stream not at the expected version), the batch is rolled back and its appends run
one by one.

There is no background task: a batch runs in the task of the caller that leads it. If that
caller is cancelled mid-batch, the others' appends go back to the front of the queue and the
next waiter leads them (an append that had committed after all is found again by its event
ids, the store's idempotent retry, and answered with its original result). An append whose
own caller is cancelled may or may not have been written, as with a lone append.
"""

from __future__ import annotations

import abc
import asyncio
import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from events import models, sql

if TYPE_CHECKING:
    from events import store as store_module

queries = sql.Queries(__package__ or "events", "group_commit.sql")

DEFAULT_LANES = 4
"""At most this many batches in flight at once."""
SPARE_LANE_AFTER_S = 0.02
"""Another lane opens only when every batch in flight has run this long: one lane makes the
biggest batches, the cheapest per append (measured with 8 writers, client and server CPU per
append: 155 µs with one lane, 225 µs with two always open, 340 µs without group commit), and
the spare lanes keep one slow batch (a lock wait) from holding every append back."""
MAX_BATCH_EVENTS = 2000
"""A batch holds appends until it has this many events (an append alone may hold more)."""


class Beside(abc.ABC):
    """Rows that one append writes beside its events, in the same transaction (a token's
    hash). A subclass is one kind of rows: a batch writes all of its appends' rows of a kind
    with one ``write_many``.

    The rows are written before the events, so a retry of an append that committed (the same
    event ids: a caller's retry, or an append re-queued after its leader was cancelled) writes
    them again before its events are found by id: ``write_many`` must answer None for an item
    whose rows are there already as that item wrote them, and write nothing more."""

    @classmethod
    @abc.abstractmethod
    async def write_many(
        cls, conn: sql.Connection, items: Sequence[Self]
    ) -> list[Exception | None]:
        """Write the rows of ``items``, inside the caller's transaction, before their events:
        for each item, None (written, or there already from an earlier attempt of the same
        append) or the error that refuses its append (then nothing of that item may have been
        written)."""

    async def write(self, conn: sql.Connection) -> None:
        """Write this item's rows inside the caller's transaction, or raise what refuses it."""
        (error,) = await type(self).write_many(conn, [self])
        if error is not None:
            raise error


class _Redo(Exception):
    """Internal: the batch is rolled back and its appends written one by one."""


@dataclass(eq=False)
class Pending:
    """One caller's append, waiting to be written."""

    prepared: store_module._Prepared
    expected: int
    beside: Beside | None = None
    queued: bool = True
    result: store_module.AppendResult | None = None
    error: BaseException | None = None
    wake: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def settle(
        self,
        result: store_module.AppendResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.result, self.error = result, error
        self.nudge()

    def nudge(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


class GroupCommit:
    """Coalesces concurrent appends into batches (see the module's docstring)."""

    def __init__(
        self,
        store: store_module.EventStore,
        *,
        lanes: int = DEFAULT_LANES,
        spare_lane_after_s: float = SPARE_LANE_AFTER_S,
        on_commit: Callable[[], None],
    ) -> None:
        if lanes < 1:
            raise ValueError(f"group commit needs at least one lane, got {lanes}")
        self._store = store
        self._lanes = lanes
        self._spare_after_s = spare_lane_after_s
        self._last_start = 0.0
        self._on_commit = on_commit
        self._queue: collections.deque[Pending] = collections.deque()
        self._running = 0
        self._in_flight: set[str] = set()  # the streams of the batches being written
        self.batches = 0
        """Batches written so far (for tests and the benchmark)."""

    async def append(
        self,
        prepared: store_module._Prepared,
        expected: int,
        beside: Beside | None = None,
    ) -> store_module.AppendResult:
        """Write one append (and the rows ``beside`` it) as part of whatever batch it joins;
        its own result or error."""
        item = Pending(prepared, expected, beside)
        self._queue.append(item)
        while not item.done:
            if item.queued and self._may_lead() and await self._lead(item):
                continue
            item.wake = asyncio.get_running_loop().create_future()
            try:
                await item.wake
            except asyncio.CancelledError:
                if item.queued:
                    self._queue.remove(item)
                    # We may have been the one nudged to lead: pass it on.
                    if self._queue and self._may_lead():
                        self._queue[0].nudge()
                raise
            finally:
                item.wake = None
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _may_lead(self) -> bool:
        """Whether a batch may start now: no lane is busy, or a spare lane is free and every
        batch in flight has run for ``spare_lane_after_s``."""
        if self._running == 0:
            return True
        return (
            self._running < self._lanes
            and asyncio.get_running_loop().time() - self._last_start >= self._spare_after_s
        )

    def _take(self) -> list[Pending]:
        """The next batch from the front of the queue: one append per stream, none to a stream
        a batch in flight holds (it would wait on that batch's rows, holding a spare lane back
        behind the very batch it opened to get past), bounded size."""
        batch: list[Pending] = []
        streams: set[str] = set(self._in_flight)
        events = 0
        held: list[Pending] = []
        while self._queue:
            item = self._queue.popleft()
            size = len(item.prepared.events)
            if batch and events + size > MAX_BATCH_EVENTS:
                self._queue.appendleft(item)
                break
            if item.prepared.stream_id in streams:
                held.append(item)  # behind an append to the same stream: next batch
                continue
            item.queued = False
            batch.append(item)
            streams.add(item.prepared.stream_id)
            events += size
        self._queue.extendleft(reversed(held))
        return batch

    async def _lead(self, me: Pending) -> bool:
        """Write the next batch (False: none could start, every queued append being behind a
        batch in flight, whose end nudges the first in line)."""
        batch = self._take()
        if not batch:
            return False
        taken = {item.prepared.stream_id for item in batch}
        self._in_flight |= taken
        self._running += 1
        self._last_start = asyncio.get_running_loop().time()
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            # Our caller is gone; the others' appends are not: back to the front of the
            # queue, for the next waiter to lead (see the module's docstring).
            again = [item for item in batch if not item.done and item is not me]
            for item in again:
                item.queued = True
            self._queue.extendleft(reversed(again))
            raise
        finally:
            self._running -= 1
            self._in_flight -= taken
            for item in batch:
                if item.done:
                    item.nudge()
            if self._queue:
                self._queue[0].nudge()  # a lane is free: the first in line may lead next
        return True

    async def _write(self, batch: Sequence[Pending]) -> None:
        """Write ``batch``, settling every append in it with its result or its error."""
        store = self._store
        committed = False
        try:
            async with store.connection() as conn:
                if len(batch) == 1:
                    committed = await self._write_alone(conn, batch)
                    return
                self.batches += 1
                try:
                    rejected = await self._write_together(conn, batch)
                    committed = True
                except Exception as exc:
                    if sql.unavailable(exc) is not None:
                        raise
                    # Something in the batch failed it as a whole (or ``_Redo``): each append
                    # on its own.
                    committed = await self._write_alone(conn, batch)
                    return
                for item in rejected:
                    try:
                        item.settle(
                            await store._explain_rejection(conn, item.prepared, item.expected)
                        )
                    except Exception as exc:
                        if sql.unavailable(exc) is not None:
                            raise
                        item.settle(error=exc)
        except Exception as exc:  # noqa: BLE001 - handed to every caller, none left waiting
            # The database could not serve (borrowing, writing or committing): every append
            # not yet answered gets that error. Nothing unanswered was acknowledged.
            for item in batch:
                if not item.done:
                    item.settle(error=exc)
        finally:
            if committed:
                self._on_commit()

    async def _write_alone(self, conn: sql.Connection, batch: Sequence[Pending]) -> bool:
        committed = False
        for item in batch:
            try:
                item.settle(
                    await self._store._append_beside(
                        conn, item.prepared, item.expected, item.beside
                    )
                )
                committed = True
            except Exception as exc:
                if sql.unavailable(exc) is not None:
                    raise
                item.settle(error=exc)
        return committed

    async def _write_together(
        self, conn: sql.Connection, batch: Sequence[Pending]
    ) -> list[Pending]:
        """One statement (and, for inline projections or rows beside, one transaction) for
        the batch.

        Settles, once committed, the appends it wrote and those whose rows beside were
        refused; returns those the statement skipped because their stream was not at the
        expected version (nothing of theirs was written). Raises ``_Redo`` (the batch rolled
        back) when such a skipped append had rows beside: they would commit without it.
        """
        store = self._store
        besides = any(item.beside is not None for item in batch)
        inline = store.inline
        if inline is not None and not inline.handles_any(
            type_name for item in batch for type_name in item.prepared.types
        ):
            inline = None
        refused: list[tuple[Pending, Exception]] = []
        written: list[tuple[Pending, list[Any]]] = []
        rejected: list[Pending] = []
        recorded: dict[int, tuple[models.RecordedEvent, ...]] = {}
        async with conn.transaction() if inline is not None or besides else _nothing():
            if besides:
                refused = await _write_besides(conn, batch)
                if refused:
                    gone = {id(item) for item, _ in refused}
                    batch = [item for item in batch if id(item) not in gone]
            if batch:
                rows = await conn.fetch(queries["append_many"], *_columns(batch))
                by_id = {row["event_id"]: row for row in rows}
                for item in batch:
                    mine = [by_id.get(event_id) for event_id in item.prepared.event_ids]
                    if mine[0] is None:
                        if item.beside is not None:
                            raise _Redo  # its rows beside must not commit without it
                        rejected.append(item)
                    else:
                        written.append((item, mine))
                if inline is not None and written:
                    for index, (item, mine) in enumerate(written):
                        recorded[index] = store.recorded(item.prepared, mine)
                    everything = sorted(
                        (event for events in recorded.values() for event in events),
                        key=lambda event: event.position,
                    )
                    await inline.apply(conn, everything)
        for item, error in refused:
            item.settle(error=error)
        for index, (item, mine) in enumerate(written):
            item.settle(store.result_of(item.prepared, mine, recorded.get(index)))
        return rejected


def _columns(batch: Sequence[Pending]) -> tuple[list[Any], ...]:
    """The parameters of ``append_many`` for the batch's appends, one row per event."""
    streams: list[str] = []
    expected: list[int] = []
    ids: list[Any] = []
    types: list[str] = []
    versions: list[int] = []
    data: list[str] = []
    metadata: list[str] = []
    actors: list[str] = []
    ordinals: list[int] = []
    for item in batch:
        p = item.prepared
        n = len(p.events)
        streams += [p.stream_id] * n
        expected += [item.expected] * n
        ids += p.event_ids
        types += p.types
        versions += p.versions
        data += p.data
        metadata += [p.metadata_json] * n
        actors += [p.metadata.actor.label] * n
        ordinals += range(1, n + 1)
    return streams, expected, ids, types, versions, data, metadata, actors, ordinals


async def _write_besides(
    conn: sql.Connection, batch: Sequence[Pending]
) -> list[tuple[Pending, Exception]]:
    """Write the batch's rows beside its appends, one ``write_many`` per kind: the appends
    whose rows were refused, each with its error."""
    kinds: dict[type[Beside], list[tuple[Pending, Beside]]] = {}
    for item in batch:
        if item.beside is not None:
            kinds.setdefault(type(item.beside), []).append((item, item.beside))
    refused: list[tuple[Pending, Exception]] = []
    for kind, pairs in kinds.items():
        answers = await kind.write_many(conn, [beside for _, beside in pairs])
        if len(answers) != len(pairs):
            raise TypeError(
                f"{kind.__qualname__}.write_many answered {len(answers)} of {len(pairs)} items"
            )
        refused += [
            (item, error)
            for (item, _), error in zip(pairs, answers, strict=True)
            if error is not None
        ]
    return refused


class _Nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


def _nothing() -> _Nothing:
    return _Nothing()
