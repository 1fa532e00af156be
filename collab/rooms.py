"""The rooms a hub process serves: get or open a room by name, close idle ones, compact, relay.

This is the public API for server-side code (shared execution sessions, services)::

    room = await rooms.open("json:notebook:abc", creator=participant)   # creating it if needed
    with room.transaction(author="system:kernel") as doc:                # persisted + broadcast
        ...
    rooms.participants_hooks.append(lambda room: ...)                   # joins and leaves

Opening is serialised per name, so simultaneous first joins of a new room all get the one
room (pycrdt-websocket hangs all but one of them). A room with nobody connected stays loaded
for a grace period, so a quick reconnect does not reload it, then is unloaded.

Between processes (collab/relay.py): document updates wake the other processes' rooms, and
awareness travels in the notifications themselves. The janitor's poll (one statement for every
room open here) wakes a room whose log went past what it holds, should a wake-up be lost. The
awareness that this process's connections send is gathered per room for a few milliseconds and
relayed, but only for rooms another process serves too (``Room.shared``: known when the room is
opened here, from the others' notifications, those heard while it was opening included, and
from the janitor's poll of who holds which room); a room opened here asks the others for their
connections' states; the janitor drops relayed states that are no longer renewed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from collab import access, awareness, errors, persistence, room
from collab.limits import Limits
from collab.relay import Relay
from events import errors as event_errors
from events import models, notify, tasks
from events.catalog import collab as collab_events

log = logging.getLogger(__name__)

JANITOR_S = 1.0
RECORD_DRAIN_S = 5.0
RECORD_BATCH = 200  # joins and leaves recorded in one transaction at most
# A stopping hub closes its rooms within this, STOP_CONCURRENCY at a time once their updates
# are stored (the database pool has 10 connections by default; the rest wait their turn).
STOP_BUDGET_S = 10.0
STOP_CONCURRENCY = 8
AWARENESS_COALESCE_S = 0.005  # awareness changes of a room within this go out in one NOTIFY


def _metadata(who: access.Participant) -> models.Metadata:
    if who.kind == "system":
        return models.Metadata()
    return models.Metadata(actor=models.Actor(kind=who.kind, name=who.name))


async def _within(tasks: Sequence[asyncio.Future[None]], deadline: float) -> bool:
    """Wait for ``tasks`` until ``deadline`` (monotonic); cancel those still running then.
    True if all finished in time. A task's own failure is logged, not raised."""
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.warning("closing a room failed", exc_info=task.exception())
    return not pending


class Rooms:
    """Every room open in this process. Use as ``async with Rooms(...)`` or start/stop."""

    def __init__(
        self,
        store: persistence.RoomStore,
        limits: Limits | None = None,
        *,
        dsn: str | None = None,
        relay: bool = True,
        process: str | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.process = process or store.process
        self.participants_hooks: list[room.ParticipantsHook] = []
        self._rooms: dict[str, room.Room] = {}
        self._opening: dict[str, asyncio.Future[room.Room]] = {}
        self._heard_while_opening: dict[str, bool] = {}  # rooms another process spoke of then
        self._relay = Relay(dsn, self._on_wake, on_awareness=self._on_awareness) if relay else None
        self._awareness_dirty: set[str] = set()
        self._awareness_flush: asyncio.TimerHandle | None = None
        self._tasks = tasks.TaskOwner("collab", logger=log)
        self._janitor: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None
        self._records: asyncio.Queue[tuple[str, collab_events.RoomEvent, models.Metadata]] = (
            asyncio.Queue()
        )
        self._compacting: set[str] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the relay (cross-process wake-ups) and the janitor (unload, poll, compact)."""
        if self._relay is not None:
            await self._relay.start()
        self._janitor = self._tasks.start(self._janitor_loop(), "chronohub-collab-janitor")
        self._recorder = self._tasks.start(self._record_loop(), "chronohub-collab-recorder")

    async def stop(self) -> None:
        """Close every room (persisting what is queued), then stop the janitor and the relay.

        Bounded: the rooms are closed all at once (``close_all``: their queued updates stored
        first, then released and recorded in a few transactions) within ``STOP_BUDGET_S``, so
        a hub with a thousand rooms open stops in seconds, not one room after another."""
        if self._janitor is not None:
            await self._tasks.cancel(self._janitor)
            self._janitor = None
        self._flush_awareness()
        began = time.monotonic()
        count = len(self._rooms)
        await self.close_all(reason="the hub is stopping", budget_s=STOP_BUDGET_S)
        if count:
            log.info("closed %d rooms in %.1f s", count, time.monotonic() - began)
        if self._awareness_flush is not None:
            self._awareness_flush.cancel()
            self._awareness_flush = None
        if self._recorder is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._records.join(), RECORD_DRAIN_S)
            self._recorder = None
        await self._tasks.close()
        await self.store.group.close()
        if self._relay is not None:
            await self._relay.stop()

    async def __aenter__(self) -> Rooms:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def listening(self) -> asyncio.Event | None:
        """Set while the relay listens for other processes' notifications (None: no relay)."""
        return self._relay.listening if self._relay is not None else None

    # --- rooms -----------------------------------------------------------------------------

    def get(self, name: str) -> room.Room | None:
        """The room if it is open in this process."""
        return self._rooms.get(name)

    def __len__(self) -> int:
        return len(self._rooms)

    async def describe(self, name: str) -> access.RoomInfo:
        """What the gatekeeper needs to know of a room: whether it exists, and its owner."""
        persistence.check_room_name(name)
        exists, owner = await self.store.info(name)
        return access.RoomInfo(name=name, exists=exists, owner=owner)

    async def open(self, name: str, *, creator: access.Participant = access.SYSTEM) -> room.Room:
        """The room ``name``, loaded if it is not open here, created (owned by ``creator``,
        if a user) if it does not exist."""
        persistence.check_room_name(name)
        existing = self._rooms.get(name)
        if existing is not None:
            return existing
        pending = self._opening.get(name)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._opening[name] = pending
            try:
                opened = await self._load(name, creator)
            except BaseException as exc:
                self._heard_while_opening.pop(name, None)
                pending.set_exception(exc)
                pending.exception()  # retrieved: the waiters, if any, get it too
                raise
            finally:
                del self._opening[name]
            self._rooms[name] = opened
            if self._heard_while_opening.pop(name, False):
                # Another process spoke of it (its query, sent when it opened the room) while
                # it was loading here, perhaps before our presence was visible to it: it serves
                # the room too, and the janitor's poll need not be waited for to know it.
                opened.shared = True
                opened.heard_from_others = time.monotonic()
            if self._relay is not None:  # states of other processes' connections, at once
                self._relay.query_awareness(name)
            pending.set_result(opened)
            return opened
        return await asyncio.shield(pending)

    async def _load(self, name: str, creator: access.Participant) -> room.Room:
        await self.store.create(name, creator.owner_name, _metadata(creator))
        loaded = await self.store.load(name)
        opened = room.Room(
            name,
            self.store,
            self.limits,
            announce=self._relay.announce if self._relay is not None else None,
            awareness_changed=self._awareness_changed if self._relay is not None else None,
            seq=loaded.seq,
            updates_since_snapshot=loaded.updates_since_snapshot,
            shared=loaded.shared,
        )
        opened.load(loaded.update)
        opened.participants_hooks.append(self._participants_changed)
        await self.store.events.append(
            collab_events.stream_id(name),
            [collab_events.RoomOpened(room=name, process=self.process, seq=loaded.seq)],
        )
        return opened

    def disconnect_all(self, reason: str = "the hub is stopping") -> None:
        """Close every connection of every room with 1001 (going away): y-websocket clients
        reconnect, to this hub when it is back or to another. Rooms stay loaded."""
        for opened in self._rooms.values():
            for conn in list(opened.connections):
                opened.drop(conn, errors.GOING_AWAY, reason)

    async def close(self, name: str, *, reason: str = "room closed") -> None:
        """Unload a room: close its connections, persist what is queued, compact, record it."""
        closing = self._rooms.pop(name, None)
        if closing is None:
            return
        await closing.close(errors.GOING_AWAY, reason)
        await self._unloaded(name, closing)

    async def close_all(self, *, reason: str, budget_s: float) -> None:
        """Close every room at once: first each room's connections, and its queued updates
        stored (all rooms concurrently), then all released (one statement), those over the
        compaction threshold compacted and each recorded as closed, ``STOP_CONCURRENCY`` at a
        time. Whatever is not done within ``budget_s`` is abandoned with a warning: a queued
        update not stored by then was never acknowledged (nobody received it), and an
        unfinished compaction or record loses nothing (the updates stay in the room's log and
        its next load merges them)."""
        closing = dict(self._rooms)
        self._rooms.clear()
        if not closing:
            return
        deadline = time.monotonic() + budget_s
        flushes = [
            asyncio.ensure_future(opened.close(errors.GOING_AWAY, reason))
            for opened in closing.values()
        ]
        if not await _within(flushes, deadline):
            log.warning(
                "%d of %d rooms had updates not stored within %.0f s of stopping",
                sum(not task.done() for task in flushes),
                len(flushes),
                budget_s,
            )
        turns = asyncio.Semaphore(STOP_CONCURRENCY)

        async def compact(name: str) -> None:
            async with turns:
                await self.compact(name)

        unrecorded: list[str] = []

        async def record(name: str, opened: room.Room) -> None:
            async with turns:
                try:
                    await self.store.events.append(
                        collab_events.stream_id(name),
                        [collab_events.RoomClosed(room=name, process=self.process, seq=opened.seq)],
                    )
                except event_errors.DatabaseUnavailable:
                    unrecorded.append(name)

        try:
            remaining = max(0.0, deadline - time.monotonic())
            await asyncio.wait_for(self.store.release_all(list(closing)), remaining)
        except (event_errors.DatabaseUnavailable, TimeoutError) as exc:
            log.warning("stopping: %d rooms not released (%r)", len(closing), exc)
        # Only rooms the janitor would compact now: the others' few updates stay in their log
        # and the next load merges them (each compaction is a transaction of its own). One
        # stream per transaction: the recorder's transactions span streams, and two such in
        # different orders would deadlock.
        threshold = self.limits.compact_after_updates
        tasks = [
            asyncio.ensure_future(compact(name))
            for name, opened in closing.items()
            if opened.updates_since_snapshot >= threshold
        ] + [asyncio.ensure_future(record(name, opened)) for name, opened in closing.items()]
        if not await _within(tasks, deadline):
            log.warning(
                "stopping: rooms not all compacted and recorded as closed within %.0f s"
                " (their updates are stored)",
                budget_s,
            )
        if unrecorded:
            log.warning("stopping: %d rooms closed, but not recorded", len(unrecorded))

    async def _unloaded(self, name: str, closing: room.Room) -> None:
        try:
            await self.store.release(name)
            if closing.updates_since_snapshot:
                await self.compact(name)
            await self.store.events.append(
                collab_events.stream_id(name),
                [collab_events.RoomClosed(room=name, process=self.process, seq=closing.seq)],
            )
        except event_errors.DatabaseUnavailable as exc:
            log.warning("room %s closed, but not recorded (%s)", name, exc)

    async def compact(self, name: str) -> persistence.Compaction | None:
        """Compact a room's update log into a snapshot (see ``RoomStore.compact``)."""
        if name in self._compacting:
            return None
        self._compacting.add(name)
        try:
            done = await self.store.compact(name)
        finally:
            self._compacting.discard(name)
        opened = self._rooms.get(name)
        if done is not None and opened is not None:
            opened.updates_since_snapshot = max(0, opened.updates_since_snapshot - done.updates)
        return done

    # --- participants ----------------------------------------------------------------------

    def joined(self, opened: room.Room, conn: room.Connection) -> None:
        """Record that ``conn`` joined (a ``collab.participant_joined`` event, soon, in order)."""
        who = conn.participant
        event = collab_events.ParticipantJoined(
            room=opened.name,
            participant=who.label,
            connection=conn.id,
            access="write" if who.can_write else "read",
        )
        self._records.put_nowait((opened.name, event, _metadata(who)))

    def left(self, opened: room.Room, conn: room.Connection, reason: str) -> None:
        """Record that ``conn`` left, and why (soon, after its join, in order)."""
        who = conn.participant
        event = collab_events.ParticipantLeft(
            room=opened.name,
            participant=who.label,
            connection=conn.id,
            reason=errors.short_reason(reason or "closed"),
        )
        self._records.put_nowait((opened.name, event, _metadata(who)))

    async def recorded(self) -> None:
        """Wait until every join and leave so far is in the event log."""
        await self._records.join()

    async def _record_loop(self) -> None:
        # Joins and leaves are recorded by this one owned task, not by the connection's
        # handler, which aiohttp may cancel as the socket goes, and in the order they happened.
        # Those queued meanwhile go in one transaction (one commit, not one each: a stopping
        # hub's thousands of leaves are recorded in a few).
        while True:
            batch = [await self._records.get()]
            while len(batch) < RECORD_BATCH and not self._records.empty():
                batch.append(self._records.get_nowait())
            # By room (a stable sort keeps each room's order): every process then takes the
            # rooms' rows in one order, so two processes' batches cannot deadlock.
            batch.sort(key=lambda record: record[0])
            try:
                await self._record(batch)
            except event_errors.DatabaseUnavailable as exc:
                log.warning("could not record %d joins and leaves (%s)", len(batch), exc)
            except Exception:  # one bad record must neither lose the others nor end the task
                log.exception("recording %d joins and leaves together failed", len(batch))
                for record in batch:
                    try:
                        await self._record([record])
                    except Exception:  # logged; the next ones are still recorded
                        log.exception("could not record %s in room %s", record[1].type, record[0])
            finally:
                for _ in batch:
                    self._records.task_done()

    async def _record(
        self, batch: list[tuple[str, collab_events.RoomEvent, models.Metadata]]
    ) -> None:
        async with self.store.events.session() as session:
            for name, event, metadata in batch:
                await session.append(collab_events.stream_id(name), [event], metadata=metadata)

    def _participants_changed(self, changed: room.Room) -> None:
        for hook in self.participants_hooks:
            try:
                hook(changed)
            except Exception:  # a hook's bug must not break the room's connections
                log.exception("participants hook failed for room %s", changed.name)

    # --- background ------------------------------------------------------------------------

    def _on_wake(self, name: str | None) -> None:
        if name is None:
            for opened in self._rooms.values():
                opened.wake()
        elif (named := self._rooms.get(name)) is not None:
            named.wake()

    def _awareness_changed(self, name: str) -> None:
        self._awareness_dirty.add(name)
        if self._awareness_flush is None:
            self._awareness_flush = asyncio.get_running_loop().call_later(
                AWARENESS_COALESCE_S, self._flush_awareness
            )

    def _flush_awareness(self) -> None:
        self._awareness_flush = None
        dirty, self._awareness_dirty = self._awareness_dirty, set()
        for name in sorted(dirty):
            if (opened := self._rooms.get(name)) is not None:
                self._relay_awareness(opened, opened.take_awareness_changes())

    def _relay_awareness(self, opened: room.Room, client_ids: list[int]) -> None:
        if self._relay is None or not opened.shared:  # alone: nobody to tell
            return

        def encode(ids: Sequence[int]) -> str | None:
            update = opened.awareness.encode_awareness_update(list(ids))
            return awareness.encode_update(opened.name, update)

        payloads, too_large = awareness.fit(client_ids, encode)
        for payload in payloads:
            self._relay.relay_awareness(payload)
        if too_large:
            log.debug(
                "room %s: awareness of clients %s is over the NOTIFY limit of %d bytes;"
                " not relayed to other processes",
                opened.name,
                too_large,
                notify.MAX_PAYLOAD_BYTES,
            )

    def _on_awareness(self, message: awareness.Message | None) -> None:
        if message is None:  # (re)connected: we may have missed states; ask again
            if self._relay is not None:
                for name in self._rooms:
                    self._relay.query_awareness(name)
            return
        opened = self._rooms.get(message.room)
        if opened is None:  # not open here: nobody here to tell
            if message.room in self._opening:  # yet: it will be shared once open
                self._heard_while_opening[message.room] = True
            return
        opened.shared = True  # another process serves it: relay what our connections say
        opened.heard_from_others = time.monotonic()
        if isinstance(message, awareness.Query):
            self._relay_awareness(opened, opened.local_awareness())
            return
        try:
            opened.apply_remote_awareness(message.update, time.monotonic())
        except (errors.ProtocolError, ValueError) as exc:
            log.warning("room %s: ignoring relayed awareness: %s", opened.name, exc)

    async def _poll(self) -> None:
        """One look at every open room's row (one statement): a room behind its log reads
        the updates it lacks (another process appended them and its notification is lost or
        late), and which rooms another process serves too is refreshed (it may have gone, or
        come without a word)."""
        if not self._rooms:
            return
        asked_at, asked = time.monotonic(), list(self._rooms.items())
        try:
            states = await self.store.states([name for name, _opened in asked])
        except event_errors.DatabaseUnavailable as exc:
            log.warning("collab janitor: cannot read the rooms' state: %s", exc)
            return
        for name, opened in asked:
            state = states.get(name)
            if state is None or self._rooms.get(name) is not opened:  # closed meanwhile
                continue
            # Only a room behind reads its log: waking every room would cost one transaction
            # each, every poll (at 1,000 rooms, 500 a second on the shared pool).
            opened.log_reached(state.last_seq)
            if self._relay is None:
                continue
            was_shared = opened.shared
            # A process that spoke up while we asked is not gone, whatever the answer says.
            opened.shared = state.shared or opened.heard_from_others >= asked_at
            if opened.shared and not was_shared:
                # Found by the poll (its query was missed: sent while the room was still
                # opening here): tell it what our connections said while we thought us alone.
                self._relay_awareness(opened, opened.local_awareness())

    async def _janitor_loop(self) -> None:
        last_poll = time.monotonic()
        while True:
            await asyncio.sleep(JANITOR_S)
            now = time.monotonic()
            poll = now - last_poll >= self.limits.poll_s
            if poll:
                last_poll = now
                await self._poll()
            for name, opened in list(self._rooms.items()):
                opened.expire_remote_awareness(now, self.limits.awareness_timeout_s)
                try:
                    if not opened.connections:
                        if opened.pins:  # a session holds it; its grace starts when unpinned
                            continue
                        if now - opened.idle_since >= self.limits.room_grace_s:
                            await self.close(name, reason="no participant left")
                        continue
                    if opened.updates_since_snapshot >= self.limits.compact_after_updates:
                        await self.compact(name)
                except event_errors.DatabaseUnavailable as exc:
                    log.warning("collab janitor: room %s: %s", name, exc)
