"""Run one dashboard: ``python -m chronohub_publish.execute`` reads a job (JSON) on stdin and
writes the executed notebook (JSON) on stdout.

A process of its own, started by ``dashboards.py`` with its memory limited
(``RLIMIT_DATA``, inherited by the kernel it starts: the kernel process is the one limited)
and killed with its process group when the run overruns its time limit. The kernel is a
fresh one (nbclient starts one per run and shuts it down), its working directory the
commit's files. Parameters go in papermill's way: a cell tagged ``injected-parameters``
right after the cell tagged ``parameters`` (at the top if there is none).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError


def inject(nb: Any, parameters: dict[str, Any]) -> Any:
    """``nb`` with an ``injected-parameters`` cell after its ``parameters`` cell."""
    if not parameters:
        return nb
    # repr() of str/int/float/bool is Python source for the same value: the names were
    # checked against the declared ones, the values coerced to the defaults' types.
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
        source, metadata={"tags": ["injected-parameters"]}
    )
    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    at = next((i + 1 for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])), 0)
    cells.insert(at, cell)
    nb.cells = cells
    return nb


def failing_cell(nb: Any) -> int | None:
    """The index of the first cell with an error output."""
    for index, cell in enumerate(nb.cells):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return index
    return None


def main() -> None:
    job = json.load(sys.stdin)
    nb = inject(
        nbformat.reads(job["notebook"], as_version=4),  # type: ignore[no-untyped-call]
        job["parameters"],
    )
    client = NotebookClient(
        nb,
        timeout=job["timeout_s"],
        kernel_name="python3",
        resources={"metadata": {"path": job["cwd"]}},
    )
    error: str | None = None
    timed_out = False
    try:
        client.execute()
    except CellTimeoutError:
        # nbclient interrupted the kernel: the cell's error output is a KeyboardInterrupt,
        # which would hide why; the time limit is the reason
        error, timed_out = f"ran longer than {job['timeout_s']} s", True
    except CellExecutionError as exc:
        error = str(exc)
    result = {
        "notebook": nbformat.writes(nb),  # type: ignore[no-untyped-call]
        "error": error,
        "failing_cell": failing_cell(nb) if error else None,
        "timed_out": timed_out,
    }
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
