"""Server-rendered HTML pages: one jinja2 environment (autoescaping on), the hub's page shape,
and the rule for ``next`` redirects (only to this hub)."""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

DEFAULT_NEXT = "/hub/home"
# A path on this hub: starts with one slash (not '//' nor '/\', which browsers read as
# another host), no control characters or backslashes anywhere.
_LOCAL_PATH = re.compile(r"^/(?![/\\])[^\x00-\x20\x7f\\]*$")


@functools.cache
def environment() -> jinja2.Environment:
    """The templates in ``hub/templates``, HTML-escaped by default."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hub", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )


def render(template: str, *, status: int = 200, **context: Any) -> web.Response:
    """A page from ``template``; ``user``, ``error`` and ``notice`` are optional."""
    context.setdefault("user", None)
    context.setdefault("error", None)
    context.setdefault("notice", None)
    html = environment().get_template(template).render(**context)
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"  # no clickjacking of login or consent
    return response


def redirect(location: str) -> web.Response:
    """A 302 to ``location`` that cookies can be set on (aiohttp wants exceptions raised)."""
    return web.Response(status=302, headers={"Location": location})


def error_page(status: int, message: str, *, user: str | None = None) -> web.Response:
    """An HTML error page (for browsers; the API answers JSON)."""
    reason = _REASONS.get(status, "Error")
    return render("error.html", status=status, code=status, reason=reason, error=message, user=user)


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests"}


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
