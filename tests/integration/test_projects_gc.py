"""``chronohub projects gc``: objects no ref reaches (a pack stored by a push whose ref
transaction never happened) go once older than the grace period; objects refs reach, or
reached within the grace period, never do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import Repo

from hub.projects import gc, storage
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub

pytestmark = [pytest.mark.integration, pytest.mark.interop]


def stored_aside(repo_path: Path) -> tuple[bytes, bytes]:
    """What a push that never reached its ref transaction leaves: a pack (a commit, its tree
    and blob) no ref reaches, and a loose blob. Their shas."""
    repo = Repo(str(repo_path))
    try:
        blob = Blob.from_string(b"never referenced\n")
        tree = Tree()
        tree.add(b"orphan.txt", 0o100644, blob.id)
        commit = Commit()
        commit.tree = tree.id
        commit.author = commit.committer = b"Nobody <nobody@example.org>"
        commit.author_time = commit.commit_time = 1_700_000_000
        commit.author_timezone = commit.commit_timezone = 0
        commit.message = b"refused\n"
        repo.object_store.add_objects([(blob, None), (tree, None), (commit, None)])
        loose = Blob.from_string(b"loose and unreferenced\n")
        repo.object_store.add_object(loose)
        return commit.id, loose.id
    finally:
        repo.close()


def present(repo_path: Path, *shas: bytes) -> list[bool]:
    repo = Repo(str(repo_path))
    try:
        return [sha in repo.object_store for sha in shas]
    finally:
        repo.close()


def age_objects(repo_path: Path, seconds: float) -> None:
    """Make every object file of the repository ``seconds`` old."""
    then = time.time() - seconds
    for path in (repo_path / "objects").rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


async def test_unreferenced_objects_go_after_the_grace_period_and_referenced_ones_stay(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], tmp_path: Path, db_url: str
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    project = await hub.project(alice, "course")
    url = with_token(project["clone_url"], alice, "alice")
    git = Git(tmp_path / "home")
    work = tmp_path / "work"
    main = (await git.new_repo(work, {"README.md": b"# Course\n"})).encode()
    await git.ok("push", url, "main", cwd=work)
    await git.ok("checkout", "-q", "-b", "topic", cwd=work)
    topic = (await git.commit(work, {"notes.md": b"draft\n"}, "topic")).encode()
    await git.ok("push", url, "topic", cwd=work)
    await git.ok("push", url, "--delete", "topic", cwd=work)  # reached a minute ago, no more

    place: storage.Storage = hub.client.server.app[storage.STORAGE]
    project_id = await pool.fetchval("SELECT project_id FROM projects")
    repo_path = place.repositories.path(project_id)
    refused, loose = stored_aside(repo_path)
    # what a push cut short mid-pack leaves: dulwich's unfinished pack file
    (repo_path / "objects" / "tmp_pack_cut").write_bytes(b"PACK\0\0\0\2")
    age_objects(repo_path, 7200)
    (repo_path / "objects" / "pack" / "tmp_pack_receiving").write_bytes(b"PACK")
    young = Blob.from_string(b"stored a moment ago\n")
    with contextlib.closing(Repo(str(repo_path))) as repo:
        repo.object_store.add_object(young)
    everything = (main, topic, refused, loose, young.id)
    assert present(repo_path, *everything) == [True] * 5

    # the command line: a dry run says what would go and removes nothing
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "projects", "gc", "--grace", "3600", "--dry-run",
        env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url,
             "CHRONOHUB_DATA_DIR": str(hub.data_dir)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 0, out
    assert "would remove 1 packs and 1 loose objects no ref reaches" in out
    assert present(repo_path, *everything) == [True] * 5

    # an hour's grace: what the push stored aside goes; topic, reached within the hour, and
    # the young blob stay
    [collected] = await gc.collect(hub.store, place, grace_s=3600)
    assert (len(collected.packs), collected.loose, collected.scraps) == (1, 1, 1)
    assert present(repo_path, *everything) == [True, True, False, False, True]
    assert not (repo_path / "objects" / "tmp_pack_cut").exists()
    assert (repo_path / "objects" / "pack" / "tmp_pack_receiving").exists()  # may still grow
    assert await gc.collect(hub.store, place, grace_s=3600) == []

    # no grace at all: topic and the young blob go too; what main reaches never does
    await gc.collect(hub.store, place, grace_s=0)
    assert present(repo_path, *everything) == [True, False, False, False, False]
    assert not (repo_path / "objects" / "pack" / "tmp_pack_receiving").exists()

    # and what the refs reach is whole: a clone checks out every file
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone))
    assert (clone / "README.md").read_bytes() == b"# Course\n"
    await git.ok("fsck", "--strict", cwd=clone)


def age(path: Path, seconds: float) -> None:
    """Make ``path``, and all in it, ``seconds`` old."""
    then = time.time() - seconds
    for inner in [*path.rglob("*"), path]:
        os.utime(inner, (then, then))


async def test_a_quarantine_left_by_a_killed_push_goes_after_the_grace_period(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], tmp_path: Path, db_url: str
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    project = await hub.project(alice, "course")
    url = with_token(project["clone_url"], alice, "alice")
    git = Git(tmp_path / "home")
    work = tmp_path / "work"
    await git.new_repo(work, {"README.md": b"# Course\n"})
    await git.ok("push", url, "main", cwd=work)
    place: storage.Storage = hub.client.server.app[storage.STORAGE]
    project_id = await pool.fetchval("SELECT project_id FROM projects")
    objects = place.repositories.objects(project_id)
    age_objects(objects.parent, 7200)
    landed = sorted(path.name for path in (objects / "pack").iterdir())

    # what a hub killed mid-push leaves (hub/projects/packs.py): its quarantine directory,
    # with dulwich's unfinished pack file in it or a completed pack not yet moved
    def quarantine(name: str, files: dict[str, bytes]) -> Path:
        directory = objects / name
        for path, content in files.items():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            (directory / path).write_bytes(content)
        return directory

    cut = quarantine("incoming-cut", {"tmp_pack_x": b"PACK\0\0\0\2", "pack/.keepdir": b""})
    done = quarantine("incoming-done", {"pack/pack-1.pack": b"PACK", "pack/pack-1.idx": b"x"})
    age(cut, 7200)
    age(done, 7200)
    # a push in progress: young, or an old directory still being written to
    young = quarantine("incoming-young", {"tmp_pack_y": b"PACK"})
    writing = quarantine("incoming-writing", {"tmp_pack_z": b"PACK"})
    age(writing, 7200)
    os.utime(writing / "tmp_pack_z")
    # a pack's data moved in by a push killed before its index followed
    orphan = objects / "pack" / "pack-0000000000000000000000000000000000000000.pack"
    orphan.write_bytes(b"PACK\0\0\0\2\0\0\0\0")
    age(orphan, 7200)

    # the command line says what would go, and removes nothing
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", "projects", "gc", "--grace", "3600", "--dry-run",
        env={**os.environ, "CHRONOHUB_DATABASE_URL": db_url,
             "CHRONOHUB_DATA_DIR": str(hub.data_dir)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 0, out
    assert "would remove 0 packs, 0 loose objects, 3 unfinished pack files or push quar" in out
    assert cut.is_dir()

    [collected] = await gc.collect(hub.store, place, grace_s=3600)
    assert (collected.packs, collected.loose, collected.scraps) == ((), 0, 3)
    assert not cut.exists()
    assert not done.exists()
    assert not orphan.exists()
    assert young.is_dir()
    assert writing.is_dir()
    assert sorted(path.name for path in (objects / "pack").iterdir()) == landed

    # no grace: the young ones go too, and what the refs reach stays whole
    [collected] = await gc.collect(hub.store, place, grace_s=0)
    assert collected.scraps == 2
    assert list(objects.glob("incoming-*")) == []
    await git.commit(work, {"notes.md": b"more\n"}, "more")
    await git.ok("push", url, "main", cwd=work)
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone))
    await git.ok("fsck", "--strict", cwd=clone)
