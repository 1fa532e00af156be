"""Where projects' git objects live, and the one thread pool that touches them.

Each project has its own bare repository, ``<data_dir>/projects/<project_id>.git``, named by
id so a rename moves nothing. Only objects are kept there: refs live in PostgreSQL
(``project_refs``), so the repository's own ``refs/`` stays empty and a repository is never
the source of truth for what a branch points at. There is no object pool shared between
projects: a pusher could otherwise send a thin pack whose delta base is an object of another
project, which dulwich would complete from the shared store (reading what it may not read).

dulwich is blocking; every call to it runs in ``Workers``, a bounded pool, so a burst of
clones queues there instead of taking every thread of the process.

When clones are served by the installed git (``upload_pack``), git reads the project's
objects directly but never its refs: each request gets a *snapshot*, a throwaway git
directory under ``<data_dir>/projects/.serving/`` holding the refs read from PostgreSQL for
that request, its objects being the project's (``GIT_OBJECT_DIRECTORY``). So what git
advertises and accepts is exactly what PostgreSQL said, with no cache to keep in step.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar
from uuid import UUID

from aiohttp import web
from dulwich.objects import Tag
from dulwich.repo import Repo

from hub.projects import upload_pack

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class Workers:
    """A bounded thread pool for blocking git work; ``start``/``stop`` or ``async with``."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the git thread pool needs at least one thread")
        self.size = size
        self._pool: futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Make the pool (threads start as work arrives)."""
        if self._pool is None:
            self._pool = futures.ThreadPoolExecutor(self.size, thread_name_prefix="chronohub-git")

    def stop(self) -> None:
        """Refuse new work and drop what has not started; running work finishes on its own
        (a git request blocked on its client fails once its connection is closed)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    @property
    def running(self) -> bool:
        """Whether the pool takes work (between ``start`` and ``stop``)."""
        return self._pool is not None

    async def __aenter__(self) -> Workers:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` in the pool, awaited (context variables carried along)."""
        if self._pool is None:
            raise RuntimeError("the git thread pool is not running")
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)


class Peels:
    """What each object peels to (the object an annotated tag, or chain of tags, names), by
    sha: None for an object that is not a tag. Objects never change, so what is learnt once
    holds for every project and forever; only memory bounds it."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self._known: dict[str, str | None] = {}

    def known(self, shas: Collection[str]) -> tuple[dict[str, str | None], list[str]]:
        """The peels already known, and the shas whose peel is not."""
        known: dict[str, str | None] = {}
        missing: list[str] = []
        for sha in shas:
            if sha in self._known:
                known[sha] = self._known[sha]
            else:
                missing.append(sha)
        return known, missing

    def learn(self, peels: Mapping[str, str | None]) -> None:
        """Remember ``peels`` (from any thread: one dict update is atomic)."""
        if len(self._known) + len(peels) > self.limit:
            self._known.clear()  # rare, and relearnt at the cost of one read per sha
        self._known.update(peels)


class Repositories:
    """The bare repositories of projects under one directory."""

    def __init__(self, root: Path, *, max_push_bytes: int) -> None:
        self.root = root
        self.max_push_bytes = max_push_bytes
        self.peels = Peels()
        self._serving: Path | None = None
        self._serving_made = threading.Lock()

    def path(self, project_id: UUID) -> Path:
        """The repository of project ``project_id`` (whether it exists or not)."""
        return self.root / f"{project_id}.git"

    def objects(self, project_id: UUID) -> Path:
        """The object directory of project ``project_id``'s repository."""
        return self.path(project_id) / "objects"

    def peel(self, project_id: UUID, shas: Collection[str]) -> dict[str, str | None]:
        """What each of ``shas`` peels to (None: not a tag), read from the project's objects
        (and remembered); blocking: run in ``Workers``. A missing object is not a tag."""
        path = self.path(project_id)
        found: dict[str, str | None] = {}
        if not path.is_dir():
            return dict.fromkeys(shas)
        repo = Repo(str(path), bare=True)
        try:
            for sha in shas:
                try:
                    found[sha] = peel(repo, sha)
                except KeyError:
                    continue  # not learnt: a pack may still be on its way
        finally:
            repo.close()
        self.peels.learn(found)
        return {sha: found.get(sha) for sha in shas}

    def snapshot(self, project_id: UUID, refs: Mapping[str, str], default_branch: str) -> Path:
        """A git directory whose refs are ``refs`` and whose HEAD names the default branch, for
        git upload-pack to serve the project's objects from; blocking: run in ``Workers``.
        The caller removes it (``drop_snapshot``)."""
        if not self.path(project_id).is_dir():
            self._create(self.path(project_id))
        gitdir = Path(tempfile.mkdtemp(prefix=f"{project_id}-", dir=self._serving_dir()))
        (gitdir / "refs").mkdir()
        (gitdir / "HEAD").write_text(f"ref: refs/heads/{default_branch}\n")
        (gitdir / "config").write_text(SNAPSHOT_CONFIG)
        # No "# pack-refs with: peeled" header: git peels the tags itself, from the objects.
        lines = [f"{refs[ref]} {ref}\n".encode() for ref in sorted(refs, key=str.encode)]
        (gitdir / "packed-refs").write_bytes(b"".join(lines))
        return gitdir

    def _serving_dir(self) -> Path:
        with self._serving_made:
            if self._serving is None:
                # one per run, made on first use: replicas may share the data directory
                parent = self.root / ".serving"
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._serving = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
            return self._serving

    def drop_snapshot(self, gitdir: Path) -> None:
        """Remove a snapshot made by ``snapshot``; blocking: run in ``Workers``."""
        shutil.rmtree(gitdir, ignore_errors=True)

    def close(self) -> None:
        """Remove this run's snapshot directory (a run that crashed leaves its own, small)."""
        with self._serving_made:
            if self._serving is not None:
                shutil.rmtree(self._serving, ignore_errors=True)
                self._serving = None

    def open(self, project_id: UUID) -> Repo:
        """The project's repository, made (empty) on first use; blocking: run in ``Workers``.

        Made lazily, so a project whose creation committed but whose directory was never made
        (a crash between the two, a restored database) works all the same. The caller closes it.
        """
        path = self.path(project_id)
        if not path.is_dir():
            self._create(path)
        return Repo(str(path), bare=True)

    def _create(self, path: Path) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Made aside and renamed into place: two first pushes at once both succeed, one of
        # them making it; nobody sees half a repository.
        scratch = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
        try:
            Repo.init_bare(str(scratch)).close()
            try:
                os.rename(scratch, path)
            except OSError:
                if not path.is_dir():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def remove(self, project_id: UUID) -> None:
        """Delete the project's repository, if there is one; blocking: run in ``Workers``."""
        path = self.path(project_id)
        if not path.exists():
            return
        # Renamed first, so a half-removed repository is never opened as the project's.
        doomed = path.with_name(f".deleted-{path.name}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


# A snapshot's own configuration: the defaults that matter spelt out. Wants must be what the
# snapshot advertises (or, in stateless RPC, reachable from it): never any object on disk.
SNAPSHOT_CONFIG = """\
[core]
\trepositoryformatversion = 0
\tbare = true
[uploadpack]
\tallowTipSHA1InWant = false
\tallowReachableSHA1InWant = false
\tallowAnySHA1InWant = false
"""


def peel(repo: Repo, sha: str) -> str | None:
    """What ``sha`` peels to in ``repo`` (None: it is not a tag); KeyError if it is missing."""
    obj = repo.object_store[sha.encode()]  # type: ignore[index]
    if not isinstance(obj, Tag):
        return None
    while isinstance(obj, Tag):
        obj = repo.object_store[obj.object[1]]
    return obj.id.decode()


def native_git(
    enabled: bool, root: Path, *, slots: int, timeout_s: float
) -> upload_pack.NativeGit | None:
    """The installed git to serve clones of the repositories under ``root``, unless turned off
    or not installed (then dulwich serves them); its HOME is a directory of its own there."""
    return upload_pack.NativeGit.find(
        enabled, root / ".serving" / "home", slots=slots, timeout_s=timeout_s
    )


@dataclass(frozen=True)
class Storage:
    """The projects' repositories and the thread pool that works on them, for handlers."""

    workers: Workers
    repositories: Repositories
    # how long a git client may leave the hub waiting for its next bytes (or to take ours)
    io_timeout_s: float
    # the installed git serving clones and fetches (None: dulwich does, in ``workers``)
    native: upload_pack.NativeGit | None = None

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp ``cleanup_ctx``: the pool runs while the application does."""
        async with self.workers:
            try:
                yield
            finally:
                await self.workers.run(self.repositories.close)


STORAGE = web.AppKey("chronohub.projects.storage", Storage)
