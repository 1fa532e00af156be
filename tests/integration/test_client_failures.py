"""``chronohub project`` when things go wrong: a hub out of reach, a revoked token, a project
deleted, someone who pushed first, a pull killed half-way; each with its exit status and a
sentence that says what to do, and never a broken checkout."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import unused_port

from tests.integration.client_cli import Person, edit_cell, notebook, sources
from tests.integration.projects_fixtures import ProjectsHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]


async def pushed(hub: ProjectsHub, tmp_path: Path) -> tuple[Person, Person, Path, Path]:
    """alice's project course, pushed, shared with bob for writing, checked out by bob."""
    alice = Person(tmp_path / "alice", hub.base_url, await hub.user_token("alice"))
    bob = Person(tmp_path / "bob", hub.base_url, await hub.user_token("bob"))
    work = alice.home / "course"
    work.mkdir(parents=True)
    (work / "lab.ipynb").write_bytes(notebook("x = 1", "y = 2"))
    await alice.ok("project", "push", str(work), "--to", "bob", "--write")
    copy = Path((await bob.ok("project", "checkout", "alice/course", "--json")).json()["path"])
    return alice, bob, work, copy


async def test_hub_out_of_reach(tmp_path: Path) -> None:
    nobody = Person(tmp_path / "alice", f"http://127.0.0.1:{unused_port()}", "some-token")
    ran = await nobody("project", "list")
    assert ran.code == 4, ran.err
    assert "cannot reach the hub" in ran.err


async def test_no_hub_and_no_token(tmp_path: Path) -> None:
    lost = Person(tmp_path / "alice", None, None)
    ran = await lost("project", "list")
    assert ran.code == 2, ran.err
    assert "chronohub login" in ran.err
    unsigned = Person(tmp_path / "bob", "http://127.0.0.1:9", None)
    ran = await unsigned("project", "list")
    assert ran.code == 3, ran.err
    assert "no token" in ran.err


async def test_revoked_token(projects_hub: ProjectsHub, tmp_path: Path) -> None:
    alice, _, work, _ = await pushed(projects_hub, tmp_path)
    status, reply = await projects_hub.call("GET", "/users/alice/tokens")
    assert status == 200, reply
    for token in reply["api_tokens"]:
        status, _ = await projects_hub.call("DELETE", f"/users/alice/tokens/{token['id']}")
        assert status == 204
    for args in (("project", "list"), ("project", "push", str(work))):
        ran = await alice(*args)
        assert ran.code == 3, ran.err
        assert "refused the token" in ran.err
    # git alone (the pull) says the same
    ran = await alice("project", "pull", str(work))
    assert ran.code == 3, ran.err
    assert "refused the token" in ran.err


async def test_project_deleted_leaves_the_checkout(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    alice, bob, _, copy = await pushed(projects_hub, tmp_path)
    assert alice.token is not None
    status, _ = await projects_hub.call("DELETE", "/projects/alice/course", alice.token)
    assert status == 204
    edit_cell(copy / "lab.ipynb", 0, "x = 'still mine'")
    ran = await bob("project", "push", str(copy))
    assert ran.code == 3, ran.err
    assert "alice/course is gone" in ran.err
    assert sources(copy / "lab.ipynb") == ["x = 'still mine'", "y = 2"]
    ran = await bob("project", "pull", str(copy))
    assert ran.code == 3, ran.err
    assert "gone" in ran.err


async def test_someone_pushed_first(projects_hub: ProjectsHub, tmp_path: Path) -> None:
    alice, bob, work, copy = await pushed(projects_hub, tmp_path)
    edit_cell(copy / "lab.ipynb", 1, "y = 'bob'")
    await bob.ok("project", "push", str(copy))
    edit_cell(work / "lab.ipynb", 0, "x = 'alice'")
    ran = await alice("project", "push", str(work), "--json")
    assert ran.code == 1, ran.err
    assert "chronohub project pull" in ran.err
    assert ran.json()["exit"] == 1
    await alice.ok("project", "pull", str(work))
    await alice.ok("project", "push", str(work))
    assert sources(work / "lab.ipynb") == ["x = 'alice'", "y = 'bob'"]


@pytest.mark.parametrize("step", ["after-local-commit", "before-update"])
async def test_pull_killed_half_way_leaves_a_whole_checkout(
    projects_hub: ProjectsHub, tmp_path: Path, step: str
) -> None:
    alice, bob, work, copy = await pushed(projects_hub, tmp_path)
    edit_cell(copy / "lab.ipynb", 1, "y = 'bob'")
    await bob.ok("project", "push", str(copy))
    edit_cell(work / "lab.ipynb", 0, "x = 'alice'")
    before = (work / "lab.ipynb").read_bytes()

    killed = await alice("project", "pull", str(work), env={"CHRONOHUB_PULL_STOP_AT": step})
    assert killed.code == 99, killed.err
    # the old state, whole: the file as it was, committed, nothing staged or half-written
    assert (work / "lab.ipynb").read_bytes() == before
    assert await alice.git("status", "--porcelain", cwd=work) == ""
    assert await alice.git("log", "-1", "--format=%s", cwd=work) == "local changes before pull"

    await alice.ok("project", "pull", str(work))
    assert sources(work / "lab.ipynb") == ["x = 'alice'", "y = 'bob'"]
    assert await alice.git("status", "--porcelain", cwd=work) == ""


async def test_a_pull_never_overwrites_a_file_ignored_here(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    """git's reset --keep overwrites ignored files; the pull refuses first, naming them."""
    alice, bob, work, copy = await pushed(projects_hub, tmp_path)
    (work / ".gitignore").write_text("data.csv\n")
    await alice.ok("project", "push", str(work))
    await bob.ok("project", "pull", str(copy))
    (copy / "data.csv").write_text("bob's own work\n")  # ignored there: never committed
    (work / "data.csv").write_text("alice's table\n")
    await alice.git("add", "-f", "data.csv", cwd=work)
    await alice.git("commit", "-q", "-m", "the table", cwd=work)
    await alice.ok("project", "push", str(work))

    refused = await bob("project", "pull", str(copy))
    assert refused.code == 1, refused.err
    assert "data.csv" in refused.err
    assert (copy / "data.csv").read_text() == "bob's own work\n"
    # moved away, the pull goes through
    (copy / "data.csv").rename(tmp_path / "bobs-data.csv")
    await bob.ok("project", "pull", str(copy))
    assert (copy / "data.csv").read_text() == "alice's table\n"


async def test_usage_errors(projects_hub: ProjectsHub, tmp_path: Path) -> None:
    token = await projects_hub.user_token("alice")
    alice = Person(tmp_path / "alice", projects_hub.base_url, token)
    plain = alice.home / "plain"
    plain.mkdir(parents=True)
    for args, words in (
        (("project", "pull", str(plain)), "is not a checkout"),
        (("project", "pull", str(plain), "--pick", "mine"), "invalid choice"),
        (("project", "pull", "--pick-file", "lab.ipynb"), "PATH=ours or PATH=theirs"),
        (("project", "share", "course", "--to", "bob"), "not a project (OWNER/NAME)"),
        (("project", "push", str(plain), "--name", "bad name"), "cannot be a project name"),
        (("project", "log", "-n", "0"), "positive number"),
    ):
        ran = await alice(*args)
        assert ran.code == 2, (args, ran.err)
        assert words in ran.err, (args, ran.err)
