"""Leases on collaboration sessions: a dead owner's sessions are taken over (issue 20).

A session's kernel runs in the hub process that opened it, which records itself as the
session's owner (``collab_session_owners``, hub/api/collab_forward.py) with a lease that it
renews every third of ``lease_s`` while the session runs here. If the process dies (kill -9,
a lost machine), nobody renews: once the lease has expired, the next process asked about the
session (a REST call), or the first whose sweep finds it, takes it over. One row update
decides who wins; the winner starts the session again on the room's stored document (the
room and notebook survive: they are in the database), with a new kernel of the same kind,
running as the same creator's account. The room's participants see it in the document: a
request that was queued or running is marked aborted, "the session was restarted"
(``collab.execution``), and new requests run in the new kernel.

The creator is found by user id, as they are now (renamed or not), never by the name they
had: the name may belong to someone else since. A creator deleted, blocked, or no longer
allowed to write to the room ends the session instead (``collab_session.ended`` with the
reason) and its row is dropped: nobody's code runs under an account it no longer belongs to.

A process that could not renew in time (stalled longer than a lease) and finds its session
taken over stops its own copy at once, so that one kernel at most runs a session; it records
nothing of the session's end (``SessionManager.abandon``): the session runs on elsewhere.
Sessions that ended here (their room emptied for the grace period) lose their row at the
next renewal.

The owner is one start of a process (``origin`` and a random ``incarnation``): a process
restarted at its predecessor's address does not take the dead one's sessions for its own.

Every timer is one task, named and owned (``events.tasks.TaskOwner``), cancelled on ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Literal

from aiohttp import web

from collab import access as room_access
from collab import execution, session_errors, sessions
from events import errors, sql, tasks
from events.catalog import collab_sessions as session_events
from hub.auth import access

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.api", "collab_lease.sql")

# At most this many expired sessions are taken over by one sweep (the next sweep takes more).
SWEEP_BATCH = 10


class Leases:
    """This process's leases on the sessions it runs: claimed, renewed, taken over."""

    def __init__(self, pool: Any, manager: sessions.SessionManager, lease_s: float) -> None:
        self.pool = pool
        self.manager = manager
        self.lease_s = lease_s
        self.origin: str | None = None
        self.incarnation: str | None = None
        self.blocked: access.Blocked | None = None  # the authenticator's blocked users
        self.claimed: set[uuid.UUID] = set()  # sessions this process recorded as its own
        self._taking: dict[uuid.UUID, asyncio.Future[bool]] = {}
        self._tasks = tasks.TaskOwner("collab session leases", logger=log)

    # --- the timer ---------------------------------------------------------------------------

    def start(self, origin: str, incarnation: str, blocked: access.Blocked | None = None) -> None:
        """Renew, and sweep for expired leases, every third of a lease, as ``origin`` (this
        start of the process there: ``incarnation``); ``blocked``: whose code may not run."""
        self.origin = origin
        self.incarnation = incarnation
        self.blocked = blocked
        self._tasks.start(self._run(), "collab session leases")

    async def stop(self, _app: web.Application | None = None) -> None:
        """Cancel the timer and any takeover under way (an aiohttp cleanup callback too)."""
        await self._tasks.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
                await self.sweep()
            except errors.DatabaseUnavailable as exc:
                # The leases run out if this lasts: then another process may take over, and
                # this one stops its copies at its next renewal.
                log.warning("could not renew the collaboration sessions' leases: %s", exc)
            except Exception:  # one failed round must not end the renewals (logged)
                log.exception("renewing the collaboration sessions' leases failed")

    async def renew(self) -> None:
        """Renew the leases of the sessions running here; forget those that ended here; stop
        those another process took over."""
        assert self.origin is not None
        # Sessions being taken over count as running: a kernel may take longer than a lease
        # to start.
        here = {b.session.session_id for b in self.manager.all()} | set(self._taking)
        running = here & self.claimed
        ended = self.claimed - running
        with sql.translated():
            async with self.pool.acquire() as conn:
                if ended:
                    await conn.execute(
                        queries["lease_drop_ended"], self.origin, list(ended), self.incarnation
                    )
                rows = await conn.fetch(
                    queries["lease_renew"],
                    self.origin,
                    list(running),
                    self.lease_s,
                    self.incarnation,
                )
        self.claimed -= ended
        lost = running - {row["session_id"] for row in rows}
        for session_id in lost:
            log.warning(
                "collab session %s was taken over by another hub process (this one did not"
                " renew its lease in time): stopping it here",
                session_id,
            )
            self.claimed.discard(session_id)
            await self.manager.abandon(session_id)

    async def sweep(self) -> None:
        """Take over sessions whose owners' leases expired (their owners died)."""
        assert self.origin is not None
        with sql.translated():
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    queries["lease_take_expired"],
                    self.origin,
                    self.lease_s,
                    SWEEP_BATCH,
                    self.incarnation,
                )
        for row in rows:
            self._tasks.start(self._adopt(row), f"take over collab session {row['session_id']}")

    # --- taking over -------------------------------------------------------------------------

    async def take_over(self, session_id: uuid.UUID) -> bool:
        """Take ``session_id`` over if its owner's lease expired, or wait for a takeover of it
        already under way here; true if it runs here now."""
        under_way = self._taking.get(session_id)
        if under_way is not None:
            return await asyncio.shield(under_way)
        if self.origin is None:
            return False
        with sql.translated():
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(
                    queries["lease_take_one"],
                    session_id,
                    self.origin,
                    self.lease_s,
                    self.incarnation,
                )
        if row is None:
            return False
        return await self._adopt(row)

    async def _adopt(self, row: Any) -> bool:
        """Start a session taken over, on its room's stored document; false (its row
        forgotten) if it cannot start here."""
        session_id: uuid.UUID = row["session_id"]
        self.claimed.add(session_id)  # renewed from now on, while its kernel starts
        if self.manager.get(session_id) is not None:  # this process's own, renewed late
            return True
        under_way = self._taking.get(session_id)
        if under_way is not None:
            return await asyncio.shield(under_way)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._taking[session_id] = done
        try:
            try:
                creator = await self._creator(row)
            except errors.DatabaseUnavailable as exc:
                # Not renewed from now on: the lease just taken runs out, and a later sweep
                # (here or elsewhere) takes the session over again. Dropping the row would
                # leave it running in the log with nobody to end it.
                log.warning("could not take over collab session %s yet: %s", session_id, exc)
                self.claimed.discard(session_id)
                done.set_result(False)
                return False
            if creator is None:
                done.set_result(False)
                return False
            log.info(
                "taking over collab session %s (room %s): its owner's lease expired",
                session_id,
                row["room"],
            )
            try:
                await self.manager.create(
                    row["room"],
                    creator,
                    kernel_name=row["kernel_name"],
                    owner=row["room_owner"],
                    session_id=session_id,
                    taken_over=True,
                )
            except session_errors.SessionError as exc:
                log.warning("could not take over collab session %s: %s", session_id, exc)
                await self._drop(session_id)
                done.set_result(False)
                return False
            done.set_result(True)
            return True
        finally:
            if not done.done():  # cancelled (the hub stops): its lease runs out again
                done.set_result(False)
            if self._taking.get(session_id) is done:
                del self._taking[session_id]

    async def _creator(self, row: Any) -> room_access.Participant | None:
        """The session's creator as they are now, found by id (a user renamed runs as their
        account under the new name); None, the session ended and its row dropped, if they
        are gone, blocked, or may no longer write to the room."""
        session_id: uuid.UUID = row["session_id"]
        kind: Literal["user", "service"] = row["created_by_kind"]
        name: str = row["created_by"]
        reason: session_events.EndReason | None = None
        if kind == "user":
            with sql.translated():
                async with self.pool.acquire() as conn:
                    user = await conn.fetchrow(queries["lease_creator_user"], row["created_by_id"])
            if user is None:
                reason = "creator_gone"
            else:
                name = user["name"]
                if self.blocked is not None and await self.blocked(name):
                    reason = "creator_blocked"
        if reason is None:
            who = execution.Participant(name, kind)
            if not await self.manager.may_write(row["room"], who):
                reason = "creator_cannot_write"
        if reason is None:
            return room_access.Participant(kind, name, can_write=True)
        log.warning(
            "collab session %s (room %s) is not taken over, it ends: its creator %s (%s) %s",
            session_id,
            row["room"],
            row["created_by"],
            row["created_by_id"] or kind,
            ENDED_BECAUSE[reason],
        )
        # The kernel is gone with its dead owner; the log says why nobody restarts it.
        await self.manager.record(
            session_events.SessionEnded(session_id=session_id, reason=reason), None
        )
        await self._drop(session_id)
        return None

    async def _drop(self, session_id: uuid.UUID) -> None:
        """Forget a session taken over that does not run here (its row, if still ours)."""
        self.claimed.discard(session_id)
        with contextlib.suppress(errors.DatabaseUnavailable), sql.translated():
            async with self.pool.acquire() as conn:
                await conn.execute(
                    queries["lease_drop_ended"], self.origin, [session_id], self.incarnation
                )


ENDED_BECAUSE: dict[str, str] = {
    "creator_gone": "was deleted",
    "creator_blocked": "is blocked",
    "creator_cannot_write": "may no longer write to the room",
}

LEASES = web.AppKey("collab_leases", Leases)
