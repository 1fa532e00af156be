"""Events of shared execution sessions (stream ``collab_session-<session_id>``).

A session is a collaboration room holding a notebook and one kernel that every participant
with write access runs cells in. The log says who asked to run which cell, when, and how it
ended, and what happened to the kernel. It never holds a cell's source or its outputs: those
live in the room's document (and its own update table), not in the immutable, exported log.

A session's life: created → kernel started → (execution requested → finished)* with
interrupts and restarts in between → kernel shut down → ended.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from events import models
from events.catalog.names import Name

# Cell ids are nbformat's (1-64 of letters, digits, '-' and '_'); older documents may carry
# JupyterLab's uuid4 strings, which match too.
CELL_ID_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
ROOM_PATTERN = r"^[^\s\x00-\x1f\x7f]{1,255}$"

ExecutionStatus = Literal["ok", "error", "aborted"]
Via = Literal["document", "api"]


class SessionEvent(models.Event):
    """Fields every session event carries: which session."""

    session_id: UUID


class SessionCreated(SessionEvent):
    """A session was opened on a room; its kernel is about to start."""

    type: ClassVar[str] = "collab_session.created"

    room: str = Field(pattern=ROOM_PATTERN)
    kernel_name: str = Field(min_length=1, max_length=255)
    created_by: Name
    # Everyone who may write to the room runs code as this account: the creator's own system
    # account, or the hub's in single-user mode. Absent from sessions recorded before it was.
    runs_as: str | None = Field(default=None, min_length=1, max_length=64)
    # Another hub process started the session again (a new kernel on the same room and
    # document) because the one that ran it died: its lease on the session expired.
    taken_over: bool = False


# Why a session ended: deleted (``shutdown``), nobody in its room (``idle``), its kernel did
# not start (``kernel_failed``); or its hub process died and another did not take it over,
# because its creator was deleted (``creator_gone``), is blocked (``creator_blocked``) or may
# no longer write to its room (``creator_cannot_write``): its kernel would run as them.
EndReason = Literal[
    "shutdown", "idle", "kernel_failed", "creator_gone", "creator_blocked", "creator_cannot_write"
]


class SessionEnded(SessionEvent):
    """The session is over: its kernel is gone and it takes no more requests."""

    type: ClassVar[str] = "collab_session.ended"

    reason: EndReason


class KernelStarted(SessionEvent):
    """The session's kernel started and answered."""

    type: ClassVar[str] = "collab_session.kernel_started"

    kernel_name: str = Field(min_length=1, max_length=255)


class KernelInterrupted(SessionEvent):
    """Somebody interrupted what the kernel was running."""

    type: ClassVar[str] = "collab_session.kernel_interrupted"

    by: Name


class KernelRestarted(SessionEvent):
    """Somebody restarted the kernel; its state is gone and queued requests were aborted."""

    type: ClassVar[str] = "collab_session.kernel_restarted"

    by: Name
    aborted_requests: int = Field(ge=0)


class KernelShutDown(SessionEvent):
    """The kernel process was stopped."""

    type: ClassVar[str] = "collab_session.kernel_shut_down"


class ExecutionRequested(SessionEvent):
    """A participant with write access asked to run a cell; the request is queued."""

    type: ClassVar[str] = "collab_session.execution_requested"

    request_id: str = Field(min_length=1, max_length=64)
    cell_id: str = Field(pattern=CELL_ID_PATTERN)
    requester: Name
    via: Via


class ExecutionRefused(SessionEvent):
    """A request to run a cell was refused (no write access, no such cell, not code…)."""

    type: ClassVar[str] = "collab_session.execution_refused"

    request_id: str = Field(min_length=1, max_length=64)
    cell_id: str = Field(max_length=255)
    requester: str = Field(max_length=255)
    via: Via
    reason: str = Field(min_length=1, max_length=500)


class ExecutionFinished(SessionEvent):
    """A requested cell ran to its end (``ok``), raised (``error``) or never ran (``aborted``)."""

    type: ClassVar[str] = "collab_session.execution_finished"

    request_id: str = Field(min_length=1, max_length=64)
    cell_id: str = Field(pattern=CELL_ID_PATTERN)
    status: ExecutionStatus
    execution_count: int | None = Field(default=None, ge=0)
    duration_ms: int = Field(ge=0)


def stream_id(session_id: UUID) -> str:
    """The stream that holds one session's events."""
    return f"collab_session-{session_id}"
