"""Importing a project from the internet (``import_url``) and syncing it, against a real git
server the test runs on loopback (``git http-backend``): branches, tags and HEAD mapped,
refs moved as ``project.pushed`` via import, the project cloned with the real git CLI; and
what is refused: private addresses unless allowed, redirects to them, file/ssh/local URLs,
credentials, repositories over the size limit, servers past the time limit, diverged
branches on sync. A refused import leaves nothing: no event, no project, no repository."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import store
from tests import ports
from tests.integration.git_client import Git, with_token
from tests.integration.git_upstream import UPSTREAM, Upstream, serve_upstream
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

LOOPBACK_ALLOWED = {"project_import_allowed_networks": ["127.0.0.1/32"]}


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    async with serve_upstream(tmp_path / "served") as server:
        yield server


async def make_upstream(git: Git, tmp_path: Path, upstream: Upstream) -> Path:
    """A work repository (branches ``trunk``, HEAD, and ``feature``; annotated tag ``v1``)
    pushed to the served bare repository; returns the work repository."""
    work = tmp_path / "upstream-work"
    work.mkdir()
    await git.ok("init", "-q", "-b", "trunk", cwd=work)
    await git.commit(work, {"README.md": b"# Course\n", "week1/intro.ipynb": b"{}\n"}, "start")
    await git.ok("tag", "-a", "v1", "-m", "first release", cwd=work)
    await git.ok("checkout", "-q", "-b", "feature", cwd=work)
    await git.commit(work, {"week2/more.ipynb": b'{"cells": []}\n'}, "feature work")
    await git.ok("checkout", "-q", "trunk", cwd=work)
    await git.ok("clone", "-q", "--bare", str(work), str(upstream.root / UPSTREAM))
    return work


async def upstream_refs(git: Git, upstream: Upstream) -> dict[str, str]:
    """The served repository's branches and tags, as ``git for-each-ref`` sees them."""
    out = await git.ok(
        "for-each-ref", "--format=%(refname) %(objectname)", cwd=upstream.root / UPSTREAM
    )
    return dict(line.split() for line in out.out.splitlines())


async def project_refs(pool: asyncpg.Pool[Any]) -> dict[str, str]:
    rows = await pool.fetch("SELECT ref, sha FROM project_refs ORDER BY ref")
    return {r["ref"]: r["sha"] for r in rows}


async def project_events(pool: asyncpg.Pool[Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT event_type, data FROM events WHERE event_type LIKE 'project.%'"
        " ORDER BY global_position"
    )
    return [
        (r["event_type"], json.loads(r["data"]) if isinstance(r["data"], str) else r["data"])
        for r in rows
    ]


async def assert_nothing_left(hub: ProjectsHub, pool: asyncpg.Pool[Any]) -> None:
    """No project, no project event, no repository (or scratch directory) on disk."""
    assert await pool.fetchval("SELECT count(*) FROM projects") == 0
    assert await project_events(pool) == []
    root = hub.data_dir / "projects"
    assert not root.exists() or list(root.iterdir()) == []


async def test_import_maps_branches_tags_and_head_and_clones_with_git(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    work = await make_upstream(git, tmp_path, upstream)
    expected = await upstream_refs(git, upstream)
    assert set(expected) == {"refs/heads/trunk", "refs/heads/feature", "refs/tags/v1"}
    async with open_projects_hub(event_store, tmp_path / "data", **LOOPBACK_ALLOWED) as hub:
        alice = await hub.user_token("alice")
        status, reply = await hub.call(
            "POST",
            "/projects",
            alice,
            json={"name": "course", "import_url": upstream.url()},
        )
        assert status == 201, reply
        assert reply["default_branch"] == "trunk"  # the remote's HEAD
        assert reply["last_push"] is not None
        assert await project_refs(pool) == expected

        [(created_type, created), (pushed_type, pushed)] = await project_events(pool)
        assert (created_type, created["import_url"]) == ("project.created", upstream.url())
        assert pushed_type == "project.pushed"
        assert (pushed["via"], pushed["pusher"], pushed["commits"]) == ("import", "alice", 2)
        assert {r["ref"]: r["new"] for r in pushed["refs"]} == expected

        # objects only in this project's repository; its refs only in PostgreSQL
        [repo_dir] = (hub.data_dir / "projects").iterdir()
        assert repo_dir.name.endswith(".git")
        assert not repo_dir.name.startswith(".")

        clone = tmp_path / "clone"
        await git.ok("clone", "-q", with_token(reply["clone_url"], alice), str(clone))
        assert (await git.head(clone)) == expected["refs/heads/trunk"]
        assert (clone / "week1" / "intro.ipynb").read_bytes() == b"{}\n"
        await git.ok("fetch", "-q", "--tags", "origin", cwd=clone)
        assert (await git.head(clone, "v1^{commit}")) == (await git.head(work, "v1^{commit}"))
        assert (await git.head(clone, "origin/feature")) == expected["refs/heads/feature"]


async def test_a_requested_default_branch_must_exist_upstream(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    await make_upstream(git, tmp_path, upstream)
    async with open_projects_hub(event_store, tmp_path / "data", **LOOPBACK_ALLOWED) as hub:
        alice = await hub.user_token("alice")
        body = {"name": "course", "import_url": upstream.url(), "default_branch": "nope"}
        status, reply = await hub.call("POST", "/projects", alice, json=body)
        assert status == 400, reply
        assert reply["message"].startswith("default_branch:")
        await assert_nothing_left(hub, pool)
        body["default_branch"] = "feature"
        status, reply = await hub.call("POST", "/projects", alice, json=body)
        assert status == 201, reply
        assert reply["default_branch"] == "feature"


async def test_loopback_is_refused_unless_allowed(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    await make_upstream(git, tmp_path, upstream)
    async with open_projects_hub(event_store, tmp_path / "data") as hub:
        alice = await hub.user_token("alice")
        for url in (
            upstream.url(),
            upstream.url().replace("127.0.0.1", "localhost"),
            upstream.url().replace("127.0.0.1", "[::ffff:127.0.0.1]"),
        ):
            status, reply = await hub.call(
                "POST", "/projects", alice, json={"name": "course", "import_url": url}
            )
            assert status == 400, (url, reply)
            assert reply["message"].startswith("import_url: "), reply
            assert "loopback" in reply["message"], reply
        await assert_nothing_left(hub, pool)


async def test_allow_private_lets_the_import_reach_loopback(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
) -> None:
    await make_upstream(git, tmp_path, upstream)
    config = {"project_import_allow_private": True}
    async with open_projects_hub(event_store, tmp_path / "data", **config) as hub:
        alice = await hub.user_token("alice")
        url = upstream.url().replace("127.0.0.1", "localhost")
        status, reply = await hub.call(
            "POST", "/projects", alice, json={"name": "course", "import_url": url}
        )
        assert status == 201, reply


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"import_url": "file:///etc"}, "file://"),
        ({"import_url": "ssh://git@example.org/repo.git"}, "ssh://"),
        ({"import_url": "git@example.org:repo.git"}, "import_url"),
        ({"import_url": "/srv/git/repo.git"}, "local path"),
        ({"import_url": "ftp://example.org/repo.git"}, "ftp://"),
        ({"import_url": "https://alice:secret@example.org/repo.git"}, "credentials"),
        ({"import_url": "https://example.org/repo.git?x=1"}, "query"),
        ({"import_url": "https:///repo.git"}, "no host"),
        ({"import_url": "https://example.org/a b.git"}, "spaces"),
        ({"import_url": 5}, "import_url"),
        ({"import_url": "https://example.org/" + "a" * 2001}, "import_url"),
        ({"import_url": "https://example.org/r.git", "mirror": True}, "mirror"),
    ],
)
async def test_bad_import_urls_and_bodies_are_400_naming_the_field(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], body: dict[str, Any], says: str
) -> None:
    alice = await projects_hub.user_token("alice")
    status, reply = await projects_hub.call(
        "POST", "/projects", alice, json={"name": "course", **body}
    )
    assert status == 400, reply
    assert says in reply["message"], reply
    if "import_url" in body and isinstance(body["import_url"], str) and "mirror" not in body:
        assert reply["message"].startswith("import_url"), reply
    await assert_nothing_left(projects_hub, pool)


async def test_a_repository_over_the_size_limit_is_refused_with_nothing_left(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    work = tmp_path / "big"
    await git.new_repo(work, {"noise.bin": os.urandom(300_000)})
    await git.ok("clone", "-q", "--bare", str(work), str(upstream.root / "big.git"))
    config = {**LOOPBACK_ALLOWED, "project_import_max_bytes": 64 * 1024}
    async with open_projects_hub(event_store, tmp_path / "data", **config) as hub:
        alice = await hub.user_token("alice")
        status, reply = await hub.call(
            "POST", "/projects", alice, json={"name": "big", "import_url": upstream.url("big.git")}
        )
        assert status == 422, reply
        assert "larger than the hub's limit of 65536 bytes" in reply["message"], reply
        await assert_nothing_left(hub, pool)


async def test_a_stalling_server_is_given_up_at_the_time_limit(
    event_store: store.EventStore,
    tmp_path: Path,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    config = {**LOOPBACK_ALLOWED, "project_import_timeout_s": 1.5}
    async with open_projects_hub(event_store, tmp_path / "data", **config) as hub:
        alice = await hub.user_token("alice")
        started = time.monotonic()
        status, reply = await hub.call(
            "POST",
            "/projects",
            alice,
            json={"name": "slow", "import_url": upstream.url("stall/slow.git")},
        )
        took = time.monotonic() - started
        assert status == 504, reply
        assert "limit of 1.5 s" in reply["message"], reply
        assert upstream.stalled == 1
        assert took < 10, took  # the deadline ended the connection; no per-read timeout stacked
        await assert_nothing_left(hub, pool)


async def test_a_redirect_to_a_private_address_is_refused(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    await make_upstream(git, tmp_path, upstream)
    async with open_projects_hub(event_store, tmp_path / "data", **LOOPBACK_ALLOWED) as hub:
        alice = await hub.user_token("alice")
        # the redirect itself comes from an allowed address; where it points is not allowed
        for target, kind in (
            ("http://169.254.169.254/latest", "link-local"),
            ("http://10.0.0.1/internal", "private"),
            (f"http://127.0.0.2:{upstream.server.port}", "loopback"),  # type: ignore[union-attr]
        ):
            upstream.redirect_to = target
            status, reply = await hub.call(
                "POST",
                "/projects",
                alice,
                json={"name": "course", "import_url": upstream.url(f"redirect/{UPSTREAM}")},
            )
            assert status == 400, reply
            assert kind in reply["message"], reply
        await assert_nothing_left(hub, pool)
        # a redirect to an allowed address is followed
        upstream.redirect_to = upstream.base_url
        status, reply = await hub.call(
            "POST",
            "/projects",
            alice,
            json={"name": "course", "import_url": upstream.url(f"redirect/{UPSTREAM}")},
        )
        assert status == 201, reply


async def test_sync_fast_forwards_and_refuses_a_diverged_branch(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    work = await make_upstream(git, tmp_path, upstream)
    served = str(upstream.root / UPSTREAM)
    async with open_projects_hub(event_store, tmp_path / "data", **LOOPBACK_ALLOWED) as hub:
        alice = await hub.user_token("alice")
        bob = await hub.user_token("bob")
        status, reply = await hub.call(
            "POST", "/projects", alice, json={"name": "course", "import_url": upstream.url()}
        )
        assert status == 201, reply
        before = await project_refs(pool)

        # nothing new upstream: nothing recorded
        status, reply = await hub.call("POST", "/projects/alice/course/sync", alice)
        assert status == 200, reply
        assert (reply["updated"], reply["refused"]) == ([], [])
        assert len(await project_events(pool)) == 2

        # a new commit on trunk and a new branch: both fast-forward
        trunk = await git.commit(work, {"week2/notes.md": b"more\n"}, "week 2")
        await git.ok("branch", "extra", cwd=work)
        await git.ok("push", "-q", served, "trunk", "extra", cwd=work)
        status, reply = await hub.call("POST", "/projects/alice/course/sync", alice)
        assert status == 200, reply
        assert reply["refused"] == []
        assert reply["updated"] == [
            {"ref": "refs/heads/extra", "old": None, "new": trunk},
            {"ref": "refs/heads/trunk", "old": before["refs/heads/trunk"], "new": trunk},
        ]
        assert reply["commits"] == 1
        assert await project_refs(pool) == {
            **before,
            "refs/heads/trunk": trunk,
            "refs/heads/extra": trunk,
        }
        kind, pushed = (await project_events(pool))[-1]
        assert (kind, pushed["via"], pushed["pusher"]) == ("project.pushed", "import", "alice")

        # feature rewritten and force-pushed upstream, trunk moved on: trunk is still updated
        await git.ok("checkout", "-q", "feature", cwd=work)
        await git.ok("commit", "-q", "--amend", "-m", "feature, rewritten", cwd=work)
        await git.ok("checkout", "-q", "trunk", cwd=work)
        trunk2 = await git.commit(work, {"week3/x.md": b"x\n"}, "week 3")
        await git.ok("push", "-q", "--force", served, "feature", "trunk", cwd=work)
        status, reply = await hub.call("POST", "/projects/alice/course/sync", alice)
        assert status == 200, reply
        [refused] = reply["refused"]
        assert refused["ref"] == "refs/heads/feature"
        assert "non-fast-forward" in refused["reason"]
        assert [u["ref"] for u in reply["updated"]] == ["refs/heads/trunk"]
        refs_now = await project_refs(pool)
        assert refs_now["refs/heads/trunk"] == trunk2
        assert refs_now["refs/heads/feature"] == before["refs/heads/feature"]

        # write access is needed (a reader gets 403, a stranger 404); a project that was not
        # imported has nothing to sync from
        await hub.call(
            "PUT", "/projects/alice/course/members/users/bob", alice, json={"role": "read"}
        )
        status, reply = await hub.call("POST", "/projects/alice/course/sync", bob)
        assert status == 403, reply
        carol = await hub.user_token("carol")
        status, reply = await hub.call("POST", "/projects/alice/course/sync", carol)
        assert status == 404, reply
        await hub.project(alice, "plain")
        status, reply = await hub.call("POST", "/projects/alice/plain/sync", alice)
        assert status == 409, reply
        assert "not imported" in reply["message"]
        status, reply = await hub.call(
            "POST", "/projects/alice/course/sync", alice, json={"force": True}
        )
        assert status == 400, reply


async def test_import_over_the_git_protocol(
    event_store: store.EventStore,
    tmp_path: Path,
    git: Git,
    upstream: Upstream,
    pool: asyncpg.Pool[Any],
) -> None:
    await make_upstream(git, tmp_path, upstream)
    expected = await upstream_refs(git, upstream)
    port = ports.free_port()
    daemon = await asyncio.create_subprocess_exec(
        "git",
        "daemon",
        "--reuseaddr",
        "--export-all",
        f"--base-path={upstream.root}",
        "--listen=127.0.0.1",
        f"--port={port}",
        str(upstream.root),
        env=git.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # until the daemon listens
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                assert time.monotonic() < deadline, "git daemon did not start"
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        url = f"git://127.0.0.1:{port}/{UPSTREAM}"
        async with open_projects_hub(event_store, tmp_path / "data", **LOOPBACK_ALLOWED) as hub:
            alice = await hub.user_token("alice")
            status, reply = await hub.call(
                "POST", "/projects", alice, json={"name": "course", "import_url": url}
            )
            assert status == 201, reply
            assert await project_refs(pool) == expected
        async with open_projects_hub(event_store, tmp_path / "data2") as hub:
            status, reply = await hub.call(
                "POST", "/projects", alice, json={"name": "other", "import_url": url}
            )
            assert status == 400, reply
            assert "loopback" in reply["message"]
    finally:
        daemon.terminate()
        await daemon.wait()
