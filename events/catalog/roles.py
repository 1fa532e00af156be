"""Events of roles (stream ``role-<name>``): named sets of scopes, granted to principals."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from events import models

PrincipalKind = Literal["user", "group", "service"]


class RoleDefined(models.Event):
    """A role was defined, or its description or scopes changed."""

    type: ClassVar[str] = "role.defined"

    name: str
    description: str = ""
    scopes: list[str]


class RoleRemoved(models.Event):
    """A role was removed, with all its grants."""

    type: ClassVar[str] = "role.removed"

    name: str


class RoleGranted(models.Event):
    """A role was granted to a user (by id), a group (by id) or a service (by name)."""

    type: ClassVar[str] = "role.granted"

    role: str
    principal_kind: PrincipalKind
    principal: str = Field(min_length=1)
    principal_name: str


class RoleRevoked(models.Event):
    """A role was taken back from a principal."""

    type: ClassVar[str] = "role.revoked"

    role: str
    principal_kind: PrincipalKind
    principal: str = Field(min_length=1)
    principal_name: str


def stream_id(name: str) -> str:
    """The stream that holds one role's events."""
    return f"role-{name}"
