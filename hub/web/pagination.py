"""JupyterHub's pagination: ``offset``/``limit`` and the ``jupyterhub-pagination+json`` reply.

A client opts in with ``Accept: application/jupyterhub-pagination+json``; it then gets
``{"items": [...], "_pagination": {"offset", "limit", "total", "next"}}``, where
``next.url`` is the absolute request URL with offset and limit replaced (the idle culler
follows it verbatim). Without the header the reply is a bare list of at most the maximum
page size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from yarl import URL

from hub import errors

MEDIA_TYPE = "application/jupyterhub-pagination+json"

T = TypeVar("T", int, None)


@dataclass(frozen=True)
class Page:
    """The page a request asks for."""

    offset: int
    limit: int
    paginated: bool


def wants_pagination(request: web.Request) -> bool:
    """Whether the client sent the pagination media type in ``Accept``."""
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip() == MEDIA_TYPE for part in accept.split(","))


def parse(request: web.Request, *, default_limit: int, max_limit: int) -> Page:
    """Read ``offset`` and ``limit`` from the query; 400 naming the parameter if malformed."""
    paginated = wants_pagination(request)
    offset = non_negative(request.query, "offset", 0)
    limit = non_negative(request.query, "limit", default_limit if paginated else max_limit)
    if limit == 0:
        limit = default_limit
    return Page(offset=offset, limit=min(limit, max_limit), paginated=paginated)


def non_negative(query: Mapping[str, str], name: str, default: T) -> int | T:
    """The query parameter ``name`` as an integer >= 0, ``default`` if absent; else 400."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise errors.BadRequest(f"{name} must be a non-negative integer, got {raw!r}") from exc
    if value < 0:
        raise errors.BadRequest(f"{name} must be a non-negative integer, got {raw!r}")
    return value


def reply(
    request: web.Request,
    page: Page,
    items: list[Any] | dict[str, Any],
    total: int,
    public_url: str | None,
) -> Any:
    """The JSON body: paginated when asked for, else the bare list."""
    if not page.paginated:
        return items
    return {"items": items, "_pagination": _meta(request, page, len(items), total, public_url)}


def reply_encoded(
    request: web.Request,
    page: Page,
    items: bytes,
    count: int,
    total: int,
    public_url: str | None,
) -> bytes:
    """``reply``'s body, encoded, around ``items``: a JSON array already encoded (by the
    database, as UTF-8) of ``count`` items, passed on as it is."""
    if not page.paginated:
        return items
    meta = json.dumps(_meta(request, page, count, total, public_url)).encode()
    return b'{"items": ' + items + b', "_pagination": ' + meta + b"}"


def _meta(
    request: web.Request, page: Page, count: int, total: int, public_url: str | None
) -> dict[str, Any]:
    next_page = None
    if page.offset + count < total:
        next_offset = page.offset + page.limit
        url = _absolute(request, public_url).update_query(
            offset=str(next_offset), limit=str(page.limit)
        )
        next_page = {"offset": next_offset, "limit": page.limit, "url": str(url)}
    return {"offset": page.offset, "limit": page.limit, "total": total, "next": next_page}


def _absolute(request: web.Request, public_url: str | None) -> URL:
    if public_url:
        base = URL(public_url)
        return base.with_path(request.rel_url.path).with_query(request.rel_url.query)
    return request.url
