"""``push --strip-outputs``: notebooks without their outputs (for teaching: hand out the
exercises, not the answers).

The outputs are stripped from the files in the folder, not only from the commit: a committed
copy that differs from the file on disk would show as a local change for ever, and the next
``pull`` would commit the outputs back ("local changes before pull"). Running the notebook
makes them again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def strip(notebook: Any) -> bool:
    """Remove outputs and execution counts from a notebook (nbformat node); whether it had
    any."""
    changed = False
    for cell in notebook.cells:
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell["outputs"] = []
        cell["execution_count"] = None
    return changed


def strip_folder(root: Path) -> list[str]:
    """Strip every notebook under ``root`` (not in .git or checkpoints) that has outputs, in
    place; the paths stripped, relative to ``root``."""
    import nbformat  # only here: the other commands need no notebook library

    done = []
    for path in sorted(root.rglob("*.ipynb")):
        relative = path.relative_to(root)
        if relative.parts[0] == ".git" or ".ipynb_checkpoints" in relative.parts:
            continue
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)  # type: ignore[no-untyped-call]
        if strip(notebook):
            nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
            done.append(relative.as_posix())
    return done
