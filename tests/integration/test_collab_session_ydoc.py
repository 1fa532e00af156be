"""JupyterLab's own notebook model (``@jupyter/ydoc``) over a real ``y-websocket`` provider,
in Node.js, joined to a shared execution session's room: it sees the notebook, its edit
reaches the others, and it sees the outputs of an execution another client (the Python
room client) asked for through the document. Edits and outputs survive a hub restart.

The Node packages are installed from tests/node/ydoc/package-lock.json by the Makefile.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from collab import client, notebook
from events import store
from tests.helpers import wait_for
from tests.integration.collab_fixtures import serving
from tests.integration.test_collab_sessions_api import SESSIONS, cell, nb, stream_text

pytestmark = [pytest.mark.integration, pytest.mark.collab, pytest.mark.interop]

NODE_DIR = Path(__file__).resolve().parents[1] / "node" / "ydoc"
SCRIPT = NODE_DIR / "session.mjs"
EDITED = "'edited in JupyterLab's model'"


async def node(*args: str) -> asyncio.subprocess.Process:
    executable = shutil.which("node")
    assert executable is not None, "Node.js is needed for the @jupyter/ydoc interop test"
    assert (NODE_DIR / "node_modules" / "y-websocket").is_dir(), (
        "tests/node/ydoc is not installed: run `make test` (it runs npm ci there)"
    )
    return await asyncio.create_subprocess_exec(
        executable,
        str(SCRIPT),
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def said(process: asyncio.subprocess.Process, timeout_s: float = 40) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
    if not line:
        stderr = await process.stderr.read() if process.stderr else b""
        raise AssertionError(f"the Node client ended early: {stderr.decode()[-2000:]}")
    message: dict[str, Any] = json.loads(line)
    assert message["event"] != "timeout", message
    return message


def jl_cell(cells: list[dict[str, Any]], cell_id: str) -> dict[str, Any]:
    found = [c for c in cells if c["id"] == cell_id]
    assert found, cells
    return found[0]


async def test_jupyterlab_model_sees_the_notebook_and_outputs_of_anothers_execution(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url) as hub:
        alice = await hub.token("alice")
        status, created = await hub.api.call(
            "POST", SESSIONS, alice, json={"notebook": nb("print('from the shared kernel')", "1")}
        )
        assert status == 201, created
        room = created["room"]
        watcher = await node(
            "watch", hub.url, room, alice, "c0", "from the shared kernel", "c1", EDITED
        )
        try:
            synced = await said(watcher)
            assert synced["nbformat"] == 4
            assert [c["id"] for c in synced["cells"]] == ["c0", "c1", "md"]
            assert jl_cell(synced["cells"], "c0")["source"] == "print('from the shared kernel')"
            assert jl_cell(synced["cells"], "md")["cell_type"] == "markdown"
            assert (await said(watcher))["event"] == "edited"
            async with client.connect(hub.url, room, token=alice) as other:
                # JupyterLab's edit reached the room and the other client ...
                await wait_for(lambda: cell(other.doc, "c1").get("source") == EDITED)
                # ... and the other client asks, through the document, for c0 to run.
                other.doc.get(notebook.REQUESTS, type=pycrdt.Map)["from-python"] = {"cell_id": "c0"}
                outputs = await said(watcher)
            assert outputs["event"] == "outputs"
            assert outputs["text"] == "from the shared kernel\n"
            assert outputs["execution_count"] == 1
            assert outputs["state"] == "idle"
            assert await asyncio.wait_for(watcher.wait(), 10) == 0
        finally:
            if watcher.returncode is None:
                watcher.kill()
                await watcher.wait()
    # A new hub on the same database: the room reloads with the edit and the outputs.
    async with serving(event_store, db_url) as restarted:
        alice = await restarted.token("alice")
        reader = await node("read", restarted.url, room, alice)
        try:
            cells = (await said(reader))["cells"]
        finally:
            if reader.returncode is None:
                await asyncio.wait_for(reader.wait(), 10)
        assert jl_cell(cells, "c1")["source"] == EDITED
        assert jl_cell(cells, "c0")["execution_count"] == 1
        assert jl_cell(cells, "c0")["outputs"][0]["text"] == "from the shared kernel\n"
        # A new session on the reloaded room keeps its document (and can run it again).
        status, again = await restarted.api.call("POST", SESSIONS, alice, json={"room": room})
        assert status == 201, again
        async with client.connect(restarted.url, room, token=alice) as joined:
            await wait_for(lambda: cell(joined.doc, "c1").get("source") == EDITED)
            status, _ = await restarted.api.call(
                "POST", f"{SESSIONS}/{again['id']}/execute", alice, json={"cell_id": "c0"}
            )
            assert status == 202
            await wait_for(
                lambda: (
                    cell(joined.doc, "c0").get("execution_count") == 1
                    and stream_text(joined.doc, "c0") == "from the shared kernel\n"
                ),
                timeout_s=30,
            )
