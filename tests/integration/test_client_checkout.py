"""``chronohub project checkout`` of any git URL (a git server on loopback stands for the
internet), of a hub project by its URL with plain git used in between, and ``chronohub
login``: a token saved with mode 0600 that the other commands then use."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.browser import PASSWORD, set_password
from tests.integration.client_cli import Person, notebook
from tests.integration.git_client import Git
from tests.integration.git_upstream import UPSTREAM, Upstream, serve_upstream
from tests.integration.projects_fixtures import ProjectsHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    async with serve_upstream(tmp_path / "served") as server:
        yield server


async def test_checkout_of_any_git_url(
    projects_hub: ProjectsHub, tmp_path: Path, upstream: Upstream
) -> None:
    git = Git(tmp_path / "git-home")
    work = tmp_path / "upstream-work"
    await git.new_repo(work, {"README.md": b"# Course\n", "lab.ipynb": notebook("1 + 1")})
    await git.ok("clone", "-q", "--bare", str(work), str(upstream.root / UPSTREAM))
    alice = Person(
        tmp_path / "alice", projects_hub.base_url, await projects_hub.user_token("alice")
    )

    ran = await alice.ok("project", "checkout", upstream.url(), "--json")
    copy = Path(ran.json()["path"])
    assert copy == alice.home / "projects" / "upstream"
    assert (copy / "README.md").read_text() == "# Course\n"
    # a file: URL, into a folder of one's choice
    local = await alice.ok("project", "checkout", f"file://{work}", str(alice.home / "mine"))
    assert (alice.home / "mine" / "lab.ipynb").exists(), local.err
    # the upstream moves on; pull brings it (no hub involved, no token sent anywhere)
    await git.commit(work, {"README.md": b"# Course, week 2\n"}, "week 2")
    await git.ok("push", "-q", str(upstream.root / UPSTREAM), "main", cwd=work)
    pulled = await alice.ok("project", "pull", str(copy), "--json")
    assert pulled.json()["status"] == "fast-forward"
    assert (copy / "README.md").read_text() == "# Course, week 2\n"
    # a checkout never lands on a folder that has something in it
    again = await alice("project", "checkout", upstream.url())
    assert again.code == 2
    assert "not empty" in again.err


async def test_checkout_by_url_with_plain_git_in_between(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    hub = projects_hub
    alice = Person(tmp_path / "alice", hub.base_url, await hub.user_token("alice"))
    work = alice.home / "course"
    work.mkdir(parents=True)
    (work / "lab.ipynb").write_bytes(notebook("x = 1"))
    await alice.ok("project", "push", str(work))

    url = f"{hub.base_url}/hub/git/alice/course.git"
    copy = alice.home / "second"
    await alice.ok("project", "checkout", url, str(copy))
    assert await alice.git("remote", "get-url", "origin", cwd=copy) == url
    # a user who knows git commits by hand; chronohub sees it and pushes it
    (copy / "analysis.py").write_text("print('hello')\n")
    await alice.git("add", "analysis.py", cwd=copy)
    await alice.git("commit", "-q", "-m", "analysis by hand", cwd=copy)
    status = (await alice.ok("project", "status", str(copy), "--json")).json()
    assert (status["ahead"], status["behind"]) == (1, 0)
    await alice.ok("project", "push", str(copy))
    # git's own view agrees: the tracking branch moved, nothing is left to push
    assert await alice.git("rev-parse", "HEAD", cwd=copy) == await alice.git(
        "rev-parse", "origin/main", cwd=copy
    )
    assert await alice.git("status", "--porcelain", cwd=copy) == ""
    assert alice.token is not None
    assert alice.token not in (copy / ".git" / "config").read_text()
    # and the first checkout pulls it, with plain git log showing the hand-made commit
    await alice.ok("project", "pull", str(work))
    assert "analysis by hand" in await alice.git("log", "--format=%s", cwd=work)


async def test_login_saves_a_private_token_the_commands_use(
    projects_hub: ProjectsHub, tmp_path: Path
) -> None:
    hub = projects_hub
    await set_password(hub, "carol")
    carol = Person(tmp_path / "carol", None, None)
    refused = await carol(
        "login", hub.base_url, "--user", "carol", env={"CHRONOHUB_PASSWORD": "wrong password"}
    )
    assert refused.code == 3, refused.err
    assert "refused the login" in refused.err

    await carol.ok_env(
        "login", hub.base_url, "--user", "carol", env={"CHRONOHUB_PASSWORD": PASSWORD}
    )
    saved = carol.home / ".config" / "chronohub" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    status, reply = await hub.call("GET", "/users/carol/tokens")
    assert status == 200, reply
    assert any(t["note"].startswith("chronohub CLI on ") for t in reply["api_tokens"])

    work = carol.home / "notes"
    work.mkdir()
    (work / "todo.txt").write_text("write the report\n")
    await carol.ok("project", "push", str(work))
    listed = (await carol.ok("project", "list", "--json")).json()
    assert [p["name"] for p in listed["projects"]] == ["carol/notes"]
