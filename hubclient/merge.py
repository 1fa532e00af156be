"""Three-way merge of a pull's files: text by hunks, notebooks by cell, anything else whole.

`chronohub project pull` hands every path that differs between the merge base and either side
to `merge_files`, and writes the results only when nothing is left in conflict (or every
conflict has a pick), so the working tree is never left half merged. Nothing here touches a
repository: the three versions come in as bytes and the merged bytes go out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from hubclient import merge_notebook, merge_text

Pick = Literal["ours", "theirs"]
PICKS: tuple[Pick, ...] = ("ours", "theirs")


@dataclass(frozen=True)
class Versions:
    """One path's three versions; None where the file does not exist on that side."""

    path: str  # repository-relative, '/'-separated
    base: bytes | None  # None: absent in the merge base
    ours: bytes | None  # None: deleted (or never added) on our side
    theirs: bytes | None


@dataclass(frozen=True)
class Merged:
    """The merge's result for one path."""

    path: str
    content: bytes | None  # None: the file is deleted by the merge
    # what a pick decided, human readable ("cell 3 (id abc): theirs (source)", "lines 4-6: ours")
    picked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conflict:
    """A path that cannot be merged without a pick, and why."""

    path: str
    reason: str  # one line, e.g. "both changed lines 10-14", "deleted by us, changed by them"
    cells: tuple[str, ...] = ()  # for notebooks: the conflicting cells ("cell 2 (id 5f3a): source")


def merge_file(v: Versions, pick: Pick | None = None) -> Merged | Conflict:
    """Merge one path's three versions; a pick settles what both sides changed differently."""
    if pick is not None and pick not in PICKS:
        raise ValueError(f"a pick is 'ours' or 'theirs', not {pick!r}")
    # The trivial cases: one side left the file as it was, or both made it the same.
    if v.ours == v.theirs or v.base == v.theirs:
        return Merged(v.path, v.ours)
    if v.base == v.ours:
        return Merged(v.path, v.theirs)
    if v.ours is None or v.theirs is None:
        reason = (
            "deleted by us, changed by them" if v.ours is None else "changed by us, deleted by them"
        )
        if pick is None:
            return Conflict(v.path, reason)
        kept = v.ours if pick == "ours" else v.theirs
        return Merged(v.path, kept, (f"whole file: {pick} ({reason})",))
    # Both sides changed the file (or added it with different content: 3-way on an empty base).
    base = v.base if v.base is not None else b""
    if v.path.lower().endswith(".ipynb"):
        problem = merge_notebook.invalid(base, v.ours, v.theirs, base_absent=v.base is None)
        if problem is None:
            return _notebook(v.path, base, v.ours, v.theirs, pick, base_absent=v.base is None)
        why = f"changed on both sides, and {problem}: it can only be taken whole"
        return _opaque(v.path, v.ours, v.theirs, pick, why)
    if merge_text.is_text(base) and merge_text.is_text(v.ours) and merge_text.is_text(v.theirs):
        return _text(v.path, base, v.ours, v.theirs, pick)
    return _opaque(v.path, v.ours, v.theirs, pick, "binary file changed on both sides")


def merge_files(
    versions: Iterable[Versions],
    picks: Mapping[str, Pick] = {},
    default: Pick | None = None,
) -> tuple[list[Merged], list[Conflict]]:
    """Merge every path; picks: per path, default: for every other conflicting path.

    Never raises for content reasons: what cannot be merged is a Conflict.
    """
    merged: list[Merged] = []
    conflicts: list[Conflict] = []
    for v in versions:
        result = merge_file(v, picks.get(v.path, default))
        if isinstance(result, Conflict):
            conflicts.append(result)
        else:
            merged.append(result)
    return merged, conflicts


def _notebook(
    path: str, base: bytes, ours: bytes, theirs: bytes, pick: Pick | None, *, base_absent: bool
) -> Merged | Conflict:
    result = merge_notebook.merge(base, ours, theirs, pick, base_absent=base_absent)
    if isinstance(result, merge_notebook.Unmerged):
        return Conflict(path, result.reason, result.cells)
    return Merged(path, result.content, result.picked)


def _text(
    path: str, base: bytes, ours: bytes, theirs: bytes, pick: Pick | None
) -> Merged | Conflict:
    result = merge_text.merge(base, ours, theirs, pick)
    if isinstance(result, merge_text.Unmerged):
        return Conflict(path, result.reason)
    return Merged(path, result.content, tuple(f"{lines}: {pick}" for lines in result.picked))


def _opaque(
    path: str, ours: bytes, theirs: bytes, pick: Pick | None, reason: str
) -> Merged | Conflict:
    """A file merged whole: either side's content, never a mix."""
    if pick is None:
        return Conflict(path, reason)
    return Merged(path, ours if pick == "ours" else theirs, (f"whole file: {pick} ({reason})",))
