"""Interop with JupyterLab's real notebook model: ``@jupyter/ydoc``'s YNotebook, run by Node.js.

Python sends the document as Yjs update bytes; the Node script (tests/node/ydoc/notebook.mjs)
loads them into a YNotebook and answers with what JupyterLab would show, or with its own edits
as an update that Python applies. The Makefile installs the npm packages before the tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, TransactionEvent

from collab import execution, notebook
from collab.session import Session
from tests.collab.conftest import Recorded, cells, notebook_doc
from tests.helpers import wait_for
from tests.unit.test_collab_notebook import sample

pytestmark = pytest.mark.interop

NODE_PROJECT = Path(__file__).resolve().parents[1] / "node" / "ydoc"
ALICE = execution.Participant("alice")


async def node(mode: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run the YNotebook script in ``mode`` on ``payload``; its JSON answer."""
    if not (NODE_PROJECT / "node_modules" / "@jupyter" / "ydoc").is_dir():
        pytest.fail(f"npm packages missing in {NODE_PROJECT}: run `make test` (it runs npm ci)")
    node_bin = shutil.which("node")
    assert node_bin, "Node.js (>= 20) is needed for the interop tests"
    process = await asyncio.create_subprocess_exec(
        node_bin,
        str(NODE_PROJECT / "notebook.mjs"),
        mode,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=NODE_PROJECT,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(payload).encode()), 60)
    assert process.returncode == 0, err.decode()
    answer: dict[str, Any] = json.loads(out)
    return answer


def b64(update: bytes) -> str:
    return base64.b64encode(update).decode()


async def test_jupyterlab_reads_the_notebook_python_built() -> None:
    doc: Doc[Any] = Doc()
    notebook.load(doc, sample())

    seen = await node("read", {"update": b64(doc.get_update())})

    assert seen["notebook"] == notebook.read(doc) == sample()
    assert seen["states"] == {"calc": "idle"}


async def test_python_reads_what_jupyterlab_edits() -> None:
    doc = notebook_doc("1 + 1")
    new_cell = {"id": "added", "cell_type": "code", "source": "2 + 2", "metadata": {}}

    answer = await node(
        "edit",
        {
            "update": b64(doc.get_update()),
            "edits": [
                {"op": "source", "cell_id": "c0", "text": "40 + 2"},
                {"op": "insert", "index": 1, "cell": new_cell},
            ],
        },
    )
    doc.apply_update(base64.b64decode(answer["update"]))

    read = notebook.read(doc)
    assert [(c["id"], c["source"]) for c in read["cells"]] == [
        ("c0", "40 + 2"),
        ("added", "2 + 2"),
        ("md", "# notes"),
    ]
    assert read["cells"][1]["outputs"] == []
    assert read["cells"][1]["execution_count"] is None


@pytest.mark.collab  # a real kernel runs the cell
async def test_jupyterlab_asks_for_a_cell_and_sees_another_clients_outputs() -> None:
    """A JupyterLab client writes a request; the kernel runs it; JupyterLab sees the outputs."""
    recorded = Recorded()
    doc = notebook_doc("print('from the kernel')\n6 * 7")
    session = Session(
        uuid.uuid4(),
        doc,
        room="interop",
        created_by=ALICE,
        may_write=lambda who: _yes(),
        record=recorded,
    )
    lab_cell = {"id": "from-lab", "cell_type": "code", "source": "print('lab')", "metadata": {}}
    async with session:
        answer = await node(
            "edit",
            {
                "update": b64(doc.get_update()),
                "edits": [
                    {"op": "request", "request_id": "lab-1", "cell_id": "c0"},
                    # A cell JupyterLab creates (no execution_state yet), asked for at once.
                    {"op": "insert", "index": 1, "cell": lab_cell},
                    {"op": "request", "request_id": "lab-2", "cell_id": "from-lab"},
                ],
            },
        )
        # The room applies a participant's update with the participant as origin.
        with doc.transaction(origin=ALICE):
            doc.apply_update(base64.b64decode(answer["update"]))

        requests = doc.get(notebook.REQUESTS, type=Map)
        for request_id in ("lab-1", "lab-2"):
            await wait_for(
                lambda r=request_id: (requests.get(r) or {}).get("status") == "ok", timeout_s=20
            )

    seen = await node("read", {"update": b64(doc.get_update())})
    assert seen["notebook"]["cells"] == notebook.read(doc)["cells"]
    assert seen["notebook"]["cells"][0]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "from the kernel\n"},
        {
            "output_type": "execute_result",
            "execution_count": 1,
            "data": {"text/plain": "42"},
            "metadata": {},
        },
    ]
    assert seen["notebook"]["cells"][1]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "lab\n"}
    ]
    assert seen["states"] == {"c0": "idle", "from-lab": "idle"}
    assert seen["requests"] == {
        "lab-1": {"cell_id": "c0", "requester": "alice", "status": "ok", "execution_count": 1},
        "lab-2": {
            "cell_id": "from-lab",
            "requester": "alice",
            "status": "ok",
            "execution_count": 2,
        },
    }


@pytest.mark.collab  # a real kernel runs the cell
async def test_jupyterlabs_model_follows_an_execution_update_by_update() -> None:
    """Each update the executor sends makes JupyterLab's model signal what changed, in order."""
    recorded = Recorded()
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"
    doc: Doc[Any] = Doc()
    notebook.load(doc, cells(code))
    base = doc.get_update()
    updates: list[bytes] = []

    def keep(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = doc.observe(keep)
    async with Session(
        uuid.uuid4(),
        doc,
        room="interop",
        created_by=ALICE,
        may_write=lambda who: _yes(),
        record=recorded,
    ) as session:
        request = await session.execute("c0", ALICE)
        assert (await asyncio.wait_for(request.done, 20)).status == "ok"
    doc.unobserve(subscription)

    seen = await node("replay", {"update": b64(base), "updates": [b64(u) for u in updates]})

    changes = [tuple(change) for change in seen["changes"]]
    assert [c for c in changes if c[0] == "state"] == [
        ("state", "c0", "running"),
        ("state", "c0", "idle"),
    ]
    assert changes[-1] == ("state", "c0", "idle")
    assert ("count", "c0", 1) in changes
    first_output = changes.index(("outputs", "c0"))
    assert changes.index(("state", "c0", "running")) < first_output
    # The first chunk comes with its output; later ones are appended to its text in place.
    # (Chunks that reach the executor together go out as one update: compare the joined text.)
    streamed = [(i, c[2]) for i, c in enumerate(changes) if c[0] == "stream"]
    assert "".join(text for _, text in streamed) == "1\n2\n"
    assert first_output < streamed[0][0]
    assert seen["notebook"]["cells"][0]["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "0\n1\n2\n"}
    ]


async def _yes() -> bool:
    return True
