"""``chronohub project`` against a real hub and the real git: push to a team, check out, pull
both sides' notebook edits together, share, list, status and log (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.browser import Browser, set_password
from tests.integration.client_cli import Person, edit_cell, notebook, sources
from tests.integration.projects_fixtures import ProjectsHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]


async def people(hub: ProjectsHub, tmp_path: Path) -> tuple[Person, Person]:
    """alice, and bob (a member of team physics), each with a token and a HOME."""
    alice = Person(tmp_path / "alice", hub.base_url, await hub.user_token("alice"))
    bob = Person(tmp_path / "bob", hub.base_url, await hub.user_token("bob"))
    await hub.group("physics", "bob")
    return alice, bob


def folder(person: Person, name: str = "course") -> Path:
    """A folder of alice's work: a notebook of two cells and a text file."""
    path = person.home / name
    path.mkdir(parents=True)
    (path / "lab.ipynb").write_bytes(notebook("x = 1", "y = 2"))
    (path / "notes.txt").write_text("first line\nsecond line\n")
    return path


async def test_push_to_a_team_checkout_edit_push_pull(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    hub = projects_hub
    alice, bob = await people(hub, tmp_path)
    work = folder(alice)

    pushed = await alice.ok("project", "push", str(work), "--team", "physics", "--json")
    assert pushed.json()["project"] == "alice/course"
    assert pushed.json()["shared"] == [{"kind": "team", "name": "physics", "role": "read"}]
    # the origin is the hub's plain URL; the token is nowhere in the checkout
    assert await alice.git("remote", "get-url", "origin", cwd=work) == (
        f"{hub.base_url}/hub/git/alice/course.git"
    )
    assert alice.token is not None
    assert alice.token not in (work / ".git" / "config").read_text()

    shared = (await bob.ok("project", "list", "--shared", "--json")).json()
    assert [p["name"] for p in shared["projects"]] == ["alice/course"]
    by_team = (await bob.ok("project", "list", "--team", "physics", "--json")).json()
    assert [p["name"] for p in by_team["projects"]] == ["alice/course"]

    checked = await bob.ok("project", "checkout", "alice/course", "--json")
    copy = Path(checked.json()["path"])
    assert copy == bob.home / "projects" / "course"
    assert sources(copy / "lab.ipynb") == ["x = 1", "y = 2"]

    # read access: bob's push is refused, saying so
    edit_cell(copy / "lab.ipynb", 1, "y = 20  # bob")
    refused = await bob("project", "push", str(copy))
    assert refused.code == 3, refused.err
    assert "read access only" in refused.err

    await alice.ok("project", "share", "alice/course", "--to", "bob", "--write")
    await bob.ok("project", "push", str(copy), "-m", "bob's cell")

    # alice edits the other cell and never commits: pull commits it, then merges
    edit_cell(work / "lab.ipynb", 0, "x = 10  # alice")
    merged = await alice.ok("project", "pull", str(work), "--json")
    assert merged.json()["status"] == "merged"
    assert sources(work / "lab.ipynb") == ["x = 10  # alice", "y = 20  # bob"]
    log = (await alice.ok("project", "log", str(work), "--json")).json()["commits"]
    subjects = [c["subject"] for c in log]
    assert "local changes before pull" in subjects
    assert {c["author"] for c in log} == {"alice", "bob"}

    await alice.ok("project", "push", str(work))
    status = (await bob.ok("project", "status", str(copy), "--json")).json()
    assert (status["ahead"], status["behind"]) == (0, 2)
    assert status["last_push"]["author"] == "alice"
    pulled = await bob.ok("project", "pull", str(copy), "--json")
    assert pulled.json()["status"] == "fast-forward"
    assert sources(copy / "lab.ipynb") == ["x = 10  # alice", "y = 20  # bob"]
    status = (await bob.ok("project", "status", str(copy), "--json")).json()
    assert (status["ahead"], status["behind"], status["local_changes"]) == (0, 0, [])


async def test_same_cell_conflict_stops_untouched_then_pick_theirs(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    hub = projects_hub
    alice, bob = await people(hub, tmp_path)
    work = folder(alice)
    await alice.ok("project", "push", str(work), "--to", "bob", "--write")
    copy = Path((await bob.ok("project", "checkout", "alice/course", "--json")).json()["path"])

    edit_cell(copy / "lab.ipynb", 0, "x = 'bob'")
    await bob.ok("project", "push", str(copy))
    edit_cell(work / "lab.ipynb", 0, "x = 'alice'")
    (work / "notes.txt").write_text("first line\nsecond line\nalice's third\n")
    before = (work / "lab.ipynb").read_bytes()

    stopped = await alice("project", "pull", str(work), "--json")
    assert stopped.code == 1, stopped.err
    report = stopped.json()
    assert [c["path"] for c in report["conflicts"]] == ["lab.ipynb"]
    assert report["conflicts"][0]["cells"], report
    assert f"chronohub project pull {work} --pick-file lab.ipynb=theirs" in report["commands"]
    assert "--pick theirs" in stopped.err
    # the folder is as alice left it (her work is committed locally, nothing else changed)
    assert (work / "lab.ipynb").read_bytes() == before
    assert "alice's third" in (work / "notes.txt").read_text()
    assert await alice.git("status", "--porcelain", cwd=work) == ""

    finished = await alice.ok("project", "pull", str(work), "--pick", "theirs", "--json")
    assert finished.json()["status"] == "merged"
    assert sources(work / "lab.ipynb") == ["x = 'bob'", "y = 2"]
    assert "alice's third" in (work / "notes.txt").read_text()
    await alice.ok("project", "push", str(work))


async def test_pick_file_ours(projects_hub: ProjectsHub, tmp_path: Path) -> None:
    hub = projects_hub
    alice, bob = await people(hub, tmp_path)
    work = folder(alice)
    await alice.ok("project", "push", str(work), "--to", "bob", "--write")
    copy = Path((await bob.ok("project", "checkout", "alice/course", "--json")).json()["path"])
    (copy / "notes.txt").write_text("first line by bob\nsecond line\n")
    await bob.ok("project", "push", str(copy))
    (work / "notes.txt").write_text("first line by alice\nsecond line\n")
    assert (await alice("project", "pull", str(work))).code == 1
    await alice.ok("project", "pull", str(work), "--pick-file", "notes.txt=ours")
    assert (work / "notes.txt").read_text() == "first line by alice\nsecond line\n"


async def test_recipients_see_the_project_on_their_home_page(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    hub = projects_hub
    alice, _ = await people(hub, tmp_path)
    await set_password(hub, "bob")
    await set_password(hub, "carol")
    await alice.ok("project", "push", str(folder(alice)), "--team", "physics")
    for name, sees in (("bob", True), ("carol", False)):
        browser = Browser(hub.base_url)
        try:
            assert (await browser.login(name)).status == 302
            home = await browser.get("/hub/home")
            assert home.status == 200, home.text
            shown = 'data-name="alice/course"' in home.text
            assert shown is sees, home.text
            if sees:
                assert "chronohub project checkout alice/course" in home.text
        finally:
            await browser.close()


async def test_init_strip_outputs_and_revoke(projects_hub: ProjectsHub, tmp_path: Path) -> None:
    hub = projects_hub
    alice, bob = await people(hub, tmp_path)
    work = folder(alice, "answers")
    (work / ".ipynb_checkpoints").mkdir()
    (work / ".ipynb_checkpoints" / "lab-checkpoint.ipynb").write_bytes(notebook("scratch"))
    inited = (await alice.ok("project", "init", str(work), "--name", "exercises", "--json")).json()
    assert inited["project"] == "alice/exercises"
    again = await alice("project", "init", str(alice.home / "course-elsewhere"))
    assert again.code == 2  # no such folder

    await alice.ok("project", "push", str(work), "--strip-outputs", "--to", "bob")
    copy = Path((await bob.ok("project", "checkout", "alice/exercises", "--json")).json()["path"])
    text = (copy / "lab.ipynb").read_text()
    assert '"outputs": []' in text
    assert "out 0" not in text
    assert not (copy / ".ipynb_checkpoints").exists()  # editor scratch is never committed
    # the folder's own files were stripped too: nothing is left to commit
    assert await alice.git("status", "--porcelain", cwd=work) == ""

    await alice.ok("project", "share", "alice/exercises", "--to", "bob", "--revoke")
    gone = await bob("project", "pull", str(copy))
    assert gone.code == 3, gone.err
    listed = (await bob.ok("project", "list", "--shared", "--json")).json()
    assert listed["projects"] == []
    # someone else's project of that name is refused by name, not overwritten
    taken = await bob("project", "share", "alice/exercises", "--to", "bob")
    assert taken.code == 3, taken.err
