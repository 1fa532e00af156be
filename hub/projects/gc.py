"""Collecting the objects no ref can reach: ``chronohub projects gc``.

A push stores its pack first and moves refs in a transaction afterwards, so a push refused
then (a lost race, a project deleted meanwhile) or cut short by a crash leaves a pack that
no ref reaches. Nothing reads it, but it takes room: ``collect`` removes it.

The roots are in PostgreSQL, not in the repository (whose ``refs/`` is empty): every sha
a ref of the project points at now, *and* every sha one pointed at within the grace period
(the ``old`` and ``new`` of each ``project.pushed`` since then). The second half is what makes
it safe to run while the hub serves: a push in progress was told the refs of some moment
within the grace period (pushes and fetches take far less, ``project_git_timeout_s``), and
its client leaves out only objects reachable from those, which are all kept; its own pack
is younger than the grace period and kept too. An import's or sync's fetch works the same
way (its "haves" are the refs of its moment).

Only whole packs none of whose objects is reachable, and loose objects, go, and only once
older than the grace period (by the file's mtime). A pack with some garbage in it stays as
it is: repacking would rewrite what pushes and clones are reading, and the garbage this
collects, packs of refused pushes, always comes as whole packs.
What a push cut short leaves goes too, once older than the grace period: its quarantine
directory (``objects/incoming-*``, hub/projects/packs.py), unfinished pack files
(``tmp_pack_*``) and a pack's data whose index never came.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from dulwich import gc as dulwich_gc
from dulwich import objects as dulwich_objects
from dulwich import refs as dulwich_refs

from events import sql, store
from events.catalog import projects as project_events
from hub.projects import packs, storage

log = logging.getLogger(__name__)

queries = sql.Queries(__package__ or "hub.projects", "gc.sql")

GRACE_S = 14 * 24 * 3600
"""The default grace period, git's own (``gc.pruneExpire``, two weeks)."""

_LOOSE_DIR = re.compile(r"[0-9a-f]{2}")
_LOOSE_NAME = re.compile(r"[0-9a-f]{38}")


@dataclass(frozen=True)
class Collected:
    """What ``collect`` removed (or, dry, would remove) from one project's repository."""

    project_id: UUID
    packs: tuple[str, ...] = ()
    loose: int = 0
    bytes: int = 0
    scraps: int = 0  # unfinished pack files or quarantines a push cut short left behind


async def collect(
    event_store: store.EventStore,
    place: storage.Storage,
    *,
    grace_s: float = GRACE_S,
    dry_run: bool = False,
    project_ids: Iterable[UUID] | None = None,
) -> list[Collected]:
    """Remove the objects of every project (or of ``project_ids``) that no root reaches and
    that are older than ``grace_s``; what was removed, per project that had any."""
    async with event_store.pool.acquire() as conn:
        if project_ids is None:
            project_ids = [row["project_id"] for row in await conn.fetch(queries["projects"])]
        wanted = list(project_ids)
    done = []
    for project_id in wanted:
        if not await place.workers.run(place.repositories.path(project_id).is_dir):
            continue
        # The roots are read before the repository: a push that commits after this read
        # brought its objects in a pack younger than the grace period.
        since = datetime.now(UTC) - timedelta(seconds=grace_s)
        async with event_store.pool.acquire() as conn:
            rows = await conn.fetch(
                queries["roots"], project_id, since, project_events.stream_id(project_id)
            )
        roots = {row["sha"] for row in rows} - {project_events.ZERO_SHA}
        result = await place.workers.run(
            _collect, place.repositories, project_id, roots, time.time() - grace_s, dry_run
        )
        if result.packs or result.loose or result.scraps:
            done.append(result)
    return done


def _collect(
    repositories: storage.Repositories,
    project_id: UUID,
    roots: set[str],
    cutoff: float,
    dry_run: bool,
) -> Collected:
    """In ``Workers``: the reachable set from ``roots``, then what is neither it nor young."""
    repo = repositories.open(project_id)
    gone: list[str] = []
    loose = freed = 0
    doomed_scraps: list[Path] = []
    try:
        named = dulwich_refs.DictRefsContainer(
            {
                dulwich_refs.Ref(f"refs/roots/{i}".encode()): dulwich_objects.ObjectID(sha.encode())
                for i, sha in enumerate(sorted(roots))
            }
        )
        reachable = dulwich_gc.find_reachable_objects(repo.object_store, named)
        objects = Path(repo.path) / "objects"
        doomed_packs: list[Path] = []
        for pack in repo.object_store.packs:
            data = Path(os.fspath(pack.data.path))
            keep = data.with_suffix(".keep")
            if keep.exists() or data.stat().st_mtime > cutoff:
                continue
            if any(sha in reachable for sha in pack):
                continue
            doomed_packs.append(data)
        doomed_loose: list[Path] = []
        for directory in objects.iterdir():
            if not (directory.is_dir() and _LOOSE_DIR.fullmatch(directory.name)):
                continue
            for file in directory.iterdir():
                if not _LOOSE_NAME.fullmatch(file.name) or file.stat().st_mtime > cutoff:
                    continue
                if (directory.name + file.name).encode() not in reachable:
                    doomed_loose.append(file)
        # A pack still being received is written to a temporary file first, in a quarantine
        # directory of its own (packs.py); a hub killed mid-push leaves them there, never to
        # be finished once they are old. A young quarantine may be a push in progress.
        for scrap in [
            *objects.glob("tmp_pack_*"),
            *(objects / "pack").glob("tmp_pack_*"),
            *objects.glob(f"{packs.QUARANTINE_PREFIX}*"),
        ]:
            if _last_written(scrap) <= cutoff:
                doomed_scraps.append(scrap)
        # A pack's data is moved in before its index, which readers wait for: a hub killed
        # between the two leaves data nothing reads.
        for data in (objects / "pack").glob("*.pack"):
            if not data.with_suffix(".idx").exists() and _last_written(data) <= cutoff:
                doomed_scraps.append(data)
    finally:
        repo.close()  # the packs closed before their files go
    for data in doomed_packs:
        freed += data.stat().st_size
        gone.append(data.stem)
        if not dry_run:
            # the index first: a reader that lists packs never finds one without its data
            for suffix in (".idx", ".bitmap", ".rev", ".pack"):
                data.with_suffix(suffix).unlink(missing_ok=True)
    for file in doomed_loose:
        freed += file.stat().st_size
        loose += 1
        if not dry_run:
            file.unlink(missing_ok=True)
    for scrap in doomed_scraps:
        if scrap.is_dir():
            freed += sum(file.stat().st_size for file in scrap.rglob("*") if file.is_file())
            if not dry_run:
                shutil.rmtree(scrap, ignore_errors=True)
        else:
            freed += scrap.stat().st_size
            if not dry_run:
                scrap.unlink(missing_ok=True)
    if gone or loose or doomed_scraps:
        log.info(
            "project %s: %s %d packs, %d loose objects no ref reaches and %d unfinished pack"
            " files or quarantines (%d bytes)",
            project_id,
            "would remove" if dry_run else "removed",
            len(gone),
            loose,
            len(doomed_scraps),
            freed,
        )
    return Collected(project_id, tuple(gone), loose, freed, len(doomed_scraps))


def _last_written(path: Path) -> float:
    """When ``path`` (a file, or a directory and everything in it) last changed."""
    try:
        if not path.is_dir():
            return path.stat().st_mtime
        return max([path.stat().st_mtime, *(inner.stat().st_mtime for inner in path.rglob("*"))])
    except FileNotFoundError:
        return math.inf  # gone meanwhile: a push just finished with it, nothing to remove
