"""Where projects' git objects live, and the one thread pool that touches them.

Each project has its own bare repository, ``<data_dir>/projects/<project_id>.git``, named by
id so a rename moves nothing. Only objects are kept there: refs live in PostgreSQL
(``project_refs``), so the repository's own ``refs/`` stays empty and a repository is never
the source of truth for what a branch points at. There is no object pool shared between
projects: a pusher could otherwise send a thin pack whose delta base is an object of another
project, which dulwich would complete from the shared store (reading what it may not read).

dulwich is blocking; every call to it runs in ``Workers``, a bounded pool, so a burst of
clones queues there instead of taking every thread of the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar
from uuid import UUID

from aiohttp import web
from dulwich.repo import Repo

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


class Repositories:
    """The bare repositories of projects under one directory."""

    def __init__(self, root: Path, *, max_push_bytes: int) -> None:
        self.root = root
        self.max_push_bytes = max_push_bytes

    def path(self, project_id: UUID) -> Path:
        """The repository of project ``project_id`` (whether it exists or not)."""
        return self.root / f"{project_id}.git"

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


@dataclass(frozen=True)
class Storage:
    """The projects' repositories and the thread pool that works on them, for handlers."""

    workers: Workers
    repositories: Repositories
    # how long a git client may leave the hub waiting for its next bytes (or to take ours)
    io_timeout_s: float

    async def running(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp ``cleanup_ctx``: the pool runs while the application does."""
        async with self.workers:
            yield


STORAGE = web.AppKey("chronohub.projects.storage", Storage)
