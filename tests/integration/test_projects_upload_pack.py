"""Clones and fetches through the installed git (``git upload-pack`` on a snapshot of
PostgreSQL's refs) and through the dulwich fallback: what git advertises is exactly the refs in
PostgreSQL (after pushes, tags and deletions, and while pushes race clones), the hub's own
advertisement is git's byte for byte, and objects no ref reaches are refused, whatever protocol
the client asks for."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from events import store
from hub.projects import storage
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub
from tests.integration.test_projects_git import FILES, refs, same_tree

pytestmark = [pytest.mark.integration, pytest.mark.interop]


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


@pytest.fixture(params=[True, False], ids=["native", "dulwich"])
async def any_hub(
    request: pytest.FixtureRequest, event_store: store.EventStore, tmp_path: Path
) -> AsyncIterator[ProjectsHub]:
    async with open_projects_hub(
        event_store, tmp_path / "data", project_git_native=request.param
    ) as hub:
        assert (place(hub).native is not None) == request.param
        yield hub


def place(hub: ProjectsHub) -> storage.Storage:
    return hub.client.server.app[storage.STORAGE]


async def advertised(git: Git, url: str) -> dict[str, str]:
    """What ``git ls-remote`` sees: refs (HEAD and peeled lines aside)."""
    out = (await git.ok("ls-remote", url)).out
    pairs = (line.split("\t") for line in out.splitlines())
    return {ref: sha for sha, ref in pairs if ref != "HEAD" and not ref.endswith("^{}")}


def pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


async def test_clone_fetch_and_shallow_clone_either_way(
    any_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = any_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "course"))["clone_url"], alice)
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", url, "main", cwd=work)
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone))
    assert same_tree(work, clone)
    second = await git.commit(work, {"week2/more.ipynb": b"{}\n"}, "week 2")
    await git.ok("push", "-q", url, "main", cwd=work)
    await git.ok("fetch", "-q", cwd=clone)
    await git.ok("fetch", "-q", cwd=clone)  # nothing new
    assert await git.head(clone, "origin/main") == second
    shallow = tmp_path / "shallow"
    await git.ok("clone", "-q", "--depth", "1", url, str(shallow))
    assert (await git.ok("log", "--format=%H", cwd=shallow)).out.split() == [second]
    # every snapshot git served from is gone once its request is
    assert list(hub.data_dir.glob("projects/.serving/run-*/*")) == []


async def test_what_git_advertises_is_postgresql_s_refs(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    work = tmp_path / "work"
    first = await git.new_repo(work, FILES)
    await git.ok("push", "-q", url, "main", cwd=work)
    assert await advertised(git, url) == await refs(pool) == {"refs/heads/main": first}

    await git.commit(work, {"topic.txt": b"topic\n"}, "topic")
    await git.ok("tag", "-a", "-m", "one", "v1", cwd=work)
    await git.ok("push", "-q", url, "HEAD:refs/heads/topic", "v1", cwd=work)
    assert await advertised(git, url) == await refs(pool)
    assert set(await refs(pool)) == {"refs/heads/main", "refs/heads/topic", "refs/tags/v1"}

    await git.ok("push", "-q", url, ":topic", cwd=work)  # a branch other than the default goes
    assert await advertised(git, url) == await refs(pool)
    assert "refs/heads/topic" not in await refs(pool)
    # a refused push (a force push to the default branch) leaves its objects on disk, unseen
    await git.ok("push", "-q", url, "main", cwd=work)
    await git.ok("reset", "-q", "--hard", first, cwd=work)
    await git.commit(work, {"forced.txt": b"forced\n"}, "forced")
    assert not (await git("push", "--force", url, "main", cwd=work)).ok
    assert await advertised(git, url) == await refs(pool)


async def test_the_hub_advertises_what_git_would_byte_for_byte(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    project = await hub.project(alice, "demo")
    url = with_token(project["clone_url"], alice)
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.commit(work, {"b.txt": b"b\n"}, "second")
    await git.ok("tag", "light", cwd=work)
    await git.ok("tag", "-a", "-m", "annotated", "v1", "HEAD~1", cwd=work)
    await git.ok("-c", "advice.nestedTag=false", "tag", "-a", "-m", "nested", "v1n", "v1", cwd=work)
    await git.ok("branch", "Zeta", "HEAD~1", cwd=work)
    await git.ok("push", "-q", url, "main", "Zeta", "light", "v1", "v1n", cwd=work)

    path = "/hub/git/alice/demo.git/info/refs?service=git-upload-pack"
    auth = {"Authorization": f"token {alice}"}
    answers = []
    for _ in range(3):  # git writes the first (and tells its capabilities), the hub the others
        response = await hub.client.get(path, headers=auth)
        assert response.status == 200
        assert response.content_type == "application/x-git-upload-pack-advertisement"
        answers.append(await response.read())
    native = place(hub).native
    assert native is not None
    assert native.capabilities is not None
    repositories = place(hub).repositories
    project_id = await pool.fetchval("SELECT project_id FROM projects")
    gitdir = repositories.snapshot(project_id, await refs(pool), "main")
    try:
        own = await native.advertise(gitdir, repositories.objects(project_id))
    finally:
        repositories.drop_snapshot(gitdir)
    service = pkt(b"# service=git-upload-pack\n") + b"0000"
    assert answers == [service + own] * 3
    assert b" refs/tags/v1n^{}\n" in own


async def test_objects_no_ref_reaches_are_refused(
    any_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = any_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", url, "main", cwd=work)
    await git.ok("checkout", "-q", "-b", "secret", cwd=work)
    hidden = await git.commit(work, {"secret.txt": b"deleted later\n"}, "secret")
    await git.ok("push", "-q", url, "secret", cwd=work)
    await git.ok("push", "-q", url, ":secret", cwd=work)

    headers = {
        "Authorization": f"token {alice}",
        "Content-Type": "application/x-git-upload-pack-request",
    }
    v0 = (
        pkt(f"want {hidden} multi_ack_detailed side-band-64k ofs-delta\n".encode())
        + b"0000"
        + pkt(b"done\n")
    )
    v2 = (
        pkt(b"command=fetch\n")
        + pkt(b"object-format=sha1\n")
        + b"0001"
        + pkt(f"want {hidden}\n".encode())
        + pkt(b"done\n")
        + b"0000"
    )
    for body, extra in ((v0, {}), (v2, {"Git-Protocol": "version=2"})):
        try:
            response = await hub.client.post(
                "/hub/git/alice/demo.git/git-upload-pack", data=body, headers={**headers, **extra}
            )
            reply = await response.read()
        except aiohttp.ClientError:
            reply = b""  # dulwich's refusal: the connection is closed
        assert b"PACK" not in reply, reply[:200]
        if place(hub).native is not None and body is v0:
            assert b"not our ref" in reply, reply[:200]
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone))
    assert (await git("cat-file", "-e", hidden, cwd=clone)).code != 0


async def test_clones_racing_pushes_see_only_refs_postgresql_held(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    work = tmp_path / "work"
    pushed = {await git.new_repo(work, FILES)}
    await git.ok("push", "-q", url, "main", cwd=work)

    async def push_some() -> None:
        for i in range(6):
            pushed.add(await git.commit(work, {f"f{i}.bin": os.urandom(20_000)}, f"push {i}"))
            await git.ok("push", "-q", url, "main", cwd=work)

    async def clone_some() -> list[str]:
        heads = []
        for i in range(6):
            clone = tmp_path / f"clone{i}"
            await git.ok("clone", "-q", url, str(clone))
            heads.append(await git.head(clone))
            assert (await git.ok("fsck", "--connectivity-only", cwd=clone)).ok
        return heads

    _, heads = await asyncio.gather(push_some(), clone_some())
    assert set(heads) <= pushed


async def test_without_git_on_path_dulwich_serves(
    event_store: store.EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    async with open_projects_hub(event_store, tmp_path / "data") as hub:
        assert place(hub).native is None


def upload_packs(data_dir: Path) -> list[int]:
    """The pids of the git processes (upload-pack, and the pack-objects it runs) serving
    the projects under ``data_dir``: their object directory is there."""
    marker = f"GIT_OBJECT_DIRECTORY={data_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # not a process, one of another account, or it has just gone
        if any(variable.startswith(marker) for variable in environ):
            pids.append(int(entry.name))
    return pids


async def test_a_client_that_leaves_mid_clone_takes_git_with_it(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "big"))["clone_url"], alice)
    work = tmp_path / "work"
    head = await git.new_repo(work, {"data.bin": os.urandom(24 * 1024 * 1024)})
    await git.ok("push", "-q", url, "main", cwd=work, timeout=300)

    body = pkt(f"want {head} side-band-64k ofs-delta\n".encode()) + b"0000" + pkt(b"done\n")
    response = await hub.client.post(
        "/hub/git/alice/big.git/git-upload-pack",
        data=body,
        headers={
            "Authorization": f"token {alice}",
            "Content-Type": "application/x-git-upload-pack-request",
        },
    )
    assert response.status == 200
    await response.content.readexactly(65536)  # the pack is on its way
    assert upload_packs(hub.data_dir)
    response.close()  # the client goes

    deadline = asyncio.get_running_loop().time() + 60
    while upload_packs(hub.data_dir):
        assert asyncio.get_running_loop().time() < deadline, "git upload-pack outlived its client"
        await asyncio.sleep(0.1)
    snapshots = hub.data_dir / "projects" / ".serving"
    while list(snapshots.glob("run-*/*")):
        assert asyncio.get_running_loop().time() < deadline, "the snapshot outlived its request"
        await asyncio.sleep(0.1)
