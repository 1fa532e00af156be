"""The real git CLI against a running hub: clone, push, pull, fetch, shallow clone, rights,
anonymous clones of public projects, refused force pushes and deletions, racing pushes, a
50 MB file, and a pack over the size limit. Each push is one ``project.pushed`` event whose
refs are the ones in PostgreSQL."""

from __future__ import annotations

import asyncio
import filecmp
import json
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import store
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

FILES = {
    "README.md": b"# Course\n",
    "week1/intro.ipynb": b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n',
    "data/numbers.csv": b"a,b\n1,2\n",
}


def same_tree(a: Path, b: Path) -> bool:
    """Whether two work trees hold the same files (``.git`` aside)."""
    compared = filecmp.dircmp(a, b, ignore=[".git"])

    def clean(d: filecmp.dircmp[str]) -> bool:
        if d.left_only or d.right_only or d.diff_files or d.funny_files:
            return False
        return all(clean(sub) for sub in d.subdirs.values())

    return clean(compared)


async def pushes(pool: asyncpg.Pool[Any]) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT data FROM events WHERE event_type = 'project.pushed' ORDER BY global_position"
    )
    return [json.loads(r[0]) if isinstance(r[0], str) else dict(r[0]) for r in rows]


async def refs(pool: asyncpg.Pool[Any]) -> dict[str, str]:
    rows = await pool.fetch("SELECT ref, sha FROM project_refs ORDER BY ref")
    return {r["ref"]: r["sha"] for r in rows}


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


async def test_push_clone_pull_fetch_and_shallow_clone(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    bob = await hub.user_token("bob")
    project = await hub.project(alice, "course")
    await hub.call("PUT", "/projects/alice/course/members/users/bob", alice, json={"role": "read"})
    url = project["clone_url"]

    work = tmp_path / "alice"
    first = await git.new_repo(work, FILES)
    await git.ok("push", with_token(url, alice, "alice"), "main", cwd=work)
    assert await refs(pool) == {"refs/heads/main": first}
    [pushed] = await pushes(pool)
    assert pushed["refs"] == [{"ref": "refs/heads/main", "old": "0" * 40, "new": first}]
    assert (pushed["pusher"], pushed["commits"], pushed["via"]) == ("alice", 1, "git")
    _, reply = await hub.call("GET", "/projects/alice/course", alice)
    assert reply["last_push"] is not None
    # the repository on disk has objects but no refs: those are in PostgreSQL
    repo_dir = next((hub.data_dir / "projects").glob("*.git"))
    assert not any((repo_dir / "refs" / "heads").iterdir())

    clone = tmp_path / "bob"
    await git.ok("clone", "-q", with_token(url, bob), str(clone))
    assert same_tree(work, clone)
    assert await git.head(clone) == first

    second = await git.commit(work, {"week2/more.ipynb": b"{}\n"}, "week 2")
    third = await git.commit(work, {"README.md": b"# Course, updated\n"}, "readme")
    await git.ok("push", "-q", with_token(url, alice), "main", cwd=work)
    assert (await pushes(pool))[-1]["commits"] == 2
    await git.ok("pull", "-q", "--ff-only", cwd=clone)
    assert await git.head(clone) == third
    assert same_tree(work, clone)
    await git.ok("fetch", "-q", cwd=clone)  # nothing new: a no-op fetch works

    await git.ok("tag", "v1", second, cwd=work)
    await git.ok("push", "-q", with_token(url, alice), "v1", cwd=work)
    await git.ok("fetch", "-q", "--tags", cwd=clone)
    assert await git.head(clone, "v1") == second

    shallow = tmp_path / "shallow"
    await git.ok("clone", "-q", "--depth", "1", with_token(url, bob), str(shallow))
    log = await git.ok("log", "--format=%H", cwd=shallow)
    assert log.out.split() == [third]
    assert same_tree(work, shallow)


async def test_who_may_clone_and_push(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    bob = await hub.user_token("bob")
    carol = await hub.user_token("carol")
    url = (await hub.project(alice, "demo"))["clone_url"]
    await hub.call("PUT", "/projects/alice/demo/members/users/bob", alice, json={"role": "read"})
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", with_token(url, alice), "main", cwd=work)

    # a reader pushes: 403 naming the project
    await git.commit(work, {"x.txt": b"x\n"}, "bob's change")
    result = await git("push", with_token(url, bob, "bob"), "main", cwd=work)
    assert not result.ok
    assert "bob has read-only access to alice/demo" in result.err
    assert "403" in result.err

    # someone without access: the project does not exist for them
    result = await git("clone", with_token(url, carol), str(tmp_path / "carol"))
    assert not result.ok
    assert "project alice/demo not found" in result.err
    # no credentials: git is asked for them (401), and may not prompt
    result = await git("clone", url, str(tmp_path / "anon"))
    assert not result.ok
    assert "could not read Username" in result.err
    # a wrong token is no better than none
    result = await git("clone", with_token(url, "not-a-token"), str(tmp_path / "wrong"))
    assert not result.ok
    assert "Authentication failed" in result.err or "401" in result.err

    # a public project clones anonymously, but pushing still needs credentials
    await hub.call("PATCH", "/projects/alice/demo", alice, json={"visibility": "public"})
    await git.ok("clone", "-q", url, str(tmp_path / "public"))
    result = await git("push", url, "main", cwd=work)
    assert not result.ok
    assert "could not read Username" in result.err
    assert len(await pushes(pool)) == 1


async def test_the_authorization_token_header_works_and_cookies_do_not(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = (await hub.project(alice, "demo"))["clone_url"]
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    header = f"http.extraHeader=Authorization: token {alice}"
    await git.ok("-c", header, "push", "-q", url, "main", cwd=work)
    response = await hub.client.get(
        "/hub/git/alice/demo.git/info/refs?service=git-upload-pack",
        headers={"Cookie": "chronohub-session=whatever"},
    )
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_force_pushes_and_deleting_the_default_branch_are_refused(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.commit(work, {"b.txt": b"b\n"}, "second")
    await git.ok("push", "-q", url, "main", cwd=work)
    before = await refs(pool)

    await git.ok("reset", "-q", "--hard", "HEAD~1", cwd=work)
    await git.commit(work, {"c.txt": b"c\n"}, "rewritten")
    result = await git("push", "--force", url, "main", cwd=work)
    assert not result.ok
    assert "non-fast-forward (the hub refuses force pushes to the default branch" in result.err

    result = await git("push", url, ":main", cwd=work)
    assert not result.ok
    assert "deleting the default branch refs/heads/main is not allowed by the hub" in result.err
    assert await refs(pool) == before

    # other branches are their pushers' own: forced and deleted freely
    await git.ok("push", "-q", url, "HEAD:refs/heads/topic", cwd=work)
    await git.ok("push", "-q", "--force", url, "HEAD~1:refs/heads/topic", cwd=work)
    await git.ok("push", "-q", url, ":topic", cwd=work)
    assert await refs(pool) == before
    assert len(await pushes(pool)) == 4


async def test_two_racing_pushes_one_wins_nothing_half_done(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    base = tmp_path / "base"
    await git.new_repo(base, FILES)
    await git.ok("push", "-q", url, "main", cwd=base)
    one, two = tmp_path / "one", tmp_path / "two"
    for path in (one, two):
        await git.ok("clone", "-q", url, str(path))
    shas = {
        one: await git.commit(one, {f"one-{i}.txt": os.urandom(3000) for i in range(30)}, "one"),
        two: await git.commit(two, {f"two-{i}.txt": os.urandom(3000) for i in range(30)}, "two"),
    }
    results = await asyncio.gather(*(git("push", url, "main", cwd=p) for p in (one, two)))
    winners = [p for p, r in zip((one, two), results, strict=True) if r.ok]
    losers = [r for r in results if not r.ok]
    assert len(winners) == 1, [r.err for r in results]
    [loser] = losers
    assert "stale info" in loser.err or "fetch first" in loser.err, loser.err
    assert (await refs(pool))["refs/heads/main"] == shas[winners[0]]
    assert len(await pushes(pool)) == 2  # the first push and the winner's


async def test_a_50_mb_file_is_pushed_and_cloned(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "big"))["clone_url"], alice)
    work = tmp_path / "work"
    await git.new_repo(work, {"data.bin": os.urandom(50 * 1024 * 1024)})
    await git.ok("push", "-q", url, "main", cwd=work, timeout=300)
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone), timeout=300)
    assert same_tree(work, clone)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        # under git's http.postBuffer (1 MiB) the pack comes with a Content-Length: 413 at once
        (512 * 1024, "HTTP 413"),
        # over it, chunked: refused while it streams in (receive.maxInputSize), nothing kept
        (3 * 1024 * 1024, "larger than the hub's limit of 262144 bytes"),
    ],
)
async def test_a_pack_over_the_limit_is_refused_with_nothing_stored(
    event_store: store.EventStore,
    git: Git,
    tmp_path: Path,
    pool: asyncpg.Pool[Any],
    size: int,
    message: str,
) -> None:
    limit = 256 * 1024
    async with open_projects_hub(
        event_store, tmp_path / "data", project_max_push_bytes=limit
    ) as hub:
        alice = await hub.user_token("alice")
        url = with_token((await hub.project(alice, "small"))["clone_url"], alice)
        work = tmp_path / "work"
        await git.new_repo(work, {"big.bin": os.urandom(size)})
        result = await git("push", url, "main", cwd=work)
        assert not result.ok
        assert message in result.err
        assert await refs(pool) == {}
        assert list(hub.data_dir.glob("projects/*.git/objects/pack/*")) == []
        assert await pushes(pool) == []
        # a small push still works
        await git.ok("checkout", "-q", "--orphan", "small", cwd=work)
        await git.ok("rm", "-q", "-rf", ".", cwd=work)
        await git.commit(work, {"small.txt": b"small\n"}, "small")
        await git.ok("push", "-q", url, "small:main", cwd=work)


def pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


async def test_a_malformed_pack_is_refused_and_moves_nothing(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    await hub.project(alice, "demo")
    command = b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/main\0report-status\n"
    body = pkt(command) + b"0000" + b"PACK\x00\x00\x00\x02\x00\x00\x00\x01garbage, not a pack"
    response = await hub.client.post(
        "/hub/git/alice/demo.git/git-receive-pack",
        data=body,
        headers={
            "Authorization": f"token {alice}",
            "Content-Type": "application/x-git-receive-pack-request",
        },
    )
    assert response.status == 200
    reply = await response.read()
    assert b"unpack " in reply
    assert b"unpack ok" not in reply
    assert b"ng refs/heads/main unpacker error" in reply
    assert await refs(pool) == {}
    assert await pushes(pool) == []
    assert list(hub.data_dir.glob("projects/*.git/objects/pack/*.pack")) == []


async def test_requests_git_would_not_send_are_refused(projects_hub: ProjectsHub) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    await hub.project(alice, "demo")
    auth = {"Authorization": f"token {alice}"}
    response = await hub.client.post(
        "/hub/git/alice/demo.git/git-upload-pack",
        data=b"0000",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status == 415
    response = await hub.client.get("/hub/git/alice/demo.git/info/refs", headers=auth)
    assert response.status == 403  # the dumb protocol is not served
    assert "smart HTTP" in await response.text()
