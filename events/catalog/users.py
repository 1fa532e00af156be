"""Events of the user aggregate (stream ``user-<user_id>``)."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from events import models
from events.catalog.names import Name


class UserCreated(models.Event):
    """A user account was created."""

    type: ClassVar[str] = "user.created"

    user_id: UUID
    name: Name
    admin: bool = False


class UserRenamed(models.Event):
    """A user was given a new name."""

    type: ClassVar[str] = "user.renamed"

    user_id: UUID
    old_name: Name
    name: Name


class UserAdminChanged(models.Event):
    """A user was made an administrator, or stopped being one."""

    type: ClassVar[str] = "user.admin_changed"

    user_id: UUID
    admin: bool


class UserDeleted(models.Event):
    """A user account was deleted."""

    type: ClassVar[str] = "user.deleted"

    user_id: UUID
    name: Name


def stream_id(user_id: UUID) -> str:
    """The stream that holds one user's events."""
    return f"user-{user_id}"
