"""The live feed behind ``/hub/api/events/stream``: one subscription per hub process.

The feed reads each page of the log once, renders each event once (as the bytes of one
server-sent event) and hands those bytes to every follower whose filters and scopes admit
it. Each follower has its own bounded backlog: one that falls more than ``MAX_BACKLOG``
events behind (its client reads too slowly) is dropped, its connection closed, so that it
reconnects with ``Last-Event-ID`` and catches up from the log; the others never wait for it.

A stream joins the feed in two steps, with no loss or duplicate at the seam: it registers
(``follow``) and learns where the feed stands, reads the log from its own cursor up to that
point, then takes what the feed hands it, skipping whatever it already has.
Both read in the fence's gap-free order, so "up to the point" and "after it" split the log
exactly.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import errors, models, sql, store, tasks
from hub.web import body

log = logging.getLogger(__name__)

MAX_BACKLOG = 10_000
"""Events a follower may have waiting before it is dropped."""
PAGE = 500
COALESCE_S = 0.01
"""After a wake-up the feed waits this long before reading, so that under a stream of
commits one read serves many events and each stream is woken, and written to, once per page
rather than once per commit (at 1,000 appends/s: ~100 pages a second)."""
POLL_S = 1.0
"""The longest the feed waits without a wake-up before it reads again."""
RETRY_S = 1.0
"""After a database error the feed drops its followers and reads on after this pause."""


@dataclass(frozen=True)
class Selection:
    """What a follower wants and may see: its query's filters and its caller's permission.

    ``permitted(event, data)`` says whether the caller's scopes admit the event; ``data`` is
    the event's payload as JSON-ready data (dumped once per event for every follower).
    """

    types: frozenset[str] | None = None
    type_prefixes: tuple[str, ...] | None = None
    streams: frozenset[str] | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    permitted: Callable[[models.RecordedEvent, dict[str, Any]], bool] | None = None
    """None: every event (the caller may read the whole log and asked for no subject)."""

    @property
    def everything(self) -> bool:
        """No filter and no limit: every event is admitted."""
        return self.permitted is None and all(
            value is None
            for value in (self.types, self.type_prefixes, self.streams, self.actor,
                          self.since, self.until)
        )  # fmt: skip

    def admits(self, event: models.RecordedEvent, data: dict[str, Any]) -> bool:
        """Whether ``event`` passes the filters (as ``EventFilter`` does in SQL) and scopes."""
        if self.types is not None and event.type not in self.types:
            return False
        if self.type_prefixes is not None and not event.type.startswith(self.type_prefixes):
            return False
        if self.streams is not None and event.stream_id not in self.streams:
            return False
        if self.actor is not None and event.metadata.actor.label != self.actor:
            return False
        if self.since is not None and event.recorded_at < self.since:
            return False
        if self.until is not None and event.recorded_at >= self.until:
            return False
        return self.permitted is None or self.permitted(event, data)

    def event_filter(self, upto: models.Checkpoint) -> store.EventFilter:
        """The same filters for a read of the log up to ``upto`` (scopes are checked after)."""
        return store.EventFilter(
            types=self.types,
            type_prefixes=self.type_prefixes,
            streams=self.streams,
            actor=self.actor,
            since=self.since,
            until=self.until,
            upto=upto,
        )


def render(event: models.RecordedEvent, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The public JSON shape of an event (documented in the OpenAPI spec as ``Event``)."""
    meta = event.metadata
    return {
        "id": str(event.checkpoint),
        "position": event.position,
        "type": event.type,
        # ``data`` is decoded into the current model (upcast if it was stored older)
        "schema_version": type(event.data).schema_version,
        "stream": event.stream_id,
        "version": event.stream_version,
        "time": body.iso(event.recorded_at),
        "actor": {"kind": meta.actor.kind, "name": meta.actor.name},
        "data": data if data is not None else event.data.model_dump(mode="json"),
        "request_id": meta.request_id,
        "correlation_id": str(meta.correlation_id) if meta.correlation_id else None,
        "causation_id": str(meta.causation_id) if meta.causation_id else None,
    }


def sse(event: models.RecordedEvent, data: dict[str, Any] | None = None) -> bytes:
    """One server-sent event: its id is the event's checkpoint, its data the public shape."""
    return f"id: {event.checkpoint}\ndata: {json.dumps(render(event, data))}\n\n".encode()


@dataclass(eq=False)
class Follower:
    """One stream's place in the feed: its selection and its backlog of rendered events."""

    selection: Selection
    abort: Callable[[], None] = lambda: None
    """Closes the stream's connection at once (when dropped while its write is stuck)."""
    backlog: collections.deque[tuple[models.Checkpoint, bytes]] = field(
        default_factory=collections.deque
    )
    dropped: str | None = None
    closed: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, checkpoint: models.Checkpoint, chunk: bytes, limit: int) -> None:
        """Queue one event; drop the follower if that makes its backlog exceed ``limit``."""
        if self.closed:
            return
        if len(self.backlog) >= limit:
            self.drop(f"more than {limit} events behind", abort=True)
            return
        self.backlog.append((checkpoint, chunk))
        self._ready.set()

    def drop(self, reason: str, *, abort: bool = False) -> None:
        """Stop feeding this follower: its stream ends (at once, with ``abort``, even in the
        middle of a write that its client does not read), and its client resumes."""
        if self.closed:
            return
        self.dropped = reason
        self.close()
        self.backlog.clear()
        if abort:
            self.abort()

    def close(self) -> None:
        """No more events: the stream ends once it has written what it holds."""
        self.closed = True
        self._ready.set()

    async def take(self, within_s: float) -> list[tuple[models.Checkpoint, bytes]] | None:
        """Everything queued (waiting up to ``within_s`` for something: [] if nothing came);
        None once the follower is closed and empty."""
        if not self.backlog and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    await self._ready.wait()
        self._ready.clear()
        if not self.backlog:
            return None if self.closed else []
        items = list(self.backlog)
        self.backlog.clear()
        return items


class Feed:
    """One subscription to the log for every stream of this process.

    Use as ``async with Feed(store)`` or ``stop()``; the reading task starts with the first
    follower and is cancelled by ``stop()``, which also ends every stream.
    """

    def __init__(self, event_store: store.EventStore, *, max_backlog: int | None = None) -> None:
        self.store = event_store
        self.max_backlog = max_backlog or MAX_BACKLOG
        self.followers: set[Follower] = set()
        self.checkpoint: models.Checkpoint | None = None
        """Where the feed stands: every event up to here has been handed out."""
        self._task: asyncio.Task[None] | None = None
        self._tasks = tasks.TaskOwner("live event feed", logger=log, on_death=self._died)
        self._starting = asyncio.Lock()
        self._stopped = False

    async def __aenter__(self) -> Feed:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def follow(self, selection: Selection) -> tuple[Follower, models.Checkpoint]:
        """Register a follower; it gets every admitted event after the checkpoint returned."""
        async with self._starting:
            if self._stopped:
                raise RuntimeError("the live feed has stopped")
            if self._task is None or self._task.done():
                if self.checkpoint is None:
                    self.checkpoint = await self.store.head()
                self._task = self._tasks.start(self._run(), "chronohub-audit-feed")
        assert self.checkpoint is not None
        follower = Follower(selection)
        self.followers.add(follower)
        return follower, self.checkpoint

    def unfollow(self, follower: Follower) -> None:
        """The stream has ended."""
        follower.close()
        self.followers.discard(follower)

    async def stop(self) -> None:
        """Cancel the reading task and end every stream."""
        self._stopped = True
        for follower in list(self.followers):
            follower.close()
        self.followers.clear()
        self._task = None
        await self._tasks.close()

    def _died(self, _task: asyncio.Task[None], _exc: BaseException) -> None:
        # Its death is logged by the owner; the streams reconnect and catch up from the log.
        for follower in list(self.followers):
            follower.drop("the live feed failed")

    async def _run(self) -> None:
        while True:
            try:
                # A connection of its own for the feed's life: its reads never queue behind
                # the appends (and requests) that share the pool.
                async with self.store.connection() as conn:
                    await self._follow(conn)
            except errors.DatabaseUnavailable as exc:
                # Followers resume from the log where they stand; the feed reads on later.
                log.warning("live event feed: %s; dropping its followers, retrying", exc)
                for follower in list(self.followers):
                    follower.drop("the live feed lost its database")
                await asyncio.sleep(RETRY_S)

    async def _follow(self, conn: sql.Connection) -> None:
        """Read pages after the checkpoint and hand them out, forever: after a wake-up (a
        commit in this process, or a NOTIFY from another) or the poll interval."""
        retry_s = POLL_S
        while True:
            assert self.checkpoint is not None
            token = self.store.wakeup.token()
            page = await self.store.read_all(self.checkpoint, limit=PAGE, conn=conn)
            if page:
                self.dispatch(page)
                if len(page) == PAGE:
                    continue
            woken = await self.store.wakeup.wait(token, retry_s)
            # After a wake-up the new commit may still sit behind the fence (an older
            # transaction is in flight): read again soon, backing off to the poll interval.
            retry_s = COALESCE_S if woken else min(retry_s * 2, POLL_S)
            if woken:
                await asyncio.sleep(COALESCE_S)

    def dispatch(self, page: list[models.RecordedEvent]) -> None:
        """Hand each event of ``page`` (rendered once) to every follower that admits it.

        An event at or before the feed's checkpoint has been handed out already and is
        skipped: a page read twice (a read that overlaps an earlier one) never repeats an
        event on a stream.
        """
        followers = list(self.followers)
        everything = [f for f in followers if f.selection.everything]
        filtered = [f for f in followers if not f.selection.everything]
        for event in page:
            if self.checkpoint is not None and event.checkpoint <= self.checkpoint:
                continue
            if followers:
                data = event.data.model_dump(mode="json")
                chunk: bytes | None = None
                if everything:
                    chunk = sse(event, data)
                    for follower in everything:
                        follower.push(event.checkpoint, chunk, self.max_backlog)
                for follower in filtered:
                    if not follower.closed and follower.selection.admits(event, data):
                        chunk = chunk or sse(event, data)
                        follower.push(event.checkpoint, chunk, self.max_backlog)
            self.checkpoint = event.checkpoint
        for follower in followers:
            if follower.closed:
                self.followers.discard(follower)
