"""Notebooks merged by cell with nbdime, never with conflict markers in the result.

nbdime decides the merge (cells added, deleted, moved, edited on either side); its "inline"
strategies, which write markers into sources and record conflicts in the metadata, are never
used: a merge first runs with the "mergetool" strategy, which leaves every conflict undecided
and flagged, so the conflicts can be named; a pick then reruns it with "use-local" or
"use-remote", which settle the conflicting parts only and keep the other side's other changes.
nbdime is imported inside the functions: `import hubclient.merge` stays fast for commands that
never merge a notebook.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from nbformat import NotebookNode

_SIDES = ("ours", "theirs")
_STRATEGY = {None: "mergetool", "ours": "use-local", "theirs": "use-remote"}
# The parts of a cell that running it changes: a conflict there alone is "outputs only".
_RUN_PARTS = frozenset({"outputs", "execution_count"})
# Marker lines of a text merge or of nbdime's inline strategies, and nbdime's conflict record.
_MARKER = re.compile(r"^(<{7}|={7}|>{7}|\|{7})( |$)", re.MULTILINE)
_NBDIME_RECORD = "nbdime-conflicts"
_INSERTED = "cells inserted before it"
# what nbdime logs of a conflict it leaves undecided (nbdime/merging/decisions.py, strategies.py)
_UNDECIDED = ("Unhandled conflict strategy ", "Unexpected strategy fail ")


@dataclass(frozen=True)
class Clean:
    """The merged notebook as nbformat writes it; picked: what a pick decided, one line a cell
    ("cell 2 (id 5f3a): theirs (source)")."""

    content: bytes
    picked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unmerged:
    """Conflicting cells (or a notebook nbdime could not merge), one line each."""

    reason: str
    cells: tuple[str, ...] = ()


class _NotNotebook(ValueError):
    """The bytes are not a valid nbformat 4 notebook."""


def invalid(base: bytes, ours: bytes, theirs: bytes, *, base_absent: bool) -> str | None:
    """Why one of the three is not a notebook that can be merged by cell, or None."""
    named = (("ours", ours), ("theirs", theirs)) + (() if base_absent else (("base", base),))
    for name, data in named:
        try:
            _read(data)
        except _NotNotebook as error:
            return f"{name} is not a valid notebook: {error}"
    return None


def merge(
    base: bytes,
    ours: bytes,
    theirs: bytes,
    pick: Literal["ours", "theirs"] | None,
    *,
    base_absent: bool,
) -> Clean | Unmerged:
    """Merge by cell; without a pick any conflict is Unmerged, with one that side wins it."""
    local, remote = _read(ours), _read(theirs)
    origin = _empty_like(local) if base_absent else _read(base)
    try:
        merged, decisions = _nbdime_merge(origin, local, remote, None)
        conflicts = [d for d in decisions if d["conflict"]]
        parts = _describe(origin, conflicts)
        cells = [f"{name}: {whats}" for name, whats in parts]
        if parts and pick is None:
            return Unmerged(_reason(cells), tuple(cells))
        if conflicts:
            # A cell whose id both sides changed (pasted anew, say) is the same work whichever
            # id it keeps, so that alone is no conflict: without a pick, our ids are kept.
            merged, decisions = _nbdime_merge(origin, local, remote, pick or "ours")
            if any(d["conflict"] for d in decisions):  # pragma: no cover (nbdime settles all)
                raise RuntimeError("nbdime left a conflict that a pick did not settle")
        content = _write(merged, (origin, local, remote))
    # nbdime's merge asserts its invariants and raises where its "fail" strategy meets a
    # conflict it takes for impossible: content it cannot merge, so for the caller a conflict
    # (or, with a pick, the picked side whole), not a crash of the pull.
    except (AssertionError, RuntimeError, KeyError, IndexError, TypeError, _NotNotebook) as error:
        message = f"nbdime could not merge it ({type(error).__name__}: {error})".strip()
        if pick is None:
            return Unmerged(message[:300])
        whole = f"whole notebook: {pick} (as {message[:200]})"
        return Clean(ours if pick == "ours" else theirs, (whole,))
    return Clean(content, tuple(f"{name}: {pick} ({whats})" for name, whats in parts))


def _read(data: bytes) -> NotebookNode:
    from nbformat import v4

    try:
        text = data.decode("utf-8")
        parsed = json.loads(text)
    except UnicodeDecodeError as error:
        raise _NotNotebook(f"not UTF-8 ({error.reason} at byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise _NotNotebook(f"not valid JSON ({error.msg}, line {error.lineno})") from error
    if not isinstance(parsed, dict) or parsed.get("nbformat") != 4:
        raise _NotNotebook("JSON, but not of nbformat 4")
    # as nbformat reads a file: multi-line strings joined, which nbdime's merge expects
    node: NotebookNode = v4.reads(text)  # type: ignore[no-untyped-call]
    _validate(node)
    return node


def _validate(node: NotebookNode) -> None:
    import nbformat

    try:
        with warnings.catch_warnings():
            # nbformat warns (rather than fails) about what it repairs itself, e.g. missing cell ids
            warnings.simplefilter("ignore")
            nbformat.validate(node)
    except nbformat.ValidationError as error:
        raise _NotNotebook(f"not valid nbformat ({error.message})") from error


def _empty_like(notebook: NotebookNode) -> NotebookNode:
    """The base of a notebook added on both sides: the same format, no cells, no metadata."""
    from nbformat import v4

    empty: NotebookNode = v4.new_notebook()  # type: ignore[no-untyped-call]
    empty.nbformat_minor = notebook.nbformat_minor
    return empty


def _nbdime_merge(
    base: NotebookNode,
    local: NotebookNode,
    remote: NotebookNode,
    pick: Literal["ours", "theirs"] | None,
) -> tuple[NotebookNode, list[dict[str, Any]]]:
    from nbdime.merging import merge_notebooks

    args = argparse.Namespace(
        merge_strategy=_STRATEGY[pick],
        input_strategy=None,
        output_strategy=None,
        # outputs and execution counts that differ are a conflict too, not silently cleared
        ignore_transients=False,
        log_level="WARNING",
    )
    quiet = _QuietUndecided()
    logger = logging.getLogger("nbdime")
    logger.addFilter(quiet)
    try:
        merged, decisions = merge_notebooks(base, local, remote, args)
    finally:
        logger.removeFilter(quiet)
    return merged, list(decisions)


class _QuietUndecided(logging.Filter):
    """nbdime logs every conflict that a strategy leaves undecided ("mergetool" all of them,
    "remove" cell ids, "fail" cell types); merge() reads those conflicts from the decisions and
    reports them itself, so those messages are dropped, others kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_UNDECIDED)


def _write(merged: NotebookNode, inputs: tuple[NotebookNode, ...]) -> bytes:
    """The merged notebook as nbformat writes it, checked valid and free of conflict marks."""
    import nbformat
    from nbformat.corpus.words import generate_corpus_id

    if (merged.nbformat, merged.nbformat_minor) >= (4, 5):
        # nbdime's strategy for cell ids in conflict is to remove them, and two cells inserted
        # apart may carry the same id; a notebook of format 4.5 needs one on every cell, unique
        seen: set[str] = set()
        for cell in merged.cells:
            if not cell.get("id") or cell["id"] in seen:
                cell["id"] = generate_corpus_id()  # type: ignore[no-untyped-call]
            seen.add(cell["id"])
    _validate(merged)
    # a mark that none of the three had can only come from the merge (a user's own "=======" in
    # a markdown cell is theirs to keep)
    added = _marks(merged) - set().union(*(_marks(notebook) for notebook in inputs))
    if added:
        raise _NotNotebook(f"the merge wrote conflict marks ({', '.join(sorted(added))})")
    text: str = nbformat.writes(merged)  # type: ignore[no-untyped-call]
    return (text + "\n").encode("utf-8")


def _marks(node: object) -> set[str]:
    """The conflict marker lines in a notebook's strings, and nbdime's conflict records."""
    found: set[str] = set()
    if isinstance(node, str):
        found.update(match.group(1) for match in _MARKER.finditer(node))
    elif isinstance(node, dict):
        found.update(key for key in node if key == _NBDIME_RECORD)
        for value in node.values():
            found |= _marks(value)
    elif isinstance(node, list):
        for value in node:
            found |= _marks(value)
    return found


def _describe(base: NotebookNode, conflicts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each conflicting cell and its conflicting parts ("cell 2 (id 5f3a)", "source, outputs"),
    in the base's order."""
    parts: dict[tuple[int, str], list[str]] = {}

    def add(order: int, name: str, what: str) -> None:
        found = parts.setdefault((order, name), [])
        if what not in found:
            found.append(what)

    cells = base.cells
    for decision in conflicts:
        path = tuple(decision["common_path"])
        ops = [*(decision["local_diff"] or []), *(decision["remote_diff"] or [])]
        if path[:1] == ("cells",) and len(path) >= 2:
            index = int(path[1])
            keys = [str(path[2])] if len(path) > 2 else sorted({str(o["key"]) for o in ops})
            for what in keys:
                if what != "id":  # ids are no one's work: settled without a pick (merge())
                    add(index, _cell_name(cells, index), what)
        elif path == ("cells",):
            # cells inserted, deleted or replaced at the same place on both sides
            for index in sorted({int(o["key"]) for o in ops}):
                ours = _verbs(decision["local_diff"], index)
                theirs = _verbs(decision["remote_diff"], index)
                if ours == theirs == _INSERTED:
                    place = (
                        "at the end"
                        if index >= len(cells)
                        else f"before {_cell_name(cells, index)}"
                    )
                    add(index, f"new cells {place}", "inserted by us and by them")
                else:
                    add(index, _cell_name(cells, index), f"{ours} by us, {theirs} by them")
        else:
            where = "/".join(str(p) for p in path) or ", ".join(
                sorted({str(o["key"]) for o in ops})
            )
            add(-1, "notebook", where)
    return [(name, ", ".join(whats)) for (_, name), whats in sorted(parts.items())]


def _cell_name(cells: list[Any], index: int) -> str:
    cell_id = cells[index].get("id") if index < len(cells) else None
    return f"cell {index + 1}" + (f" (id {cell_id})" if cell_id else "")


def _verbs(diff: list[dict[str, Any]] | None, index: int) -> str:
    words = {"addrange": _INSERTED, "removerange": "deleted", "patch": "changed"}
    found = [words.get(o["op"], o["op"]) for o in diff or [] if int(o["key"]) == index]
    return " and ".join(found) or "unchanged"


def _reason(cells: list[str]) -> str:
    kinds = {what.strip() for line in cells for what in line.split(": ", 1)[1].split(",")}
    count = f"{len(cells)} cell" + ("s" if len(cells) != 1 else "")
    if kinds <= _RUN_PARTS:
        return f"only outputs conflict: both ran {count} with different results"
    return f"both changed {count} differently"
