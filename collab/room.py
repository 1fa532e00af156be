"""One room: a pycrdt document, its awareness, its connections, and the path of every update.

An update from a connection is applied to the document once, appended to the room's update
log, and only then forwarded - its original frame bytes, one WebSocket frame built once - to
every other connection. Appends are batched: while one batch is being written, new updates
gather, and the next append carries them all in one statement, so persistence costs one
round trip per batch, not per update, and "appended before broadcast" still holds.

Outgoing frames are queued per connection, in order, and each connection's queue is written
to its transport in one write per event-loop pass. Rooms never see the web framework: a
connection writes to a ``Sink``.

Server-side code changes the document like a client: ``with room.transaction(author):`` (or
any transaction on ``room.doc``) is persisted and broadcast by the same path.

Awareness is never stored. A connection sets only the states of its own client ids (the ids
it claimed first; see ``Room._claim``). What it sends is applied and echoed to everyone here at
once, and its client ids are noted for other processes (``take_awareness_changes``; the rooms
set relays them). States relayed from another process (``apply_remote_awareness``) are
broadcast here but never relayed again, and dropped when not renewed in time
(``expire_remote_awareness``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pycrdt

from collab import awareness, errors, protocol
from collab.access import SYSTEM, Participant, author
from collab.limits import Limits, TokenBucket
from events import errors as event_errors
from events import tasks

if TYPE_CHECKING:
    from collab.persistence import RoomStore

log = logging.getLogger(__name__)

RETRY_S = 0.5
REMOTE = "remote"  # the origin of awareness states relayed from another process


class Sink(Protocol):
    """Where a connection's frames go: a transport that buffers, and can be closed."""

    def write(self, data: bytes) -> None:
        """Queue ready WebSocket frames for sending; never blocks."""
        ...

    def buffered(self) -> int:
        """Bytes written but not yet sent."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the connection soon with ``code`` and ``reason``; never blocks."""
        ...


class Connection:
    """One participant's socket in a room: its ordered outgoing frames and awareness ids."""

    __slots__ = ("bucket", "closed", "controlled", "denied", "id", "participant", "pending", "sink")

    def __init__(self, participant: Participant, sink: Sink, limits: Limits) -> None:
        self.id = uuid.uuid4().hex
        self.participant = participant
        self.sink = sink
        self.pending: list[bytes] = []
        self.controlled: set[int] = set()
        self.closed = False
        self.denied = False
        self.bucket = TokenBucket(limits.rate_per_s, limits.rate_burst, time.monotonic())


ParticipantsHook = Callable[["Room"], None]


class Room:
    """A document shared by connections; see the module docstring for the update path."""

    def __init__(
        self,
        name: str,
        store: RoomStore | None,
        limits: Limits,
        *,
        announce: Callable[[str], None] | None = None,
        awareness_changed: Callable[[str], None] | None = None,
        seq: int = 0,
        updates_since_snapshot: int = 0,
        shared: bool = False,
    ) -> None:
        self.name = name
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.awareness = pycrdt.Awareness(self.doc)
        self.awareness.set_local_state(None)  # the server itself is nobody's cursor
        self.connections: dict[Connection, None] = {}
        self.limits = limits
        self.updates_since_snapshot = updates_since_snapshot
        # Whether another process serves this room too, as last heard (an append, the rooms
        # set's poll, a notification from it, at ``heard_from_others``): awareness is relayed
        # only then.
        self.shared = shared
        self.heard_from_others = 0.0
        self.idle_since = time.monotonic()
        # Holders (a shared execution session) that keep the room open with nobody in it.
        self.pins: set[object] = set()
        self.participants_hooks: list[ParticipantsHook] = []
        self._store = store
        self._announce = announce
        self._awareness_changed = awareness_changed
        self._awareness_to_relay: set[int] = set()
        # Client id -> when its state, learnt from another process, was last renewed.
        self._remote_renewed: dict[int, float] = {}
        # Client id -> the connection here that claimed it first (see ``_claim``).
        self._holders: dict[int, Connection] = {}
        self._cursor = seq
        self._reached = 0  # the log's end, as last polled, when this room was behind it
        self._own: set[int] = set()
        self._outbox: list[tuple[bytes, bytes, Connection | None, str]] = []
        self._wake = False
        # persists and broadcasts (_sync), started when there is work and ending when done
        self._tasks = tasks.TaskOwner("collab room", logger=log)
        self._task: asyncio.Task[None] | None = None
        self._applying = False
        self._changed = False
        self._local_author = SYSTEM.label
        self._dirty: list[Connection] = []
        self._flush_scheduled = False
        self._closed = False
        self.doc.observe(self._on_doc_update)

    # --- loading ---------------------------------------------------------------------------

    def load(self, update: bytes) -> None:
        """Apply the persisted state (not persisted again, not broadcast: nobody is here yet)."""
        self._applying = True
        try:
            self.doc.apply_update(update)
        finally:
            self._applying = False

    @property
    def seq(self) -> int:
        """The last update sequence number this room holds from the log."""
        return self._cursor

    # --- connections -----------------------------------------------------------------------

    def join(self, conn: Connection) -> None:
        """Add a connection: send it SyncStep1 and every awareness state present."""
        self.connections[conn] = None
        self._send(conn, protocol.ws_frame(protocol.sync_step1(self.doc)))
        if self.awareness.states:
            everyone = self.awareness.encode_awareness_update(list(self.awareness.states))
            self._send(conn, protocol.ws_frame(protocol.awareness_message(everyone)))
        self._participants_changed()

    def leave(self, conn: Connection) -> None:
        """Remove a connection; the awareness states it controlled go at once, for everyone."""
        conn.closed = True
        conn.pending.clear()
        if conn not in self.connections:
            return
        del self.connections[conn]
        for client_id in [cid for cid, holder in self._holders.items() if holder is conn]:
            del self._holders[client_id]
        gone = [cid for cid in conn.controlled if cid in self.awareness.states]
        if gone:
            self.awareness.remove_awareness_states(gone, conn)
            update = self.awareness.encode_awareness_update(gone)
            self.broadcast(protocol.ws_frame(protocol.awareness_message(update)))
            self._note_awareness(gone)  # other processes' clients see the cursor go at once
        if not self.connections:
            self.idle_since = time.monotonic()
        self._participants_changed()

    @property
    def participants(self) -> tuple[Participant, ...]:
        """Who is connected, one entry per connection."""
        return tuple(conn.participant for conn in self.connections)

    def _participants_changed(self) -> None:
        for hook in self.participants_hooks:
            try:
                hook(self)
            except Exception:  # a hook's bug must not break the room's connections
                log.exception("participants hook of room %s failed", self.name)

    def drop(self, conn: Connection, code: int, reason: str) -> None:
        """Close one connection (the room and the others are unaffected)."""
        if conn.closed:
            return
        conn.closed = True
        conn.pending.clear()
        conn.sink.close(code, errors.short_reason(reason))

    # --- incoming messages -----------------------------------------------------------------

    def receive(self, conn: Connection, frame: bytes) -> None:
        """Handle one frame from ``conn``; ``ConnectionRefused`` means: close this connection."""
        if conn.closed:  # being closed (too slow, say): nothing more from it counts
            return
        if len(frame) > self.limits.max_message_bytes:
            raise errors.ProtocolError(
                f"message of {len(frame)} bytes is over the limit of"
                f" {self.limits.max_message_bytes}",
                code=errors.TOO_LARGE,
            )
        if not conn.bucket.take(time.monotonic()):
            raise errors.ConnectionRefused(
                errors.FLOOD,
                f"over the rate limit of {self.limits.rate_per_s:g} messages/s"
                f" (burst {self.limits.rate_burst})",
            )
        message = protocol.parse(frame)
        if isinstance(message, protocol.SyncMessage):
            if message.subtype == protocol.SYNC_STEP1:
                self._answer_step1(conn, message.data)
            elif conn.participant.can_write:
                original = frame if message.subtype == protocol.SYNC_UPDATE else None
                self._apply_client_update(conn, message.data, original)
            else:
                self._refuse_read_only(conn, message.data)
        elif isinstance(message, protocol.AwarenessMessage):
            self._apply_awareness(conn, message, frame)
        elif isinstance(message, protocol.QueryAwareness):
            everyone = self.awareness.encode_awareness_update(list(self.awareness.states))
            self._send(conn, protocol.ws_frame(protocol.awareness_message(everyone)))
        # protocol.AuthMessage: JupyterLab's RAW channel (save requests); not served here.

    def _answer_step1(self, conn: Connection, state_vector: bytes) -> None:
        with protocol.crdt_input("sync step 1 does not hold a valid state vector"):
            diff = self.doc.get_update(state_vector)
        self._send(conn, protocol.ws_frame(protocol.sync_step2(diff)))

    def _apply_client_update(self, conn: Connection, update: bytes, frame: bytes | None) -> None:
        self._changed = False
        self._applying = True
        try:
            # The origin tells observers (a session's executor) who wrote the update.
            with self.doc.transaction(origin=conn.participant):
                self.doc.apply_update(update)
        except BaseException as exc:  # a plain try: this runs for every update (crdt_input)
            if (refusal := protocol.crdt_refusal("update does not apply", exc)) is None:
                raise
            raise refusal from None
        finally:
            self._applying = False
        # An update the document already had changes nothing and is neither stored nor sent.
        # One whose dependencies are missing changes nothing *yet* (pycrdt keeps it pending)
        # and must be stored: what the document lacks of it tells the two apart. What it
        # lacks always keeps the update's deletions, known or not: a client that holds the
        # whole document (one reconnecting, or one that loaded it elsewhere) answers our
        # sync step 1 with every deletion the document has, which is nothing new either.
        if not self._changed:
            with protocol.crdt_input("update does not decode"):
                missing = pycrdt.get_update(update, self.doc.get_state())
                if missing == protocol.EMPTY_UPDATE or self._only_known_deletions(missing):
                    return
        payload = frame if frame is not None else protocol.update_message(update)
        self._queue(update, payload, conn, conn.participant.label)

    def _only_known_deletions(self, missing: bytes) -> bool:
        """Whether ``missing`` (an update less what the document has) holds no new items and
        only deletions the document has made already."""
        if missing[:1] != b"\x00":  # items this document lacks
            return False
        known = self.doc.get_update(self.doc.get_state())  # no items: every deletion
        return pycrdt.merge_updates(known, missing) == known

    def _refuse_read_only(self, conn: Connection, update: bytes) -> None:
        # A read-only client still answers our SyncStep1 with its own state: nothing new in
        # it is no attempt to write. Anything new is refused, once said, never applied.
        with protocol.crdt_input("update does not decode"):
            new = pycrdt.get_update(update, self.doc.get_state())
        if new[:1] == b"\x00":
            return
        if not conn.denied:
            conn.denied = True
            reason = f"read-only access to room {self.name}: updates are not accepted"
            self._send(conn, protocol.ws_frame(protocol.permission_denied(reason)))

    def _apply_awareness(
        self, conn: Connection, message: protocol.AwarenessMessage, frame: bytes
    ) -> None:
        # A connection sets only its own clients' states: an entry for an id another
        # connection holds, or whose state another process relays, is dropped (with a null
        # state and a higher clock it would remove that cursor for everyone; with a state it
        # would take it over). y-websocket clients send only their own id, except when they
        # answer a QueryAwareness with every state they know: of that, only theirs is kept.
        # Dropped, not refused: the rest of the message (the sender's own state) still counts.
        entries = tuple(entry for entry in message.entries if self._claim(conn, entry[0]))
        if not entries:
            return
        for client_id, _clock, state in entries:
            self._holders.setdefault(client_id, conn)
            if state is None:
                conn.controlled.discard(client_id)
            else:
                conn.controlled.add(client_id)
        # Everyone sees the name the hub authenticated, not the one the client claims.
        stamped = awareness.stamp(entries, conn.participant.name)
        if stamped is not None or len(entries) != len(message.entries):
            update = protocol.encode_awareness(stamped if stamped is not None else entries)
            frame = protocol.awareness_message(update)
        else:
            update = message.update
        self.awareness.apply_awareness_update(update, conn)
        # Echoed to the sender too: a lone client otherwise hears nothing for 30 s and
        # reconnects (y-websocket's messageReconnectTimeout).
        self.broadcast(protocol.ws_frame(frame))
        self._note_awareness([entry[0] for entry in entries])

    def _claim(self, conn: Connection, client_id: int) -> bool:
        """Whether ``conn`` may set ``client_id``'s state: the id is its own (it claimed it
        first, in this room and process), or nobody's here and not live from elsewhere. The
        same participant's other connection hands the id over: a browser tab that reconnected
        before the server noticed its old socket was gone (y-websocket keeps its client id)."""
        holder = self._holders.get(client_id)
        if holder is None:
            return client_id not in self._remote_renewed
        if holder is conn:
            return True
        if holder.participant.label != conn.participant.label:
            return False
        holder.controlled.discard(client_id)
        self._holders[client_id] = conn
        return True

    # --- awareness between processes -------------------------------------------------------

    def _note_awareness(self, client_ids: list[int]) -> None:
        if self._awareness_changed is None:
            return
        first = not self._awareness_to_relay
        # Ids the awareness never took (a removal of an unknown client) have no clock to send.
        self._awareness_to_relay.update(cid for cid in client_ids if cid in self.awareness.meta)
        if first and self._awareness_to_relay:
            self._awareness_changed(self.name)

    def take_awareness_changes(self) -> list[int]:
        """The client ids whose awareness changed here since the last call (to relay)."""
        changed, self._awareness_to_relay = self._awareness_to_relay, set()
        return sorted(changed)

    def local_awareness(self) -> list[int]:
        """The client ids with a state that this process's connections control."""
        return sorted(
            {cid for conn in self.connections for cid in conn.controlled}.intersection(
                self.awareness.states
            )
        )

    def apply_remote_awareness(self, update: bytes, now: float) -> bool:
        """Apply an awareness update relayed by another process (decoded already) and send it
        to every connection here; it is not relayed again. True if it changed anything."""
        entries = protocol.decode_awareness(update)
        # An id a connection here holds is that connection's: another process's relay (its
        # own connection claiming the same id, a race or an attempt) does not take it over.
        kept = tuple(entry for entry in entries if entry[0] not in self._holders)
        if not kept:
            return False
        if len(kept) != len(entries):
            entries, update = kept, protocol.encode_awareness(kept)
        self.awareness.apply_awareness_update(update, REMOTE)
        applied = False
        for client_id, clock, state in entries:
            meta = self.awareness.meta.get(client_id)
            if meta is None or meta["clock"] != clock:
                continue  # older than what we hold: not applied
            applied = True
            if state is None:
                self._remote_renewed.pop(client_id, None)
            else:
                self._remote_renewed[client_id] = now
        if applied:
            self.broadcast(protocol.ws_frame(protocol.awareness_message(update)))
        return applied

    def expire_remote_awareness(self, now: float, timeout_s: float) -> list[int]:
        """Drop the states learnt from other processes and not renewed within ``timeout_s``
        (their process may be gone), telling every connection here; the dropped ids."""
        stale = awareness.outdated(self._remote_renewed, now, timeout_s)
        for client_id in stale:
            del self._remote_renewed[client_id]
        gone = [cid for cid in stale if cid in self.awareness.states]
        if gone:
            self.awareness.remove_awareness_states(gone, "timeout")
            update = self.awareness.encode_awareness_update(gone)
            self.broadcast(protocol.ws_frame(protocol.awareness_message(update)))
        return gone

    # --- local changes ---------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, author: str = SYSTEM.label) -> Iterator[pycrdt.Doc[Any]]:
        """Change the document server-side; the change is persisted and broadcast like a
        client's, attributed to ``author`` (``user:<name>``, ``system:<part>``)."""
        if self._closed:
            raise errors.CollabError(f"room {self.name} is closed")
        previous, self._local_author = self._local_author, author
        try:
            with self.doc.transaction(origin=author):
                yield self.doc
        finally:
            self._local_author = previous

    def _on_doc_update(self, event: pycrdt.TransactionEvent) -> None:
        if self._applying:
            self._changed = True
            return
        update = event.update
        self._queue(update, protocol.update_message(update), None, self._local_author)

    # --- persistence, then broadcast --------------------------------------------------------

    def _queue(self, update: bytes, payload: bytes, origin: Connection | None, author: str) -> None:
        self._outbox.append((update, payload, origin, author))
        self._kick()

    def wake(self) -> None:
        """Another process may have appended updates: read them (soon, in order)."""
        self._wake = True
        self._kick()

    def log_reached(self, seq: int) -> None:
        """The room's log has reached ``seq`` (the rooms set's poll): read what this room
        lacks of it, unless the appends it has in flight were the news (they are its own)."""
        if seq > self._cursor:
            self._reached = max(self._reached, seq)
            self._kick()

    def _kick(self) -> None:
        if self._task is None:
            self._task = self._tasks.start(self._sync(), f"chronohub-collab-room-{self.name}")

    async def flushed(self) -> None:
        """Wait until every change made so far is persisted and broadcast."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _sync(self) -> None:
        try:
            while True:
                if self._outbox:
                    await self._flush_outbox()
                elif self._wake or self._reached > self._cursor:
                    self._wake = False
                    self._reached = 0  # one read per poll's news (a compaction may end ahead)
                    await self._catch_up()
                else:
                    return
        finally:
            # No await between the last check and this: a _kick() after it starts a new task.
            self._task = None

    async def _flush_outbox(self) -> None:
        batch, self._outbox = self._outbox, []
        shared = False
        if self._store is None:
            seqs = list(range(self._cursor + 1, self._cursor + 1 + len(batch)))
        else:
            try:
                appended = await self._store.append(
                    self.name, [item[0] for item in batch], [item[3] for item in batch]
                )
                seqs, shared = appended.seqs, appended.shared
                self.shared = self.shared or shared  # only the rooms set's poll says "alone"
            except event_errors.DatabaseUnavailable as exc:
                log.warning("room %s: cannot append updates (%s); retrying", self.name, exc)
                self._outbox[:0] = batch
                await asyncio.sleep(RETRY_S)
                return
        self._note_own(seqs)
        self.updates_since_snapshot += len(batch)
        self._broadcast_batch([(protocol.ws_frame(item[1]), item[2]) for item in batch])
        if shared and self._announce is not None:
            self._announce(self.name)

    def _note_own(self, seqs: list[int]) -> None:
        if seqs and seqs[0] == self._cursor + 1 and seqs[-1] - seqs[0] == len(seqs) - 1:
            self._cursor = seqs[-1]
        else:  # another process appended in between: read its updates, skip ours
            self._own.update(seqs)
            self._wake = True

    async def _catch_up(self) -> None:
        if self._store is None:
            return
        try:
            snapshot, rows = await self._store.catch_up(self.name, self._cursor)
        except event_errors.DatabaseUnavailable as exc:
            log.warning("room %s: cannot read updates (%s); retrying", self.name, exc)
            await asyncio.sleep(RETRY_S)
            self._wake = True
            return
        changed: list[tuple[bytes, Connection | None]] = []  # sent together, in order
        if snapshot is not None:  # compacted past our cursor: the snapshot holds what we lack
            covered, data = snapshot
            self._apply_foreign(data, SYSTEM, changed)
            # ...up to its sequence number: without this, a room with no update after the
            # snapshot would stay behind its log and read it again at every poll.
            self._cursor = max(self._cursor, covered)
        for seq, data, label in rows:
            if seq in self._own:
                self._own.discard(seq)
            else:
                self._apply_foreign(data, author(label), changed)
            self._cursor = max(self._cursor, seq)
        self._own = {seq for seq in self._own if seq > self._cursor}
        self._broadcast_batch(changed)

    def _apply_foreign(
        self, update: bytes, origin: Participant, changed: list[tuple[bytes, Connection | None]]
    ) -> None:
        self._changed = False
        self._applying = True
        try:
            with self.doc.transaction(origin=origin):
                self.doc.apply_update(update)
        except ValueError:
            log.exception("room %s: a stored update does not apply", self.name)
            return
        finally:
            self._applying = False
        if self._changed:
            changed.append((protocol.ws_frame(protocol.update_message(update)), None))

    # --- outgoing frames --------------------------------------------------------------------

    def broadcast(self, frame: bytes, exclude: Connection | None = None) -> None:
        """Queue one ready WebSocket frame for every connection but ``exclude``."""
        for conn in self.connections:
            if conn is not exclude:
                self._send(conn, frame)

    def _broadcast_batch(self, frames: list[tuple[bytes, Connection | None]]) -> None:
        """Queue a batch's frames, in order, for every connection but each frame's origin.

        The frames are joined once for all the connections that sent none of them (in a burst,
        every reader), so a connection gets one queued blob per batch rather than one frame per
        update; a connection that sent some of them gets the others joined for it alone.
        """
        if len(frames) <= 1:
            if frames:
                self.broadcast(*frames[0])
            return
        origins = {origin for _frame, origin in frames if origin is not None}
        everything = b"".join(frame for frame, _origin in frames)
        for conn in self.connections:
            if conn not in origins:
                self._send(conn, everything)
            elif others := b"".join(frame for frame, origin in frames if origin is not conn):
                self._send(conn, others)

    def _send(self, conn: Connection, frame: bytes) -> None:
        if conn.closed:
            return
        if not conn.pending:
            self._dirty.append(conn)
        conn.pending.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_pending)

    def _write_pending(self) -> None:
        """Write each connection's queued frames in one write (once per event-loop pass)."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            frames, conn.pending = conn.pending, []
            if conn.closed or not frames:
                continue
            conn.sink.write(frames[0] if len(frames) == 1 else b"".join(frames))
            if conn.sink.buffered() > self.limits.send_buffer_bytes:
                self.drop(
                    conn,
                    errors.SLOW_CONSUMER,
                    f"more than {self.limits.send_buffer_bytes} bytes waiting to be sent",
                )

    # --- closing ---------------------------------------------------------------------------

    async def close(self, code: int = errors.GOING_AWAY, reason: str = "room closed") -> None:
        """Close every connection, then persist what is still queued."""
        for conn in list(self.connections):
            self.drop(conn, code, reason)
        await self.flushed()
        self._closed = True
        await self._tasks.close()
