"""Repositories on disk that no project needs any more, and how they leave.

A project's repository is removed after the transaction that records the project's end has
committed: its own ``project.deleted``, or the ``user.deleted``/``group.deleted`` of its
owner (the projects projection drops an owner's projects with it). Never before: a rollback
would leave a project without its objects. A removal that fails is logged and the delete
stands; what it left is collected by the sweep the hub runs when it starts (``Sweep``):

* ``<id>.git`` whose project no longer exists (a failed removal, a crash between commit and
  removal, a database restored from a backup older than the projects directory);
* ``.deleted-*`` (a removal cut short after its rename);
* ``.import-*`` and ``.new-*`` scratch directories (an import or a repository being made
  when the hub stopped).

Everything but ``.deleted-*`` is left alone until it has not been modified for
``SCRATCH_AGE_S``: an import places ``<id>.git`` just *before* appending ``project.created``,
so a young repository without a project may be one being made (by a hub process that shares
the data directory). A young scratch directory may likewise still be in use.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from aiohttp import web

from events import sql, store
from hub.projects import storage

log = logging.getLogger(__name__)

queries = sql.Queries(__package__ or "hub.projects", "cleanup.sql")

SCRATCH_AGE_S = 3600.0
"""How long a directory goes unmodified before the sweep may take it (see the module doc)."""

_SCRATCH_PREFIXES = (".import-", ".new-")


async def owned_by(conn: sql.Connection, owner_kind: str, owner_id: UUID) -> list[UUID]:
    """The projects of a user or group (``owner_kind``): read in the transaction that deletes
    the owner, so the list is exactly what that deletion takes along."""
    return [row["project_id"] for row in await conn.fetch(queries["projects_owned_by"],
                                                            owner_kind, owner_id)]  # fmt: skip


async def remove(place: storage.Storage | None, project_ids: Iterable[UUID]) -> None:
    """Remove the repositories of projects whose end has committed; a failure is logged,
    never raised (the sweep at the next start takes what is left)."""
    if place is None:
        return
    for project_id in project_ids:
        try:
            await place.workers.run(place.repositories.remove, project_id)
        except OSError:
            log.exception("could not remove the repository of project %s", project_id)


@dataclass(frozen=True)
class Found:
    """What the sweep found in the projects' directory."""

    repositories: dict[UUID, Path]
    """``<id>.git`` directories unmodified for ``SCRATCH_AGE_S``, by project id."""
    scratch: list[Path]
    """Directories to remove whatever the database says."""


def scan(root: Path, now: float, age_s: float = SCRATCH_AGE_S) -> Found:
    """Look through ``root`` (blocking: run in ``Workers``)."""
    repositories: dict[UUID, Path] = {}
    scratch: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return Found(repositories, scratch)
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        old = now - entry.stat(follow_symlinks=False).st_mtime >= age_s
        if entry.name.startswith(".deleted-"):
            scratch.append(Path(entry.path))
        elif entry.name.startswith(_SCRATCH_PREFIXES):
            if old:
                scratch.append(Path(entry.path))
        elif entry.name.endswith(".git") and old:
            try:
                project_id = uuid.UUID(entry.name.removesuffix(".git"))
            except ValueError:
                continue  # not ours: left alone
            if entry.name == f"{project_id}.git":  # the canonical spelling only
                repositories[project_id] = Path(entry.path)
    return Found(repositories, scratch)


@dataclass(frozen=True)
class Sweep:
    """Removes what no project needs from the projects' directory when the hub starts."""

    place: storage.Storage
    event_store: store.EventStore
    age_s: float = SCRATCH_AGE_S

    async def run(self) -> list[Path]:
        """Sweep once: the directories removed (failures logged and skipped)."""
        root = self.place.repositories.root
        found = await self.place.workers.run(scan, root, time.time(), self.age_s)
        existing: set[UUID] = set()
        if found.repositories:
            async with self.event_store.pool.acquire() as conn:
                rows = await conn.fetch(queries["projects_existing"], list(found.repositories))
            existing = {row["project_id"] for row in rows}
        # scratch first: a ``.deleted-<id>.git`` left over is gone before ``<id>.git`` is
        # renamed to that name
        doomed = found.scratch + [
            path for pid, path in found.repositories.items() if pid not in existing
        ]
        removed = []
        for path in doomed:
            try:
                await self.place.workers.run(_remove_tree, path)
            except OSError:
                log.exception("could not remove %s", path)
                continue
            log.info("removed %s: no project needs it", path)
            removed.append(path)
        return removed

    async def at_start(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp ``cleanup_ctx`` (after ``Storage.running``): sweep, then serve."""
        await self.run()
        yield


def _remove_tree(path: Path) -> None:
    # Renamed out of the way first (unless it already is), as Repositories.remove does: a
    # half-removed repository is never opened as a project's.
    if not path.name.startswith(".deleted-"):
        doomed = path.with_name(f".deleted-{path.name}")
        os.rename(path, doomed)
        path = doomed
    shutil.rmtree(path)
