"""Snapshots of the read models at past points of the log, so that time travel replays only
the events after the newest snapshot at or before the point asked for.

A snapshot is a schema of its own (``snapshot_<hex>``) with logged copies of the projections'
tables as of a checkpoint, and a one-row table (``_chronohub_snapshot``) saying which
checkpoint, and which *version* of each projection built it. A version is a digest of what
decides the rows a projection writes: its module's code and SQL, the code all projections
share, the schema versions and modules of the events it handles, and the shape of its live
tables (columns, defaults, constraints, indexes). A snapshot whose versions differ from the
running code's is never used (time travel says so and replays from the start): it may hold
rows the current code would not write. Nor is one whose checkpoint's event id is not the
log's (a log truncated and imported again).

Snapshots are taken by ``chronohub projections snapshot``, and by a serving hub every
``snapshot_every_events`` positions of the log (``Snapshotter``, which runs that command as a
child process); at most ``snapshot_keep`` are kept (over that, those of other versions are
dropped first, then the one whose neighbours are closest, never the newest nor the one just
taken: those kept stay spread over the log). One snapshot is taken at a time per database (an
advisory lock); a snapshot being copied from is never dropped under its reader (a shared
advisory lock per snapshot, held by the reader's session). No step holds a long transaction:
tables are copied and made logged one per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib
import inspect
import json
import logging
import random
import shlex
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg

from events import errors, models, sql, store, tasks
from projections import base, rebuild

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "projections", "snapshots.sql")

PURPOSE = "snapshot"
BUILDING = "snapshot_build"
"""The purpose in the names of snapshots being built: ``rebuild.drop_unused`` sweeps those a
dead process left."""
INFO = "_chronohub_snapshot"
"""The one-row table in each snapshot saying where it stands (``create_info`` in snapshots.sql)."""
DEFAULT_KEEP = 8

Note = Callable[[str], None]
"""Told, in a sentence, where a time travel starts from (a snapshot, or why not one)."""


class SnapshotError(base.ProjectionError):
    """A snapshot that cannot be taken (another is being taken, or the point is unknown)."""


class SnapshotBusy(SnapshotError):
    """Another process (of this database) is taking a snapshot."""


@dataclass(frozen=True)
class Snapshot:
    """A finished snapshot: its schema, where it stands and the versions that built it."""

    schema: str
    checkpoint: models.Checkpoint
    recorded_at: datetime | None
    versions: dict[str, str]
    events: int
    created_at: datetime
    event_id: UUID | None = None
    """The id of the event at the checkpoint (None in snapshots taken before it was kept)."""

    def usable_for(self, current: dict[str, str]) -> bool:
        """Whether it holds every projection of ``current``, each of the same version."""
        return all(self.versions.get(name) == version for name, version in current.items())

    def changed(self, current: dict[str, str]) -> list[str]:
        """The projections of ``current`` it holds in another version (or not at all)."""
        return sorted(n for n, v in current.items() if self.versions.get(n) != v)


def members(projection: base.Projection) -> list[base.Projection]:
    """The projections ``projection`` applies: those of a ``base.Together``, or itself."""
    if isinstance(projection, base.Together):
        return list(projection.projections)
    return [projection]


async def versions(
    conn: sql.Connection,
    projections: Iterable[base.Projection],
    registry: models.Registry = models.registry,
) -> dict[str, str]:
    """Each projection's version: a digest of its module's source and SQL files, the code
    every projection shares (``SHARED_CODE``), an explicit ``version`` attribute if it has one,
    the schema versions of the events it handles and the source of their modules (models and
    upcasters), and the shape of its live tables (columns, defaults, constraints, indexes)."""
    found = list(projections)
    tables = sorted({t for p in found for t in p.tables})
    shapes = {
        r["name"]: f"{r['columns']}|{r['constraints']}|{r['indexes']}"
        for r in await conn.fetch(queries["columns"], tables)
    }
    result = {}
    for projection in found:
        digest = hashlib.sha256(_code(type(projection)).encode())
        digest.update(_shared_code().encode())
        digest.update(repr(getattr(projection, "version", None)).encode())
        for type_name in sorted(projection.handles):
            model = registry.model(type_name)
            digest.update(f"{type_name}@{model.schema_version}:{_code(model)};".encode())
        for table in projection.tables:
            digest.update(f"{table}({shapes.get(table)});".encode())
        result[projection.name] = digest.hexdigest()[:32]
    return result


@functools.cache
def _code(cls: type) -> str:
    """A digest of the source of the class's module and the SQL files beside it of the same
    stem (read once: the code does not change under a running process)."""
    digest = hashlib.sha256(cls.__qualname__.encode())
    source = inspect.getsourcefile(cls)
    if source is not None:  # every projection is defined in a file
        path = Path(source)
        for part in [path, *sorted(path.parent.glob(path.stem + "*.sql"))]:
            digest.update(part.read_bytes())
    return digest.hexdigest()


SHARED_CODE = ("projections.base", "events.models", "events.catalog.server_records")
"""Modules whose code decides the rows of every projection (how events are applied and
decoded, the server records several read models derive): part of every version."""


@functools.cache
def _shared_code() -> str:
    digest = hashlib.sha256()
    for name in SHARED_CODE:
        source = inspect.getsourcefile(importlib.import_module(name))
        if source is not None:
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def _statement(name: str, **identifiers: str) -> str:
    """The statement ``name`` of snapshots.sql with its schema and table names filled in,
    each quoted (they cannot be bind parameters)."""
    return queries[name].format(**{k: rebuild.ident(v) for k, v in identifiers.items()})


async def listed(conn: sql.Connection) -> list[Snapshot]:
    """The finished snapshots, oldest checkpoint first."""
    found = []
    for row in await conn.fetch(queries["named"]):
        name = row["name"]
        try:
            info = await conn.fetchrow(_statement("info", schema=name))
        except asyncpg.UndefinedTableError:
            continue  # dropped meanwhile, or not one of ours
        if info is None:
            continue
        found.append(
            Snapshot(
                schema=name,
                checkpoint=models.Checkpoint(int(info["tx"]), info["position"]),
                recorded_at=info["recorded_at"],
                versions=json.loads(info["versions"]),
                events=info["events"],
                created_at=info["created_at"],
                event_id=info["event_id"],
            )
        )
    return sorted(found, key=lambda s: s.checkpoint)


async def _restore(
    conn: sql.Connection, snapshot: Snapshot, schema: str, projection: base.Projection
) -> bool:
    """Copy ``projection``'s tables from ``snapshot`` into ``schema`` (made by
    ``rebuild.create_tables``), a table per transaction; False if the snapshot was dropped
    before it could be read. The session holds the snapshot (``use``) meanwhile: a pruning
    leaves it alone. The scratch schema is dropped by the caller, even if half-filled."""
    await conn.fetchval(queries["use"], snapshot.schema)
    try:
        if not await conn.fetchval(queries["exists"], snapshot.schema):
            return False
        for table in projection.tables:
            async with conn.transaction():
                await conn.execute(
                    _statement("copy_table", schema=schema, source=snapshot.schema, table=table)
                )
        return True
    finally:
        await conn.fetchval(queries["unuse"], snapshot.schema)


async def _start_from(
    conn: sql.Connection,
    projection: base.Projection,
    schema: str,
    upto: models.Checkpoint | None,
    note: Note | None,
) -> Snapshot | None:
    """Restore into ``schema`` the newest snapshot usable for ``projection`` at or before
    ``upto``; the snapshot, or None (start from the origin). Tells ``note`` which, and why."""
    current = await versions(conn, members(projection))
    candidates = [s for s in await listed(conn) if upto is None or s.checkpoint <= upto]
    skipped: Snapshot | None = None
    foreign: Snapshot | None = None
    for snapshot in reversed(candidates):
        if not snapshot.usable_for(current):
            skipped = skipped or snapshot
            continue
        if not await _same_log(conn, snapshot):
            foreign = foreign or snapshot
            continue
        if await _restore(conn, snapshot, schema, projection):
            if note is not None:
                note(f"starting from the snapshot at position {snapshot.checkpoint.position}")
            return snapshot
    if note is not None:
        if foreign is not None and (skipped is None or foreign.checkpoint > skipped.checkpoint):
            note(
                f"the snapshot at position {foreign.checkpoint.position} was taken of another"
                " log (the event at its position differs): replaying the log from the start"
            )
        elif skipped is not None:
            note(
                f"the snapshot at position {skipped.checkpoint.position} was built by other code"
                f" of {', '.join(skipped.changed(current))}: replaying the log from the start"
            )
        else:
            note("no snapshot at or before this point: replaying the log from the start")
    return None


async def _fill(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    schema: str,
    upto: models.Checkpoint,
    batch_size: int,
    progress: rebuild.Progress | None,
    note: Note | None,
) -> int:
    """Make ``projection``'s tables in ``schema`` as of ``upto``: from the newest usable
    snapshot at or before it, then the events after; how many events they are made of (the
    snapshot's and those replayed)."""
    await rebuild.create_tables(conn, projection, schema)
    start = await _start_from(conn, projection, schema, upto, note)
    after = start.checkpoint if start is not None else models.ORIGIN
    total = await _remaining(conn, projection, after, upto) if progress is not None else 0
    _, count = await rebuild.replay(
        conn, event_store, projection, after, upto, batch_size, progress, total
    )
    return count + (start.events if start is not None else 0)


@contextlib.asynccontextmanager
async def as_of(
    conn: sql.Connection,
    event_store: store.EventStore,
    projection: base.Projection,
    upto: models.Checkpoint,
    *,
    batch_size: int = rebuild.DEFAULT_BATCH,
    progress: rebuild.Progress | None = None,
    note: Note | None = None,
) -> AsyncIterator[str]:
    """Time travel as ``rebuild.as_of`` does it, from the newest usable snapshot at or before
    ``upto`` when there is one: only the events after it are replayed. Exactly the tables a
    replay from the start builds (a snapshot is such a replay, stopped at its checkpoint)."""
    schema = rebuild.scratch_name(rebuild.AS_OF)
    await conn.fetchval(rebuild.scratch_queries["hold"], schema)
    try:
        await _fill(conn, event_store, projection, schema, upto, batch_size, progress, note)
        yield schema
    finally:
        try:
            await rebuild.drop_scratch(conn, schema)
        finally:
            await conn.fetchval(rebuild.scratch_queries["release"], schema)


async def _same_log(conn: sql.Connection, snapshot: Snapshot) -> bool:
    """Whether the log still holds, at ``snapshot``'s checkpoint, the event it was taken at
    (a log truncated and imported again may hold others at the same positions)."""
    if snapshot.event_id is None:  # taken before the id was kept: cannot tell
        return False
    row = await conn.fetchrow(queries["at_checkpoint"], snapshot.checkpoint.position)
    return row is not None and row["event_id"] == snapshot.event_id


async def _remaining(
    conn: sql.Connection,
    projection: base.Projection,
    after: models.Checkpoint,
    upto: models.Checkpoint | None,
) -> int:
    """About how many events a replay from ``after`` applies (for a progress bar)."""
    head = await conn.fetchval(queries["head_position"])
    last = upto.position if upto is not None else head
    return max(0, last - after.position)


async def take(
    event_store: store.EventStore,
    projections: Sequence[base.Projection],
    *,
    at: models.Checkpoint | None = None,
    keep: int = DEFAULT_KEEP,
    batch_size: int = rebuild.DEFAULT_BATCH,
    progress: rebuild.Progress | None = None,
    note: Note | None = None,
) -> Snapshot:
    """Take a snapshot of ``projections`` at ``at`` (the log's readable head by default),
    from the newest usable one before it; then keep at most ``keep`` (``prune``).

    Raises ``SnapshotError`` while another snapshot is being taken."""
    if keep < 1:
        raise SnapshotError(f"keep must be at least 1, got {keep}")
    together = base.Together(projections)
    async with event_store.connection() as conn:
        if not await conn.fetchval(queries["take_lock"]):
            raise SnapshotBusy("another snapshot is being taken; try again when it is done")
        try:
            await rebuild.drop_unused(conn, BUILDING)
            upto = at if at is not None else await event_store.head(conn=conn)
            first = await conn.fetchval(queries["first_position"])
            if first is None or upto.position < first:
                raise SnapshotError(
                    f"nothing to take a snapshot of at position {upto.position}: it is before"
                    " the log's first event" + ("" if first is None else f" (at {first})")
                )
            current = await versions(conn, projections)
            for existing in await listed(conn):
                if existing.checkpoint == upto and existing.usable_for(current):
                    if note is not None:
                        note(f"a snapshot at position {upto.position} exists already")
                    return existing
            snapshot = await _build(
                conn, event_store, together, upto, current, batch_size, progress, note
            )
            await prune(conn, keep, current, spare=snapshot.schema)
            return snapshot
        finally:
            await conn.fetchval(queries["take_unlock"])


async def _build(
    conn: sql.Connection,
    event_store: store.EventStore,
    together: base.Together,
    upto: models.Checkpoint,
    current: dict[str, str],
    batch_size: int,
    progress: rebuild.Progress | None,
    note: Note | None,
) -> Snapshot:
    building = rebuild.scratch_name(BUILDING)
    await conn.fetchval(rebuild.scratch_queries["hold"], building)
    try:
        count = await _fill(conn, event_store, together, building, upto, batch_size, progress, note)
        at_checkpoint = await conn.fetchrow(queries["at_checkpoint"], upto.position)
        recorded_at = at_checkpoint["recorded_at"] if at_checkpoint is not None else None
        event_id = at_checkpoint["event_id"] if at_checkpoint is not None else None
        final = rebuild.scratch_name(PURPOSE)
        # A short transaction per table (a long one would hold back every fenced reader); a
        # schema left half-logged by a failure keeps its ``snapshot_build_`` name, which
        # ``drop_unused`` sweeps. Only the last transaction makes it a snapshot.
        for table in together.tables:
            async with conn.transaction():
                await conn.execute(_statement("set_logged", schema=building, table=table))
        async with conn.transaction():
            await conn.execute(_statement("create_info", schema=building))
            created_at = await conn.fetchval(
                _statement("insert_info", schema=building),
                str(upto.tx),
                upto.position,
                recorded_at,
                json.dumps(current, sort_keys=True),
                count,
                event_id,
            )
            await conn.execute(_statement("finish", schema=building, final=final))
        log.info("snapshot %s taken at position %d", final, upto.position)
        return Snapshot(
            final,
            upto,
            recorded_at,
            current,
            count,
            created_at,
            event_id,
        )
    finally:
        try:
            await rebuild.drop_scratch(conn, building)  # gone if renamed: IF EXISTS
        finally:
            await conn.fetchval(rebuild.scratch_queries["release"], building)


async def prune(
    conn: sql.Connection, keep: int, current: dict[str, str], *, spare: str | None = None
) -> list[str]:
    """Keep at most ``keep`` snapshots: those of other versions go first; then, while there
    are too many, the one whose neighbours are closest together (``thinned``), so that those
    kept stay spread over the whole log. Never ``spare`` (the snapshot just taken). A snapshot
    being read, or whose drop would wait over ``drop_timeout`` for its lock (a pg_dump reading
    it), is left for the next pruning. Returns the names dropped."""
    found = await listed(conn)
    stale = [s for s in found if not s.usable_for(current) and s.schema != spare]
    fresh = [s for s in found if s.usable_for(current)]
    excess = max(0, len(found) - keep)
    doomed = stale[:excess] + thinned(fresh, excess - len(stale[:excess]), spare=spare)
    dropped = []
    for snapshot in doomed:
        try:
            async with conn.transaction():
                if not await conn.fetchval(queries["try_drop"], snapshot.schema):
                    continue
                await conn.execute(queries["drop_timeout"])
                await conn.execute(_statement("drop", schema=snapshot.schema))
        except asyncpg.LockNotAvailableError:
            log.warning("snapshot %s not dropped: its tables are in use", snapshot.schema)
            continue
        dropped.append(snapshot.schema)
    return dropped


def thinned(kept: Sequence[Snapshot], count: int, *, spare: str | None = None) -> list[Snapshot]:
    """``count`` of ``kept`` (oldest checkpoint first) to drop, never the newest nor ``spare``
    (a schema name): each time the one whose removal leaves the shortest gap between its
    neighbours (the origin before the first), so that the longest replay a time travel needs
    grows as little as it can."""
    left = list(kept)
    chosen: list[Snapshot] = []
    for _ in range(max(0, count)):
        positions = [0] + [s.checkpoint.position for s in left]
        gaps = [
            (positions[i + 2] - positions[i], i)
            for i in range(len(left) - 1)
            if left[i].schema != spare
        ]
        if not gaps:
            break
        chosen.append(left.pop(min(gaps)[1]))
    return chosen


BUSY_EXIT = 75
"""The exit status of ``chronohub projections snapshot`` while another process is taking a
snapshot (``EX_TEMPFAIL``): a ``Snapshotter``'s child tells busy from failed by it."""


class SnapshotFailed(SnapshotError):
    """A child process taking a snapshot failed; says its exit status and the tail of its
    standard error."""


class Snapshotter:
    """Takes a snapshot whenever the log has grown ``every`` positions past the newest usable
    one (checked every ``check_s``, the first time ``first_check_s`` plus up to ``jitter_s``
    after ``start``: a hub just started, or upgraded, does not build one at once).

    With ``command`` (a serving hub: ``chronohub projections snapshot``) each snapshot is
    built by a child process run with ``env``: replaying the log is CPU-bound work that
    would stall the hub's event loop. The child is killed if the snapshotter stops. Without,
    it is built in this process (``take``). A failure is logged and tried again after a delay
    doubling each time (``check_s`` up to ``max_backoff_s``). One snapshot is taken at a time
    per database whoever takes it (``take``'s advisory lock): a busy taker is no failure.
    ``start``/``stop`` or ``async with``."""

    def __init__(
        self,
        event_store: store.EventStore,
        projections: Sequence[base.Projection],
        *,
        every: int,
        keep: int = DEFAULT_KEEP,
        check_s: float = 60.0,
        first_check_s: float = 60.0,
        jitter_s: float = 30.0,
        max_backoff_s: float = 3600.0,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if every < 1:
            raise SnapshotError(f"every must be at least 1, got {every}")
        self.store = event_store
        self.projections = list(projections)
        self.every = every
        self.keep = keep
        self.check_s = check_s
        self.first_check_s = first_check_s
        self.jitter_s = jitter_s
        self.max_backoff_s = max(max_backoff_s, check_s)
        self.command = list(command) if command is not None else None
        self.env = dict(env) if env is not None else None
        self.failures = 0
        """Failed attempts in a row (0 after a success)."""
        self._tasks = tasks.TaskOwner("snapshot", logger=log)

    async def start(self) -> None:
        """Start watching the log's growth (one named task)."""
        self._tasks.start(self._watch(), "chronohub-snapshots")

    async def stop(self) -> None:
        """Cancel the task; a snapshot being built is dropped (its child killed)."""
        await self._tasks.close()

    async def __aenter__(self) -> Snapshotter:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def due(self) -> bool:
        """Whether the log is ``every`` positions past the newest usable snapshot, and no
        process is taking one now (a child is not started only to find the lock taken)."""
        async with self.store.connection() as conn:
            if not await conn.fetchval(queries["take_lock"]):
                return False
            await conn.fetchval(queries["take_unlock"])
            head = await self.store.head(conn=conn)
            current = await versions(conn, self.projections)
            usable = [s for s in await listed(conn) if s.usable_for(current)]
        newest = usable[-1].checkpoint.position if usable else 0
        return head.position - newest >= self.every

    def next_wait(self) -> float:
        """Seconds until the next check: ``check_s``, doubled for each failure in a row."""
        if not self.failures:
            return self.check_s
        doubling: float = self.check_s * 2.0 ** min(self.failures, 32)
        return min(self.max_backoff_s, doubling)

    async def _watch(self) -> None:
        # Jitter spreads the hubs started together; no secret.
        await asyncio.sleep(self.first_check_s + random.uniform(0, self.jitter_s))  # noqa: S311
        while True:
            try:
                if await self.due():
                    await self._take()
                self.failures = 0
            except SnapshotBusy as exc:  # another process is taking one
                log.info("snapshot not taken: %s", exc)
            except (base.ProjectionError, errors.DatabaseUnavailable, asyncpg.PostgresError) as exc:
                # Nothing is lost: the half-built schema is swept; try again later.
                self.failures += 1
                log.error(
                    "snapshot failed (%d in a row; next try in %.0f s): %s",
                    self.failures,
                    self.next_wait(),
                    exc,
                )
            await asyncio.sleep(self.next_wait())

    async def _take(self) -> None:
        if self.command is None:
            await take(self.store, self.projections, keep=self.keep)
            return
        code, tail = await _run(self.command, self.env)
        if code == BUSY_EXIT:
            raise SnapshotBusy("another process is taking a snapshot")
        if code != 0:
            raise SnapshotFailed(f"{shlex.join(self.command)} exited with status {code}: {tail}")


STDERR_TAIL = 4096
"""How much of a child's standard error a failure reports (its last bytes)."""


async def _run(command: Sequence[str], env: Mapping[str, str] | None) -> tuple[int, str]:
    """Run ``command``; its exit status and the tail of its standard error. Killed if this
    is cancelled (the hub stopping): its half-built snapshot is swept by the next taker."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    tail = b""
    try:
        assert proc.stderr is not None  # piped
        while chunk := await proc.stderr.read(65536):
            tail = (tail + chunk)[-STDERR_TAIL:]
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return code, tail.decode(errors="replace").strip()
