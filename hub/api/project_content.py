"""``/hub/api/projects/{owner}/{name}/…``: a project's content without a clone.

``refs``, ``commits?ref=&path=`` (paginated), ``tree/{ref}/{path}`` (``tree/{ref}/`` for the
root, ``?recursive=true`` for everything below), ``raw/{ref}/{path}`` (the file's bytes) and
``compare/{base}...{head}``. Reading needs the read role on the project, decided by
``hub.projects.access`` as for the project itself; a caller who may not read it is answered
404 as if it did not exist. The reading is done in the git thread pool
(``hub.projects.browse``).

``raw`` is served from the hub's own origin, where a browser holds its user's login cookie,
so what it sends must never run there: every reply carries ``X-Content-Type-Options:
nosniff`` and a ``Content-Security-Policy`` of ``sandbox`` with nothing allowed, and files a
browser would render as a document (HTML, SVG, XML) are attachments, never shown inline.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from events import sql
from hub import errors
from hub.api import models as api_models
from hub.auth import access
from hub.context import HUB
from hub.projects import access as project_access
from hub.projects import browse, diffs, push, storage
from hub.web import pagination

T = TypeVar("T")


# --- replies, for the OpenAPI document (the tests check real replies against them) ------------


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectRef(_Reply):
    """A branch or tag; ``commit`` is where it leads (a tag peeled; null: not to a commit)."""

    name: str
    ref: str
    type: Literal["branch", "tag"]
    sha: str
    commit: str | None
    default: bool


class Person(_Reply):
    """A commit's author or committer; ``date`` in ISO 8601 with their time zone."""

    name: str
    email: str
    date: str


class ProjectCommit(_Reply):
    """A commit."""

    sha: str
    parents: list[str]
    tree: str
    author: Person
    committer: Person
    message: str


class ProjectCommitPage(_Reply):
    """``GET …/commits`` with the pagination media type."""

    items: list[ProjectCommit]
    pagination: api_models.Pagination = Field(alias="_pagination")


class TreeEntry(_Reply):
    """An entry of a directory; ``size`` in bytes for files and symlinks, else null."""

    name: str
    path: str
    type: browse.EntryType
    mode: str
    size: int | None
    sha: str


class ProjectTree(_Reply):
    """``GET …/tree/{ref}/{path}``."""

    ref: str
    commit: str
    path: str
    sha: str
    entries: list[TreeEntry]


class CellChange(_Reply):
    """A notebook cell added, removed or modified (indexes in the old and new notebook)."""

    status: Literal["added", "removed", "modified"]
    id: str | None
    cell_type: str
    old_index: int | None
    new_index: int | None
    source_patch: str
    outputs_changed: bool


class NotebookChanges(_Reply):
    """Two versions of a notebook compared cell by cell (only changed cells listed)."""

    cells_before: int
    cells_after: int
    unchanged: int
    cells: list[CellChange]


class FileChange(_Reply):
    """A file changed between two commits; ``patch`` is unified, for text files."""

    status: Literal["added", "modified", "deleted", "renamed", "copied"]
    path: str | None
    old_path: str | None
    old_sha: str | None
    new_sha: str | None
    old_mode: str | None
    new_mode: str | None
    binary: bool
    too_large: bool
    additions: int
    deletions: int
    patch: str | None
    notebook: NotebookChanges | None


class CommitAt(_Reply):
    """A ref as asked for and the commit it named."""

    ref: str
    sha: str


class Comparison(_Reply):
    """``GET …/compare/{base}...{head}``: from the merge base to ``head``."""

    base: CommitAt
    head: CommitAt
    merge_base: str
    files: list[FileChange]
    truncated: bool


# Sent with every file: a document that runs nothing, that the browser may not re-type.
RAW_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-cache",
}
# Types a browser renders as a document able to run script: never inline from the hub.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/xslt+xml",
        "application/pdf",
    }
)
RAW_CHUNK_BYTES = 256 * 1024
EXTRA_TYPES = {".ipynb": "application/x-ipynb+json", ".md": "text/markdown"}


def content_type(path: str, data: bytes) -> tuple[str, bool]:
    """The type to send a file as (guessed from its name; text when unknown and not binary)
    and whether it must be an attachment."""
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    guessed = EXTRA_TYPES.get(suffix) or mimetypes.guess_type(path, strict=False)[0]
    if guessed is None:
        guessed = "application/octet-stream" if diffs.is_binary(data) else "text/plain"
    if guessed.startswith("text/") or guessed in ("application/json", "application/x-ipynb+json"):
        guessed += "; charset=utf-8"
    return guessed, guessed.split(";")[0] in ACTIVE_TYPES


def _not_found(owner: str, name: str) -> errors.NotFound:
    return errors.NotFound(f"No such project: {owner}/{name}")


async def readable(
    conn: sql.Connection, caller: access.Caller | None, owner: str, name: str
) -> tuple[Any, dict[str, str]]:
    """The project ``owner/name`` (a ``project_by_name`` row) and its refs, if ``caller``
    may read it; 404 otherwise, the same whether it is missing or hidden."""
    found = await project_access.lookup(conn, owner, name, caller)
    if found is None:
        raise _not_found(owner, name)
    row, holder = found
    if not project_access.decide("read", project_access.target_of(row), holder):
        raise _not_found(owner, name)
    return row, await push.current_refs(conn, row["project_id"])


def _with_source(
    repositories: storage.Repositories,
    row: Any,
    refs: dict[str, str],
    fn: Callable[..., T],
    *args: Any,
) -> T:
    repo = repositories.open(row["project_id"])
    try:
        source = browse.Source(
            repo=repo,
            refs=refs,
            default_branch=row["default_branch"],
            full_name=f"{row['owner']}/{row['name']}",
        )
        return fn(source, *args)
    finally:
        repo.close()


async def read(
    app: web.Application, row: Any, refs: dict[str, str], fn: Callable[..., T], *args: Any
) -> T:
    """``fn(source, *args)`` on the project of ``row`` in the git thread pool."""
    place = app[storage.STORAGE]
    return await place.workers.run(_with_source, place.repositories, row, refs, fn, *args)


async def _project(request: web.Request) -> tuple[Any, dict[str, str]]:
    hub = request.app[HUB]
    caller = request.get(access.REQUEST_CALLER)
    async with hub.store.pool.acquire() as conn:
        return await readable(conn, caller, request.match_info["owner"], request.match_info["name"])


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise errors.BadRequest(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1")


def _split(request: web.Request, refs: dict[str, str]) -> tuple[str, str]:
    tail = request.match_info["tail"]
    if not tail or tail.startswith("/"):
        raise errors.BadRequest("ref: missing (…/tree/<ref>/<path>)")
    return browse.split_ref_path(tail, refs)


async def get_refs(request: web.Request) -> web.Response:
    """``GET …/refs``: the branches and tags."""
    row, refs = await _project(request)
    return web.json_response(await read(request.app, row, refs, browse.list_refs))


async def get_commits(request: web.Request) -> web.Response:
    """``GET …/commits?ref=&path=``: the history of a ref (default branch when not given),
    newest first, only the commits that change ``path`` when given."""
    hub = request.app[HUB]
    page = pagination.parse(
        request,
        default_limit=hub.settings.api_page_default_limit,
        max_limit=hub.settings.api_page_max_limit,
    )
    row, refs = await _project(request)
    ref = request.query.get("ref") or row["default_branch"]
    path = request.query.get("path", "")
    items, total, _ = await read(
        request.app, row, refs, browse.commits, ref, path, page.offset, page.limit
    )
    return web.json_response(pagination.reply(request, page, items, total, hub.settings.public_url))


async def get_tree(request: web.Request) -> web.Response:
    """``GET …/tree/{ref}/{path}``: a directory's entries (``?recursive=true``: all below)."""
    recursive = _flag(request, "recursive")
    row, refs = await _project(request)
    ref, path = _split(request, refs)
    resolved, sha, entries = await read(
        request.app, row, refs, lambda s: browse.tree(s, ref, path, recursive=recursive)
    )
    return web.json_response(
        {
            "ref": resolved.asked,
            "commit": resolved.commit,
            "path": browse.clean_path(path),
            "sha": sha,
            "entries": entries,
        }
    )


async def get_raw(request: web.Request) -> web.StreamResponse:
    """``GET …/raw/{ref}/{path}``: a file's bytes, streamed, with a type from its name."""
    row, refs = await _project(request)
    ref, path = _split(request, refs)
    found = await read(request.app, row, refs, browse.read_file, ref, path)
    kind, attachment = content_type(found.path, found.data)
    response = web.StreamResponse(headers=RAW_HEADERS)
    response.content_type = kind.split(";")[0]
    if "charset=" in kind:
        response.charset = "utf-8"
    response.content_length = len(found.data)
    response.etag = found.sha
    filename = found.path.rsplit("/", 1)[-1].replace('"', "")
    disposition = "attachment" if attachment else "inline"
    response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    await response.prepare(request)
    view = memoryview(found.data)
    for start in range(0, len(view), RAW_CHUNK_BYTES):
        await response.write(view[start : start + RAW_CHUNK_BYTES])
    await response.write_eof()
    return response


async def get_compare(request: web.Request) -> web.Response:
    """``GET …/compare/{base}...{head}``: the files changed, each with a patch when it is
    text, and notebooks compared cell by cell."""
    base, head = browse.parse_range(request.match_info["range"])
    row, refs = await _project(request)
    return web.json_response(await read(request.app, row, refs, browse.compare, base, head))


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    one = "/hub/api/projects/{owner}/{name}"
    return [
        web.get(one + "/refs", get_refs),
        web.get(one + "/commits", get_commits),
        web.get(one + "/tree/{tail:.*}", get_tree),
        web.get(one + "/raw/{tail:.*}", get_raw),
        web.get(one + "/compare/{range:.+}", get_compare),
    ]
