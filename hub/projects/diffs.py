"""What changed between two versions of a file: a unified patch for text, and for notebooks
a comparison cell by cell. Pure: bytes in, JSON-ready values out.

Notebooks are compared as lists of cells. Cells are matched by their ``id`` when both
versions give every cell one (nbformat 4.5 and later), else by their type and source with
``difflib``'s sequence matching; a matched pair whose source or outputs differ is
``modified`` (with the source's patch), an unmatched cell ``added`` or ``removed``. Outputs
are compared, not shown: they are often large and binary, and the hub's pages render them.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

# Larger files get no patch ("too_large"): a diff of them is no use to read in a browser.
MAX_PATCH_INPUT_BYTES = 1024 * 1024
# What git looks at to decide that a file is binary: a NUL in its first 8,000 bytes.
BINARY_SNIFF_BYTES = 8000

CellStatus = Literal["added", "removed", "modified"]


def is_binary(data: bytes) -> bool:
    """Whether ``data`` is binary, as git decides it (a NUL early on), or not UTF-8."""
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def unified(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> str:
    """The unified diff of two texts, as ``git diff`` prints it (without its header line)."""
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=old_name,
        tofile=new_name,
        n=context,
        lineterm="",
    )
    return "\n".join(lines) + "\n" if old != new else ""


def counts(patch: str) -> tuple[int, int]:
    """Lines added and removed in a unified ``patch``."""
    added = removed = 0
    for line in patch.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


@dataclass(frozen=True)
class Cell:
    """What a notebook cell is compared by."""

    id: str | None
    cell_type: str
    source: str
    outputs: str  # the outputs as canonical JSON

    @property
    def key(self) -> tuple[str, str]:
        return (self.cell_type, self.source)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value) if value is not None else ""


def cells_of(data: bytes) -> list[Cell] | None:
    """The cells of a notebook, or None if ``data`` is not one."""
    try:
        notebook = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        return None
    out = []
    for raw in notebook["cells"]:
        if not isinstance(raw, dict):
            return None
        cell_id = raw.get("id")
        out.append(
            Cell(
                id=cell_id if isinstance(cell_id, str) else None,
                cell_type=str(raw.get("cell_type", "")),
                source=_text(raw.get("source")),
                outputs=json.dumps(raw.get("outputs", []), sort_keys=True),
            )
        )
    return out


def _pairs(old: Sequence[Cell], new: Sequence[Cell]) -> list[tuple[int | None, int | None]]:
    """Matched cell indexes (old, new); None on one side: added or removed."""
    if old and new and all(c.id for c in old) and all(c.id for c in new):
        where = {c.id: i for i, c in enumerate(new)}
        pairs: list[tuple[int | None, int | None]] = []
        matched = set()
        for i, cell in enumerate(old):
            j = where.get(cell.id)
            pairs.append((i, j))
            if j is not None:
                matched.add(j)
        pairs.extend((None, j) for j in range(len(new)) if j not in matched)
        return pairs
    matcher = difflib.SequenceMatcher(
        a=[c.key for c in old], b=[c.key for c in new], autojunk=False
    )
    pairs = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal" or op == "replace":
            # a replaced run pairs up as far as both sides go (edited cells), the rest of
            # the longer side was added or removed
            common = min(i2 - i1, j2 - j1)
            pairs.extend((i1 + k, j1 + k) for k in range(common))
            pairs.extend((i, None) for i in range(i1 + common, i2))
            pairs.extend((None, j) for j in range(j1 + common, j2))
        elif op == "delete":
            pairs.extend((i, None) for i in range(i1, i2))
        else:
            pairs.extend((None, j) for j in range(j1, j2))
    return pairs


def notebook_diff(old_data: bytes | None, new_data: bytes | None) -> dict[str, Any] | None:
    """The cell-by-cell comparison of two notebooks (None on a side: the file was added or
    deleted); None if either side is not a notebook."""
    old = cells_of(old_data) if old_data is not None else []
    new = cells_of(new_data) if new_data is not None else []
    if old is None or new is None:
        return None
    changed: list[dict[str, Any]] = []
    unchanged = 0
    for i, j in _pairs(old, new):
        a = old[i] if i is not None else None
        b = new[j] if j is not None else None
        status: CellStatus
        if a is None and b is not None:
            status = "added"
        elif b is None and a is not None:
            status = "removed"
        elif a is not None and b is not None and (a.key, a.outputs) != (b.key, b.outputs):
            status = "modified"
        else:
            unchanged += 1
            continue
        either = b if b is not None else a
        assert either is not None
        changed.append(
            {
                "status": status,
                "id": either.id,
                "cell_type": either.cell_type,
                "old_index": i,
                "new_index": j,
                "source_patch": unified(
                    a.source if a else "", b.source if b else "", "a/source", "b/source"
                ),
                "outputs_changed": (a.outputs if a else "[]") != (b.outputs if b else "[]"),
            }
        )
    return {
        "cells_before": len(old),
        "cells_after": len(new),
        "unchanged": unchanged,
        "cells": changed,
    }
