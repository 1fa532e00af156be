"""Shared execution sessions bound to collaboration rooms: the hub's REST API drives these.

``SessionManager.create`` opens (or creates) a room, loads the notebook into the room's
document through the room's own transaction (so it is persisted and broadcast like any
edit), and starts one ``collab.session.Session`` on that document. From then on:

* an execution request written into the document by a participant is attributed to the
  connection that sent it (the room applies each client's update with the sender's
  ``collab.access.Participant`` as the transaction origin; ``identify`` maps it);
* the executor's output edits are transactions on the room's document, so the room
  persists and broadcasts them;
* the room's participants hook tells the session who joined and who left, so the session
  shuts itself down a grace period after the last one leaves;
* the room is pinned while the session runs (the rooms' janitor does not unload it), and
  unpinned, its hook removed and the session forgotten when the session ends.

The manager owns every session it starts and shuts them all down in ``close``. It knows
nothing of the hub: who may create, run or read a session is decided by the caller (the
REST layer) and by the ``may_write`` callback the hub hands over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from jupyter_client import kernelspec
from pycrdt import Array

from collab import access, execution, notebook, persistence, rooms
from collab import kernel as kernels
from collab import session_errors as errors
from collab.room import Room
from collab.session import Session

log = logging.getLogger(__name__)

RoomMayWrite = Callable[[str, execution.Participant], Awaitable[bool]]
"""Whether a participant may run cells in the named room (asked at each request)."""

KernelAccount = Callable[[execution.Participant], Awaitable[kernels.RunAs | None]]
"""The account a session's kernel runs as, given its creator: everyone who may write to the
room runs code as that account. None: the hub's own (single-user mode). Raises
``KernelRefused`` when the creator's code may not run at all."""


async def _hub_account(creator: execution.Participant) -> kernels.RunAs | None:
    return None


EMPTY_NOTEBOOK: dict[str, Any] = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}


def identify(origin: Any) -> execution.Participant | None:
    """Who wrote a document update: the room's origin for a client's update is the sender's
    ``collab.access.Participant``; the hub's own transactions (``system``) name nobody."""
    if isinstance(origin, access.Participant) and origin.kind != "system" and origin.can_write:
        return execution.Participant(origin.name, origin.kind)
    return None


def _requester(creator: access.Participant) -> execution.Participant:
    kind: Literal["user", "service"] = "service" if creator.kind == "service" else "user"
    return execution.Participant(creator.name, kind)


@dataclass
class Bound:
    """A running session, its room, and the room's owner when the session was created."""

    session: Session
    room: Room
    owner: str | None
    connections: set[str] = field(default_factory=set)

    def on_participants(self, changed: Room) -> None:
        """The room's participants hook: tell the session who joined and who left."""
        current = {conn.id for conn in changed.connections}
        for key in current - self.connections:
            self.session.participant_joined(key)
        for key in self.connections - current:
            self.session.participant_left(key)
        self.connections = current


class SessionManager:
    """Starts sessions on rooms, finds them by id, and shuts them all down on ``close``."""

    def __init__(
        self,
        room_set: rooms.Rooms,
        record: execution.Recorder,
        may_write: RoomMayWrite,
        *,
        kernel_account: KernelAccount = _hub_account,
        grace_period: float = 60.0,
        kernel_startup_timeout: float = 60.0,
        max_output_chars: int = 2_000_000,
    ) -> None:
        self.rooms = room_set
        self.record = record
        self.may_write = may_write
        self.kernel_account = kernel_account
        self.grace_period = grace_period
        self.kernel_startup_timeout = kernel_startup_timeout
        self.max_output_chars = max_output_chars
        self._bound: dict[uuid.UUID, Bound] = {}
        self._by_room: dict[str, uuid.UUID] = {}
        self._creating: set[str] = set()
        self._closed = False

    async def __aenter__(self) -> SessionManager:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- finding ---------------------------------------------------------------------------

    def get(self, session_id: uuid.UUID) -> Bound | None:
        """The running session ``session_id``, if this process holds it."""
        return self._bound.get(session_id)

    def all(self) -> list[Bound]:
        """Every running session, oldest first."""
        return list(self._bound.values())

    def __len__(self) -> int:
        return len(self._bound)

    # --- checking input (nothing is written before these pass) ------------------------------

    @staticmethod
    async def check_kernel(kernel_name: str) -> None:
        """Raise ``UnknownKernel`` unless a kernel spec of this name is installed."""
        specs = await asyncio.to_thread(kernelspec.KernelSpecManager().find_kernel_specs)
        if kernel_name not in specs:
            raise errors.UnknownKernel(kernel_name, sorted(specs))

    @staticmethod
    def initial_update(nb: dict[str, Any] | None) -> bytes:
        """The document update building ``nb`` (an empty notebook if None); raises
        ``NotebookInvalid`` naming what is wrong."""
        return notebook.initial_update(nb if nb is not None else EMPTY_NOTEBOOK)

    def check_room_free(self, name: str) -> None:
        """Raise ``RoomBusy`` if a session runs (or is being started) in room ``name``."""
        persistence.check_room_name(name)
        if name in self._by_room or name in self._creating:
            raise errors.RoomBusy(f"room {name} already has a running session")

    # --- lifecycle -------------------------------------------------------------------------

    async def create(
        self,
        room_name: str,
        creator: access.Participant,
        *,
        nb: dict[str, Any] | None = None,
        kernel_name: str = "python3",
        owner: str | None = None,
        session_id: uuid.UUID | None = None,
        seed_author: str | None = None,
        taken_over: bool = False,
    ) -> Bound:
        """Start a session on room ``room_name`` (created, owned by ``creator``, if new).

        ``session_id``: the session's id when the caller recorded it beforehand (a new one
        otherwise). ``seed_author``: whom the stored updates that load ``nb`` are attributed
        to (default the creator); a project's session loads its notebook as the hub
        (``system:chronohub``), so the room's update authors are the people who edited it.
        ``taken_over``: the session ran in a hub process that died, and starts again here.

        A new room gets ``nb`` (or an empty notebook). An existing room keeps its document
        (its notebook and outputs from an earlier session); giving ``nb`` for a room that
        already holds a notebook is refused with ``RoomBusy``. Raises ``NotebookInvalid``,
        ``UnknownKernel``, ``RoomBusy``, ``InvalidRoomName``, ``KernelRefused`` (or whatever
        ``kernel_account`` raises) before anything is written,
        and ``KernelStartFailed`` if the kernel does not start (the session is then ended).
        """
        if self._closed:
            raise errors.SessionClosed("the hub is shutting down")
        update = self.initial_update(nb)
        await self.check_kernel(kernel_name)
        self.check_room_free(room_name)
        run_as = await self.kernel_account(_requester(creator))
        self._creating.add(room_name)
        try:
            info = await self.rooms.describe(room_name)
            if info.exists and nb is not None and await self._holds_notebook(room_name):
                raise errors.RoomBusy(
                    f"room {room_name} already holds a notebook; start a session on it"
                    " without one, or choose another room"
                )
            opened = await self.rooms.open(room_name, creator=creator)
            if not len(opened.doc.get(notebook.CELLS, type=Array)):
                with opened.transaction(seed_author or creator.label):
                    opened.doc.apply_update(update)
                await opened.flushed()
            return await self._start(
                opened, creator, kernel_name, owner, run_as, session_id, taken_over
            )
        finally:
            self._creating.discard(room_name)

    async def _holds_notebook(self, room_name: str) -> bool:
        opened = self.rooms.get(room_name)
        if opened is not None:
            return bool(len(opened.doc.get(notebook.CELLS, type=Array)))
        loaded = await self.rooms.store.load(room_name)
        probe = Room(room_name, None, self.rooms.limits)
        probe.load(loaded.update)
        return bool(len(probe.doc.get(notebook.CELLS, type=Array)))

    async def _start(
        self,
        opened: Room,
        creator: access.Participant,
        kernel_name: str,
        owner: str | None,
        run_as: kernels.RunAs | None,
        session_id: uuid.UUID | None = None,
        taken_over: bool = False,
    ) -> Bound:
        session_id = session_id or uuid.uuid4()
        if session_id in self._bound:
            raise errors.RoomBusy(f"session {session_id} is already running")
        room_name = opened.name

        async def may_write(who: execution.Participant) -> bool:
            return await self.may_write(room_name, who)

        requester = _requester(creator)
        session = Session(
            session_id,
            opened.doc,
            room=room_name,
            created_by=requester,
            may_write=may_write,
            record=self.record,
            identify=identify,
            kernel=kernels.SharedKernel(
                kernel_name, startup_timeout=self.kernel_startup_timeout, run_as=run_as
            ),
            grace_period=self.grace_period,
            max_output_chars=self.max_output_chars,
            on_ended=self._forget,
            taken_over=taken_over,
        )
        bound = Bound(session, opened, owner)
        self._bound[session_id] = bound
        self._by_room[room_name] = session_id
        opened.pins.add(session)
        bound.on_participants(opened)  # whoever is already in the room
        opened.participants_hooks.append(bound.on_participants)
        await session.start()  # on failure, on_ended has already forgotten it
        return bound

    def _forget(self, session: Session) -> None:
        bound = self._bound.pop(session.session_id, None)
        if bound is None:
            return
        if self._by_room.get(session.room) == session.session_id:
            del self._by_room[session.room]
        opened = bound.room
        opened.pins.discard(session)
        if bound.on_participants in opened.participants_hooks:
            opened.participants_hooks.remove(bound.on_participants)
        if not opened.connections:  # the room's own grace period starts now
            opened.idle_since = time.monotonic()

    async def shutdown(self, session_id: uuid.UUID) -> None:
        """End one session now (its kernel stops; the room and its document stay)."""
        bound = self._bound.get(session_id)
        if bound is not None:
            await bound.session.shutdown()

    async def abandon(self, session_id: uuid.UUID) -> None:
        """Stop this process's copy of a session another process took over: its kernel stops,
        and nothing of the session's end is recorded (it runs on there)."""
        bound = self._bound.get(session_id)
        if bound is not None:
            await bound.session.abandon()

    async def close(self) -> None:
        """Shut every session down (the hub is stopping); no new one starts after this."""
        self._closed = True
        running = [bound.session for bound in self._bound.values()]
        results = await asyncio.gather(*(s.shutdown() for s in running), return_exceptions=True)
        for session, result in zip(running, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "session %s did not shut down cleanly: %s",
                    session.session_id,
                    result,
                    exc_info=result,
                )
