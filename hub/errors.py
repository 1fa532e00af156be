"""The hub's typed errors, and the one middleware that turns every error into JupyterHub's shape.

JupyterHub answers errors as ``{"status": <int>, "message": <str>}`` with the same status
on the response; clients such as the idle culler read ``message``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from events import errors as event_errors
from hub import version

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HubError(Exception):
    """Base of the hub's errors; ``status`` is the HTTP status it answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    @classmethod
    def with_status(cls, status: int, message: str) -> HubError:
        """An error answering with ``status`` (for decisions made elsewhere, such as scopes)."""
        error = cls(message)
        error.status = status
        return error


class BadRequest(HubError):
    """The request is malformed; the message names the field at fault."""

    status = 400


class Forbidden(HubError):
    """No credentials, or not allowed to do this at all."""

    status = 403


class NotFound(HubError):
    """No such resource, or no access to it (JupyterHub does not tell the two apart)."""

    status = 404


class Conflict(HubError):
    """The resource changed or already exists."""

    status = 409


class Unavailable(HubError):
    """A dependency (the database) is not answering."""

    status = 503


# Errors of the event store, as the HTTP status they answer with.
_EVENT_STATUS: dict[type[event_errors.EventStoreError], int] = {
    event_errors.ConcurrencyConflict: 409,
    event_errors.IdempotencyConflict: 409,
    event_errors.PayloadTooLarge: 413,
    event_errors.InvalidEvent: 400,
    event_errors.UnknownEventType: 400,
}


def error_response(status: int, message: str) -> web.Response:
    """A JupyterHub-shaped JSON error."""
    return web.json_response({"status": status, "message": message}, status=status)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add the version header to every response; render every error as JSON."""
    try:
        if "\x00" in request.path or any("\x00" in v for v in request.query.values()):
            raise BadRequest("the URL holds a NUL character (%00), which is not allowed")
        response = await handler(request)
    except HubError as exc:
        response = error_response(exc.status, exc.message)
    except event_errors.EventStoreError as exc:
        status = next((s for cls, s in _EVENT_STATUS.items() if isinstance(exc, cls)), 500)
        response = error_response(status, str(exc))
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            exc.headers["X-JupyterHub-Version"] = version.JUPYTERHUB_API
            raise
        response = error_response(exc.status, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        response = error_response(500, "Internal server error; the hub log has the details.")
    response.headers["X-JupyterHub-Version"] = version.JUPYTERHUB_API
    return response
