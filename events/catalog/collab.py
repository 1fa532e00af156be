"""Events of collaboration rooms (stream ``collab-<room>``): their lifecycle and participants.

Edits (CRDT updates) are not events: they are telemetry kept in collab's own tables. These
events say when a room was created, loaded into a hub process (opened), unloaded (closed) and
compacted, and who joined and left it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from events import models

ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,199}$"


class RoomEvent(models.Event):
    """Fields every room event carries: which room."""

    room: str = Field(pattern=ROOM_PATTERN)


class RoomCreated(RoomEvent):
    """A room was created; ``owner`` is the user whose room it is (none for a service's)."""

    type: ClassVar[str] = "collab.room_created"

    owner: str | None = Field(default=None, max_length=255)


class RoomOpened(RoomEvent):
    """A hub process loaded the room (from its snapshot and later updates)."""

    type: ClassVar[str] = "collab.room_opened"

    process: str = Field(min_length=1, max_length=200)
    seq: int = Field(ge=0, description="The last update sequence number loaded")


class RoomClosed(RoomEvent):
    """A hub process unloaded the room (no participant left, or the hub stopped)."""

    type: ClassVar[str] = "collab.room_closed"

    process: str = Field(min_length=1, max_length=200)
    seq: int = Field(ge=0, description="The last update sequence number the process had")


class RoomCompacted(RoomEvent):
    """Updates up to ``seq`` were merged into one snapshot and removed."""

    type: ClassVar[str] = "collab.room_compacted"

    seq: int = Field(ge=1)
    updates: int = Field(ge=1, description="How many updates the snapshot replaced")
    snapshot_bytes: int = Field(ge=0)


class ParticipantJoined(RoomEvent):
    """Someone connected to the room."""

    type: ClassVar[str] = "collab.participant_joined"

    participant: str = Field(
        min_length=1, max_length=300, description="user:<name> or service:<name>"
    )
    connection: str = Field(min_length=1, max_length=64)
    access: Literal["read", "write"]


class ParticipantLeft(RoomEvent):
    """Someone's connection to the room ended; ``reason`` says how."""

    type: ClassVar[str] = "collab.participant_left"

    participant: str = Field(min_length=1, max_length=300)
    connection: str = Field(min_length=1, max_length=64)
    reason: str = Field(max_length=200)


def stream_id(room: str) -> str:
    """The stream that holds one room's events."""
    return f"collab-{room}"
