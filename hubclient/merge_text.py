"""Text files merged by hunks with the real `git merge-file`, so a pull merges as git would."""

from __future__ import annotations

import difflib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# git merge-file exits with the number of conflicts (at most 127), or -1 (255) on an error.
_MOST_CONFLICTS = 127
# Naming the conflicting lines takes a line diff of each side against the base; past this many
# lines the reason only counts the conflicts, so a huge file does not stall the pull.
_RANGES_UP_TO = 50_000


@dataclass(frozen=True)
class Clean:
    """The merged text; picked names the line ranges (of our version) a pick decided."""

    content: bytes
    picked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unmerged:
    """Both sides changed the same lines."""

    reason: str


def is_text(data: bytes) -> bool:
    """UTF-8 and no NUL byte: what git would merge by lines rather than call binary."""
    if b"\0" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def merge(
    base: bytes, ours: bytes, theirs: bytes, pick: Literal["ours", "theirs"] | None
) -> Clean | Unmerged:
    """Three-way merge by hunks; with a pick, the picked side wins the conflicting hunks only."""
    rc, merged, error = _merge_file(base, ours, theirs, pick)
    if rc > _MOST_CONFLICTS:
        return Unmerged(f"git merge-file could not merge it: {error or f'exit code {rc}'}")
    if rc > 0:  # only without a pick: with one, git settles every conflict itself
        return Unmerged(f"both changed {_describe(base, ours, theirs, rc)}")
    if pick is None:
        return Clean(merged)
    # git says nothing of what --ours/--theirs decided: learn it from a merge without the pick
    rc, _, _ = _merge_file(base, ours, theirs, None)
    if 0 < rc <= _MOST_CONFLICTS:
        return Clean(merged, (_describe(base, ours, theirs, rc),))
    return Clean(merged)


def _merge_file(
    base: bytes, ours: bytes, theirs: bytes, pick: Literal["ours", "theirs"] | None
) -> tuple[int, bytes, str]:
    with tempfile.TemporaryDirectory(prefix="chronohub-merge-") as tmp:
        files = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            file = Path(tmp) / name
            file.write_bytes(data)
            files.append(str(file))
        command = ["git", "merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs"]
        if pick is not None:
            command.append(f"--{pick}")
        # the user's git configuration (merge.conflictStyle, ...) must not change the result
        env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
        done = subprocess.run(  # noqa: S603 (a fixed command on files of our own)
            [*command, *files], cwd=tmp, env=env, capture_output=True, check=False
        )
    return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace").strip()


def _describe(base: bytes, ours: bytes, theirs: bytes, count: int) -> str:
    """The conflicting lines as numbered in our version ("lines 10-14 and 30"), else a count."""
    b, o, t = (data.decode("utf-8").splitlines() for data in (base, ours, theirs))
    fallback = "the same lines" if count == 1 else f"the same lines in {count} places"
    if max(len(b), len(o), len(t)) > _RANGES_UP_TO:
        return fallback
    theirs_changes = [(i1, i2) for _, i1, i2, _, _ in _changes(b, t)]
    ranges: list[tuple[int, int]] = []
    for i1, i2, j1, j2 in ((i1, i2, j1, j2) for _, i1, i2, j1, j2 in _changes(b, o)):
        # as in git's merge, changes that touch (no unchanged line between them) conflict too
        if any(k1 <= i2 and i1 <= k2 for k1, k2 in theirs_changes):
            first, last = j1 + 1, max(j2, j1 + 1)
            if ranges and first <= ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
            else:
                ranges.append((first, last))
    if not ranges:
        return fallback
    names = [f"{a}-{z}" if z > a else f"{a}" for a, z in ranges]
    word = "lines" if len(ranges) > 1 or ranges[0][1] > ranges[0][0] else "line"
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"
    return f"{word} {listed}"


def _changes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [op for op in matcher.get_opcodes() if op[0] != "equal"]
