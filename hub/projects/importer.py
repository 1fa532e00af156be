"""Projects imported from the internet: the first fetch into a new project, and ``sync``.

The fetch happens during the request, not in the background. A notebook repository takes
seconds, and the time limit (``project_import_timeout_s``) bounds the wait; in return the
caller gets the final answer in the reply (201 with the project, or the reason it was
refused), and a failed import leaves nothing: no project, no event, no repository. A
background import would need an import status on the project, a failure event, and
recovery of imports cut short by a restart, for a wait the client makes anyway. Imports take
at most half of the git threads, so clones and pushes go on during a burst of imports.

An import fetches into a scratch repository beside the projects' ones, which is renamed to
the project's id before ``project.created`` is appended (so a clone can never make an empty
repository there first); the refs are then moved by ``push.record`` like a push's, as
``project.pushed`` with ``via="import"`` and the creating user as the pusher.

``sync`` fetches again into the project's repository and moves refs fast-forward only, ref by
ref as ``git fetch`` does: new branches and tags are created, branches that fast-forward
move, and a branch that diverged (upstream force-pushed, or both sides have commits) is
refused with the reason while the others are still updated; a tag that moved upstream is
refused too. Branches deleted upstream are kept. All the moves are one ``project.pushed``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from aiohttp import web
from dulwich.graph import can_fast_forward
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.repo import Repo

from events import models, store
from events.catalog import projects as project_events
from hub.projects import push, refs, remote, storage

log = logging.getLogger(__name__)

T = TypeVar("T")
ZERO_SHA = project_events.ZERO_SHA
MAX_REFS = 10_000  # what one project.pushed event carries


class NotImportable(remote.RemoteError):
    """The repository was fetched but cannot become (or update) the project."""


class MissingBranch(NotImportable):
    """The default branch asked for is not one of the repository's branches."""


@dataclass(frozen=True)
class Plan:
    """What a fetch changes: the ref moves to record, and the refs refused with the reason."""

    commands: list[refs.Command]
    refused: dict[str, str]
    commits: int


@dataclass(frozen=True)
class Staged:
    """A repository fetched for a new project, not yet the project's."""

    path: Path
    fetched: remote.Fetched
    plan: Plan


def plan(
    current: Mapping[str, str],
    upstream: Mapping[str, str],
    *,
    kind_of: refs.KindOf,
    fast_forward: refs.FastForward,
) -> tuple[list[refs.Command], dict[str, str]]:
    """The moves that bring the project's refs (``current``) to ``upstream``, fast-forward
    only, and the refs refused with their reason; pure."""
    commands: list[refs.Command] = []
    refused: dict[str, str] = {}
    for ref, new in sorted(upstream.items()):
        old = current.get(ref, ZERO_SHA)
        if old == new:
            continue
        command = refs.Command(old=old, new=new, ref=ref)
        # the hub's rules for any ref (names, branches at commits, objects present); the
        # default branch's own rule is covered below for every branch
        problem = refs.problem(
            refs.Command(old=ZERO_SHA, new=new, ref=ref),
            default_branch="",
            kind_of=kind_of,
            fast_forward=fast_forward,
        )
        if problem is not None:
            refused[ref] = problem
        elif command.creates:
            commands.append(command)
        elif ref.startswith("refs/tags/"):
            refused[ref] = "the tag moved upstream; the hub keeps the tag it has"
        elif fast_forward(old, new):
            commands.append(command)
        elif not fast_forward(new, old):
            refused[ref] = (
                "non-fast-forward: the branch diverged from upstream (force-pushed upstream,"
                " or commits on both sides); sync only fast-forwards"
            )
        # else: the project is ahead of upstream on this branch; nothing to do
    return commands, refused


def choose_default_branch(fetched: remote.Fetched, requested: str | None) -> str | None:
    """The new project's default branch: ``requested`` if given (it must exist upstream),
    else the remote's HEAD branch, else ``main``, ``master`` or the first branch; None when
    the remote has no branches. ``NotImportable`` if ``requested`` is not a remote branch."""
    branches = sorted(r[len("refs/heads/") :] for r in fetched.refs if r.startswith("refs/heads/"))
    if requested is not None:
        if branches and requested not in branches:
            raise MissingBranch(f"default_branch: the repository has no branch {requested!r}")
        return requested
    if fetched.head is not None and fetched.head in branches:
        return fetched.head
    for usual in ("main", "master"):
        if usual in branches:
            return usual
    return branches[0] if branches else None


# --- blocking work, in the git thread pool -------------------------------------------------


def _kind_of(repo: Repo) -> refs.KindOf:
    def kind_of(sha: str) -> str | None:
        try:
            obj = repo.object_store[ObjectID(sha.encode())]
        except KeyError:
            return None
        kind: str = obj.type_name.decode()
        return kind

    return kind_of


def _fast_forward(repo: Repo) -> refs.FastForward:
    def fast_forward(old: str, new: str) -> bool:
        try:
            return bool(can_fast_forward(repo, ObjectID(old.encode()), ObjectID(new.encode())))
        except KeyError:
            return False

    return fast_forward


def _count_commits(repo: Repo, commands: Sequence[refs.Command], known: Sequence[str]) -> int:
    """Commits the moves bring that no ref of the project reached before."""
    object_store = repo.object_store
    include = []
    for command in commands:
        obj = object_store[ObjectID(command.new.encode())]
        while isinstance(obj, Tag):
            obj = object_store[obj.object[1]]
        if isinstance(obj, Commit):
            include.append(obj.id)
    if not include:
        return 0
    exclude = [ObjectID(sha.encode()) for sha in known]
    return sum(1 for _ in repo.get_walker(include=include, exclude=exclude))


def _fetch_and_plan(
    repo: Repo,
    source: remote.Source,
    current: Mapping[str, str],
    policy: remote.Policy,
    budget: remote.Budget,
) -> tuple[remote.Fetched, Plan]:
    fetched = remote.fetch(source, repo, set(current.values()), policy, budget)
    if len(fetched.refs) > MAX_REFS:
        raise NotImportable(f"the repository has more than {MAX_REFS} branches and tags")
    commands, refused = plan(
        current, fetched.refs, kind_of=_kind_of(repo), fast_forward=_fast_forward(repo)
    )
    commits = _count_commits(repo, commands, list(current.values()))
    return fetched, Plan(commands, refused, commits)


def _stage(
    root: Path, source: remote.Source, policy: remote.Policy, budget: remote.Budget
) -> Staged:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    try:
        repo = Repo.init_bare(str(scratch))
        try:
            fetched, moves = _fetch_and_plan(repo, source, {}, policy, budget)
        finally:
            repo.close()
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return Staged(scratch, fetched, moves)


def _sync(
    repositories: storage.Repositories,
    project_id: UUID,
    source: remote.Source,
    current: Mapping[str, str],
    policy: remote.Policy,
    budget: remote.Budget,
) -> tuple[remote.Fetched, Plan]:
    repo = repositories.open(project_id)
    try:
        return _fetch_and_plan(repo, source, current, policy, budget)
    finally:
        repo.close()


def _place(staged: Staged, target: Path) -> None:
    # a rename within the projects' directory: the project's repository appears whole
    staged.path.rename(target)


# --- the importer --------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: the moves recorded (None: nothing new) and the refs refused."""

    plan: Plan
    recorded: store.AppendResult | None


class Importer:
    """Fetches repositories for projects, within the policy and in the git thread pool."""

    def __init__(
        self, place: storage.Storage, event_store: store.EventStore, policy: remote.Policy
    ) -> None:
        self.place = place
        self.event_store = event_store
        self.policy = policy
        # at most half the git threads fetch at once: clones and pushes always have some
        self._slots = asyncio.Semaphore(max(1, place.workers.size // 2))

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args, policy, budget)`` in the pool, its connections ended at the deadline."""
        async with self._slots:
            budget = remote.Budget.of(self.policy)
            timer = asyncio.get_running_loop().call_later(self.policy.timeout_s, budget.expire)
            try:
                return await self.place.workers.run(fn, *args, self.policy, budget)
            except OSError as exc:
                if budget.expired:  # the sockets were shut down under the thread
                    raise budget.timed_out() from exc
                raise
            except asyncio.CancelledError:
                budget.expire()  # the thread gives up at once instead of at its next timeout
                raise
            finally:
                timer.cancel()
                budget.close()

    async def stage(self, source: remote.Source) -> Staged:
        """Fetch ``source`` into a scratch repository (removed again on any failure)."""
        return await self._run(_stage, self.place.repositories.root, source)

    async def place_staged(self, staged: Staged, project_id: UUID) -> None:
        """Make the staged repository project ``project_id``'s."""
        await self.place.workers.run(_place, staged, self.place.repositories.path(project_id))

    async def discard(self, staged: Staged | Path) -> None:
        """Remove a staged repository (or a placed one whose project was not created)."""
        path = staged.path if isinstance(staged, Staged) else staged
        await self.place.workers.run(shutil.rmtree, path, True)

    async def record(
        self,
        project_id: UUID,
        moves: Plan,
        *,
        pusher: models.Actor,
        metadata: models.Metadata,
    ) -> store.AppendResult | None:
        """Move the refs as one ``project.pushed`` (via import); None if nothing moves."""
        if not moves.commands:
            return None
        return await push.record(
            self.event_store,
            project_id,
            moves.commands,
            pusher=pusher,
            commits=moves.commits,
            via="import",
            metadata=metadata,
        )

    async def sync(
        self,
        project_id: UUID,
        source: remote.Source,
        current: Mapping[str, str],
        *,
        pusher: models.Actor,
        metadata: models.Metadata,
    ) -> SyncResult:
        """Fetch ``source`` again and fast-forward the project's refs from ``current``;
        ``push.StaleRefs`` if a push moved them meanwhile."""
        _, moves = await self._run(
            _sync, self.place.repositories, project_id, source, dict(current)
        )
        recorded = await self.record(project_id, moves, pusher=pusher, metadata=metadata)
        return SyncResult(moves, recorded)


async def import_source(event_store: store.EventStore, project_id: UUID) -> str | None:
    """The URL project ``project_id`` was imported from (None: it was not), from its
    ``project.created`` event."""
    first = await event_store.read_stream(project_events.stream_id(project_id), limit=1)
    if not first or not isinstance(first[0].data, project_events.ProjectCreated):
        return None
    return first[0].data.import_url


IMPORTER = web.AppKey("chronohub.projects.importer", Importer)
