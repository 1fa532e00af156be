"""Merging two commits in git's object store, never in the working tree: read the three
trees, hand the files that differ to ``hubclient.merge``, write the merged blobs and tree with
a private index, and make the merge commit. Nothing here moves a ref or touches a file of the
checkout; ``apply`` is the one step that does, in one git command.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubclient import errors, git

if TYPE_CHECKING:  # imported when a merge is made: notebook merging is slow to import
    from hubclient import merge

REGULAR = "100644"


@dataclass(frozen=True)
class Entry:
    """One file of a tree: its mode and blob."""

    mode: str
    sha: str


def files(repo: git.Git, commit: str | None) -> dict[str, Entry]:
    """Every file of ``commit``'s tree by path (empty for None)."""
    if commit is None:
        return {}
    raw = repo.run("ls-tree", "-r", "-z", "--full-tree", commit).stdout
    found: dict[str, Entry] = {}
    for record in raw.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, sha = meta.decode().split()
        if kind == "blob":
            found[path.decode("utf-8", "surrogateescape")] = Entry(mode, sha)
    return found


def read_blobs(repo: git.Git, shas: set[str]) -> dict[str, bytes]:
    """The contents of these blobs, in one ``git cat-file --batch``."""
    if not shas:
        return {}
    ordered = sorted(shas)
    out = repo.run("cat-file", "--batch", stdin="".join(s + "\n" for s in ordered).encode()).stdout
    contents: dict[str, bytes] = {}
    position = 0
    for sha in ordered:
        end = out.index(b"\n", position)
        header = out[position:end].decode().split()
        size = int(header[2])
        contents[sha] = out[end + 1 : end + 1 + size]
        position = end + 1 + size + 1  # the newline after each object
    return contents


@dataclass(frozen=True)
class Plan:
    """What merging ``ours`` and ``theirs`` gives: the files to write (None: delete) with
    their modes, and the conflicts left."""

    ours: str
    theirs: str
    changes: dict[str, tuple[str, bytes | None]]
    conflicts: list[merge.Conflict]
    merged: list[merge.Merged]


def plan(
    repo: git.Git,
    ours: str,
    theirs: str,
    picks: Mapping[str, merge.Pick],
    default: merge.Pick | None,
) -> Plan:
    """Merge ``theirs`` into ``ours`` file by file (their merge base as the common ancestor;
    none for unrelated histories); only object reads."""
    from hubclient import merge

    base_run = repo.run("merge-base", ours, theirs, check=False)
    base = base_run.stdout.decode().strip() or None if base_run.returncode == 0 else None
    at_base, at_ours, at_theirs = files(repo, base), files(repo, ours), files(repo, theirs)
    differing = sorted(
        path
        for path in set(at_base) | set(at_ours) | set(at_theirs)
        if at_ours.get(path) != at_theirs.get(path)
    )
    wanted = {
        entry.sha
        for path in differing
        for entry in (at_base.get(path), at_ours.get(path), at_theirs.get(path))
        if entry is not None
    }
    blobs = read_blobs(repo, wanted)

    def content(entry: Entry | None) -> bytes | None:
        return None if entry is None else blobs[entry.sha]

    versions = [
        merge.Versions(
            path=path,
            base=content(at_base.get(path)),
            ours=content(at_ours.get(path)),
            theirs=content(at_theirs.get(path)),
        )
        for path in differing
    ]
    merged, conflicts = merge.merge_files(versions, picks, default)
    changes: dict[str, tuple[str, bytes | None]] = {}
    for result in merged:
        ours_entry = at_ours.get(result.path)
        either = ours_entry or at_theirs.get(result.path)
        mode = either.mode if either is not None else REGULAR
        if result.content is None and ours_entry is None:
            continue
        if (
            ours_entry is not None
            and result.content is not None
            and blobs.get(ours_entry.sha) == result.content
        ):
            continue  # unchanged on our side: nothing to write
        changes[result.path] = (mode, result.content)
    return Plan(ours, theirs, changes, conflicts, merged)


def commit(repo: git.Git, result: Plan, message: str) -> str:
    """Write the plan's blobs and tree (through a private index, so the checkout's own index is
    untouched) and the merge commit with both parents: its sha. No ref moves."""
    with tempfile.TemporaryDirectory(prefix="chronohub-merge-") as scratch:
        index = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
        repo.run("read-tree", result.ours, extra_env=index)
        lines: list[str] = []
        for path, (mode, data) in sorted(result.changes.items()):
            if data is None:
                lines.append(f"0 {'0' * 40}\t{path}")
                continue
            sha = repo.out("hash-object", "-w", "--stdin", stdin=data)
            lines.append(f"{mode} {sha}\t{path}")
        if lines:
            repo.run(
                "update-index",
                "-z",
                "--index-info",
                stdin="".join(line + "\0" for line in lines).encode("utf-8", "surrogateescape"),
                extra_env=index,
            )
        tree = repo.out("write-tree", extra_env=index)
    return repo.out("commit-tree", tree, "-p", result.ours, "-p", result.theirs, "-m", message)


def apply(repo: git.Git, target: str) -> None:
    """Move the branch and the working tree to ``target`` in one command: ``git reset
    --keep`` updates the files and then the ref, and refuses (changing nothing) if a file it
    would overwrite has changes of its own. It does overwrite a file git ignores here, so
    such a file that ``target`` brings is refused first (``errors.LocalConflict`` naming it): local
    work is never overwritten. Interrupted while it writes, the files can be part old, part
    new, with the branch still at the old commit; ``git status`` shows the difference."""
    brought = set(
        repo.out("diff", "--name-only", "--no-renames", "-z", "HEAD", target).split("\0")
    ) - {""}
    ignored = set(
        repo.out("ls-files", "--others", "--ignored", "--exclude-standard", "-z").split("\0")
    ) - {""}
    clobbered = sorted(brought & ignored)
    if clobbered:
        raise errors.LocalConflict(
            "the update brings files that are ignored here and would overwrite yours: "
            + ", ".join(clobbered[:10])
            + ("…" if len(clobbered) > 10 else "")
            + "; move them away (or add them with git add -f and commit), then pull again"
        )
    repo.run("reset", "--keep", target)
