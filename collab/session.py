"""A shared execution session: one notebook document, one kernel, one executor.

The hub creates a ``Session`` on the room's document, tells it when participants join and
leave, and calls ``execute``, ``interrupt``, ``restart`` and ``shutdown`` for its REST
endpoints. When the last participant has left (or nobody came), the session shuts itself
down after ``grace_period`` seconds, unless somebody joins in between; ``on_ended`` then
tells the hub to forget it. Every step is recorded through ``record``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from pycrdt import Doc

from collab import execution
from collab import kernel as kernels
from collab import session_errors as errors
from events import tasks
from events.catalog import collab_sessions as session_events

log = logging.getLogger(__name__)

SessionState = Literal["new", "running", "ending", "ended"]
EndReason = Literal["shutdown", "idle", "kernel_failed"]


@dataclass(frozen=True)
class Status:
    """What a session is doing now (for the REST API's reply about a session)."""

    session_id: UUID
    room: str
    state: SessionState
    kernel_state: kernels.KernelState
    running_cell: str | None
    queued: int
    participants: int


class Session:
    """A notebook document, its kernel and its executor, with a lifecycle and a grace timer."""

    def __init__(
        self,
        session_id: UUID,
        doc: Doc[Any],
        *,
        room: str,
        created_by: execution.Participant,
        may_write: execution.MayWrite,
        record: execution.Recorder,
        identify: execution.Identify = execution.identify_by_name,
        kernel: kernels.SharedKernel | None = None,
        grace_period: float = 60.0,
        max_output_chars: int = 2_000_000,
        on_ended: Callable[[Session], None] | None = None,
        taken_over: bool = False,
    ) -> None:
        self.session_id = session_id
        self.taken_over = taken_over  # started again here: its earlier process died
        self.doc = doc
        self.room = room
        self.created_by = created_by
        self.may_write = may_write
        self.record = record
        self.kernel = kernel or kernels.SharedKernel()
        self.executor = execution.Executor(
            session_id,
            doc,
            self.kernel,
            may_write=may_write,
            record=record,
            identify=identify,
            max_output_chars=max_output_chars,
        )
        self.grace_period = grace_period
        self.on_ended = on_ended
        self.state: SessionState = "new"
        self.ended = asyncio.Event()
        self._participants: set[Hashable] = set()
        # the grace timer: nobody left for grace_period seconds ends the session
        self._tasks = tasks.TaskOwner("session", logger=log)
        self._grace: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Session:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Record the session, start its kernel and begin taking requests.

        Raises ``KernelStartFailed`` (the session is then ended).
        """
        if self.state != "new":
            raise errors.Unavailable(f"the session is {self.state}; it cannot start again")
        await self.record(
            session_events.SessionCreated(
                session_id=self.session_id,
                room=self.room,
                kernel_name=self.kernel.kernel_name,
                created_by=self.created_by.name,
                runs_as=self.kernel.account,
                taken_over=self.taken_over,
            ),
            self.created_by,
        )
        try:
            await self.kernel.start()
        except errors.KernelError:
            self.state = "ended"
            try:
                await self._record_end("kernel_failed")
            finally:
                self.ended.set()
                if self.on_ended is not None:
                    self.on_ended(self)
            raise
        await self.record(
            session_events.KernelStarted(
                session_id=self.session_id, kernel_name=self.kernel.kernel_name
            ),
            None,
        )
        self.executor.start()
        self.state = "running"
        if not self._participants:
            self._arm_grace_timer()  # nobody came yet: do not keep a kernel for nobody

    async def shutdown(self, reason: EndReason = "shutdown") -> None:
        """Stop taking requests, abort what is queued, stop the kernel; safe to call twice."""
        if self.state in ("ending", "ended"):
            await self.ended.wait()
            return
        was_running = self.state == "running"
        self.state = "ending"
        self._disarm_grace_timer()
        try:
            await self.executor.stop()
            await self.kernel.shutdown()
            if was_running:
                await self.record(session_events.KernelShutDown(session_id=self.session_id), None)
                await self._record_end(reason)
        finally:
            self.state = "ended"
            self.ended.set()
            if self.on_ended is not None:
                self.on_ended(self)

    async def abandon(self) -> None:
        """Stop the executor and the kernel and record nothing: another hub process took the
        session over (this one lost its lease) and runs it on; the session has not ended."""
        if self.state in ("ending", "ended"):
            await self.ended.wait()
            return
        self.state = "ending"
        self._disarm_grace_timer()
        try:
            await self.executor.abandon()
            await self.kernel.shutdown()
        finally:
            self.state = "ended"
            self.ended.set()
            if self.on_ended is not None:
                self.on_ended(self)

    async def _record_end(self, reason: EndReason) -> None:
        await self.record(
            session_events.SessionEnded(session_id=self.session_id, reason=reason), None
        )

    def status(self) -> Status:
        """A snapshot of the session's state."""
        current = self.executor.current
        return Status(
            session_id=self.session_id,
            room=self.room,
            state=self.state,
            kernel_state=self.kernel.state,
            running_cell=current.cell_id if current else None,
            queued=self.executor.queued,
            participants=len(self._participants),
        )

    # --- participants and the grace period -----------------------------------------------

    @property
    def participants(self) -> int:
        """How many participants are connected now."""
        return len(self._participants)

    def participant_joined(self, key: Hashable) -> None:
        """A participant connected (``key`` names the connection); cancels a pending shutdown."""
        self._participants.add(key)
        self._disarm_grace_timer()

    def participant_left(self, key: Hashable) -> None:
        """A participant disconnected; the last one leaving arms the grace timer."""
        self._participants.discard(key)
        if not self._participants and self.state == "running":
            self._arm_grace_timer()

    def _arm_grace_timer(self) -> None:
        if self._grace is None:
            self._grace = self._tasks.start(self._expire(), f"session-grace-{self.session_id}")

    def _disarm_grace_timer(self) -> None:
        grace, self._grace = self._grace, None
        if grace is not None and grace is not asyncio.current_task():
            grace.cancel()

    async def _expire(self) -> None:
        await asyncio.sleep(self.grace_period)
        log.info("session %s: nobody for %gs, shutting down", self.session_id, self.grace_period)
        self._grace = None  # this task ends the session; shutdown must not cancel it
        # The kernel is stopped even if recording the end fails; the task's owner logs that.
        await self.shutdown("idle")

    # --- what participants do ------------------------------------------------------------

    async def execute(
        self, cell_id: str, requester: execution.Participant, *, request_id: str | None = None
    ) -> execution.ExecutionRequest:
        """Queue a cell to run (the REST endpoint's call); see ``Executor.submit``."""
        self._check_running()
        return await self.executor.submit(cell_id, requester, request_id=request_id)

    async def interrupt(self, by: execution.Participant) -> None:
        """Interrupt the running cell (queued ones still run). Raises ``Forbidden``."""
        self._check_running()
        await self._check_may_write(by, "interrupt the kernel")
        await self.kernel.interrupt()
        await self.record(
            session_events.KernelInterrupted(session_id=self.session_id, by=by.name), by
        )

    async def restart(self, by: execution.Participant) -> int:
        """Restart the kernel: the running and the queued requests end as ``aborted``.

        Returns how many queued requests were aborted. Raises ``Forbidden``.
        """
        self._check_running()
        await self._check_may_write(by, "restart the kernel")
        aborted = await self.executor.abort_queued("the kernel was restarted")
        await self.kernel.restart()
        await self.record(
            session_events.KernelRestarted(
                session_id=self.session_id, by=by.name, aborted_requests=aborted
            ),
            by,
        )
        return aborted

    def _check_running(self) -> None:
        if self.state != "running":
            raise errors.SessionClosed(f"the session is {self.state}")

    async def _check_may_write(self, who: execution.Participant, action: str) -> None:
        if not await self.may_write(who):
            raise errors.Forbidden(who.name, action)
