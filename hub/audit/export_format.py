"""The export/import format of the event log: JSON Lines that restore every event exactly.

Per event, a line holds the public shape of ``audit.render`` plus what it takes to restore the
event exactly (``event_id``, ``recorded_at``, the whole ``metadata``; ``data`` is the payload
as stored). PostgreSQL builds the lines (``export_page``), byte for byte what ``export_line``
writes in Python; ``chunks`` yields them page by page, in order. Import (``insert_all``) reads
such a file into a database whose log is empty, in one transaction: the positions (and
transaction ids) are the target database's own, so events keep their order, not their numbers.
``chronohub events export|import`` (hub/cli/events.py) drives both, with progress bars.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import types
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from uuid import UUID

import asyncpg
import pydantic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events import errors as event_errors
from events import models, sql, store
from hub import errors
from hub.audit import history as audit

queries = sql.Queries(__package__ or "hub.audit", "export_format.sql")

EXPORT_PAGE = 5000
# Export pages built side by side, each by its own connection (PostgreSQL builds the lines).
EXPORT_CONNECTIONS = 3
IMPORT_BATCH = 5000

Report = Callable[[int, int], None]
"""Called with (events done, events in all) as an export or import goes."""


# --- export ---------------------------------------------------------------------------------


def export_line(event: models.RecordedEvent, stored: dict[str, Any] | None = None) -> str:
    """One line of an export: the rendered event plus the fields import restores it from.

    ``stored`` is the payload as stored, for an event of an older schema version (its model
    holds the upcast payload); ``data`` is always the payload at ``schema_version``.
    """
    line = audit.render(event)
    if stored is not None:  # restore exactly what is stored, at the version it was stored
        line["data"] = stored
        line["schema_version"] = event.schema_version
    line["event_id"] = str(event.event_id)
    line["recorded_at"] = event.recorded_at.isoformat()
    line["metadata"] = event.metadata.model_dump(mode="json")
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


@dataclass(frozen=True)
class Chunk:
    """Lines of the export, ready to write: ``length`` events, the last at ``last``."""

    data: bytes
    length: int
    last: models.Checkpoint


async def bounds(
    event_store: store.EventStore, after: models.Checkpoint
) -> tuple[int, list[models.Checkpoint]]:
    """How many events follow ``after`` now, and where the export's pages between them end."""
    row = await event_store.pool.fetchrow(
        queries["export_bounds"], str(after.tx), after.position, EXPORT_PAGE
    )
    assert row is not None  # an aggregate always returns a row
    ends = [
        models.Checkpoint(int(tx), position)
        for tx, position in zip(row["txs"], row["positions"], strict=True)
    ]
    return row["total"], ends


async def chunks(
    event_store: store.EventStore, after: models.Checkpoint, ends: list[models.Checkpoint]
) -> AsyncIterator[Chunk]:
    """The export after ``after``, in order: the pages up to ``ends`` (``bounds``) built side
    by side, then page after page until caught up. A page with a line only Python writes
    exactly (an upcast payload, see ``export_page``) is written by ``export_line`` instead."""
    shapes = ExportShapes.of(event_store.registry)
    async for page in _export_pages(event_store, after, ends, shapes):
        data = page.chunk
        if page.unrendered:
            data = await _python_lines(event_store, page.after, page.length)
        yield Chunk(data, page.length, page.last)


@dataclass(frozen=True)
class ExportShapes:
    """What ``export_page`` needs of the models: each current type's field names in order,
    and the types with free-form fields (``dict[str, Any]``, ``object``, floats), whose
    numbers only Python writes as it would."""

    keys: str
    free_form: list[str]

    @classmethod
    def of(cls, registry: models.Registry) -> ExportShapes:
        """The shapes of every type in ``registry``."""
        keys: dict[str, list[str]] = {}
        free_form: list[str] = []
        for name in sorted(registry.types()):
            model = registry.model(name)
            keys[f"{name}@{model.schema_version}"] = list(model.model_fields)
            if not all(_plain(f.annotation) for f in model.model_fields.values()):
                free_form.append(name)
        return cls(json.dumps(keys), free_form)


# Field types whose JSON form PostgreSQL's jsonb writes back exactly as Python does.
_PLAIN = (str, int, bool, UUID, datetime, type(None))


def _plain(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(v, str | int | bool) for v in typing.get_args(annotation))
    if origin is Annotated:
        return _plain(typing.get_args(annotation)[0])
    if origin in (list, tuple, Union, types.UnionType):
        return all(_plain(arg) for arg in typing.get_args(annotation) if arg is not Ellipsis)
    return (
        isinstance(annotation, type) and issubclass(annotation, _PLAIN) and annotation is not float
    )


@dataclass(frozen=True)
class _ExportPage:
    after: models.Checkpoint
    chunk: bytes
    length: int
    unrendered: int
    last: models.Checkpoint


async def _export_pages(
    event_store: store.EventStore,
    after: models.Checkpoint,
    ends: list[models.Checkpoint],
    shapes: ExportShapes,
) -> AsyncIterator[_ExportPage]:
    """The export's pages in order: those between ``after`` and the ``ends`` built
    ``EXPORT_CONNECTIONS`` at a time, then page after page until caught up."""

    async def fetch(start: models.Checkpoint, end: models.Checkpoint | None) -> _ExportPage:
        async with event_store.pool.acquire() as conn:
            rows = await conn.fetch(
                queries["export_page"],
                str(start.tx),
                start.position,
                EXPORT_PAGE,
                shapes.keys,
                shapes.free_form,
                str(end.tx) if end else None,
                end.position if end else None,
            )
        lines = [row["line"] for row in rows]
        unrendered = lines.count(None)
        page = _ExportPage(
            start,
            b"" if unrendered else "".join(lines).encode(),
            len(rows),
            unrendered,
            models.Checkpoint(int(rows[-1]["tx"]), rows[-1]["position"]) if rows else start,
        )
        if end is not None and page.last != end:  # see export_bounds: cannot happen
            raise errors.Conflict(f"the export page ending at {end} ended at {page.last}")
        return page

    bounded = iter(zip([after, *ends], ends, strict=False))
    queue: collections.deque[asyncio.Task[_ExportPage]] = collections.deque()
    tail: asyncio.Task[_ExportPage] | None = None

    def refill() -> None:
        while len(queue) < EXPORT_CONNECTIONS and (span := next(bounded, None)) is not None:
            queue.append(asyncio.ensure_future(fetch(*span)))

    try:
        refill()
        while queue:
            page = await queue[0]
            queue.popleft()
            refill()
            yield page
        # What the bounds do not cover: less than a page, and whatever committed since.
        tail = asyncio.ensure_future(fetch(ends[-1] if ends else after, None))
        while tail is not None:
            page = await tail
            tail = None
            if not page.length:
                return
            if page.length == EXPORT_PAGE:
                tail = asyncio.ensure_future(fetch(page.last, None))
            yield page
    finally:
        for task in [*queue, *([tail] if tail else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _python_lines(
    event_store: store.EventStore, after: models.Checkpoint, length: int
) -> bytes:
    """The page after ``after`` written by ``export_line`` (the reference path)."""
    page = await event_store.read_all(after, limit=length)
    stored = await _stored_payloads(event_store, page)
    return "".join(export_line(e, stored.get(e.event_id)) for e in page).encode()


async def _stored_payloads(
    event_store: store.EventStore, page: list[models.RecordedEvent]
) -> dict[UUID, dict[str, Any]]:
    """The stored payloads of the page's events that were upcast when read (usually none)."""
    registry = event_store.registry
    old = [e.event_id for e in page if e.schema_version != registry.model(e.type).schema_version]
    if not old:
        return {}
    rows = await event_store.pool.fetch(queries["stored_data"], old)
    return {row["event_id"]: json.loads(row["data"]) for row in rows}


# --- import ---------------------------------------------------------------------------------


class ImportedEvent(BaseModel):
    """What import reads from an export line; the other (rendered) fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID
    stream: str
    version: int = Field(ge=1)
    type: str
    schema_version: int = Field(ge=1, le=32767)
    data: dict[str, Any]
    metadata: models.Metadata
    recorded_at: AwareDatetime

    def row(self) -> tuple[Any, ...]:
        """The values of the ``import_batch`` columns; the actor is derived from the metadata."""
        meta, data = self.metadata, json.dumps(self.data)
        envelope = (self.stream, self.version, self.event_id, self.type, self.schema_version)
        return (*envelope, data, meta.model_dump_json(), meta.actor.label, self.recorded_at)


@dataclass
class _Batch:
    """The rows of one insert, and the lines they came from."""

    first_line: int
    last_line: int = 0
    rows: list[tuple[Any, ...]] = field(default_factory=list)


async def insert_all(
    event_store: store.EventStore, path: Path, report: Report | None = None
) -> int:
    """Insert the export at ``path`` into an empty log, in one transaction: how many events.

    Lines are validated as they are inserted (``IMPORT_BATCH`` rows a statement); the first bad
    line raises ``errors.BadRequest`` naming it and rolls the whole transaction back, so a
    refused import writes nothing. ``errors.Conflict`` if the log is not empty.
    """
    lines = await asyncio.to_thread(count_lines, path)
    done = 0
    async with event_store.pool.acquire() as conn, conn.transaction():
        await conn.execute(queries["lock_log"])
        if await conn.fetchval(queries["any_event"]):
            raise errors.Conflict(
                "the event log of this database is not empty: import only into a database"
                " with no events (a new one, migrated or not)"
            )
        batches = _batches(path, event_store.registry)
        # The next batch is read and validated in a thread while this one is inserted.
        batch = await asyncio.to_thread(next, batches, None)
        while batch is not None:
            inserting = asyncio.ensure_future(_insert(conn, batch))
            try:
                upcoming = await asyncio.to_thread(next, batches, None)
            finally:
                await inserting
            done += len(batch.rows)
            if report is not None:
                report(done, lines)
            batch = upcoming
    return done


async def _insert(conn: sql.Connection, batch: _Batch) -> None:
    try:
        await conn.execute(queries["import_batch"], *map(list, zip(*batch.rows, strict=True)))
    except asyncpg.UniqueViolationError as exc:
        raise errors.Conflict(
            f"lines {batch.first_line}-{batch.last_line}: {exc.detail or exc}"
            " (an event appears twice)"
        ) from exc


def _batches(path: Path, registry: models.Registry) -> Iterator[_Batch]:
    """The file's events, validated, in batches; ``BadRequest`` naming the first bad line.

    Remembers each stream's last version (memory grows with the number of streams, not of
    events): every stream must start at version 1 and go up by one, in file order.
    """
    versions: dict[str, int] = {}
    number = 0
    with path.open(encoding="utf-8") as file:
        batch = _Batch(first_line=1)
        try:
            for number, text in enumerate(file, 1):
                if not text.strip():
                    continue
                event = parse_line(number, text, registry)
                previous = versions.get(event.stream, 0)
                if event.version != previous + 1:
                    raise errors.BadRequest(
                        f"line {number}: stream {event.stream!r} version {event.version} comes"
                        f" after version {previous}; an import needs every stream whole and"
                        " in order, from version 1"
                    )
                versions[event.stream] = event.version
                batch.rows.append(event.row())
                batch.last_line = number
                if len(batch.rows) == IMPORT_BATCH:
                    yield batch
                    batch = _Batch(first_line=number + 1)
        except UnicodeDecodeError:
            raise errors.BadRequest(f"line {number + 1}: not UTF-8 text") from None
    if batch.rows:
        yield batch


def parse_line(number: int, text: str, registry: models.Registry) -> ImportedEvent:
    """Validate one export line: JSON, the restore fields, the stream id, the payload."""
    try:
        event = ImportedEvent.model_validate_json(text)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise errors.BadRequest(
            f"line {number}: {where + ': ' if where else ''}{first['msg']}"
        ) from None
    if not store.STREAM_ID.fullmatch(event.stream):
        raise errors.BadRequest(f"line {number}: {event.stream!r} is not a stream id")
    try:
        registry.decode_payload(event.type, event.schema_version, event.data)
    except event_errors.UnknownEventType:
        raise errors.BadRequest(f"line {number}: unknown event type {event.type!r}") from None
    except event_errors.InvalidEvent as exc:
        raise errors.BadRequest(f"line {number}: {exc}") from None
    return event


def count_lines(path: Path) -> int:
    """How many lines ``path`` holds (newlines, counted a MiB at a time)."""
    with path.open("rb") as file:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 20), b""))
