"""A push's pack is received in a quarantine directory of its own (hub/projects/packs.py): a
thin pack from the real git CLI, with deltas against objects of an earlier push, lands whole
and readable; a refused push (broken, too large, against bases the hub lacks) leaves the
objects directory exactly as it was."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.repo import Repo

from events import store
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub
from tests.integration.test_fuzz_git import post, shrink_first_object
from tests.integration.test_projects_git import pkt, pushes, refs

pytestmark = [pytest.mark.integration, pytest.mark.interop]

CAPS = b"report-status"
LIMIT = 256 * 1024


def text(changed: int | None = None) -> bytes:
    """A text file of ~170 KB (compressible, under ``LIMIT``), line ``changed`` altered."""
    lines = [f"line {i:05d}: the quick brown fox jumps over the lazy dog {i * 7919 % 10007}"
             for i in range(2500)]  # fmt: skip
    if changed is not None:
        lines[changed] = "this line was changed"
    return "\n".join(lines).encode() + b"\n"


def listing(objects: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``objects``: a file's size and mtime, a directory's None."""
    return {
        str(path.relative_to(objects)): None
        if path.is_dir()
        else (path.stat().st_size, path.stat().st_mtime_ns)
        for path in objects.rglob("*")
    }


async def pack_of(git: Git, work: Path, revs: bytes, *options: str) -> bytes:
    """The pack git makes of ``revs`` (``pack-objects --revs`` input) in ``work``."""
    packed = await asyncio.create_subprocess_exec(
        "git", "pack-objects", "--stdout", "--revs", *options, cwd=work, env=git.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    pack, _ = await packed.communicate(revs)
    assert packed.returncode == 0
    assert pack.startswith(b"PACK")
    return pack


async def test_a_thin_pack_lands_whole_and_readable(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    hub = projects_hub
    git = Git(tmp_path / "home")
    alice = await hub.user_token("alice")
    url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
    work = tmp_path / "work"
    first = await git.new_repo(work, {"big.txt": text(), "small.txt": b"small\n"})
    await git.ok("push", "-q", url, "main", cwd=work)
    (repository,) = (hub.data_dir / "projects").glob("*.git")
    pack_dir = repository / "objects" / "pack"
    (first_index,) = pack_dir.glob("*.idx")
    old_blob = (await git.ok("rev-parse", f"{first}:big.txt", cwd=work)).out.strip()

    # one line of the large file changed: git push (thin by default) sends the new blob as a
    # delta against the old one, which the pack leaves out since the hub has it
    second = await git.commit(work, {"big.txt": text(changed=1234)}, "one line")
    thin = await pack_of(git, work, f"{second}\n^{first}\n".encode(), "--thin")
    assert len(thin) < 4096, "git made no delta: the test proves nothing"
    await git.ok("push", "-q", url, "main", cwd=work)

    assert await refs(pool) == {"refs/heads/main": second}
    assert [p["refs"][0]["new"] for p in await pushes(pool)] == [first, second]
    # the landed pack was completed with the base it deltas against, data and index in place
    (second_index,) = set(pack_dir.glob("*.idx")) - {first_index}
    assert second_index.with_suffix(".pack").is_file()
    with contextlib.closing(Repo(str(repository))) as repo:
        (landed,) = [
            pack
            for pack in repo.object_store.packs
            if Path(os.fspath(pack.data.path)) == second_index.with_suffix(".pack")
        ]
        assert ObjectID(old_blob.encode()) in landed
        landed.check()
        commit = repo[second.encode()]
        assert isinstance(commit, Commit)
        tree = repo[commit.tree]
        assert isinstance(tree, Tree)
        blob = repo[tree[b"big.txt"][1]]
        assert isinstance(blob, Blob)
        assert blob.data == text(changed=1234)
    assert list((repository / "objects").glob("incoming-*")) == []
    assert list(repository.rglob("tmp_pack_*")) == []

    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone))
    assert (clone / "big.txt").read_bytes() == text(changed=1234)
    await git.ok("fsck", "--strict", cwd=clone)


@pytest.mark.parametrize("refusal", ["broken", "too large", "missing base"])
async def test_a_refused_push_leaves_the_objects_directory_as_it_was(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], tmp_path: Path, refusal: str
) -> None:
    git = Git(tmp_path / "home")
    async with open_projects_hub(
        event_store, tmp_path / "data", project_max_push_bytes=LIMIT
    ) as hub:
        alice = await hub.user_token("alice")
        url = with_token((await hub.project(alice, "demo"))["clone_url"], alice)
        work = tmp_path / "work"
        first = await git.new_repo(work, {"a.txt": b"a\n"})
        await git.ok("push", "-q", url, "main", cwd=work)
        (repository,) = (hub.data_dir / "projects").glob("*.git")
        objects = repository / "objects"
        before = listing(objects)
        assert any(name.endswith(".idx") for name in before)

        if refusal == "too large":
            await git.commit(work, {"big.bin": os.urandom(3 * 1024 * 1024)}, "big")
            result = await git("push", url, "main", cwd=work)
            assert not result.ok
            assert f"larger than the hub's limit of {LIMIT} bytes" in result.err
        else:
            if refusal == "broken":
                second = await git.commit(work, {"b.txt": b"b, " * 100}, "second")
                pack = shrink_first_object(
                    await pack_of(git, work, f"{second}\n^{first}\n".encode())
                )
            else:
                # a thin pack against a commit the hub never got: its base is nowhere
                middle = await git.commit(work, {"big.txt": text()}, "never pushed")
                second = await git.commit(work, {"big.txt": text(changed=7)}, "second")
                pack = await pack_of(git, work, f"{second}\n^{middle}\n".encode(), "--thin")
            command = f"{first} {second} refs/heads/main\0".encode() + CAPS + b"\n"
            body = pkt(command) + b"0000" + pack
            status, reply = await post(hub, alice, "git-receive-pack", body)
            assert status == 200, reply
            assert b"unpack ok" not in reply
            assert b"unpacker error" in reply
            if refusal == "missing base":
                assert b"deltas against objects the hub does not have" in reply

        assert listing(objects) == before
        assert await refs(pool) == {"refs/heads/main": first}
        assert len(await pushes(pool)) == 1
