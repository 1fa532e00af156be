"""The hub's typed errors, and the one middleware that turns every error into JupyterHub's shape.

JupyterHub answers errors as ``{"status": <int>, "message": <str>}`` with the same status
on the response; clients such as the idle culler read ``message``.

Handlers do not translate errors: they let typed errors rise. A ``HubError`` (the spawner's
errors are ones) carries its status; the typed errors of the packages below the hub (the
event store's, collab's) are mapped here, in ``_STATUS``; a database that cannot serve answers
503, whether the error came through the store (``DatabaseUnavailable``) or from a connection a
handler borrowed from the pool. Anything else is a bug: 500, with its traceback in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from collab import errors as collab_errors
from collab import session_errors
from events import errors as event_errors
from events import sql
from hub import database_watch, version

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HubError(Exception):
    """Base of the hub's errors; ``status`` is the HTTP status it answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    @property
    def reply(self) -> str:
        """The message the client reads (``message`` unless a subclass says more)."""
        return self.message

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer carries (none unless a subclass says so)."""
        return {}

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


class Busy(HubError):
    """A costly piece of work is already under way, or took too long: try again later (503,
    with ``Retry-After``)."""

    status = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


# Typed errors of the packages below the hub, as the HTTP status they answer with: the first
# class that matches wins, so a subclass comes before its base.
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (event_errors.ConcurrencyConflict, 409),
    (event_errors.IdempotencyConflict, 409),
    (event_errors.PayloadTooLarge, 413),
    (event_errors.InvalidEvent, 400),
    (event_errors.UnknownEventType, 400),
    # shared execution sessions
    (session_errors.NotFound, 404),
    (session_errors.Forbidden, 403),
    (session_errors.KernelRefused, 403),
    (session_errors.SessionClosed, 409),
    (session_errors.RoomBusy, 409),
    (session_errors.Unavailable, 503),
    (session_errors.KernelError, 503),
    (session_errors.SessionError, 400),
    (collab_errors.InvalidRoomName, 400),
)

DATABASE_UNAVAILABLE = "The hub's database does not answer; try again shortly."

# How an HTML page for a browser is rendered (``hub.web.html.error_page``, set by hub/app.py:
# the web layer sits above this module). Without it, every error answers JSON.
ErrorPage = Callable[[int, str], web.Response]
ERROR_PAGE: web.AppKey[ErrorPage] = web.AppKey("error_page")


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
        response = error_response(exc.status, exc.reply)
        response.headers.update(exc.headers)
    except web.HTTPException as exc:
        if exc.empty_body or exc.status < 400:
            exc.headers["X-JupyterHub-Version"] = version.JUPYTERHUB_API
            raise
        response = error_response(exc.status, exc.reason)
    except Exception as exc:  # noqa: BLE001 - every error is answered; _translate logs bugs
        response = _translate(request, exc)
    response.headers["X-JupyterHub-Version"] = version.JUPYTERHUB_API
    return response


def status_of(exc: Exception) -> int | None:
    """The HTTP status a typed error of a lower package answers with (None: not one); pages
    that catch such errors render them with it."""
    return next((s for cls, s in _STATUS if isinstance(exc, cls)), None)


def _translate(request: web.Request, exc: Exception) -> web.Response:
    """The answer to an error that is not a ``HubError``: a typed error of a lower package,
    the database unable to serve, or (anything else) a bug."""
    # A handler's own OSError may be a file's: only the store's connections say "database".
    database = sql.unavailable(exc, os_errors=False)
    if database is not None:
        return _unavailable(request, database)
    status = status_of(exc)
    if status is not None:
        return error_response(status, str(exc))
    log.exception("unhandled error in %s %s", request.method, request.path)
    return error_response(500, "Internal server error; the hub log has the details.")


def _unavailable(request: web.Request, error: event_errors.DatabaseUnavailable) -> web.Response:
    """503 with ``Retry-After``: JSON for the API and other clients, the error page for a
    browser's page. The outage is logged once (by the database watch), not per request."""
    watch = request.app.get(database_watch.WATCH)
    if watch is not None:
        watch.failed(error)
    else:
        log.warning("%s %s: the database cannot serve: %s", request.method, request.path, error)
    page = request.app.get(ERROR_PAGE)
    if page is not None and _wants_page(request):
        response = page(503, DATABASE_UNAVAILABLE)
    else:
        response = error_response(503, DATABASE_UNAVAILABLE)
    response.headers["Retry-After"] = str(database_watch.RETRY_AFTER_S)
    return response


def _wants_page(request: web.Request) -> bool:
    """A browser asking for a page (not the API, git or a script that accepts JSON)."""
    if request.path.startswith(("/hub/api/", "/hub/git/")):
        return False
    return "text/html" in request.headers.get("Accept", "")
