"""Rebuild a projection from the log, verify one against the log, or build one as of a past point.

All three replay the log into tables in a scratch schema, created ``LIKE`` the live ones
(so the migrations stay the only place tables are defined), with the connection's
``search_path`` pointing the projection's unqualified SQL at the scratch copies. Replay
runs in page-sized transactions: one long transaction would hold back the fence of every
subscriber. Only the final step locks the live tables:

* rebuild: catch up, then drop the live tables and move the new ones in, in one transaction,
  which notifies the hub processes' token and read caches at its commit (they forget what
  they read from the old tables);
* verify: catch up, then compare row for row (``EXCEPT ALL`` both ways) and drop the copies;
* time travel (``as_of``): replay up to a checkpoint and read the copies, then drop them.

Each run's scratch schema has a name of its own (``scratch_name``): two runs on one database
never drop each other's tables. Whatever happens, the schema is dropped and the connection's
``search_path`` reset (even when the drop fails), because the connection goes back to a pool
that does not reset sessions (``hub.database.keep_session``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from events import models, sql, store
from projections import base

queries = sql.Queries(__package__ or "projections", "checkpoints.sql")
scratch_queries = sql.Queries(__package__ or "projections", "scratch.sql")

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""Called with (events applied so far, events to apply in all) after each page."""

DEFAULT_BATCH = 20_000
REBUILD_BATCH = 50_000
"""Pages of a rebuild or verify (run from the command line, not in a serving hub): a page
writes each row it touches once, so larger pages write less per event (the users rebuild of
the benchmark: 0.2 rows per event instead of 0.5, a third less CPU in all). Memory: a decoded
event holds about 1 kB (measured on the benchmark's user events), its row as read about half
that again, and up to three pages are alive at a time (one applied, the next decoded, and
the one after that fetched as rows, not yet decoded): ~150 MB and the raw rows of a page."""
AS_OF = "state"
"""The purpose in the names of time travel's scratch schemas (``state_<hex>``)."""


@dataclass(frozen=True)
class Difference:
    """A row present on one side only: ``side`` is ``live`` or ``rebuilt``."""

    table: str
    side: str
    row: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """What a rebuild or verify replayed, and for verify what differed."""

    projection: str
    events: int
    checkpoint: models.Checkpoint
    differences: tuple[Difference, ...] = ()


def ident(name: str) -> str:
    """Quote an SQL identifier. Identifiers come from projection definitions, never from users."""
    return '"' + name.replace('"', '""') + '"'


def scratch_name(purpose: str) -> str:
    """A scratch schema's name that no other run uses: ``<purpose>_<16 random hex digits>``
    (within PostgreSQL's 63 bytes)."""
    return f"{purpose[:40]}_{secrets.token_hex(8)}"


async def drop_scratch(conn: sql.Connection, schema: str) -> None:
    """Drop ``schema`` and reset ``conn``'s ``search_path``, the reset even if the drop fails."""
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {ident(schema)} CASCADE")
    finally:
        await conn.execute("RESET search_path")


Moment = tuple[models.Checkpoint, datetime | None]


async def checkpoint_of(conn: sql.Connection, at: int | datetime) -> Moment | None:
    """The checkpoint to replay up to for "the hub at ``at``", with the event's time: the
    event at a global position (None if there is none a fenced reader can see yet), or the
    last one recorded at or before a time (the origin, and no time, before the first)."""
    if isinstance(at, int):
        row = await conn.fetchrow(queries["checkpoint_at_position"], at)
        if row is None:
            return None
    else:
        row = await conn.fetchrow(queries["checkpoint_at_time"], at)
        if row is None:
            return models.ORIGIN, None
    return models.Checkpoint(int(row["tx"]), row["position"]), row["recorded_at"]


@contextlib.asynccontextmanager
async def as_of(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    upto: models.Checkpoint,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> AsyncIterator[str]:
    """Time travel: the projection's tables as of ``upto``, built in a scratch schema that
    ``conn``'s unqualified SQL reads inside the block (live tables stay reachable as
    ``public.*``). Yields the schema's name; drops it and resets ``search_path`` on the way out.
    """
    schema = scratch_name(AS_OF)
    # Held while the schema exists: ``drop_unused`` leaves it alone (another process's, or
    # ``chronohub state --at``'s, in use now); released with the connection if it dies.
    await conn.fetchval(scratch_queries["hold"], schema)
    try:
        await build(
            conn,
            event_store,
            projection,
            schema,
            upto=upto,
            batch_size=batch_size,
            progress=progress,
        )
        yield schema
    finally:
        try:
            await drop_scratch(conn, schema)
        finally:
            await conn.fetchval(scratch_queries["release"], schema)


async def drop_unused(conn: sql.Connection, purpose: str = AS_OF) -> list[str]:
    """Drop the scratch schemas of ``purpose`` that nobody holds (left over by a process that
    died mid-replay, or whose drop failed); returns their names."""
    dropped = []
    for row in await conn.fetch(scratch_queries["named"], purpose):
        name: str = row["name"]
        if not await conn.fetchval(scratch_queries["try_hold"], name):
            continue  # in use
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {ident(name)} CASCADE")
            dropped.append(name)
        finally:
            await conn.fetchval(scratch_queries["release"], name)
    return dropped


async def build(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    schema: str,
    *,
    upto: models.Checkpoint | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> tuple[models.Checkpoint, int]:
    """Create ``schema`` with empty copies of the projection's tables and replay into them.

    ``schema`` must not exist (``scratch_name`` gives a fresh one). Leaves ``conn``'s
    ``search_path`` on ``schema``: the caller owns the connection and ``drop_scratch``es it.
    Returns the checkpoint reached and the number of events applied.
    """
    await create_tables(conn, projection, schema)
    # The count is only for the progress bar: a scan of the whole log, skipped without one.
    total = (
        await conn.fetchval(queries["count_events"], sorted(projection.handles))
        if progress is not None
        else 0
    )
    return await replay(
        conn, event_store, projection, models.ORIGIN, upto, batch_size, progress, total
    )


async def create_tables(conn: sql.Connection, projection: base.Projection, schema: str) -> None:
    """Create ``schema`` (which must not exist) with empty, unlogged copies of the projection's
    tables, and point ``conn``'s ``search_path`` at it (``drop_scratch`` resets it)."""
    await conn.execute(f"CREATE SCHEMA {ident(schema)}")
    for table in projection.tables:
        # Unlogged while it fills: no WAL for every row rewritten. A rebuild sets it logged
        # (one pass over the finished table) before it swaps it in.
        await conn.execute(
            f"CREATE UNLOGGED TABLE {ident(schema)}.{ident(table)}"
            f" (LIKE public.{ident(table)} INCLUDING ALL)"
        )
    await conn.execute(f"SET search_path TO {ident(schema)}, public")


async def replay(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    after: models.Checkpoint,
    upto: models.Checkpoint | None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    total: int = 0,
) -> tuple[models.Checkpoint, int]:
    """Apply the events after ``after`` (up to ``upto``, or all a fenced reader sees) to the
    tables ``conn``'s ``search_path`` points at, a page per transaction; returns the checkpoint
    reached and the number of events applied."""
    return await _replay(conn, event_store, projection, after, upto, batch_size, progress, total)


async def rebuild(
    event_store: store.EventStore,
    projection: base.Projection,
    *,
    batch_size: int = REBUILD_BATCH,
    progress: Progress | None = None,
) -> Result:
    """Replay the log into fresh tables, then swap them for the live ones in one transaction."""
    # (See build: the new tables fill unlogged and become logged before the swap.)
    schema = scratch_name(f"rebuild_{projection.name}")
    async with event_store.pool.acquire() as conn:
        try:
            checkpoint, count = await build(
                conn, event_store, projection, schema, batch_size=batch_size, progress=progress
            )
            for table in projection.tables:
                await conn.execute(f"ALTER TABLE {ident(schema)}.{ident(table)} SET LOGGED")
            async with conn.transaction():
                checkpoint, more = await _catch_up_locked(
                    conn, event_store, projection, checkpoint, "ACCESS EXCLUSIVE"
                )
                for table in projection.tables:
                    await conn.execute(f"DROP TABLE public.{ident(table)}")
                    await conn.execute(
                        f"ALTER TABLE {ident(schema)}.{ident(table)} SET SCHEMA public"
                    )
                if projection.mode == "async":
                    await conn.execute(
                        queries["set"], projection.name, str(checkpoint.tx), checkpoint.position
                    )
                # the hub processes' caches hold what the old tables said: notified at commit
                await conn.execute(queries["read_models_changed"])
            return Result(projection.name, count + more, checkpoint)
        finally:
            await drop_scratch(conn, schema)


async def verify(
    event_store: store.EventStore,
    projection: base.Projection,
    *,
    batch_size: int = REBUILD_BATCH,
    progress: Progress | None = None,
    max_rows: int = 20,
) -> Result:
    """Rebuild into a scratch schema and compare it with the live tables, row for row."""
    schema = scratch_name(f"verify_{projection.name}")
    async with event_store.pool.acquire() as conn:
        try:
            upto = None
            if projection.mode == "async":
                # Never build past where the live projection stands.
                row = await conn.fetchrow(queries["get"], projection.name)
                upto = models.Checkpoint(int(row["tx"]), row["position"]) if row else models.ORIGIN
            checkpoint, count = await build(
                conn,
                event_store,
                projection,
                schema,
                upto=upto,
                batch_size=batch_size,
                progress=progress,
            )
            async with conn.transaction():
                checkpoint, more = await _catch_up_locked(
                    conn, event_store, projection, checkpoint, "SHARE"
                )
                differences = []
                for table in projection.tables:
                    differences += await _compare(conn, schema, table, max_rows)
            return Result(projection.name, count + more, checkpoint, tuple(differences))
        finally:
            await drop_scratch(conn, schema)


async def _catch_up_locked(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    checkpoint: models.Checkpoint,
    lock_mode: str,
) -> tuple[models.Checkpoint, int]:
    """Inside the caller's transaction: keep writers out of the live tables and catch up.

    An inline projection's writers are append transactions: once the live tables are
    locked, every event they concern is either committed (and read here, fence or not) or
    will be applied to whatever tables are live when its writer gets the lock. An async
    projection's writer is its runner, kept out by the projection's advisory lock; it is
    caught up to the live checkpoint.
    """
    for table in projection.tables:
        await conn.execute(f"LOCK TABLE public.{ident(table)} IN {lock_mode} MODE")
    if projection.mode == "inline":
        return await _replay(
            conn, event_store, projection, checkpoint, None, DEFAULT_BATCH, None, 0, fenced=False
        )
    await conn.execute(queries["lock_wait"], projection.name)
    row = await conn.fetchrow(queries["get"], projection.name)
    live = models.Checkpoint(int(row["tx"]), row["position"]) if row else models.ORIGIN
    if lock_mode == "SHARE":  # verify compares with the live tables as they stand
        return await _replay(
            conn, event_store, projection, checkpoint, live, DEFAULT_BATCH, None, 0
        )
    return await _replay(conn, event_store, projection, checkpoint, None, DEFAULT_BATCH, None, 0)


async def _replay(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    after: models.Checkpoint,
    upto: models.Checkpoint | None,
    batch_size: int,
    progress: Progress | None,
    total: int,
    *,
    fenced: bool = True,
) -> tuple[models.Checkpoint, int]:
    wanted = store.EventFilter(types=projection.handles, upto=upto)
    done = 0
    if fenced:
        # Pages come from a connection of their own, the next one read and decoded while
        # this one is applied; each page is applied in a transaction of its own on ``conn``.
        pages = event_store.pages(after, filter=wanted, page_size=batch_size)
        async for page in _ahead(pages):
            async with conn.transaction():
                await projection.apply(conn, page)
            after = page[-1].checkpoint
            done += len(page)
            if progress:
                progress(done, max(total, done))
        return after, done
    while True:  # unfenced: inside the caller's transaction, on its connection
        page = await event_store.read_all(
            after, filter=wanted, limit=batch_size, conn=conn, fenced=False
        )
        if page:
            await projection.apply(conn, page)
            after = page[-1].checkpoint
            done += len(page)
        if len(page) < batch_size:
            return after, done


async def _ahead(source: AsyncIterator[T]) -> AsyncIterator[T]:
    """The items of ``source``, the next one made while the caller works on this one.

    A replay's client decodes a page while the server applies the previous one (its
    projection's statements), instead of each waiting for the other. The look-ahead is a
    short-lived future, awaited or cancelled here.
    """
    pending: asyncio.Future[T] | None = asyncio.ensure_future(anext(source))
    try:
        while pending is not None:
            try:
                item = await pending
            except StopAsyncIteration:
                pending = None
                return
            pending = asyncio.ensure_future(anext(source))
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


async def _compare(
    conn: sql.Connection, schema: str, table: str, max_rows: int
) -> list[Difference]:
    live, rebuilt = f"public.{ident(table)}", f"{ident(schema)}.{ident(table)}"
    found = []
    for side, left, right in (("live", live, rebuilt), ("rebuilt", rebuilt, live)):
        rows = await conn.fetch(
            f"SELECT * FROM (TABLE {left} EXCEPT ALL TABLE {right}) d LIMIT {int(max_rows)}"
        )
        found += [Difference(table, side, dict(r)) for r in rows]
    return found
