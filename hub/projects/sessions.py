"""Collaborating on a project's notebook: who may join its session's room, reading the notebook
at a ref, and committing the room's notebook back to the project.

A session opened on a project (``hub/api/project_sessions.py``) records
``project.session_opened``; its inline projection (``project_sessions``) binds the session's
room to the project. From then on the room's access follows the project at every check
(``room_level``): its write members and admins edit and run cells, its readers watch, and a
member removed later loses the room with the project. Nothing is copied at open time.

A commit builds the blob, tree and commit with dulwich in the project's object store (in the
git thread pool), then moves the ref through the push path (``push.record``: the project's
row locked, the ref compared and swapped, ``project.pushed`` appended, with
``project.committed_from_session`` in the same transaction) after the same rules a git push
passes (``refs.check``). The commit builds on the session's ``head`` (the commit it was
opened on, then its own last commit): if the session's branch has moved since, the commit goes
to ``collab/<session>`` instead, so a concurrent push wins the race cleanly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from dulwich.graph import can_fast_forward
from dulwich.object_store import commit_tree_changes
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import Repo

from events import models, sql, store
from events.catalog import projects as project_events
from hub import errors
from hub.auth import access, collab_access, scopes
from hub.projects import access as project_access
from hub.projects import browse, push, storage
from hub.projects import refs as push_refs

queries = sql.Queries(__package__ or "hub.projects", "sessions.sql")

NOTEBOOK_SUFFIX = ".ipynb"
COLLAB_BRANCH_PREFIX = "collab/"
FILE_MODE = 0o100644
# How often a commit is tried again when a push moved the refs between our read and our write.
COMMIT_ATTEMPTS = 3

LEVEL: dict[project_access.Role | None, collab_access.Level] = {
    "admin": "write",
    "write": "write",
    "read": "read",
    None: "not_found",
}


def collab_branch(session_id: UUID) -> str:
    """The branch a session's commits go to when its own branch moved: ``collab/<id>``."""
    return f"{COLLAB_BRANCH_PREFIX}{session_id}"


# --- who may join a project's room --------------------------------------------------------------


async def room_level(
    conn: sql.Connection, caller: access.Caller, room: str
) -> collab_access.Level | None:
    """What ``caller``'s role on the project gives on ``room`` (None: no project's room)."""
    bound = await conn.fetchrow(queries["session_of_room"], room)
    if bound is None:
        return None
    found = await project_access.lookup(conn, bound["owner"], bound["name"], caller)
    if found is None:
        return "not_found"
    row, holder = found
    return LEVEL[project_access.best_role(project_access.target_of(row), holder)]


async def own_room_level(
    conn: sql.Connection,
    room: str,
    *,
    kind: Literal["user", "service"],
    name: str,
    user_id: UUID | None,
    grants: scopes.Grants,
) -> collab_access.Level | None:
    """``room_level`` for a participant's own roles (no token narrowing them): what a
    session asks again before each request it runs."""
    bound = await conn.fetchrow(queries["session_of_room"], room)
    if bound is None:
        return None
    row = await conn.fetchrow(
        project_access.queries["project_by_name"], bound["owner"], bound["name"], user_id
    )
    if row is None:
        return "not_found"
    holder = project_access.Holder(
        grants=grants,
        token=None,
        member_role=row["member_role"] if kind == "user" else None,
        signed_in_user=kind == "user",
    )
    return LEVEL[project_access.best_role(project_access.target_of(row), holder)]


async def binding_of_session(conn: sql.Connection, session_id: UUID) -> Any:
    """The ``session_by_id`` row of a session opened on a project (None: it was not)."""
    return await conn.fetchrow(queries["session_by_id"], session_id)


async def running_of_project(
    conn: sql.Connection, project_id: UUID, running: list[UUID]
) -> list[Any]:
    """Of the ``running`` sessions, those opened on project ``project_id``, newest first."""
    return list(await conn.fetch(queries["sessions_of_project"], project_id, running))


# --- the notebook at a ref ----------------------------------------------------------------------


@dataclass(frozen=True)
class NotebookAt:
    """A notebook read from a project: its content, the commit it was read at, and the
    branch a commit from it goes to (None: it was read at a tag or a commit)."""

    notebook: dict[str, Any]
    path: str
    commit: str
    branch: str | None


def check_path(path: str) -> str:
    """``path`` cleaned; 400 unless it names a notebook (``.ipynb``) inside the repository."""
    cleaned = browse.clean_path(path)
    if not cleaned:
        raise errors.BadRequest("path: the root is a directory, not a notebook")
    if not cleaned.lower().endswith(NOTEBOOK_SUFFIX):
        raise errors.BadRequest(f"path: {cleaned} is not a notebook (a .ipynb file)")
    return cleaned


def notebook_at(source: browse.Source, ref: str, path: str) -> NotebookAt:
    """The notebook ``path`` at ``ref``; blocking (run in the git thread pool).

    400 when the ref is malformed, the path is not a notebook or the file is not JSON; 404
    when the ref or the file is not there.
    """
    path = check_path(path)
    found = browse.read_file(source, ref, path)
    if found.type != "file":
        raise errors.BadRequest(f"path: {path} is a {found.type}, not a notebook")
    try:
        nb = json.loads(found.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.BadRequest(f"path: {path} at {ref} is not a notebook: {exc}") from exc
    if not isinstance(nb, dict):
        raise errors.BadRequest(f"path: {path} at {ref} is not a notebook: not a JSON object")
    name = found.resolved.name
    branch = name.removeprefix("refs/heads/") if name.startswith("refs/heads/") else None
    return NotebookAt(notebook=nb, path=path, commit=found.resolved.commit, branch=branch)


def serialise(nb: dict[str, Any]) -> bytes:
    """A notebook as Jupyter writes it (nbformat's JSON, one-space indent, final newline)."""
    # imported here: nbformat's validator is slow to import (see collab/notebook.py)
    import nbformat

    node = nbformat.from_dict(nb)  # type: ignore[no-untyped-call]
    text: str = nbformat.writes(node, version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]
    return (text if text.endswith("\n") else text + "\n").encode()


# --- committing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A commit's author or a co-author: a hub account and the address it is given."""

    name: str
    email: str

    def signature(self) -> bytes:
        """``Name <email>`` as git writes it."""
        return f"{self.name} <{self.email}>".encode()


def person(label: str, host: str) -> Person | None:
    """The person an update author label (``user:alice``) names; None for the hub itself."""
    kind, _, name = label.partition(":")
    if kind not in ("user", "service") or not name:
        return None
    return Person(name, f"{name}@{host}")


def message_of(text: str, co_authors: list[Person]) -> bytes:
    """The commit message: ``text`` then a ``Co-authored-by:`` trailer per co-author."""
    body = text.strip() or "Edit the notebook together"
    if co_authors:
        body += "\n\n" + "\n".join(f"Co-authored-by: {p.name} <{p.email}>" for p in co_authors)
    return (body + "\n").encode()


def build_commit(
    repo: Repo, parent: str, path: str, data: bytes, author: Person, message: bytes
) -> str | None:
    """A commit on ``parent`` whose tree has ``data`` at ``path``, stored in ``repo``'s
    objects; None when the file is already so at ``parent`` (nothing to commit). Blocking."""
    store_ = repo.object_store
    parent_commit = store_[ObjectID(parent.encode())]
    assert isinstance(parent_commit, Commit)
    blob = Blob.from_string(data)
    base_tree = store_[parent_commit.tree]
    assert isinstance(base_tree, Tree)
    try:
        _, current = base_tree.lookup_path(store_.__getitem__, path.encode())
    except KeyError:
        current = None
    if current == blob.id:
        return None
    store_.add_object(blob)
    tree_id = commit_tree_changes(store_, base_tree, [(path.encode(), FILE_MODE, blob.id)])
    commit = Commit()
    commit.tree = tree_id
    commit.parents = [parent_commit.id]
    commit.author = commit.committer = author.signature()
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message
    store_.add_object(commit)
    return commit.id.decode()


def _check_rules(repo: Repo, command: push_refs.Command, default_branch: str) -> str | None:
    """Why a git push of ``command`` would be refused (None: it would not). Blocking."""

    def kind_of(sha: str) -> str | None:
        try:
            kind: str = repo.object_store[ObjectID(sha.encode())].type_name.decode()
        except KeyError:
            return None
        return kind

    def fast_forward(old: str, new: str) -> bool:
        try:
            return bool(can_fast_forward(repo, ObjectID(old.encode()), ObjectID(new.encode())))
        except KeyError:
            return False

    return push_refs.check(
        [command], default_branch=default_branch, kind_of=kind_of, fast_forward=fast_forward
    )[command.ref]


def _prepare(
    repositories: storage.Repositories,
    project_id: UUID,
    command_of: Any,
    *,
    parent: str,
    path: str,
    data: bytes,
    author: Person,
    message: bytes,
    default_branch: str,
) -> tuple[push_refs.Command, str | None] | None:
    repo = repositories.open(project_id)
    try:
        sha = build_commit(repo, parent, path, data, author, message)
        if sha is None:
            return None
        command: push_refs.Command = command_of(sha)
        return command, _check_rules(repo, command, default_branch)
    finally:
        repo.close()


@dataclass(frozen=True)
class Committed:
    """Where a session's commit went."""

    commit: str
    branch: str
    diverted: bool
    participants: list[str]
    parent: str


async def commit(
    event_store: store.EventStore,
    place: storage.Storage,
    session_id: UUID,
    *,
    notebook_bytes: bytes,
    authors: list[str],
    requester: access.Caller,
    message: str,
    host: str,
    metadata: models.Metadata,
) -> Committed:
    """Commit ``notebook_bytes`` to the session's path on its branch (or ``collab/<id>``).

    ``authors`` are the room's update authors (``kind:name``); everyone of them but the
    requester is a ``Co-authored-by``. Raises ``Conflict`` when there is nothing to commit
    or the ref is refused, ``NotFound`` when the project is gone.
    """
    me = Person(requester.name, f"{requester.name}@{host}")
    co_authors: list[Person] = []
    for label in authors:
        found = person(label, host)
        if found is not None and found.name != me.name and found not in co_authors:
            co_authors.append(found)
    text = message_of(message, co_authors)
    participants = [me.name, *(p.name for p in co_authors)]
    for _ in range(COMMIT_ATTEMPTS):
        async with event_store.connection() as conn:
            bound = await binding_of_session(conn, session_id)
            if bound is None:
                raise errors.NotFound(f"the project of session {session_id} is gone")
            current = await push.current_refs(conn, bound["project_id"])
        default_branch: str = bound["default_branch"]
        head: str = bound["head"]
        branch: str | None = bound["branch"]
        own = collab_branch(session_id)
        if branch is not None and branch != own and current.get(f"refs/heads/{branch}") == head:
            target = branch
        else:
            target = own
            if current.get(f"refs/heads/{own}", head) != head:
                raise errors.Conflict(
                    f"branch {own} was changed by a push since this session's last commit;"
                    " pull it, or open a new session"
                )
        ref = f"refs/heads/{target}"
        old = current.get(ref, project_events.ZERO_SHA)

        def command_of(sha: str, ref: str = ref, old: str = old) -> push_refs.Command:
            return push_refs.Command(old=old, new=sha, ref=ref)

        prepared = await place.workers.run(
            _prepare,
            place.repositories,
            bound["project_id"],
            command_of,
            parent=head,
            path=bound["path"],
            data=notebook_bytes,
            author=me,
            message=text,
            default_branch=default_branch,
        )
        if prepared is None:
            raise errors.Conflict(
                f"nothing to commit: {bound['path']} in the session is as it is at {head[:12]}"
            )
        command, refused = prepared
        if refused is not None:
            raise errors.Conflict(f"the hub refuses to move {ref}: {refused}")
        event = project_events.ProjectCommittedFromSession(
            project_id=bound["project_id"],
            session_id=session_id,
            commit=command.new,
            branch=target,
            diverted=target == own,
            participants=participants,
        )
        try:
            await push.record(
                event_store,
                bound["project_id"],
                [command],
                pusher=models.Actor(kind=requester.kind, name=requester.name),
                commits=1,
                via="api",
                metadata=metadata,
                along=[event],
            )
        except push.StaleRefs:
            continue  # a push moved the ref meanwhile: read again, and divert if it must
        except push.ProjectGone as exc:
            raise errors.NotFound(f"the project of session {session_id} is gone") from exc
        return Committed(
            commit=command.new,
            branch=target,
            diverted=target == own,
            participants=participants,
            parent=head,
        )
    raise errors.Conflict(
        f"the project's refs kept moving; the session's notebook was not committed after"
        f" {COMMIT_ATTEMPTS} attempts: try again"
    )
