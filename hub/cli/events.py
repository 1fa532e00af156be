"""What ``chronohub events`` and ``chronohub state`` do: read, follow, export, import, count
and replay the event log from the command line.

Just over the house's 700 lines: the export/import format is still here; moving it out of the
CLI into a module of its own (it is not CLI code) is the restructure's next step.

Export writes JSON Lines: per event, the public shape of ``audit.render`` plus what it takes
to restore the event exactly (``event_id``, ``recorded_at``, the whole ``metadata``; ``data``
is the payload as stored). PostgreSQL builds the lines (``export_page``), byte for byte
what ``export_line`` writes in Python. Import reads such a file into a database whose log is
empty, in one transaction, and rebuilds every projection. The positions (and transaction ids) are
the target database's own: events keep their order, not their numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import sys
import types
import typing
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, Union
from uuid import UUID

import asyncpg
import pydantic
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

import events.catalog  # noqa: F401 - registers the hub's events, which import validates against
from events import errors as event_errors
from events import models, sql, store, subscription
from hub import errors
from hub.audit import history as audit
from hub.cli import progress
from projections import base, catalog, rebuild

queries = sql.Queries(__package__ or "hub.cli", "events.sql")

# soft_wrap: a message is never broken mid-line (a checkpoint in it stays one token).
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

EXPORT_PAGE = 5000
# Export pages built side by side, each by its own connection (PostgreSQL builds the lines).
EXPORT_CONNECTIONS = 3
IMPORT_BATCH = 5000
SUMMARY_WIDTH = 60
# The columns of ``state``'s views, in the order their queries return them.
_HEADERS = {
    "users": ["name", "admin", "created (UTC)"],
    "groups": ["name", "members"],
    "tokens": ["id", "owner", "scopes", "expires (UTC)"],
    "servers": ["user", "server", "state", "url", "started (UTC)"],
}
STATE_VIEWS = tuple(_HEADERS)
_DIGITS = re.compile(r"[0-9]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- arguments ------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not _DIGITS.fullmatch(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def checkpoint_argument(text: str) -> models.Checkpoint:
    """An argparse type: a checkpoint ``TX:POS``, the ``id`` of an exported or rendered event."""
    try:
        return models.Checkpoint.parse(text)
    except event_errors.InvalidEvent as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def at_argument(text: str) -> int | datetime:
    """An argparse type: a global position (an integer) or an ISO 8601 time with a zone."""
    if _DIGITS.fullmatch(text):
        return int(text)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a position (a whole number) nor an ISO 8601 time"
            " such as 2025-01-31T12:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add one, e.g. 'Z' for UTC")
    return value


def filters(args: argparse.Namespace, *, limit: int = audit.DEFAULT_LIMIT) -> audit.Query:
    """The filters of the command line (repeatable options give lists), newest first."""

    def many(name: str) -> tuple[str, ...] | None:
        values = getattr(args, name, None)
        return tuple(values) if values else None

    return audit.Query(
        types=many("types"),
        type_prefixes=many("type_prefixes"),
        streams=many("streams"),
        actor=getattr(args, "actor", None) or None,
        users=many("users"),
        groups=many("groups"),
        descending=True,
        limit=limit,
    )


async def _subjects(conn: sql.Connection, query: audit.Query) -> list[dict[str, Any]] | None:
    """The audit subject filter for ``--user``/``--group``; ``None`` when neither is given."""
    if query.users is None and query.groups is None:
        return None
    found = await audit.subjects(conn, query.users or (), query.groups or ())
    if not found:
        names = [*(query.users or ()), *(query.groups or ())]
        raise errors.NotFound(f"no user or group named {', '.join(names)}")
    return found


# --- tail and follow ------------------------------------------------------------------------


async def tail(event_store: store.EventStore, query: audit.Query) -> int:
    """Show the last ``query.limit`` events matching ``query``, oldest first, in a table."""
    try:
        async with event_store.pool.acquire() as conn:
            allowed = await _subjects(conn, query)
            found, _ = await audit.history(conn, event_store.registry, query, allowed)
    except errors.HubError as exc:
        return _failed(exc)
    headers = ("position", "time (UTC)", "type", "stream", "actor", "data")
    rows = [_cells(event) for event in reversed(found)]
    stdout.print(_table(headers, rows, title=f"the last {len(rows)} events", right=1))
    return 0


async def follow(
    event_store: store.EventStore,
    query: audit.Query,
    *,
    after: models.Checkpoint | None,
    as_json: bool,
) -> int:
    """Print events as they are committed, from the head (or ``after``), until SIGINT/SIGTERM."""
    try:
        async with event_store.pool.acquire() as conn:
            allowed = await _subjects(conn, query)
    except errors.HubError as exc:
        return _failed(exc)
    start = after if after is not None else await event_store.head()
    wanted = store.EventFilter(
        types=frozenset(query.types) if query.types else None,
        type_prefixes=query.type_prefixes,
        streams=frozenset(query.streams) if query.streams else None,
        actor=query.actor,
    )
    live = subscription.Subscription(event_store, after=start, filter=wanted)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printer = asyncio.create_task(_print_live(live, allowed, as_json), name="events-follow")
    stopped = asyncio.create_task(stop.wait(), name="events-follow-stop")
    stderr.print(f"following events after {start} (Ctrl-C to stop)")
    try:
        await asyncio.wait({printer, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for task in (printer, stopped):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # a failure of the printer is raised here
    stderr.print(f"stopped; resume with --after {live.checkpoint}")
    return 0


async def _print_live(
    live: subscription.Subscription, allowed: list[dict[str, Any]] | None, as_json: bool
) -> None:
    pages = live.pages()
    try:
        async for page in pages:
            lines = [
                json.dumps(audit.render(event)) if as_json else "  ".join(_cells(event))
                for event in page
                if audit.matches(event, allowed)
            ]
            if lines:
                print("\n".join(lines), flush=True)
    finally:
        await pages.aclose()  # type: ignore[attr-defined]


def _cells(event: models.RecordedEvent) -> tuple[str, ...]:
    return (str(event.position), _time(event.recorded_at), event.type, event.stream_id,
            event.metadata.actor.label, summary(event))  # fmt: skip


def summary(event: models.RecordedEvent) -> str:
    """The payload in one short line: ``key=value`` pairs, ids cut to 8 characters."""
    parts = []
    for key, value in event.data.model_dump(mode="json").items():
        if value is None or value == [] or value == {}:
            continue
        if isinstance(value, list):
            text = ",".join(_short(item) for item in value)
        elif isinstance(value, dict):
            text = json.dumps(value, separators=(",", ":"))
        else:
            text = _short(value)
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    return line if len(line) <= SUMMARY_WIDTH else line[: SUMMARY_WIDTH - 1] + "…"


def _short(value: Any) -> str:
    text = str(value)
    return text[:8] if _UUID.fullmatch(text) else text


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


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


async def export(
    event_store: store.EventStore,
    target: Path | None,
    *,
    after: models.Checkpoint | None = None,
) -> int:
    """Write the events after ``after`` as JSON Lines to ``target`` (``None``: stdout).

    PostgreSQL builds the lines (``export_page``), a fenced page at a time, several pages side
    by side on their own connections, and the bytes go to the file in order. A page
    with a line only Python writes exactly (an upcast payload, see the query) is written by
    ``export_line`` instead. A progress bar shows on stderr when writing to a file. Ends by
    printing the last checkpoint, the ``--after`` that resumes the export.
    """
    after = after or models.ORIGIN
    out: BinaryIO = sys.stdout.buffer
    if target is not None:
        try:
            out = await asyncio.to_thread(target.open, "wb")
        except OSError as exc:
            return _failed(errors.BadRequest(f"cannot write {target}: {exc.strerror}"))
    done, last = 0, after
    shapes = ExportShapes.of(event_store.registry)
    try:
        with progress.bar(stderr, enabled=target is not None) as bar:
            bounds = await event_store.pool.fetchrow(
                queries["export_bounds"], str(after.tx), after.position, EXPORT_PAGE
            )
            assert bounds is not None  # an aggregate always returns a row
            total = bounds["total"]
            ends = [
                models.Checkpoint(int(tx), position)
                for tx, position in zip(bounds["txs"], bounds["positions"], strict=True)
            ]
            report = progress.reporter(bar, "export", total)
            async for page in _export_pages(event_store, after, ends, shapes):
                chunk = page.chunk
                if page.unrendered:
                    chunk = await _python_lines(event_store, page.after, page.length)
                await asyncio.to_thread(out.write, chunk)
                done, last = done + page.length, page.last
                report(done, total)
        await asyncio.to_thread(out.flush)
    finally:
        if target is not None:
            await asyncio.to_thread(out.close)
    stderr.print(f"exported {done:,} events; last checkpoint {last} (resume with --after {last})")
    return 0


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


async def import_file(event_store: store.EventStore, path: Path) -> int:
    """Load an export into an empty log, in one transaction, then rebuild every projection.

    Lines are validated as they are inserted (5,000 rows a statement); the first bad line
    rolls the whole transaction back, so a refused import writes nothing.
    """
    try:
        if not await asyncio.to_thread(path.is_file):
            raise errors.BadRequest(f"no such file: {path}")
        lines = await asyncio.to_thread(count_lines, path)
        with progress.bar(stderr) as bar:
            count = await _insert_all(event_store, path, bar, lines)
    except errors.HubError as exc:
        return _failed(exc)
    stderr.print(f"imported {count:,} events (positions re-assigned, order kept)")
    for projection in catalog.ALL:
        with progress.bar(stderr) as bar:
            result = await rebuild.rebuild(
                event_store,
                projection,
                progress=progress.reporter(bar, f"rebuild {projection.name}"),
            )
        stderr.print(f"rebuilt {result.projection}: {result.events:,} events")
    return 0


async def _insert_all(event_store: store.EventStore, path: Path, bar: Progress, lines: int) -> int:
    report = progress.reporter(bar, "import", lines)
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


# --- stats ----------------------------------------------------------------------------------


async def stats(event_store: store.EventStore, by: str | None) -> int:
    """Counts of events by type and by day (UTC), from SQL aggregates."""
    async with event_store.pool.acquire() as conn:
        for name, title, headers in (
            ("type", "events by type", ("type", "events", "first (UTC)", "last (UTC)")),
            ("day", "events by day (UTC)", ("day", "events", "types")),
        ):
            if by in (None, name):
                rows = await conn.fetch(queries[f"stats_by_{name}"])
                total = f"{sum(row['events'] for row in rows):,} events in all"
                cells = [[f"{v:,}" if isinstance(v, int) else v for v in row] for row in rows]
                stdout.print(_table(headers, cells, title=title, caption=total, right=2))
    return 0


# --- state ----------------------------------------------------------------------------------


async def state(
    event_store: store.EventStore, at: int | datetime, view: str, *, limit: int = 1000
) -> int:
    """Show users, groups, tokens or servers as they were at a position or time.

    Replays every projection up to that point into a scratch schema, points the connection's
    ``search_path`` at it, reads, and drops it.
    """
    schema = f"state_{os.getpid()}"
    staging = f"{schema}_build"
    async with event_store.pool.acquire() as conn:
        try:
            checkpoint, recorded_at = await _checkpoint_at(conn, at)
        except errors.HubError as exc:
            return _failed(exc)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {rebuild.ident(schema)} CASCADE")
            await conn.execute(f"CREATE SCHEMA {rebuild.ident(schema)}")
            with progress.bar(stderr) as bar:
                # Every projection in one pass over the log (each page read once). build()
                # makes its schema afresh: build in a staging schema and move the tables into
                # the one the queries read. Its total counts the events past the point too,
                # so the bar shows none.
                together = base.Together(catalog.ALL)
                report = progress.reporter(bar, "replay all projections", exact=False)
                await rebuild.build(
                    conn, event_store, together, staging, upto=checkpoint, progress=report
                )
                for table in together.tables:
                    await conn.execute(
                        f"ALTER TABLE {rebuild.ident(staging)}.{rebuild.ident(table)}"
                        f" SET SCHEMA {rebuild.ident(schema)}"
                    )
            await conn.execute(f"SET search_path TO {rebuild.ident(schema)}, public")
            rows = await conn.fetch(queries[f"state_{view}"], limit)
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {rebuild.ident(staging)} CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {rebuild.ident(schema)} CASCADE")
            await conn.execute("RESET search_path")
    when = (
        f"position {checkpoint.position} ({_time(recorded_at)} UTC)"
        if recorded_at is not None
        else "before the first event"
    )
    total = rows[0]["total"] if rows else 0
    stdout.print(f"{view} as of {when}")
    stdout.print(
        _table(
            _HEADERS[view],
            [tuple(row)[:-1] for row in rows],
            caption=f"the first {limit} of {total}" if total > limit else f"{total} in all",
        )
    )
    return 0


async def _checkpoint_at(
    conn: sql.Connection, at: int | datetime
) -> tuple[models.Checkpoint, datetime | None]:
    """The checkpoint of the event at a position, or of the last one at or before a time."""
    if isinstance(at, int):
        row = await conn.fetchrow(queries["checkpoint_at_position"], at)
        if row is None:
            raise errors.NotFound(f"no event at position {at} (or not yet readable)")
    else:
        row = await conn.fetchrow(queries["checkpoint_at_time"], at)
        if row is None:
            return models.ORIGIN, None
    return models.Checkpoint(int(row["tx"]), row["position"]), row["recorded_at"]


# --- shared ---------------------------------------------------------------------------------


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    right: int = 0,
) -> Table:
    """A table of text cells, its column ``right`` (1-based; 0: none) aligned right."""
    table = Table(title=title, caption=caption)
    for number, header in enumerate(headers, 1):
        table.add_column(header, justify="right" if number == right else "left")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def _failed(exc: errors.HubError) -> int:
    stderr.print(f"[red]error:[/red] {escape(exc.message)}")
    return 1
