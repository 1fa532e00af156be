"""Events of the group (team) aggregate (stream ``group-<group_id>``).

Membership changes name the users both by id and by their name at the time, so "who was
in team X on date D" can be answered from the log alone.
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from pydantic import Field

from events import models
from events.catalog.names import Name


class GroupCreated(models.Event):
    """A group was created."""

    type: ClassVar[str] = "group.created"

    group_id: UUID
    name: Name
    properties: dict[str, Any] = Field(default_factory=dict)


class GroupDeleted(models.Event):
    """A group was deleted (its memberships end with it)."""

    type: ClassVar[str] = "group.deleted"

    group_id: UUID
    name: Name


class GroupMembersAdded(models.Event):
    """Users joined a group."""

    type: ClassVar[str] = "group.members_added"

    group_id: UUID
    user_ids: list[UUID] = Field(min_length=1)
    users: list[Name] = Field(min_length=1)


class GroupMembersRemoved(models.Event):
    """Users left a group."""

    type: ClassVar[str] = "group.members_removed"

    group_id: UUID
    user_ids: list[UUID] = Field(min_length=1)
    users: list[Name] = Field(min_length=1)


class GroupPropertiesSet(models.Event):
    """A group's properties were replaced."""

    type: ClassVar[str] = "group.properties_set"

    group_id: UUID
    properties: dict[str, Any]


def stream_id(group_id: UUID) -> str:
    """The stream that holds one group's events."""
    return f"group-{group_id}"
