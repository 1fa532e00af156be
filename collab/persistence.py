"""Rooms in PostgreSQL: creation (with its event), the update log, snapshots and compaction.

Every applied update is appended to ``collab_updates`` with the room's next sequence number
before it is broadcast (the batches of many rooms appended at the same moment share one
statement: ``collab/group_commit.py``); a room loads from its latest snapshot plus the updates
after it.
Compaction replaces a prefix of the log with one snapshot in one transaction and never loses
an update that arrives meanwhile: it merges only the updates it read, and deletes only those.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pycrdt

from collab import errors, group_commit
from events import models, sql, store
from events.catalog import collab as collab_events

queries = sql.Queries(__package__ or "collab", "collab.sql")

ROOM_NAME = re.compile(collab_events.ROOM_PATTERN)


def check_room_name(name: str) -> str:
    """``name`` if it is a valid room name, else ``InvalidRoomName`` saying what is allowed."""
    if not ROOM_NAME.fullmatch(name):
        raise errors.InvalidRoomName(
            f"invalid room name {name[:60]!r}: 1-200 characters of letters, digits and ._:@/-,"
            " starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Loaded:
    """A room's persisted state: its document as one update, and the last sequence it holds."""

    update: bytes
    seq: int
    updates_since_snapshot: int
    shared: bool = False  # another process held the room when this one entered it


@dataclass(frozen=True)
class Appended:
    """What an append wrote: sequence numbers, and whether another process holds the room."""

    seqs: list[int]
    shared: bool


@dataclass(frozen=True)
class RoomState:
    """Where a room's log stands in the database, and whether another process holds it."""

    last_seq: int
    shared: bool


@dataclass(frozen=True)
class Compaction:
    """What a compaction did: the sequence it covers and how many updates it replaced."""

    seq: int
    updates: int
    snapshot_bytes: int


class RoomStore:
    """Reads and writes the collab tables; room lifecycle events go through the event store.

    ``durable_updates=False`` (the hub's default) commits update appends without waiting for
    the WAL flush (``synchronous_commit = off`` for those transactions only): an append is
    committed and visible to every process before its broadcast, but a crash of PostgreSQL
    itself (not of the hub) may lose the last few hundred milliseconds of updates. Yjs
    clients heal that: on reconnect they send the server whatever it lacks (SyncStep2).
    Waiting for the flush costs a disk sync per batch (measured here: p50 2.6 ms, p99 7.8 ms
    per commit against 0.05 / 0.13 ms), which the broadcast would wait for.
    """

    def __init__(
        self,
        event_store: store.EventStore,
        *,
        durable_updates: bool = True,
        process: str | None = None,
    ) -> None:
        self.events = event_store
        self.pool = event_store.pool  # borrowed through the store, which translates its errors
        self.commit_mode = "on" if durable_updates else "off"
        self.process = process or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.group = group_commit.GroupCommit(self)

    async def info(self, room: str) -> tuple[bool, str | None]:
        """Whether ``room`` exists, and its owner."""
        async with self.events.connection() as conn:
            row = await conn.fetchrow(queries["room_info"], room)
        return (False, None) if row is None else (True, row["owner"])

    async def create(self, room: str, owner: str | None, metadata: models.Metadata) -> bool:
        """Create ``room`` (and its ``collab.room_created`` event) unless it exists; true if new."""
        check_room_name(room)
        async with self.events.session() as session:
            created = await session.conn.fetchval(queries["create_room"], room, owner)
            if created is not None:
                await session.append(
                    collab_events.stream_id(room),
                    [collab_events.RoomCreated(room=room, owner=owner)],
                    metadata=metadata,
                )
        return created is not None

    async def load(self, room: str) -> Loaded:
        """The room's document: its latest snapshot plus every later update, merged; from now
        on this process counts as holding the room (``Appended.shared`` for the others)."""
        async with self.events.connection() as conn:
            shared = bool(await conn.fetchval(queries["enter_room"], room, self.process))
        async with self.events.connection() as conn, conn.transaction(isolation="repeatable_read"):
            snapshot = await conn.fetchrow(queries["latest_snapshot"], room)
            base = snapshot["seq"] if snapshot else 0
            rows = await conn.fetch(queries["updates_after"], room, base)
        parts = ([snapshot["data"]] if snapshot else []) + [row["data"] for row in rows]
        update = pycrdt.merge_updates(*parts) if parts else b"\x00\x00"
        seq = rows[-1]["seq"] if rows else base
        return Loaded(update=update, seq=seq, updates_since_snapshot=len(rows), shared=shared)

    async def states(self, rooms: Sequence[str]) -> dict[str, RoomState]:
        """Of ``rooms`` (one statement however many): the last sequence number each has handed
        out, and whether another process holds it too. A room that does not exist is left out."""
        async with self.events.connection() as conn:
            rows = await conn.fetch(queries["rooms_state"], list(rooms), self.process)
        return {row["room"]: RoomState(row["last_seq"], row["shared"]) for row in rows}

    async def release(self, room: str) -> None:
        """This process no longer holds ``room``."""
        async with self.events.connection() as conn:
            await conn.execute(queries["leave_room"], room, self.process)

    async def release_all(self, rooms: Sequence[str]) -> None:
        """This process no longer holds any of ``rooms`` (one statement)."""
        async with self.events.connection() as conn:
            await conn.execute(queries["leave_rooms"], list(rooms), self.process)

    async def append(self, room: str, updates: Sequence[bytes], authors: Sequence[str]) -> Appended:
        """Append updates, numbered in one piece after the room's last: their sequence numbers,
        in order, and whether another process holds the room (and so needs a wake-up).

        Concurrent appends of many rooms share one statement and commit
        (``collab/group_commit.py``); each room still gets only its own result or error.
        """
        return await self.group.append(room, updates, authors)

    async def append_on(
        self, conn: sql.Connection, room: str, updates: Sequence[bytes], authors: Sequence[str]
    ) -> Appended:
        """``append`` of one room alone, on ``conn``: one statement, one round trip."""
        row = await conn.fetchrow(
            queries["append_updates"],
            room,
            list(updates),
            list(authors),
            self.commit_mode,
            self.process,
        )
        return self.appended(room, row, len(updates))

    @staticmethod
    def appended(room: str, row: Any, count: int) -> Appended:
        """What an append statement's row for ``room`` says it wrote (no row: the room does not
        exist, and nothing was)."""
        if row is None or row["appended"] != count:
            raise errors.CollabError(f"room {room!r} does not exist; nothing was appended")
        base = row["base"]
        return Appended(list(range(base + 1, base + 1 + count)), row["shared"])

    async def authors(self, room: str) -> list[str]:
        """The authors (``kind:name``) of the room's stored updates, first writer first."""
        async with self.events.connection() as conn:
            rows = await conn.fetch(queries["update_authors"], room)
        return [row["author"] for row in rows]

    async def catch_up(
        self, room: str, seq: int
    ) -> tuple[tuple[int, bytes] | None, list[tuple[int, bytes, str]]]:
        """What a process holding updates up to ``seq`` lacks: the latest snapshot, with the
        sequence number it covers, if it was compacted past ``seq`` (None otherwise), and the
        updates after ``seq`` with their authors, in order (all after the snapshot's: one
        transaction)."""
        async with self.events.connection() as conn, conn.transaction(isolation="repeatable_read"):
            snapshot = await conn.fetchrow(queries["latest_snapshot"], room)
            rows = await conn.fetch(queries["updates_after"], room, seq)
        newer = (
            (snapshot["seq"], snapshot["data"])
            if snapshot is not None and snapshot["seq"] > seq
            else None
        )
        return newer, [(row["seq"], row["data"], row["author"]) for row in rows]

    async def compact(
        self, room: str, metadata: models.Metadata | None = None
    ) -> Compaction | None:
        """Merge the snapshot and the updates present now into a new snapshot, in one transaction.

        Updates appended meanwhile have higher sequence numbers and are left alone. Returns
        None when there is nothing to compact or another process is compacting the room.
        """
        async with self.events.session() as session:
            conn = session.conn
            if not await conn.fetchval(queries["compaction_lock"], room):
                return None
            snapshot = await conn.fetchrow(queries["latest_snapshot"], room)
            base = snapshot["seq"] if snapshot else 0
            rows = await conn.fetch(queries["updates_after"], room, base)
            if not rows:
                return None
            cut = rows[-1]["seq"]
            parts = ([snapshot["data"]] if snapshot else []) + [row["data"] for row in rows]
            data = squash(parts)
            # the authors are kept with the snapshot (a commit from a session names them)
            authors = list(
                dict.fromkeys([*(snapshot["authors"] if snapshot else []),
                               *(row["author"] for row in rows)])
            )  # fmt: skip
            await conn.execute(queries["insert_snapshot"], room, cut, data, authors)
            await conn.execute(queries["delete_updates_upto"], room, cut)
            await conn.execute(queries["delete_snapshots_before"], room, cut)
            await session.append(
                collab_events.stream_id(room),
                [
                    collab_events.RoomCompacted(
                        room=room, seq=cut, updates=len(rows), snapshot_bytes=len(data)
                    )
                ],
                metadata=metadata,
            )
        return Compaction(seq=cut, updates=len(rows), snapshot_bytes=len(data))


# How many updates ``merge`` hands pycrdt at once: merge_updates' cost grows with the square of
# the updates merged together (2,000 one-element updates: 18 ms at once, 2 ms by 32s).
MERGE_FAN_IN = 32


def merge(parts: Sequence[bytes], fan_in: int = MERGE_FAN_IN) -> bytes:
    """``pycrdt.merge_updates(*parts)``, merged ``fan_in`` at a time, then the merges."""
    merged = list(parts)
    while len(merged) > fan_in:
        merged = [
            pycrdt.merge_updates(*merged[i : i + fan_in]) for i in range(0, len(merged), fan_in)
        ]
    return pycrdt.merge_updates(*merged)


def squash(parts: Sequence[bytes]) -> bytes:
    """One update equivalent to ``parts``: the document's encoding when that loses nothing.

    A document drops structs still waiting for a missing dependency (pycrdt-store lost data
    this way), so the compact encoding is used only when it holds everything the merged
    updates hold beyond its state vector; otherwise the (larger) lossless merge is kept.

    The document is built from the parts one by one: applying their merge at once costs far
    more (24 ms against 6 ms for 2,000 one-element array updates), and compaction runs in the
    event loop, where every room waits for it.
    """
    merged = merge(parts)
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    for part in parts:
        doc.apply_update(part)
    state = doc.get_state()
    compact = doc.get_update()
    if pycrdt.get_update(merged, state) == doc.get_update(state):
        return compact
    return merged
