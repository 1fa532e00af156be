"""A notebook on a pycrdt ``Doc`` in JupyterLab's notebook schema, and the edits execution makes.

The schema is the one ``@jupyter/ydoc``'s ``YNotebook`` (JupyterLab's notebook model) and
``jupyter_ydoc.YNotebook`` (its Python twin) read and write::

    state  Map   dirty, path, document_id …
    meta   Map   nbformat, nbformat_minor, metadata (Map: kernelspec, language_info …)
    cells  Array of Map: id, cell_type, source (Text), metadata (Map), and for code cells
           execution_count, execution_state ("idle" | "running"), outputs (Array of Map;
           a stream output's "text" is a Text that later chunks are appended to)

plus chronohub's own top-level map ``execution_requests`` (see ``collab.execution``).

Building and reading whole notebooks is ``jupyter_ydoc``'s work (the library JupyterLab's
server uses); the per-output edits the executor makes are here, small and on pycrdt types.
"""

from __future__ import annotations

import copy
import uuid
import warnings
from typing import Any

import jupyter_ydoc
from pycrdt import Array, Doc, Map, Text

from collab import session_errors as errors

CELLS = "cells"
META = "meta"
STATE = "state"
REQUESTS = "execution_requests"
"""The top-level map in which participants ask for cells to run (``collab.execution``)."""

NBFORMAT = 4
NBFORMAT_MINOR = 5
# Ids given to cells of a notebook that has none (nbformat < 4.5) are derived from their
# position, so the same notebook always builds the same document.
_ID_NAMESPACE = uuid.UUID("5b0f8a3e-8d0e-4c36-9b53-4f7a3b1f7c11")


def validate(notebook: dict[str, Any]) -> dict[str, Any]:
    """An nbformat 4 notebook checked and normalised to 4.5 (every cell has a unique id).

    Raises ``NotebookInvalid`` naming the problem.
    """
    if not isinstance(notebook, dict):
        raise errors.NotebookInvalid("a notebook must be a JSON object")
    if notebook.get("nbformat") != NBFORMAT:
        raise errors.NotebookInvalid(
            f"only nbformat {NBFORMAT} notebooks are supported, got {notebook.get('nbformat')!r}"
        )
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise errors.NotebookInvalid("a notebook's 'cells' must be a list")
    nb = copy.deepcopy(notebook)
    minor = nb.get("nbformat_minor")
    if isinstance(minor, int) and minor < NBFORMAT_MINOR:
        # 4.0-4.4 had no cell ids; JupyterLab's model needs them (and 4.5 requires them).
        for index, cell in enumerate(nb["cells"]):
            if isinstance(cell, dict) and "id" not in cell:
                cell["id"] = uuid.uuid5(_ID_NAMESPACE, str(index)).hex[:16]
        nb["nbformat_minor"] = NBFORMAT_MINOR
    seen: set[str] = set()
    for index, cell in enumerate(nb["cells"]):
        cell_id = cell.get("id") if isinstance(cell, dict) else None
        if isinstance(cell_id, str):
            if cell_id in seen:
                raise errors.NotebookInvalid(f"cells[{index}]: cell id {cell_id!r} is not unique")
            seen.add(cell_id)
    # imported here: nbformat's validator loads jsonschema's format checkers, seconds of
    # import time that a hub which never opens a notebook should not pay at start
    import nbformat

    try:
        with warnings.catch_warnings():
            # nbformat warns (and rewrites) on its own fixes; we refuse instead of guessing.
            warnings.simplefilter("error")
            nbformat.validate(nb, version=NBFORMAT)
    except nbformat.ValidationError as exc:
        where = "".join(f"[{step!r}]" for step in exc.absolute_path)
        raise errors.NotebookInvalid(f"notebook{where}: {exc.message}") from exc
    except Warning as exc:
        raise errors.NotebookInvalid(f"notebook: {exc}") from exc
    return nb


def initial_update(notebook: dict[str, Any]) -> bytes:
    """The Yjs update that builds ``notebook`` (validated first) into an empty document.

    Built on ``Doc(client_id=0)``, so the same notebook always gives the same history and a
    client still holding an older copy does not see its cells twice after a rebuild.
    """
    nb = validate(notebook)
    if not nb["cells"]:
        # jupyter_ydoc adds a random-id empty cell to an empty notebook; add our own instead.
        empty_cell_id = uuid.uuid5(_ID_NAMESPACE, "0").hex[:16]
        nb["cells"] = [
            {
                "id": empty_cell_id,
                "cell_type": "code",
                "source": "",
                "metadata": {"trusted": True},
                "outputs": [],
                "execution_count": None,
            }
        ]
    doc: Doc[Any] = Doc(client_id=0)
    jupyter_ydoc.YNotebook(doc).set(nb)
    return doc.get_update()


def load(doc: Doc[Any], notebook: dict[str, Any]) -> None:
    """Fill an empty document with ``notebook``."""
    if len(doc.get(CELLS, type=Array)):
        raise errors.NotebookInvalid("the document already holds a notebook")
    doc.apply_update(initial_update(notebook))


def read(doc: Doc[Any]) -> dict[str, Any]:
    """The document's notebook as an nbformat dict (runtime-only fields dropped).

    Read from a copy: ``jupyter_ydoc.YNotebook`` attaches an undo manager to the document it
    wraps, which the live, long-running document must not carry.
    """
    snapshot: Doc[Any] = Doc()
    snapshot.apply_update(doc.get_update())
    notebook: dict[str, Any] = jupyter_ydoc.YNotebook(snapshot).get()
    return notebook


# --- the edits execution makes (call inside one ``doc.transaction()`` per batch) ----------


def find_cell(doc: Doc[Any], cell_id: str) -> Map[Any]:
    """The cell with this id; raises ``CellNotFound``."""
    for cell in doc.get(CELLS, type=Array):
        if isinstance(cell, Map) and cell.get("id") == cell_id:
            return cell
    raise errors.CellNotFound(cell_id)


def find_code_cell(doc: Doc[Any], cell_id: str) -> Map[Any]:
    """The code cell with this id; raises ``CellNotFound`` or ``NotACodeCell``."""
    cell = find_cell(doc, cell_id)
    cell_type = cell.get("cell_type")
    if cell_type != "code":
        raise errors.NotACodeCell(cell_id, str(cell_type))
    return cell


def source_of(cell: Map[Any]) -> str:
    """A cell's source as one string."""
    return str(cell.get("source", ""))


def begin_execution(cell: Map[Any]) -> None:
    """Mark the cell running, with no outputs and no execution count yet."""
    _outputs(cell).clear()
    cell["execution_count"] = None
    cell["execution_state"] = "running"


def end_execution(cell: Map[Any], execution_count: int | None) -> None:
    """Mark the cell idle with its final execution count."""
    if execution_count is not None:
        cell["execution_count"] = execution_count
    cell["execution_state"] = "idle"


def set_execution_count(cell: Map[Any], execution_count: int) -> None:
    """Number the cell as the kernel did."""
    cell["execution_count"] = execution_count


def clear_outputs(cell: Map[Any]) -> None:
    """Remove every output of the cell."""
    _outputs(cell).clear()


def append_output(cell: Map[Any], output: dict[str, Any]) -> int:
    """Add an nbformat output; returns its index.

    A stream output following one of the same stream (stdout/stderr) is appended to it in
    place, as JupyterLab shows them: its text is a ``Text`` that grows, so every participant
    receives only the new characters.
    """
    outputs = _outputs(cell)
    if output.get("output_type") == "stream" and len(outputs):
        last = outputs[len(outputs) - 1]
        if (
            isinstance(last, Map)
            and last.get("output_type") == "stream"
            and last.get("name") == output.get("name")
            and isinstance(last.get("text"), Text)
        ):
            text = last["text"]
            text += _joined(output.get("text", ""))
            return len(outputs) - 1
    outputs.append(_output_map(output))
    return len(outputs) - 1


def update_output_data(
    cell: Map[Any], index: int, data: dict[str, Any], meta: dict[str, Any]
) -> bool:
    """Replace the data of output ``index`` (``update_display_data``); ``False`` if it is gone."""
    outputs = _outputs(cell)
    if index >= len(outputs):
        return False
    output = outputs[index]
    if not isinstance(output, Map) or output.get("output_type") not in (
        "display_data",
        "execute_result",
    ):
        return False
    output["data"] = data
    output["metadata"] = meta
    return True


def _outputs(cell: Map[Any]) -> Array[Any]:
    outputs = cell.get("outputs")
    if not isinstance(outputs, Array):
        outputs = cell["outputs"] = Array()
    return outputs


def _output_map(output: dict[str, Any]) -> Map[Any]:
    """An output as JupyterLab's model stores it: a Map, stream text as a Text."""
    fields = dict(output)
    if fields.get("output_type") == "stream":
        fields["text"] = Text(_joined(fields.get("text", "")))
    return Map(fields)


def _joined(text: str | list[str]) -> str:
    return text if isinstance(text, str) else "".join(text)
