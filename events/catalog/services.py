"""Events of services (stream ``service-<name>``): processes the hub runs or knows beside it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from events import models


class ServiceRegistered(models.Event):
    """A service was registered, or its definition changed."""

    type: ClassVar[str] = "service.registered"

    name: str = Field(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
    admin: bool = False
    url: str | None = None


class ServiceRemoved(models.Event):
    """A service was removed."""

    type: ClassVar[str] = "service.removed"

    name: str


def stream_id(name: str) -> str:
    """The stream that holds one service's events."""
    return f"service-{name}"
