"""Browsing a project without a clone: refs, commits, trees, raw files and comparisons over
REST, with content pushed by the real git CLI; who may read it; bad input named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.api import project_content
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


def notebook(*cells: dict[str, Any]) -> bytes:
    return json.dumps(
        {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    ).encode()


def code(cell_id: str, source: str, outputs: list[Any] | None = None) -> dict[str, Any]:
    return {
        "id": cell_id,
        "cell_type": "code",
        "metadata": {},
        "execution_count": None,
        "source": source,
        "outputs": outputs or [],
    }


FILES = {
    "README.md": b"# Course\n\nWelcome.\n",
    "week1/intro.ipynb": notebook(code("a", "x = 1"), code("b", "print(x)")),
    "week1/data.csv": b"a,b\n1,2\n",
    "page.html": b"<script>alert(1)</script>",
    "image.png": b"\x89PNG\r\n\x1a\n\x00\x00",
}


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


async def pushed(hub: ProjectsHub, git: Git, tmp_path: Path) -> dict[str, Any]:
    """alice/course with two commits on main, a branch ``feature/x`` and a tag ``v1``."""
    alice = await hub.user_token("alice")
    project = await hub.project(alice, "course")
    url = with_token(project["clone_url"], alice)
    work = tmp_path / "work"
    first = await git.new_repo(work, FILES, "start")
    second = await git.commit(
        work,
        {
            "README.md": b"# Course\n\nWelcome, all.\n",
            "week1/intro.ipynb": notebook(
                code("a", "x = 2"), code("c", "x + 1"), code("b", "print(x)")
            ),
        },
        "second",
    )
    await git.ok("tag", "-a", "v1", "-m", "first release", first, cwd=work)
    await git.ok("checkout", "-q", "-b", "feature/x", cwd=work)
    await git.ok("mv", "week1/data.csv", "week1/numbers.csv", cwd=work)
    await git.ok("rm", "-q", "page.html", cwd=work)
    feature = await git.commit(work, {"new.txt": b"new\n"}, "feature")
    await git.ok("push", "-q", url, "main", "feature/x", "v1", cwd=work)
    return {"alice": alice, "first": first, "second": second, "feature": feature}


async def test_refs_commits_and_trees(projects_hub: ProjectsHub, git: Git, tmp_path: Path) -> None:
    hub = projects_hub
    ctx = await pushed(hub, git, tmp_path)
    alice = ctx["alice"]
    base = "/projects/alice/course"

    status, refs = await hub.call("GET", f"{base}/refs", alice)
    assert status == 200, refs
    for item in refs:
        project_content.ProjectRef.model_validate(item)
    by_name = {r["name"]: r for r in refs}
    assert by_name["main"]["commit"] == ctx["second"]
    assert by_name["main"]["default"] is True
    assert by_name["feature/x"]["type"] == "branch"
    assert by_name["v1"]["type"] == "tag"
    assert by_name["v1"]["commit"] == ctx["first"]  # the annotated tag, peeled
    assert by_name["v1"]["sha"] != ctx["first"]

    status, history = await hub.call("GET", f"{base}/commits", alice)
    assert status == 200, history
    assert [c["sha"] for c in history] == [ctx["second"], ctx["first"]]
    newest = history[0]
    assert newest["parents"] == [ctx["first"]]
    assert newest["message"] == "second\n"
    assert newest["author"]["name"] == "Test Author"
    assert newest["committer"]["email"] == "author@example.org"
    assert newest["author"]["date"]

    status, page = await hub.call(
        "GET", f"{base}/commits?ref=feature/x&limit=1", alice, headers=PAGINATED
    )
    assert status == 200, page
    assert [c["sha"] for c in page["items"]] == [ctx["feature"]]
    project_content.ProjectCommitPage.model_validate(page)
    assert page["_pagination"]["total"] == 3
    assert page["_pagination"]["next"]["offset"] == 1
    status, only = await hub.call("GET", f"{base}/commits?path=week1/data.csv", alice)
    assert [c["sha"] for c in only] == [ctx["first"]]
    status, by_sha = await hub.call("GET", f"{base}/commits?ref={ctx['first'][:8]}", alice)
    assert [c["sha"] for c in by_sha] == [ctx["first"]]

    status, root = await hub.call("GET", f"{base}/tree/main/", alice)
    assert status == 200, root
    assert root["commit"] == ctx["second"]
    project_content.ProjectTree.model_validate(root)
    entries = {e["name"]: e for e in root["entries"]}
    assert entries["week1"]["type"] == "dir"
    assert entries["week1"]["size"] is None
    assert entries["README.md"] == {
        "name": "README.md",
        "path": "README.md",
        "type": "file",
        "mode": "100644",
        "size": len(b"# Course\n\nWelcome, all.\n"),
        "sha": entries["README.md"]["sha"],
    }
    status, week1 = await hub.call("GET", f"{base}/tree/feature/x/week1", alice)
    assert status == 200, week1
    assert [e["path"] for e in week1["entries"]] == ["week1/intro.ipynb", "week1/numbers.csv"]
    status, tagged = await hub.call("GET", f"{base}/tree/v1/week1", alice)
    assert "week1/data.csv" in [e["path"] for e in tagged["entries"]]
    status, everything = await hub.call("GET", f"{base}/tree/main/?recursive=true", alice)
    assert "week1/intro.ipynb" in [e["path"] for e in everything["entries"]]


async def test_raw_files(projects_hub: ProjectsHub, git: Git, tmp_path: Path) -> None:
    hub = projects_hub
    ctx = await pushed(hub, git, tmp_path)
    headers = {"Authorization": f"token {ctx['alice']}"}
    base = "/hub/api/projects/alice/course/raw"
    async with hub.client.get(f"{base}/main/week1/data.csv", headers=headers) as reply:
        assert reply.status == 200
        assert await reply.read() == b"a,b\n1,2\n"
        assert reply.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in reply.headers["Content-Security-Policy"]
    async with hub.client.get(f"{base}/{ctx['first']}/page.html", headers=headers) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/html")
        assert reply.headers["Content-Disposition"].startswith("attachment")
    async with hub.client.get(f"{base}/main/image.png", headers=headers) as reply:
        assert reply.headers["Content-Type"] == "image/png"
        assert reply.headers["Content-Disposition"].startswith("inline")
        assert await reply.read() == FILES["image.png"]


async def test_compare(projects_hub: ProjectsHub, git: Git, tmp_path: Path) -> None:
    hub = projects_hub
    ctx = await pushed(hub, git, tmp_path)
    status, diff = await hub.call(
        "GET", f"/projects/alice/course/compare/{ctx['first']}...main", ctx["alice"]
    )
    assert status == 200, diff
    assert diff["merge_base"] == ctx["first"]
    project_content.Comparison.model_validate(diff)
    files = {f["path"]: f for f in diff["files"]}
    readme = files["README.md"]
    assert readme["status"] == "modified"
    assert "-Welcome.\n+Welcome, all." in readme["patch"]
    assert (readme["additions"], readme["deletions"]) == (1, 1)
    cells = files["week1/intro.ipynb"]["notebook"]
    assert cells["cells_before"] == 2
    assert cells["cells_after"] == 3
    assert cells["unchanged"] == 1
    changes = {c["id"]: c for c in cells["cells"]}
    assert changes["a"]["status"] == "modified"
    assert "-x = 1\n+x = 2" in changes["a"]["source_patch"]
    assert changes["c"]["status"] == "added"

    status, diff = await hub.call(
        "GET", "/projects/alice/course/compare/main...feature/x", ctx["alice"]
    )
    assert status == 200, diff
    files = {f["path"]: f for f in diff["files"]}
    assert files["week1/numbers.csv"]["status"] == "renamed"
    assert files["week1/numbers.csv"]["old_path"] == "week1/data.csv"
    assert files["page.html"]["status"] == "deleted"
    assert files["new.txt"]["status"] == "added"
    assert files["new.txt"]["patch"].startswith("--- /dev/null\n+++ b/new.txt")


async def test_bad_input_and_unknown_names(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    ctx = await pushed(hub, git, tmp_path)
    alice = ctx["alice"]
    base = "/projects/alice/course"
    cases = [
        (f"{base}/tree/nope/", 404, "nope"),
        (f"{base}/tree/main/no/such/dir", 404, "no/such/dir"),
        (f"{base}/raw/main/week1", 400, "week1 is a dir"),
        (f"{base}/tree/main/README.md", 400, "README.md is a file"),
        (f"{base}/raw/main/missing.txt", 404, "missing.txt"),
        (f"{base}/commits?ref=nope", 404, "nope"),
        (f"{base}/commits?path=nowhere", 404, "nowhere"),
        (f"{base}/commits?limit=-1", 400, "limit"),
        (f"{base}/tree/main/?recursive=maybe", 400, "recursive"),
        (f"{base}/compare/main..feature/x", 400, "range"),
        (f"{base}/compare/main...nope", 404, "nope"),
        (f"{base}/tree/{'0' * 40}/", 404, "0" * 40),
        (f"{base}/tree/main/week1//intro.ipynb", 400, "path: 'week1//intro.ipynb'"),
        ("/projects/alice/nothing/refs", 404, "alice/nothing"),
    ]
    for path, status, words in cases:
        got, reply = await hub.call("GET", path, alice)
        assert got == status, (path, reply)
        assert words in reply["message"], (path, reply)


async def test_denied_reads_answer_404(projects_hub: ProjectsHub, git: Git, tmp_path: Path) -> None:
    hub = projects_hub
    ctx = await pushed(hub, git, tmp_path)
    carol = await hub.user_token("carol")
    bob = await hub.user_token("bob")
    paths = ["refs", "commits", "tree/main/", "raw/main/README.md", "compare/v1...main"]
    for path in paths:
        status, reply = await hub.call("GET", f"/projects/alice/course/{path}", carol)
        assert status == 404, (path, reply)
        assert reply["message"] == "No such project: alice/course"
        status, reply = await hub.call("GET", f"/projects/alice/course/{path}", None)
        assert status == 404, (path, reply)
    # a member reads; a token narrowed to another project does not
    await hub.call(
        "PUT", "/projects/alice/course/members/users/bob", ctx["alice"], json={"role": "read"}
    )
    status, _ = await hub.call("GET", "/projects/alice/course/tree/main/", bob)
    assert status == 200
    status, narrow = await hub.call(
        "POST", "/users/bob/tokens", bob, json={"scopes": ["read:projects!project=alice/other"]}
    )
    assert status == 201, narrow
    status, _ = await hub.call("GET", "/projects/alice/course/tree/main/", narrow["token"])
    assert status == 404
    # a public project is read anonymously
    await hub.call("PATCH", "/projects/alice/course", ctx["alice"], json={"visibility": "public"})
    status, reply = await hub.call("GET", "/projects/alice/course/tree/main/", None)
    assert status == 200, reply
