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

The lanes, the queue and who leads are ``events.lanes``, the machinery the collab rooms'
group commit uses too; this module keeps what is the appends' own (the statements, rows
beside, the errors). Each batch runs in a task of its own, owned by the ``GroupCommit``'s
lanes (cancelled at ``close``, which ``EventStore.aclose`` calls), not in its leader's: a
caller cancelled while a batch carries its append (or leads one carrying others') interrupts
nothing, and every other caller gets its result as if nobody had gone. An append whose own
caller is cancelled may or may not have been written, as with a lone append; one cancelled
while still queued is taken out of the queue, and the lead passes to the next waiter.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from events import errors, models, sql
from events import lanes as _lanes

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
    event ids: a caller's retry) writes them again before its events are found by id:
    ``write_many`` must answer None for an item whose rows are there already as that item
    wrote them, and write nothing more."""

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
class Pending(_lanes.Queued["store_module.AppendResult"]):
    """One caller's append, waiting to be written."""

    prepared: store_module._Prepared
    expected: int
    beside: Beside | None = None

    @property
    def key(self) -> str:
        return self.prepared.stream_id

    @property
    def count(self) -> int:
        return len(self.prepared.events)


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
        self._store = store
        self._on_commit = on_commit
        self.lanes: _lanes.Lanes[Pending] = _lanes.Lanes(
            "group-commit",
            self._write,
            closed=_closed,
            lanes=lanes,
            spare_lane_after_s=spare_lane_after_s,
            max_count=MAX_BATCH_EVENTS,
        )
        """The batches' lanes and queue (``events.lanes``)."""
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
        await self.lanes.submit(item)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def close(self) -> None:
        """Cancel the batches in flight and fail every append still queued (``StoreClosed``):
        for a process that stops (``EventStore.aclose``). An append after this starts afresh."""
        await self.lanes.close()

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


def _closed(what: str) -> errors.StoreClosed:
    """The error of an append that ``close`` left unwritten (or written or not: its batch was
    cancelled mid-write)."""
    return errors.StoreClosed(f"the event store closed; {what}")


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
