"""The event store: append to streams with optimistic concurrency, read in gap-free global order.

One append is one transaction: it compare-and-swaps the stream's version, inserts the events
and runs the inline projections, so a caller reads its own writes and nothing is ever half
written. Subscribers are woken after commit (``events.notify``).

Over 600 lines, kept whole on purpose: appending and reading share the one ordering guarantee
(the fence on ``tx_id`` that makes the global order gap-free), and it is easier to check in one
module than across two; the batching of concurrent appends is apart (``events.group_commit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID, uuid4

import asyncpg
import pydantic
import pydantic_core

from events import errors, group_commit, models, notify, sql

queries = sql.Queries(__package__ or "events", "queries.sql")

ANY = -1
"""Expected version: append whatever the stream's version."""
NO_STREAM = 0
"""Expected version: the stream must not exist yet."""

STREAM_ID = re.compile(r"[a-z][a-z0-9_]*-[^\s]{1,200}")
DEFAULT_MAX_EVENT_BYTES = 64 * 1024
MAX_EVENTS_PER_APPEND = 10_000
# An append at ANY that loses the race for the next version tries again this often.
ANY_RETRIES = 5
# A violation of these means a retry (event id) or a lost race (stream version), not a bug.
UNIQUE_KEYS = frozenset({"events_event_id_key", "events_stream_version_key"})


# The connection that ``EventStore.pinned`` holds for a task, with the task: every append and
# borrowed connection of that task joins its transaction. The task is kept because a task
# started inside the block copies the context, and must not use a connection it does not own.
# The third item collects the types appended in the block, told to ``on_append`` only once
# the block has committed (a token cache emptied before the commit could be filled again from
# the state the block is about to change).
_PINNED: contextvars.ContextVar[
    tuple[asyncio.Task[Any] | None, sql.Connection, list[str]] | None
] = contextvars.ContextVar("chronohub_pinned_connection", default=None)


class InlineProjections(Protocol):
    """What the store needs of the projections it applies inside each append transaction."""

    def handles_any(self, types: Iterable[str]) -> bool:
        """Whether any of these event types concerns an inline projection."""
        ...

    async def apply(self, conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
        """Update the read models for ``events`` on ``conn``, inside the append transaction."""
        ...


@dataclass(frozen=True)
class AppendResult:
    """What an append wrote (or, for an idempotent retry, had written)."""

    stream_id: str
    version: int
    positions: tuple[int, ...]
    checkpoint: models.Checkpoint
    build_events: Callable[[], tuple[models.RecordedEvent, ...]] = field(repr=False, compare=False)

    @functools.cached_property
    def events(self) -> tuple[models.RecordedEvent, ...]:
        """The events as recorded; built on first use (most callers need only the version)."""
        return self.build_events()


@dataclass(frozen=True)
class EventFilter:
    """Which events a read returns; every field left ``None`` matches everything."""

    types: frozenset[str] | None = None
    type_prefixes: tuple[str, ...] | None = None
    streams: frozenset[str] | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    upto: models.Checkpoint | None = None

    def like_patterns(self) -> list[str] | None:
        """The type prefixes as LIKE patterns, wildcards in them escaped."""
        if self.type_prefixes is None:
            return None
        return [re.sub(r"([\\%_])", r"\\\1", prefix) + "%" for prefix in self.type_prefixes]


ALL = EventFilter()


@dataclass(frozen=True)
class _Prepared:
    stream_id: str
    events: tuple[models.Event, ...]
    event_ids: list[UUID]
    types: list[str]
    versions: list[int]
    data: list[str]
    metadata: models.Metadata
    metadata_json: str


@dataclass(frozen=True)
class _RawPage:
    rows: list[Any]
    length: int
    last: models.Checkpoint | None


class _Rejected(Exception):
    """Internal: the append statement wrote nothing; roll back and find out why."""


class _LostRace(Exception):
    """Internal: an append at ANY wrote nothing because another took the version first."""


class EventStore:
    """Appends events and reads them back. Owns no connections: it borrows from ``pool``."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        *,
        registry: models.Registry = models.registry,
        inline: InlineProjections | None = None,
        notifier: notify.Notifier | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        on_append: Callable[[Sequence[str]], None] | None = None,
        group_commit_lanes: int = group_commit.DEFAULT_LANES,
    ) -> None:
        self.pool = pool
        # Told the types of the events of each committed append (the hub counts them).
        self.on_append = on_append
        self.registry = registry
        self.inline = inline
        self.wakeup = notifier.wakeup if notifier else notify.Wakeup()
        self._poke: Callable[[], None] = notifier.poke if notifier else self.wakeup.fire
        self.max_event_bytes = max_event_bytes
        # Appends outside a session are coalesced (events.group_commit); 0 turns it off.
        self.group_commit = (
            group_commit.GroupCommit(self, lanes=group_commit_lanes, on_commit=self._poke)
            if group_commit_lanes
            else None
        )

    async def aclose(self) -> None:
        """Stop the group commit's batches in flight and fail the appends still queued
        (``StoreClosed``), so that no batch outlives the store's user (the hub, at its end,
        with ``contextlib.aclosing``). The store may be used again after."""
        if self.group_commit is not None:
            await self.group_commit.close()

    # --- writing -----------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[models.Event],
        *,
        expected: int = ANY,
        metadata: models.Metadata | None = None,
        event_ids: Sequence[UUID] | None = None,
        beside: group_commit.Beside | None = None,
    ) -> AppendResult:
        """Append ``events`` to ``stream_id`` if it is at ``expected`` (``ANY``, ``NO_STREAM``, n).

        Raises ``ConcurrencyConflict`` (with the actual version) when it is not. Retrying with
        the same ``event_ids`` returns the first append's result and writes nothing.
        Concurrent appends share a statement and a commit (``events.group_commit``); each
        still gets its own result or error, and only once its events are committed.
        ``beside``: rows written in the same transaction as the events (or the error that
        refuses them, and the append with them).
        """
        prepared = self._prepare(stream_id, events, expected, metadata, event_ids)
        if self.group_commit is not None and not self.pinned_here():
            result = await self.group_commit.append(prepared, expected, beside)
        else:
            async with self.connection() as conn:
                result = await self._append_beside(conn, prepared, expected, beside)
            self._poke()
        self._appended(prepared.types)
        return result

    @contextlib.asynccontextmanager
    async def connection(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a bound on borrowing, for the pool
    ) -> AsyncIterator[sql.Connection]:
        """A connection borrowed from the pool (waiting at most ``timeout`` for one): the
        driver's errors in the block, and in borrowing it, leave as ``DatabaseUnavailable``.
        Inside ``pinned``, the pinned connection (its transaction) instead."""
        pinned = _PINNED.get()
        with sql.translated():
            if pinned is not None and self.pinned_here():
                yield pinned[1]
                return
            async with self.pool.acquire(timeout=timeout) as conn:
                yield conn

    @staticmethod
    def pinned_here() -> bool:
        """Whether this task is inside ``pinned`` (its appends join that transaction, so they
        may not go to a group commit's batch on another connection)."""
        pinned = _PINNED.get()
        return pinned is not None and pinned[0] is asyncio.current_task()

    @contextlib.asynccontextmanager
    async def pinned(self) -> AsyncIterator[sql.Connection]:
        """One transaction that this task's appends and borrowed connections join until the
        block ends, so that they commit together with the block's own statements (an
        idempotent request's key and answer); leaving the block by an exception rolls all
        back. Subscribers are woken once it has committed."""
        async with self.connection() as conn, conn.transaction():
            appended: list[str] = []
            token = _PINNED.set((asyncio.current_task(), conn, appended))
            try:
                yield conn
            finally:
                _PINNED.reset(token)
        self._poke()
        if appended and self.on_append is not None:
            self.on_append(appended)

    def _appended(self, types: Sequence[str]) -> None:
        """Tell ``on_append`` of committed appends; inside ``pinned``, once the block commits."""
        pinned = _PINNED.get()
        if pinned is not None and pinned[0] is asyncio.current_task():
            pinned[2].extend(types)
        elif self.on_append is not None:
            self.on_append(types)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """A transaction for several appends (and the caller's own reads) that commit together."""
        async with self.connection() as conn, conn.transaction():
            session = Session(self, conn)
            yield session
        if session.appended:
            self._poke()
            self._appended(session.types)

    def _prepare(
        self,
        stream_id: str,
        events: Sequence[models.Event],
        expected: int,
        metadata: models.Metadata | None,
        event_ids: Sequence[UUID] | None,
    ) -> _Prepared:
        if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
            raise errors.InvalidEvent(
                f"stream id {stream_id!r} must look like '<type>-<id>' (e.g. 'user-7f3c…'),"
                " lower-case type, no spaces, at most 200 characters of id"
            )
        if isinstance(expected, bool) or not isinstance(expected, int) or expected < ANY:
            raise errors.InvalidEvent(
                f"expected version must be ANY, NO_STREAM or >= 1: {expected!r}"
            )
        if not events:
            raise errors.InvalidEvent("an append needs at least one event")
        if len(events) > MAX_EVENTS_PER_APPEND:
            raise errors.InvalidEvent(
                f"an append holds at most {MAX_EVENTS_PER_APPEND} events, got {len(events)}"
            )
        ids = list(event_ids) if event_ids is not None else [uuid4() for _ in events]
        if len(ids) != len(events) or len(set(ids)) != len(ids):
            raise errors.InvalidEvent("event_ids must be distinct, one for each event")
        types, versions, data = [], [], []
        for event in events:
            if not isinstance(event, models.Event):
                raise errors.InvalidEvent(f"not an event model: {type(event).__name__}")
            type_name = getattr(type(event), "type", None)
            if not isinstance(type_name, str):
                raise errors.InvalidEvent(f"{type(event).__name__} declares no event type")
            if self.registry.model(type_name) is not type(event):
                raise errors.UnknownEventType(type_name)
            payload = _serialise(event, type_name)
            size = len(payload.encode())
            if size > self.max_event_bytes:
                raise errors.PayloadTooLarge(type_name, size, self.max_event_bytes)
            types.append(type_name)
            versions.append(type(event).schema_version)
            data.append(payload)
        meta = metadata or models.Metadata()
        return _Prepared(
            stream_id=stream_id,
            events=tuple(events),
            event_ids=ids,
            types=types,
            versions=versions,
            data=data,
            metadata=meta,
            metadata_json=meta.model_dump_json(),
        )

    async def _append_beside(
        self,
        conn: sql.Connection,
        prepared: _Prepared,
        expected: int,
        beside: group_commit.Beside | None,
    ) -> AppendResult:
        """An append with its rows ``beside`` in one transaction (a savepoint in another)."""
        if beside is None:
            return await self._append_on(conn, prepared, expected)
        async with conn.transaction():
            await beside.write(conn)
            return await self._append_on(conn, prepared, expected)

    async def _append_on(
        self, conn: sql.Connection, prepared: _Prepared, expected: int
    ) -> AppendResult:
        for _attempt in range(ANY_RETRIES):
            try:
                return await self._try_append(conn, prepared, expected)
            except _Rejected:
                try:
                    return await self._explain_rejection(conn, prepared, expected)
                except _LostRace:
                    continue  # "any" may simply go after the append that won
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name not in UNIQUE_KEYS:
                    raise
                if exc.constraint_name == "events_stream_version_key" and expected == ANY:
                    continue  # lost a race for the next version; "any" may simply go after it
                return await self._explain_rejection(conn, prepared, expected)
        raise errors.ConcurrencyConflict(
            prepared.stream_id, expected, await self.stream_version(prepared.stream_id, conn=conn)
        )

    async def _try_append(
        self, conn: sql.Connection, prepared: _Prepared, expected: int
    ) -> AppendResult:
        inline = self.inline if self.inline and self.inline.handles_any(prepared.types) else None
        single = len(prepared.events) == 1
        # One statement is atomic on its own: with nothing else to run in the transaction,
        # send it alone (one round trip instead of three). Inside a session, a nested
        # transaction is a savepoint, so a refused append leaves the session usable; a
        # single event's statement needs none there: it writes nothing rather than fail on
        # a unique key (append_one), and the savepoint and its release were a sixth of the
        # hub's CPU for a token's creation (profiled under bench-api). An inline projection
        # that refuses that event fails the session's transaction, which the caller's error
        # rolls back.
        guarded = not single if conn.is_in_transaction() else inline is not None
        async with conn.transaction() if guarded else contextlib.nullcontext():
            if single:
                rows = await conn.fetch(
                    queries["append_one"],
                    prepared.stream_id,
                    expected,
                    prepared.event_ids[0],
                    prepared.types[0],
                    prepared.versions[0],
                    prepared.data[0],
                    prepared.metadata_json,
                    prepared.metadata.actor.label,
                )
            else:
                rows = await conn.fetch(
                    queries["append"],
                    prepared.stream_id,
                    expected,
                    prepared.event_ids,
                    prepared.types,
                    prepared.versions,
                    prepared.data,
                    [prepared.metadata_json] * len(prepared.events),
                    prepared.metadata.actor.label,
                )
            if not rows:
                raise _Rejected
            recorded = None
            if inline is not None:
                recorded = self.recorded(prepared, rows)
                await inline.apply(conn, recorded)
        return self.result_of(prepared, rows, recorded)

    @staticmethod
    def recorded(prepared: _Prepared, rows: Sequence[Any]) -> tuple[models.RecordedEvent, ...]:
        """The events of ``prepared`` as recorded, from the rows its append returned."""
        return tuple(_recorded(prepared, rows))

    @staticmethod
    def result_of(
        prepared: _Prepared,
        rows: Sequence[Any],
        recorded: tuple[models.RecordedEvent, ...] | None,
    ) -> AppendResult:
        """The result of an append that wrote ``rows`` (its events built already, or later)."""
        last = rows[-1]
        return AppendResult(
            stream_id=prepared.stream_id,
            version=last["stream_version"],
            positions=tuple(row["global_position"] for row in rows),
            checkpoint=models.Checkpoint(int(last["tx"]), last["global_position"]),
            build_events=(lambda: recorded)
            if recorded is not None
            else (lambda: tuple(_recorded(prepared, rows))),
        )

    async def _explain_rejection(
        self, conn: sql.Connection, prepared: _Prepared, expected: int
    ) -> AppendResult:
        """Nothing was written: an idempotent retry (return the original) or a conflict."""
        found = await conn.fetch(queries["events_by_id"], prepared.event_ids)
        if found:
            by_id = {row["event_id"]: row for row in found}
            original = [by_id.get(event_id) for event_id in prepared.event_ids]
            versions = [row["stream_version"] for row in original if row is not None]
            if all(
                row is not None and row["stream_id"] == prepared.stream_id for row in original
            ) and versions == list(range(versions[0], versions[0] + len(versions))):
                stored = await self.read_stream(
                    prepared.stream_id, from_version=versions[0], limit=len(versions), conn=conn
                )
                return AppendResult(
                    stream_id=prepared.stream_id,
                    version=versions[-1],
                    positions=tuple(e.position for e in stored),
                    checkpoint=stored[-1].checkpoint,
                    build_events=lambda: tuple(stored),
                )
            first = found[0]
            raise errors.IdempotencyConflict(
                first["event_id"],
                f"it belongs to {first['stream_id']!r} version {first['stream_version']},"
                " in a different append",
            )
        if expected == ANY:
            # Only a single event's statement skips a lost race (ON CONFLICT DO NOTHING)
            # instead of failing on the unique key: at ANY, nothing else refuses an append.
            raise _LostRace
        actual = await conn.fetchval(queries["stream_version"], prepared.stream_id)
        raise errors.ConcurrencyConflict(prepared.stream_id, expected, actual)

    # --- reading -----------------------------------------------------------------------

    async def read_all(
        self,
        after: models.Checkpoint = models.ORIGIN,
        *,
        filter: EventFilter = ALL,
        limit: int = 1000,
        conn: sql.Connection | None = None,
        fenced: bool = True,
    ) -> list[models.RecordedEvent]:
        """One page of events after ``after`` in gap-free global order (the fence).

        ``fenced=False`` also returns committed events behind an older transaction still in
        flight: only for callers whose locks keep writers out of what they read.
        """
        if conn is None:
            async with self.connection() as own:
                raw = await self._fetch_page(own, after, filter, limit, fenced)
        else:
            raw = await self._fetch_page(conn, after, filter, limit, fenced)
        return self.registry.decode_rows(raw.rows)

    async def pages(
        self,
        after: models.Checkpoint = models.ORIGIN,
        *,
        filter: EventFilter = ALL,
        page_size: int = 1000,
        fenced: bool = True,
    ) -> AsyncIterator[list[models.RecordedEvent]]:
        """Pages after ``after`` until caught up (the last page is shorter than ``page_size``).

        Uses a connection of its own and asks for the next page before decoding the current
        one, so the database builds page n+1 while Python decodes page n. Python's cyclic
        garbage collector is paused while the pages are iterated (``collection_paused``).
        """
        with models.collection_paused():
            async for page in self._pages(after, filter, page_size, fenced):
                yield page

    async def _pages(
        self,
        after: models.Checkpoint,
        filter: EventFilter,
        page_size: int,
        fenced: bool,
    ) -> AsyncIterator[list[models.RecordedEvent]]:
        async with self.connection() as conn:
            pending: asyncio.Future[_RawPage] | None = asyncio.ensure_future(
                self._fetch_page(conn, after, filter, page_size, fenced)
            )
            try:
                while pending is not None:
                    raw = await pending
                    pending = None
                    if raw.length == page_size and raw.last is not None:
                        pending = asyncio.ensure_future(
                            self._fetch_page(conn, raw.last, filter, page_size, fenced)
                        )
                        await asyncio.sleep(0)  # let it send the query before we decode
                    if raw.length:
                        yield self.registry.decode_rows(raw.rows)
            finally:
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending

    async def _fetch_page(
        self,
        conn: sql.Connection,
        after: models.Checkpoint,
        filter: EventFilter,
        limit: int,
        fenced: bool,
    ) -> _RawPage:
        if limit < 1:
            raise errors.InvalidEvent(f"limit must be at least 1, got {limit}")
        upto = filter.upto
        rows = await conn.fetch(
            queries["read_all"],
            str(after.tx),
            after.position,
            limit,
            sorted(filter.types) if filter.types is not None else None,
            filter.like_patterns(),
            sorted(filter.streams) if filter.streams is not None else None,
            filter.actor,
            filter.since,
            filter.until,
            str(upto.tx) if upto else None,
            upto.position if upto else None,
            fenced,
        )
        last = rows[-1] if rows else None
        return _RawPage(
            rows=rows,
            length=len(rows),
            last=models.Checkpoint(last[1], last[0]) if last is not None else None,
        )

    async def read_stream(
        self,
        stream_id: str,
        *,
        from_version: int = 1,
        limit: int | None = None,
        conn: sql.Connection | None = None,
    ) -> list[models.RecordedEvent]:
        """The events of one stream from ``from_version`` on, in version order."""
        if conn is None:
            async with self.connection() as own:
                rows = await own.fetch(queries["read_stream"], stream_id, from_version, limit)
        else:
            rows = await conn.fetch(queries["read_stream"], stream_id, from_version, limit)
        return self.registry.decode_rows(rows)

    async def stream_version(self, stream_id: str, *, conn: sql.Connection | None = None) -> int:
        """The stream's current version; 0 if it does not exist."""
        version: int = await self._fetchval(conn, queries["stream_version"], stream_id)
        return version

    async def head(self, *, conn: sql.Connection | None = None) -> models.Checkpoint:
        """The checkpoint of the last event a fenced reader can see now (``ORIGIN`` if none)."""
        if conn is None:
            async with self.connection() as own:
                row = await own.fetchrow(queries["head"])
        else:
            row = await conn.fetchrow(queries["head"])
        return models.ORIGIN if row is None else models.Checkpoint(int(row["tx"]), row["position"])

    async def _fetchval(self, conn: sql.Connection | None, query: str, *args: Any) -> Any:
        if conn is not None:
            return await conn.fetchval(query, *args)
        async with self.connection() as own:
            return await own.fetchval(query, *args)


class Session:
    """Appends that commit together with whatever else the caller does on ``conn``."""

    def __init__(self, store: EventStore, conn: sql.Connection) -> None:
        self.store = store
        self.conn = conn
        self.appended = False
        self.types: list[str] = []

    async def append(
        self,
        stream_id: str,
        events: Sequence[models.Event],
        *,
        expected: int = ANY,
        metadata: models.Metadata | None = None,
        event_ids: Sequence[UUID] | None = None,
    ) -> AppendResult:
        """As ``EventStore.append``, inside this session's transaction."""
        prepared = self.store._prepare(stream_id, events, expected, metadata, event_ids)
        result = await self.store._append_on(self.conn, prepared, expected)
        self.appended = True
        self.types.extend(prepared.types)
        return result


def _recorded(prepared: _Prepared, rows: Sequence[Any]) -> Iterable[models.RecordedEvent]:
    for event, event_id, type_name, version, row in zip(
        prepared.events, prepared.event_ids, prepared.types, prepared.versions, rows, strict=True
    ):
        yield models.RecordedEvent.model_construct(
            position=row["global_position"],
            tx=int(row["tx"]),
            stream_id=prepared.stream_id,
            stream_version=row["stream_version"],
            event_id=event_id,
            type=type_name,
            schema_version=version,
            data=event,
            metadata=prepared.metadata,
            recorded_at=row["recorded_at"],
        )


def _serialise(event: models.Event, type_name: str) -> str:
    """The payload as JSON, checked to decode back into its model.

    A model built with ``model_construct`` skips validation; the round trip makes sure
    nothing enters the log that its readers could not decode.
    """
    try:
        payload = event.model_dump_json(warnings="error")
        type(event).model_validate_json(payload)
    except (pydantic.ValidationError, pydantic_core.PydanticSerializationError) as exc:
        raise errors.InvalidEvent(f"{type_name} payload is invalid: {exc}") from exc
    return payload
