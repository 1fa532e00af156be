"""Events of shared servers (stream ``share-<owner_id>/<server_name>``): JupyterHub 5's sharing.

A *share* gives a user or a group some scopes on one server, each filtered to that server
(``access:servers!server=alice/`` by default). A *share code* carries such scopes for
whoever accepts it before it expires. The code itself never enters the log: its event names
the code's public id (``sc_N``) and the first characters of the code, as token events do.
Every event lists in ``user_ids`` the users it concerns (the server's owner, and the
recipient user), and group shares name the group in ``group_id``, so the audit API's
``!user=``/``!group=`` filters find them.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from events import models
from events.catalog.names import Name
from events.catalog.servers import SERVER_NAME_PATTERN

RecipientKind = Literal["user", "group"]
CODE_ID_PATTERN = r"^sc_[0-9]+$"

ScopeList = list[str]


class ShareEvent(models.Event):
    """Fields every share event carries: whose server, which one, and whom it concerns."""

    owner_id: UUID
    owner: Name
    server_name: str = Field(default="", max_length=255, pattern=SERVER_NAME_PATTERN)
    user_ids: list[UUID] = Field(min_length=1)


class ShareGranted(ShareEvent):
    """A user or group was given scopes on the server (added to any they already had);
    ``code_id`` names the share code they accepted, if that is how."""

    type: ClassVar[str] = "share.granted"

    recipient_kind: RecipientKind
    recipient_id: UUID
    recipient: Name
    group_id: UUID | None = None
    scopes: ScopeList = Field(min_length=1)
    code_id: str | None = Field(default=None, pattern=CODE_ID_PATTERN)


class ShareRevoked(ShareEvent):
    """Scopes were taken back from a user or group (``scopes`` empty: all of them);
    ``left`` when the recipient gave them up themself."""

    type: ClassVar[str] = "share.revoked"

    recipient_kind: RecipientKind
    recipient_id: UUID
    recipient: Name
    group_id: UUID | None = None
    scopes: ScopeList = Field(default_factory=list)
    left: bool = False


class ShareCodeCreated(ShareEvent):
    """A share code was issued. Only its id and first characters are recorded."""

    type: ClassVar[str] = "share.code_created"

    code_id: str = Field(pattern=CODE_ID_PATTERN)
    code_prefix: str = Field(min_length=1, max_length=8)
    scopes: ScopeList = Field(min_length=1)
    expires_at: datetime


class ShareCodeAccepted(ShareEvent):
    """A user exchanged a share code (the grant it gives follows as ``share.granted``)."""

    type: ClassVar[str] = "share.code_accepted"

    code_id: str = Field(pattern=CODE_ID_PATTERN)
    recipient_id: UUID
    recipient: Name


class ShareCodesRevoked(ShareEvent):
    """Share codes were revoked before they expired."""

    type: ClassVar[str] = "share.codes_revoked"

    code_ids: list[str] = Field(min_length=1)


def stream_id(owner_id: UUID, server_name: str = "") -> str:
    """The stream that holds the shares of one server."""
    return f"share-{owner_id}/{server_name}"
