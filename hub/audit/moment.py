"""The hub at a moment: users, groups, tokens, servers and projects as they were at a position
or time of the log, for ``chronohub state --at`` and the page ``/hub/events/at/{position}``.

Every projection is replayed up to that point into a scratch schema of its own, which the
connection's ``search_path`` reads, then read, and dropped: from the newest snapshot of the
read models at or before that point (``projections.snapshots``), so that only the events
after it are replayed, or from the start of the log if there is none of the running code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from events import models, sql, store
from hub import errors
from projections import base, catalog, rebuild, snapshots

queries = sql.Queries(__package__ or "hub.audit", "moment.sql")

# The columns of each view, in the order their queries return them.
HEADERS = {
    "users": ["name", "admin", "created (UTC)"],
    "groups": ["name", "members"],
    "tokens": ["id", "owner", "scopes", "expires (UTC)"],
    "servers": ["user", "server", "state", "url", "started (UTC)"],
    # members in the project's row: who could use a project is read with the project
    "projects": ["project", "visibility", "members", "created (UTC)", "last push (UTC)"],
}
VIEWS = tuple(HEADERS)


@dataclass(frozen=True)
class View:
    """One view's rows as of the moment (at most the limit asked for) and its count in all."""

    name: str
    headers: list[str]
    rows: list[tuple[Any, ...]]
    total: int


async def checkpoint_at(
    conn: sql.Connection, at: int | datetime
) -> tuple[models.Checkpoint, datetime | None]:
    """The checkpoint of the event at a position (404 if there is none a reader can see yet),
    or of the last one at or before a time (the origin, and None, before the first event)."""
    moment = await rebuild.checkpoint_of(conn, at)
    if moment is None:
        last = await conn.fetchval(queries["last_position"])
        if isinstance(at, int) and at > last:
            raise errors.NotFound(
                f"position {at} is past the end of the log (its last event is at {last})"
                if last
                else f"position {at} is past the end of the log, which is empty"
            )
        if isinstance(at, int) and at < 1:
            raise errors.NotFound(f"no event at position {at}: positions start at 1")
        raise errors.NotFound(f"no event at position {at} (or not yet readable)")
    return moment


async def views_at(
    conn: sql.Connection,
    event_store: store.EventStore,
    checkpoint: models.Checkpoint,
    views: Sequence[str],
    *,
    limit: int = 1000,
    progress: rebuild.Progress | None = None,
    timeout_s: float | None = None,
    note: snapshots.Note | None = None,
) -> list[View]:
    """``views`` (names of ``VIEWS``) as of ``checkpoint``: every projection replayed in one
    pass over the log (each page read once), read, and the scratch schema dropped.

    ``timeout_s`` bounds the replay (the page's; the CLI waits as long as it takes): each
    statement by PostgreSQL's ``statement_timeout``, the whole between pages; past it,
    ``TooLong`` (the scratch schema dropped all the same). ``note`` is told which snapshot the
    replay starts from, or why none."""
    unknown = [v for v in views if v not in HEADERS]
    if unknown:
        raise errors.BadRequest(f"unknown view {unknown[0]!r}; one of {', '.join(VIEWS)}")
    if timeout_s is None:
        return await _views_at(conn, event_store, checkpoint, views, limit, progress, note)
    deadline = time.monotonic() + timeout_s

    def bounded(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)
        if time.monotonic() > deadline:
            raise TooLong(_too_long(checkpoint, timeout_s))

    # A session setting, as the replay's search_path is: reset before the connection goes
    # back to the pool (hub.database.keep_session).
    # (whole seconds, at least one: the bound of the whole is the deadline between pages)
    await conn.execute(queries["set_statement_timeout"], f"{max(1, math.ceil(timeout_s))}s")
    try:
        return await _views_at(conn, event_store, checkpoint, views, limit, bounded, note)
    except asyncpg.QueryCanceledError as exc:  # a statement past statement_timeout
        raise TooLong(_too_long(checkpoint, timeout_s)) from exc
    finally:
        await conn.execute(queries["reset_statement_timeout"])


class TooLong(errors.Busy):
    """Replaying the log up to a point took longer than allowed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, RETRY_AFTER_S)


RETRY_AFTER_S = 30
"""What a refused or overlong replay tells the client to wait (``Retry-After``)."""


def _too_long(checkpoint: models.Checkpoint, timeout_s: float) -> str:
    return (
        f"replaying the log up to position {checkpoint.position} took longer than"
        f" {timeout_s:g} s, and was stopped; try again later, or run"
        f" `chronohub state --at {checkpoint.position}` on the hub's machine"
    )


async def _views_at(
    conn: sql.Connection,
    event_store: store.EventStore,
    checkpoint: models.Checkpoint,
    views: Sequence[str],
    limit: int,
    progress: rebuild.Progress | None,
    note: snapshots.Note | None,
) -> list[View]:
    found: list[View] = []
    together = base.Together(catalog.ALL)
    async with snapshots.as_of(
        conn, event_store, together, checkpoint, progress=progress, note=note
    ):
        for view in views:
            rows = await conn.fetch(queries[f"state_{view}"], limit)
            total = rows[0]["total"] if rows else 0
            found.append(View(view, HEADERS[view], [tuple(row)[:-1] for row in rows], total))
    return found
