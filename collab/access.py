"""What collab needs of the hub, as a protocol: who is connecting, and may they read or write.

``hub/app.py`` hands an implementation (``hub/auth/collab_access.py``) to the collab server, so
collab never imports the hub. The server passes what the upgrade request carried
(``Handshake``) and what it knows of the room (``RoomInfo``); the gatekeeper answers with a
``Participant`` or raises ``errors.ConnectionRefused`` with a close code and a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Handshake:
    """The credentials an upgrade request may carry: headers, query string, cookies."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    cookies: Mapping[str, str]
    remote: str | None = None


@dataclass(frozen=True)
class RoomInfo:
    """A room as the gatekeeper sees it: its name, and its owner if it exists and has one."""

    name: str
    exists: bool
    owner: str | None = None


@dataclass(frozen=True)
class Participant:
    """Someone admitted to a room, and whether they may change the document."""

    kind: Literal["user", "service", "system"]
    name: str
    can_write: bool

    @property
    def label(self) -> str:
        """``user:<name>``, ``service:<name>`` or ``system:<name>``: the author of updates."""
        return f"{self.kind}:{self.name}"

    @property
    def owner_name(self) -> str | None:
        """The user a room this participant creates belongs to (none for a service)."""
        return self.name if self.kind == "user" else None


SYSTEM = Participant("system", "chronohub", can_write=True)


def author(label: str) -> Participant:
    """The participant an update's stored author label (``kind:name``) names."""
    kind, _, name = label.partition(":")
    if kind == "user":
        return Participant("user", name, can_write=True)
    if kind == "service":
        return Participant("service", name, can_write=True)
    return Participant("system", name or label, can_write=True)


class Gatekeeper(Protocol):
    """Decides who may join a room, and how."""

    async def admit(self, handshake: Handshake, room: RoomInfo) -> Participant:
        """The participant the handshake authenticates, if they may at least read ``room``.

        Raises ``errors.ConnectionRefused`` (4401 no or bad credentials, 4403 no collab scope,
        4404 a scope held but not on this room) otherwise.
        """
        ...
