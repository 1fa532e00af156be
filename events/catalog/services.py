"""Events of services (stream ``service-<name>``): processes the hub runs or knows beside it."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, field_validator

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


# --- the life of a managed service (a process the hub runs) -------------------------------
# started → ready → (exited → restarting → started …) → stopped; ``service.failed`` when the
# hub gives up restarting it (a crash loop) until the hub restarts. No token or environment
# is ever in them: the service's token is a ``token.issued`` of its own, as a hash.


class ServiceStarted(models.Event):
    """The hub started the service's process; it may not answer yet."""

    type: ClassVar[str] = "service.started"

    name: str
    pid: int = Field(gt=0)
    url: str | None = Field(default=None, max_length=2048, description="Where it listens")
    token_id: str | None = Field(
        default=None, max_length=64, description="The id (never the secret) of its token"
    )


class ServiceReady(models.Event):
    """The service answers at its URL (or, without one, its process is running)."""

    type: ClassVar[str] = "service.ready"

    name: str
    url: str | None = Field(default=None, max_length=2048)


class ServiceExited(models.Event):
    """The service's process ended without being asked to."""

    type: ClassVar[str] = "service.exited"

    name: str
    # Not "code" nor "exit_code": the registry refuses names that read as secrets (share codes).
    exit_status: int | None = Field(
        description="Its exit code (negative: the signal that ended it)"
    )
    reason: str = Field(default="", max_length=2000, description="Why, when the hub knows")


class ServiceRestarting(models.Event):
    """The service will be started again after ``delay_s`` seconds (exponential backoff)."""

    type: ClassVar[str] = "service.restarting"

    name: str
    delay_s: float = Field(ge=0)
    restarts: int = Field(ge=1, description="Its restarts since the hub started")


class ServiceFailed(models.Event):
    """The hub gave up on the service (a crash loop): no restart until the hub restarts."""

    type: ClassVar[str] = "service.failed"

    name: str
    reason: str = Field(min_length=1, max_length=2000)


class ServiceStopped(models.Event):
    """The service's process is gone after the hub stopped it (at the hub's shutdown)."""

    type: ClassVar[str] = "service.stopped"

    name: str
    forced: bool = Field(default=False, description="SIGKILL was needed: it ignored SIGTERM")


# --- what a service says it did --------------------------------------------------------------
# A service appends to its own stream through POST /hub/api/services/<name>/events (the name
# from its token, never from the body): the publishing service's "published", "publish
# failed", "dashboard run". Figures and names only: a key named like a secret is refused, as
# for every event's fields, and values are short scalars, so no file contents fit.

REPORT_KIND = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
REPORT_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
ReportValue = Annotated[str, StringConstraints(max_length=2000)] | int | float | bool | None


class ServiceReported(models.Event):
    """A service reported something it did; ``kind`` is its own name for it (``published``)."""

    type: ClassVar[str] = "service.reported"

    name: str = Field(min_length=1, max_length=255)
    kind: str = Field(min_length=1, max_length=64, pattern=REPORT_KIND)
    subject: str | None = Field(
        default=None, max_length=300, description="What it is about, e.g. a project: alice/lab"
    )
    data: dict[str, ReportValue] = Field(default_factory=dict, max_length=32)

    @field_validator("data")
    @classmethod
    def _keys_are_names_not_secrets(cls, data: dict[str, ReportValue]) -> dict[str, ReportValue]:
        for key in data:
            if not REPORT_KEY.fullmatch(key):
                raise ValueError(
                    f"data key {key!r} must be a lowercase name (a-z, 0-9, _; at most 64)"
                )
            if models.SECRET_FIELD.search(key):
                raise ValueError(
                    f"data key {key!r} is named like a secret, which may not enter the event log"
                )
        return data
