"""Server-rendered HTML pages: one jinja2 environment (autoescaping on), the hub's page shape
(one layout with a navigation bar, one stylesheet, a favicon), the ``when`` filter for times,
and the rule for ``next`` redirects (only to this hub)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import markupsafe
from aiohttp import web

from hub import version

DEFAULT_NEXT = "/hub/home"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/hub/static"
FAVICON = "favicon.svg"
# The files under /hub/static change only with a release: the layout links them with
# ?v=<version>, so browsers may keep them for a long time and still see a new release's.
STATIC_MAX_AGE_S = 7 * 86400
# The front-end bundle's files (frontend/, built into static/app/) are named by their content's
# hash (esbuild's "[name]-[hash]"): a year, immutable.
IMMUTABLE_MAX_AGE_S = 365 * 86400
HASHED_BUNDLE = re.compile(r"^/hub/static/app/[A-Za-z0-9_]+-[A-Z0-9]{8}\.(?:js|css)$")
# A path on this hub: starts with one slash (not '//' nor '/\', which browsers read as
# another host), no control characters or backslashes anywhere.
_LOCAL_PATH = re.compile(r"^/(?![/\\])[^\x00-\x20\x7f\\]*$")


@dataclass(frozen=True)
class Link:
    """A link of the navigation bar."""

    label: str
    href: str


@dataclass(frozen=True)
class Nav:
    """What the navigation bar shows: who is signed in (None: nobody), whether they may open
    the admin pages and the audit timeline, the token its sign-out form carries (None: a link
    to the sign-out page instead), the page it is on, and the services and projects to link
    to (none yet)."""

    user: str | None = None
    admin: bool = False
    events: bool = False
    xsrf: str | None = None
    here: str = ""
    services: list[Link] = field(default_factory=list)
    projects: list[Link] = field(default_factory=list)


# --- times ----------------------------------------------------------------------------------

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR
# Coarsest unit first: an age is said in the largest unit it holds at least once.
_UNITS = (
    (365 * _DAY, "year", "years"),
    (30 * _DAY, "month", "months"),
    (_DAY, "day", "days"),
    (_HOUR, "h", "h"),
    (_MINUTE, "min", "min"),
)


def age(then: datetime, now: datetime) -> str:
    """``then`` relative to ``now`` in words: "just now", "3 min ago", "2 days ago", "in 1 h"."""
    seconds = int((now - then).total_seconds())
    span = abs(seconds)
    if span < _MINUTE:
        return "just now"
    for size, one, many in _UNITS:
        if span >= size:
            count = span // size
            words = f"{count} {one if count == 1 else many}"
            return f"{words} ago" if seconds > 0 else f"in {words}"
    raise AssertionError("unreachable: a span of a minute or more has a unit")


def iso(value: datetime) -> str:
    """``value`` in ISO 8601, UTC, to the second, with a ``Z`` (as the REST API writes it)."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def when(
    value: datetime | str | None, now: datetime, *, missing: str = "never"
) -> markupsafe.Markup:
    """A ``<time>`` element: the date and time (UTC: without JavaScript the browser's zone is
    unknown) and the age, with the exact ISO time on hover. ``missing`` for None."""
    if value is None or value == "":
        return markupsafe.Markup("{}").format(missing)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:  # the database hands out aware values; be safe with others
        value = value.replace(tzinfo=UTC)
    exact = iso(value)
    shown = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return markupsafe.Markup(
        '<time datetime="{0}" title="{0}">{1} <span class="age">({2})</span></time>'
    ).format(exact, shown, age(value, now))


def _when_now(value: datetime | str | None, missing: str = "never") -> markupsafe.Markup:
    return when(value, datetime.now(UTC), missing=missing)


# --- server status --------------------------------------------------------------------------

# A server's state as one of four badges; "running" means ready for its user.
_STATUS = {
    "ready": "running",
    "spawning": "pending",
    "started": "pending",
    "stopping": "pending",
    "failed": "failed",
}


def badge(state: str | None) -> str:
    """The badge of a server ``state``: running, pending, failed or stopped."""
    return _STATUS.get(state or "", "stopped")


# --- rendering ------------------------------------------------------------------------------


@functools.cache
def environment() -> jinja2.Environment:
    """The templates in ``hub/web/templates``, HTML-escaped by default."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hub.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when_now
    env.filters["badge"] = badge
    env.globals["static_version"] = version.CHRONOHUB
    return env


def render(template: str, *, status: int = 200, **context: Any) -> web.Response:
    """A page from ``template``; ``user``, ``error``, ``notice`` and ``nav`` are optional
    (without ``nav`` the bar shows ``user`` and a link to the sign-out page)."""
    context.setdefault("user", None)
    context.setdefault("error", None)
    context.setdefault("notice", None)
    context.setdefault("nav", Nav(user=context["user"]))
    html = environment().get_template(template).render(**context)
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"  # no clickjacking of login or consent
    return response


def redirect(location: str) -> web.Response:
    """A 302 to ``location`` that cookies can be set on (aiohttp wants exceptions raised)."""
    return web.Response(status=302, headers={"Location": location})


def error_page(status: int, message: str, *, user: str | None = None) -> web.Response:
    """An HTML error page (for browsers; the API answers JSON). ``identity.error_page`` adds
    the signed-in user's navigation bar."""
    return render(
        "error.html", status=status, code=status, reason=reason(status), error=message, user=user
    )


def reason(status: int) -> str:
    """The words of an error ``status`` for its page's heading."""
    return _REASONS.get(status, "Error")


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def safe_next(request: web.Request, value: str | None) -> str:
    """``value`` if it leads to this hub (a local path, or a URL of this very origin),
    else the home page: ``next`` can never send someone to another site."""
    if not value:
        return DEFAULT_NEXT
    if _LOCAL_PATH.match(value):
        return value
    parts = urlsplit(value)
    if (
        parts.scheme in ("http", "https")
        and parts.netloc == request.host
        and parts.scheme == request.scheme
    ):
        local = parts.path + (f"?{parts.query}" if parts.query else "")
        if _LOCAL_PATH.match(local):
            return local
    return DEFAULT_NEXT


# --- static files ---------------------------------------------------------------------------


async def favicon(request: web.Request) -> web.StreamResponse:
    """``/favicon.ico`` and ``/hub/favicon.ico``: browsers ask there; the icon is an SVG."""
    raise web.HTTPMovedPermanently(f"{STATIC_PREFIX}/{FAVICON}?v={version.CHRONOHUB}")


async def _cache_static(request: web.Request, response: web.StreamResponse) -> None:
    """Let browsers keep the stylesheet and icon (the layout's links carry the version), and
    the front-end bundle's content-hashed files for good (a new build has new names)."""
    if request.path.startswith(STATIC_PREFIX + "/") and response.status == 200:
        if HASHED_BUNDLE.match(request.path):
            response.headers["Cache-Control"] = f"public, max-age={IMMUTABLE_MAX_AGE_S}, immutable"
        elif request.path.startswith(STATIC_PREFIX + "/app/"):
            response.headers["Cache-Control"] = "no-cache"  # the manifest, its licence notes
        else:
            response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_S}"


def install(app: web.Application) -> None:
    """Serve ``hub/static`` at ``/hub/static/`` (anonymously: the login page needs it) and
    the favicon where browsers look for it."""
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, append_version=False)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/hub/favicon.ico", favicon)
    app.on_response_prepare.append(_cache_static)
