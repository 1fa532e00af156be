"""Collaborating on a project's notebook (issue 17, part 3): a session opened from a project,
edited by two people, run, committed back through the push path; the room following the
project's roles; a concurrent push sending the commit to ``collab/<session>``; bad input."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from collab import client, notebook
from collab import errors as collab_errors
from events import store
from events.catalog import collab_sessions as session_events
from events.catalog import projects as project_events
from hub.api import collab as collab_api
from hub.api import project_sessions as project_sessions_api
from hub.servers import isolation
from tests.helpers import wait_for
from tests.integration.browser import Browser, set_password
from tests.integration.client_cli import Person, sources
from tests.integration.collab_fixtures import CollabHub, serving
from tests.integration.git_client import Git, with_token
from tests.integration.test_collab_session_ydoc import node as ydoc_client
from tests.integration.test_collab_session_ydoc import said

pytestmark = [pytest.mark.integration, pytest.mark.collab, pytest.mark.interop]


def lab(*cells: str) -> bytes:
    """A notebook of code cells c0, c1… as Jupyter writes it."""
    return (
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [
                    {
                        "id": f"c{i}",
                        "cell_type": "code",
                        "source": source,
                        "metadata": {},
                        "outputs": [],
                        "execution_count": None,
                    }
                    for i, source in enumerate(cells)
                ],
            },
            indent=1,
        )
        + "\n"
    ).encode()


def cell_of(doc: pycrdt.Doc[Any], cell_id: str) -> pycrdt.Map[Any] | None:
    for entry in doc.get(notebook.CELLS, type=pycrdt.Array):
        if isinstance(entry, pycrdt.Map) and entry.get("id") == cell_id:
            return entry
    return None


def source_of(doc: pycrdt.Doc[Any], cell_id: str) -> str:
    found = cell_of(doc, cell_id)
    return str(found.get("source", "")) if found is not None else ""


def append_to(doc: pycrdt.Doc[Any], cell_id: str, text: str) -> None:
    """Type ``text`` at the end of a cell, as an editor does."""
    found = cell_of(doc, cell_id)
    assert found is not None
    source = found["source"]
    assert isinstance(source, pycrdt.Text)
    source += text


@pytest.fixture
async def hub(
    event_store: store.EventStore, db_url: str, tmp_path: Path
) -> AsyncIterator[CollabHub]:
    async with serving(event_store, db_url, data_dir=tmp_path / "data") as running:
        yield running


async def project_with_lab(hub: CollabHub, git: Git, tmp_path: Path) -> tuple[str, Path]:
    """alice/course, holding lab.ipynb and notes.txt, pushed with the real git; bob may write
    it, carol read it. Its clone URL (with alice's token) and alice's work tree."""
    alice = await hub.token("alice")
    for name in ("bob", "carol", "dave"):
        await hub.token(name)
    status, created = await hub.api.call("POST", "/projects", alice, json={"name": "course"})
    assert status == 201, created
    for member, role in (("bob", "write"), ("carol", "read")):
        status, reply = await hub.api.call(
            "PUT", f"/projects/alice/course/members/users/{member}", alice, json={"role": role}
        )
        assert status in (200, 201), reply
    work = tmp_path / "work"
    files = {
        "lab.ipynb": lab("x = 20", "print(x * 2)"),
        "notes.txt": b"hi\n",
        "broken.ipynb": b"not json\n",
        "empty.ipynb": b"{}\n",
    }
    await git.new_repo(work, files)
    url = with_token(created["clone_url"], alice)
    await git.ok("push", "-q", url, "main", cwd=work)
    return url, work


async def test_two_collaborators_edit_run_and_commit_a_projects_notebook(
    hub: CollabHub, tmp_path: Path
) -> None:
    git = Git(tmp_path / "home")
    url, _ = await project_with_lab(hub, git, tmp_path)
    alice, bob, carol, dave = [await hub.token(n) for n in ("alice", "bob", "carol", "dave")]
    # bob checks the project out with the hub's client before the session
    bob_cli = Person(tmp_path / "bob", str(hub.api.client.make_url("")).rstrip("/"), bob)
    checked = await bob_cli.ok("project", "checkout", "alice/course", "--json")
    copy = Path(checked.json()["path"])

    status, opened = await hub.api.call(
        "POST", "/projects/alice/course/sessions", alice, json={"path": "lab.ipynb"}
    )
    assert status == 201, opened
    project_sessions_api.ProjectSession.model_validate(opened)  # as the OpenAPI says
    assert (opened["branch"], opened["ref"], opened["path"]) == ("main", "main", "lab.ipynb")
    session_id, room = opened["session"]["id"], opened["session"]["room"]

    # bob edits in JupyterLab's notebook model (@jupyter/ydoc) over a real y-websocket
    # provider, and waits there for the output of the second cell
    bob_lab = await ydoc_client("watch", hub.url, room, bob, "c1", "40", "c0", "x = 20  # bob")
    try:
        async with (
            client.connect(hub.url, room, token=alice) as a,
            client.connect(hub.url, room, token=carol) as c,
        ):
            synced = await said(bob_lab)
            assert [cell["id"] for cell in synced["cells"]] == ["c0", "c1"]
            assert (await said(bob_lab))["event"] == "edited"
            await wait_for(lambda: source_of(a.doc, "c0") == "x = 20  # bob")
            append_to(a.doc, "c1", "  # alice")  # alice edits the second cell
            await wait_for(lambda: source_of(c.doc, "c1") == "print(x * 2)  # alice")
            # carol reads the project: she watches; her edit is refused by the room
            append_to(c.doc, "c0", "  # carol")
            await wait_for(lambda: c.denied)
            # bob runs the cells; the output reaches everyone, JupyterLab's model too
            for cell_id in ("c0", "c1"):
                status, asked = await hub.api.call(
                    "POST",
                    f"/collab/sessions/{session_id}/execute",
                    bob,
                    json={"cell_id": cell_id},
                )
                assert status == 202, asked
            outputs = await said(bob_lab, 90)
            assert outputs["event"] == "outputs"
            assert outputs["text"] == "40\n"
            assert await asyncio.wait_for(bob_lab.wait(), 10) == 0
            # carol may neither run nor commit (403: she sees the session); dave is nobody (404)
            for token, expected in ((carol, 403), (dave, 404)):
                status, reply = await hub.api.call(
                    "POST", f"/collab/sessions/{session_id}/commit", token, json={}
                )
                assert status == expected, reply
                status, reply = await hub.api.call(
                    "POST", f"/collab/sessions/{session_id}/execute", token, json={"cell_id": "c0"}
                )
                assert status == expected, reply
            status, done = await hub.api.call(
                "POST",
                f"/collab/sessions/{session_id}/commit",
                alice,
                json={"message": "Double x together"},
            )
            assert status == 201, done
            project_sessions_api.SessionCommit.model_validate(done)
            assert done["branch"] == "main"
            assert not done["diverted"]
            assert done["participants"] == ["alice", "bob"]

            # the project lists its running session
            status, listed = await hub.api.call("GET", "/projects/alice/course/sessions", carol)
            assert status == 200, listed
            assert [s["session"]["id"] for s in listed["sessions"]] == [session_id]
            assert listed["sessions"][0]["head"] == done["commit"]

            # a member removed loses the room at once: nothing was copied when it opened
            status, _ = await hub.api.call(
                "DELETE", "/projects/alice/course/members/users/bob", alice
            )
            assert status == 204
            status, reply = await hub.api.call(
                "POST", f"/collab/sessions/{session_id}/execute", bob, json={"cell_id": "c0"}
            )
            assert status == 404, reply
            status, reply = await hub.api.call("GET", "/projects/alice/course/sessions", bob)
            assert status == 404, reply
            async with client.connect(hub.url, room, token=bob) as refused:
                await asyncio.wait_for(refused.wait_closed(), 10)
                assert refused.close_code == collab_errors.NOT_FOUND
    finally:
        if bob_lab.returncode is None:
            bob_lab.kill()
            await bob_lab.wait()
    # the real git sees the commit: alice its author, bob a co-author, both cells edited
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone), cwd=tmp_path)
    log = (await git.ok("log", "-1", "--format=%H%n%an <%ae>%n%B", cwd=clone)).out
    sha, author, *message = log.splitlines()
    assert sha == done["commit"]
    assert author == "alice <alice@127.0.0.1>"
    assert message[0] == "Double x together"
    assert "Co-authored-by: bob <bob@127.0.0.1>" in message
    assert not any("carol" in line for line in message)
    committed = json.loads((clone / "lab.ipynb").read_text())
    assert ["".join(c["source"]) for c in committed["cells"]] == [
        "x = 20  # bob",
        "print(x * 2)  # alice",
    ]
    assert "40" in "".join(committed["cells"][1]["outputs"][0]["text"])
    assert (clone / "notes.txt").read_text() == "hi\n"  # the rest of the tree as it was

    # bob's checkout pulls it with the hub's client (bob, a reader again)
    status, reply = await hub.api.call(
        "PUT", "/projects/alice/course/members/users/bob", alice, json={"role": "read"}
    )
    assert status in (200, 201), reply
    pulled = await bob_cli.ok("project", "pull", str(copy), "--json")
    assert pulled.json()["status"] == "fast-forward", pulled.out
    assert sources(copy / "lab.ipynb") == ["x = 20  # bob", "print(x * 2)  # alice"]

    # the log: opened, pushed (via api) with committed_from_session, and no file content
    events = await hub.api.store.read_all(limit=100_000)
    kinds = [e.type for e in events if e.stream_id.startswith("project-")]
    assert kinds.count("project.session_opened") == 1
    i = kinds.index("project.committed_from_session")
    assert kinds[i - 1] == "project.pushed"
    pushed = [e.data for e in events if isinstance(e.data, project_events.ProjectPushed)][-1]
    assert pushed.via == "api"
    assert pushed.pusher == "alice"
    recorded = next(
        e.data for e in events if isinstance(e.data, project_events.ProjectCommittedFromSession)
    )
    assert recorded.participants == ["alice", "bob"]
    dumped = json.dumps([e.model_dump(mode="json") for e in events])
    assert "# bob" not in dumped
    assert "print(x" not in dumped


async def test_a_concurrent_push_wins_and_the_commit_lands_on_a_collab_branch(
    hub: CollabHub, tmp_path: Path
) -> None:
    git = Git(tmp_path / "home")
    url, work = await project_with_lab(hub, git, tmp_path)
    alice = await hub.token("alice")
    status, opened = await hub.api.call(
        "POST", "/projects/alice/course/sessions", alice, json={"path": "lab.ipynb"}
    )
    assert status == 201, opened
    session_id, room = opened["session"]["id"], opened["session"]["room"]
    async with client.connect(hub.url, room, token=alice) as a:
        await wait_for(lambda: source_of(a.doc, "c0") == "x = 20")
        append_to(a.doc, "c0", "  # in the session")
        # meanwhile someone pushes to main with git
        pushed = await git.commit(work, {"notes.txt": b"pushed meanwhile\n"}, "meanwhile")
        await git.ok("push", "-q", url, "main", cwd=work)
        await wait_for(lambda: source_of(a.doc, "c0") == "x = 20  # in the session")
        status, done = await hub.api.call(
            "POST", f"/collab/sessions/{session_id}/commit", alice, json={}
        )
    assert status == 409, done
    project_sessions_api.SessionCommit.model_validate(done)
    assert done["diverted"]
    assert done["branch"] == f"collab/{session_id}"
    assert f"collab/{session_id}" in done["message"]
    assert done["parent"] == opened["head"]
    remote = (await git.ok("ls-remote", url, cwd=tmp_path)).out
    heads = {ref: sha for sha, ref in (line.split("\t") for line in remote.splitlines())}
    assert heads["refs/heads/main"] == pushed  # the push won, untouched
    assert heads[f"refs/heads/collab/{session_id}"] == done["commit"]
    events = await hub.api.store.read_all(limit=100_000)
    recorded = [
        e.data for e in events if isinstance(e.data, project_events.ProjectCommittedFromSession)
    ]
    assert [(e.branch, e.diverted) for e in recorded] == [(f"collab/{session_id}", True)]
    # nothing more to commit now: said so
    status, reply = await hub.api.call(
        "POST", f"/collab/sessions/{session_id}/commit", alice, json={}
    )
    assert status == 409, reply
    assert "nothing to commit" in reply["message"]
    # the session goes on on its branch: the next commit builds on the last one, no conflict
    async with client.connect(hub.url, room, token=alice) as a:
        await wait_for(lambda: source_of(a.doc, "c0") == "x = 20  # in the session")
        append_to(a.doc, "c0", " again")
        status, again = await hub.api.call(
            "POST", f"/collab/sessions/{session_id}/commit", alice, json={"message": "Again"}
        )
    assert status == 201, again
    assert (again["branch"], again["parent"]) == (f"collab/{session_id}", done["commit"])
    remote = (await git.ok("ls-remote", url, cwd=tmp_path)).out
    assert f"{again['commit']}\trefs/heads/collab/{session_id}" in remote.splitlines()
    assert f"{pushed}\trefs/heads/main" in remote.splitlines()


async def test_bad_input_is_refused_clearly(hub: CollabHub, tmp_path: Path) -> None:
    git = Git(tmp_path / "home")
    await project_with_lab(hub, git, tmp_path)
    alice, carol, dave = [await hub.token(n) for n in ("alice", "carol", "dave")]
    sessions = "/projects/alice/course/sessions"
    before = len(await hub.api.store.read_all(limit=100_000))
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        (alice, "/projects/alice/nothing/sessions", {"path": "lab.ipynb"}, 404, "No such project"),
        (dave, sessions, {"path": "lab.ipynb"}, 404, "No such project"),
        (carol, sessions, {"path": "lab.ipynb"}, 403, "write role"),
        (alice, sessions, {"path": "notes.txt"}, 400, "not a notebook"),
        (alice, sessions, {"path": "broken.ipynb"}, 400, "not a notebook"),
        (alice, sessions, {"path": "empty.ipynb"}, 400, "nbformat"),
        (alice, sessions, {"path": "gone.ipynb"}, 404, "gone.ipynb"),
        (alice, sessions, {"path": "../lab.ipynb"}, 400, "path"),
        (alice, sessions, {"path": "lab.ipynb", "ref": "no-such-branch"}, 404, "no-such-branch"),
        (alice, sessions, {"path": "lab.ipynb", "ref": "main..x"}, 400, "ref"),
        (alice, sessions, {}, 400, "path"),
        (alice, sessions, {"path": "lab.ipynb", "extra": 1}, 400, "extra"),
    ]
    for token, path, payload, expected, words in cases:
        status, reply = await hub.api.call("POST", path, token, json=payload)
        assert status == expected, (payload, reply)
        assert words in reply["message"], (payload, reply)
    # a session not opened on a project has nowhere to commit to
    status, reply = await hub.api.call(
        "POST", "/collab/sessions", alice, json={"notebook": json.loads(lab("1"))}
    )
    assert status == 201, reply
    plain = reply["id"]
    status, reply = await hub.api.call("POST", f"/collab/sessions/{plain}/commit", alice, json={})
    assert status == 400, reply
    assert "not opened on a project" in reply["message"]
    status, reply = await hub.api.call(
        "POST", f"/collab/sessions/{uuid.uuid4()}/commit", alice, json={}
    )
    assert status == 404, reply
    # both routes are in the OpenAPI document
    status, spec = await hub.api.call("GET", "/openapi.json", None)
    assert status == 200
    documented = {
        (method.upper(), "/hub/api" + path)
        for path, item in spec["paths"].items()
        for method in item
    }
    for route in project_sessions_api.routes():
        assert (route.method, route.path) in documented
    after = await hub.api.store.read_all(limit=100_000)
    assert not [e for e in after[before:] if e.type.startswith("project.")]


async def test_a_session_whose_kernel_is_refused_or_fails_leaves_no_opened_session(
    hub: CollabHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``project.session_opened`` is appended once the kernel has started: a start the hub
    refuses (nobody's code may run on it) or a kernel that dies while starting answers a
    clear error and leaves no session of the project in the log, nor in its list."""
    git = Git(tmp_path / "home")
    await project_with_lab(hub, git, tmp_path)
    alice = await hub.token("alice")
    sessions = "/projects/alice/course/sessions"
    # a kernel spec whose kernel exits at once, installed where jupyter_client looks
    spec = tmp_path / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "raise SystemExit(3)", "-f", "{connection_file}"],
        "display_name": "exits at once", "language": "python",
    }))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    before = len(await hub.api.store.read_all(limit=100_000))

    status, reply = await hub.api.call(
        "POST", sessions, alice, json={"path": "lab.ipynb", "kernel_name": "broken"}
    )
    assert status == 503, reply
    assert "kernel 'broken'" in reply["message"], reply
    assert "exited while starting" in reply["message"], reply

    # a hub that runs nobody's code (not root, no bubblewrap): refused before any kernel
    assert hub.sessions is not None
    monkeypatch.setattr(
        hub.sessions,
        "kernel_account",
        collab_api.kernel_account(hub.api.store, isolation.Isolation(mode="none")),
    )
    status, reply = await hub.api.call("POST", sessions, alice, json={"path": "lab.ipynb"})
    assert status == 403, reply
    assert "cannot run on this hub" in reply["message"], reply

    after = (await hub.api.store.read_all(limit=100_000))[before:]
    assert not [e for e in after if e.type == project_events.ProjectSessionOpened.type]
    # the failed start is the collab session's own story: created, then ended
    ended = [e.data for e in after if isinstance(e.data, session_events.SessionEnded)]
    assert [e.reason for e in ended] == ["kernel_failed"]
    status, listed = await hub.api.call("GET", sessions, alice)
    assert status == 200, listed
    assert listed["sessions"] == []


async def test_the_project_page_opens_a_notebook_together_and_lists_its_sessions(
    hub: CollabHub, tmp_path: Path
) -> None:
    git = Git(tmp_path / "home")
    await project_with_lab(hub, git, tmp_path)
    for name in ("alice", "carol"):
        await set_password(hub.api, name)
    base = str(hub.api.client.make_url("")).rstrip("/")
    alice, carol = Browser(base), Browser(base)
    try:
        await alice.login("alice")
        await carol.login("carol")
        page = await alice.get("/hub/projects/alice/course")
        assert page.status == 200, page.text
        assert 'id="no-sessions"' in page.text
        # a button beside each notebook, none beside other files
        forms = re.findall(r'<form class="inline open-together".*?</form>', page.text, re.S)
        paths = sorted(re.search(r'name="path" value="([^"]+)"', f)[1] for f in forms)  # type: ignore[index]
        assert paths == ["broken.ipynb", "empty.ipynb", "lab.ipynb"]
        # a reader gets none: opening a session is a writer's
        seen = await carol.get("/hub/projects/alice/course")
        assert "open-together" not in seen.text
        opened = await alice.post(
            "/hub/projects/alice/course/sessions",
            data={"_xsrf": page.hidden("_xsrf"), "path": "lab.ipynb", "ref": "main"},
        )
        assert opened.status == 302, opened.text
        assert (opened.location or "").startswith("/hub/sessions/")
        session_id = (opened.location or "").rsplit("/", 1)[1]
        for browser in (alice, carol):
            listed = await browser.get("/hub/projects/alice/course")
            assert f'data-session="{session_id}"' in listed.text
            assert f'href="/hub/sessions/{session_id}"' in listed.text
        # a broken notebook is refused on an error page naming the problem
        refused = await alice.post(
            "/hub/projects/alice/course/sessions",
            data={"_xsrf": page.hidden("_xsrf"), "path": "empty.ipynb", "ref": "main"},
        )
        assert refused.status == 400, refused.text
        assert "nbformat" in refused.text
    finally:
        await alice.close()
        await carol.close()
