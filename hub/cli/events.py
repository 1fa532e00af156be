"""What ``chronohub events`` and ``chronohub state`` do: read, follow, export, import, count
and replay the event log from the command line.

Export and import use the log's export format (``hub.audit.export_format``): JSON Lines that
restore every event exactly; import then rebuilds every projection. ``state --at`` reads the
projections as of a past point through ``hub.audit.moment``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

import events.catalog  # noqa: F401 - registers the hub's events, which import validates against
from events import errors as event_errors
from events import models, sql, store, subscription
from hub import errors
from hub.audit import export_format, moment
from hub.audit import history as audit
from hub.cli import progress
from projections import catalog, rebuild, snapshots

queries = sql.Queries(__package__ or "hub.cli", "events.sql")

# soft_wrap: a message is never broken mid-line (a checkpoint in it stays one token).
stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

EXPORT_PAGE = 5000
# Export pages built side by side, each by its own connection (PostgreSQL builds the lines).
EXPORT_CONNECTIONS = 3
IMPORT_BATCH = 5000
SUMMARY_WIDTH = 60
STATE_VIEWS = moment.VIEWS
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
    try:
        with progress.bar(stderr, enabled=target is not None) as bar:
            total, ends = await export_format.bounds(event_store, after)
            report = progress.reporter(bar, "export", total)
            async for chunk in export_format.chunks(event_store, after, ends):
                await asyncio.to_thread(out.write, chunk.data)
                done, last = done + chunk.length, chunk.last
                report(done, total)
        await asyncio.to_thread(out.flush)
    finally:
        if target is not None:
            await asyncio.to_thread(out.close)
    stderr.print(f"exported {done:,} events; last checkpoint {last} (resume with --after {last})")
    return 0


# --- import ---------------------------------------------------------------------------------


async def import_file(event_store: store.EventStore, path: Path) -> int:
    """Load an export into an empty log, in one transaction, then rebuild every projection.

    A refused import (a bad line, a log that is not empty) writes nothing
    (``export_format.insert_all``).
    """
    try:
        if not await asyncio.to_thread(path.is_file):
            raise errors.BadRequest(f"no such file: {path}")
        with progress.bar(stderr) as bar:
            report = progress.reporter(bar, "import")
            count = await export_format.insert_all(event_store, path, report)
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
    """Show users, groups, tokens, servers or projects (with their members) as they were at a
    position or time (``moment``: every projection replayed up to that point, from the
    newest snapshot before it)."""
    async with event_store.pool.acquire() as conn:
        try:
            checkpoint, recorded_at = await moment.checkpoint_at(conn, at)
        except errors.HubError as exc:
            return _failed(exc)
        # The replay's total counts the events past the point too, so the bar shows none.
        with progress.bar(stderr) as bar:
            report = progress.reporter(bar, "replay all projections", exact=False)
            [found] = await moment.views_at(
                conn,
                event_store,
                checkpoint,
                [view],
                limit=limit,
                progress=report,
                note=lambda text: stderr.print(escape(text)),
            )
    when = (
        f"position {checkpoint.position} ({_time(recorded_at)} UTC)"
        if recorded_at is not None
        else "before the first event"
    )
    stdout.print(f"{view} as of {when}")
    stdout.print(
        _table(
            found.headers,
            found.rows,
            caption=f"the first {limit} of {found.total}"
            if found.total > limit
            else f"{found.total} in all",
        )
    )
    return 0


async def snapshot(event_store: store.EventStore, at: int | datetime | None, *, keep: int) -> int:
    """Take a snapshot of every read model at a position or time (the log's end by default),
    then keep at most ``keep`` (spread over the log)."""
    upto = None
    if at is not None:
        async with event_store.pool.acquire() as conn:
            try:
                upto, _ = await moment.checkpoint_at(conn, at)
            except errors.HubError as exc:
                return _failed(exc)
    try:
        with progress.bar(stderr) as bar:
            taken = await snapshots.take(
                event_store,
                catalog.ALL,
                at=upto,
                keep=keep,
                progress=progress.reporter(bar, "replay all projections", exact=False),
                note=lambda text: stderr.print(escape(text)),
            )
    except snapshots.SnapshotError as exc:
        stderr.print(f"[red]error:[/red] {escape(str(exc))}")
        # Busy is not failed: a serving hub's snapshotter tries again later without backoff.
        return snapshots.BUSY_EXIT if isinstance(exc, snapshots.SnapshotBusy) else 1
    stdout.print(f"snapshot {taken.schema} at position {taken.checkpoint.position}")
    return 0


async def list_snapshots(event_store: store.EventStore) -> int:
    """List the snapshots, oldest point first, and whether the running code can use each."""
    async with event_store.pool.acquire() as conn:
        current = await snapshots.versions(conn, catalog.ALL)
        found = await snapshots.listed(conn)
    rows = [
        (
            s.schema,
            s.checkpoint.position,
            _time(s.recorded_at) if s.recorded_at else "",
            _time(s.created_at),
            "yes" if s.usable_for(current) else "no: " + ", ".join(s.changed(current)),
        )
        for s in found
    ]
    headers = ("snapshot", "position", "event time (UTC)", "taken (UTC)", "usable")
    stdout.print(_table(headers, rows, caption=f"{len(rows)} snapshots"))
    return 0


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
