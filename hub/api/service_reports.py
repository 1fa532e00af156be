"""``POST /hub/api/services/{name}/events``: a service reports what it did, into the log.

The hub's log holds what the hub did; a service's own work (the publishing service's
"published", "publish failed", "dashboard run") belongs in it too, so that the audit API, the
stream and webhooks show it beside the pushes that caused it. Only the service itself may
report, with its own token: the event's ``name`` is the token's owner, never the body's. The
body is ``{kind, subject?, data?}``: a dotted lower-case kind, what it is about, and up to 32
short scalar values, no key named like a secret (``events.catalog.services.ServiceReported``
refuses them), so no file contents and no credentials fit.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events.catalog import services as service_events
from hub import errors
from hub.auth import access
from hub.context import HUB
from hub.web import body


class Report(BaseModel):
    """The body of ``POST /services/{name}/events``."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(
        min_length=1,
        max_length=64,
        pattern=service_events.REPORT_KIND,
        description="The service's name for what happened, e.g. published, dashboard.run",
    )
    subject: str | None = Field(default=None, max_length=300, description="What it is about")
    data: dict[str, service_events.ReportValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Short scalar values (names, commits, counts, durations, one-line errors)",
    )


class Reported(BaseModel):
    """The answer: the event's id in the log, and its type."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The event's id (TX:POS), as the audit API shows it")
    type: str


async def report(request: web.Request) -> web.Response:
    """Append what the calling service reports to its own stream (``service-<name>``)."""
    name = request.match_info["name"]
    caller = access.caller_of(request)
    if caller.kind != "service" or caller.name != name:
        raise errors.Forbidden(f"only the service {name} may report its events, with its token")
    command = await body.parse(request, Report)
    try:
        event = service_events.ServiceReported(
            name=name, kind=command.kind, subject=command.subject, data=command.data
        )
    except ValueError as exc:  # the event's own rules (secret-like keys), named
        raise errors.BadRequest(_first_problem(exc)) from exc
    result = await request.app[HUB].store.append(
        service_events.stream_id(name), [event], metadata=access.event_metadata(request, caller)
    )
    recorded = result.events[0]
    reply: dict[str, Any] = {"id": str(recorded.checkpoint), "type": event.type}
    return web.json_response(reply, status=201)


def _first_problem(exc: ValueError) -> str:
    errors_of = getattr(exc, "errors", None)
    if callable(errors_of):
        problems = errors_of()
        if problems:
            first = problems[0]
            where = ".".join(str(part) for part in first["loc"])
            return f"{where}: {str(first['msg']).removeprefix('Value error, ')}"
    return str(exc)


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [web.post("/hub/api/services/{name}/events", report)]
