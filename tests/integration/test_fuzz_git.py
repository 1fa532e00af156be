"""Fuzzing git's smart HTTP as the hub serves it: pkt-lines and packs a client might send.

Bodies for ``git-receive-pack`` and ``git-upload-pack``: pkt-lines with bad lengths (not hex,
under 4, longer than what follows), flush/delim/response-end packets anywhere, commands with
bad ids and no capabilities, and a real pack (from the git CLI) truncated or with bytes
changed. Each answer must come in time with git's own protocol (200) or a clean 4xx, never a
5xx; no ref moves, no ``project.pushed`` is written, and unless the hub said ``unpack ok`` not a
file is added under the repository's objects (no half-written pack). Afterwards the real git
still pushes and clones. Budget: tests/fuzzing.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import strategies as st

from tests import fuzzing
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub
from tests.integration.test_projects_git import pushes, refs

pytestmark = [pytest.mark.integration, pytest.mark.interop]

ZERO = b"0" * 40
CAPS = b"report-status side-band-64k"


def pkt(line: bytes) -> bytes:
    return f"{len(line) + 4:04x}".encode() + line


def bad_pkt_lines() -> st.SearchStrategy[bytes]:
    """A pkt-line head git would never write, or a special packet, or a line cut short."""
    return st.one_of(
        st.sampled_from([b"0000", b"0001", b"0002", b"0003", b"zzzz", b"00", b"fffe", b"0004"]),
        st.builds(lambda n, body: f"{n:04x}".encode() + body, st.integers(5, 0xFFFF),
                  st.binary(max_size=8)),
        st.builds(lambda head, body: head + body, st.binary(min_size=4, max_size=4),
                  st.binary(max_size=12)),
    )  # fmt: skip


def commands(sha: bytes) -> st.SearchStrategy[bytes]:
    """receive-pack's command lines: good, or with a bad id, ref or capability list."""
    ids = st.sampled_from([ZERO, sha, b"1" * 40, b"g" * 40, b"12", sha.upper()])
    names = st.sampled_from([b"refs/heads/main", b"refs/heads/x", b"HEAD", b"refs/../x", b""])
    return st.builds(
        lambda old, new, ref, sep, caps: old + b" " + new + b" " + ref + sep + caps + b"\n",
        ids, ids, names, st.sampled_from([b"\0", b"", b"\0\0"]),
        st.sampled_from([CAPS, b"", b"\xff\xfe", b"report-status" * 20]),
    )  # fmt: skip


def receive_bodies(sha: bytes, pack: bytes) -> st.SearchStrategy[bytes]:
    packs = st.one_of(
        st.just(b""),
        st.just(pack),
        st.builds(lambda n: pack[:n], st.integers(0, len(pack))),
        fuzzing.mutated([pack]),
        st.builds(lambda n: b"PACK\x00\x00\x00\x02" + n.to_bytes(4, "big"),
                  st.sampled_from([0, 1, 2**31, 2**32 - 1])),
    )  # fmt: skip
    lines = st.lists(st.one_of(commands(sha).map(pkt), bad_pkt_lines()), max_size=4)
    flush = st.sampled_from([b"0000", b"", b"0001"])
    return st.one_of(
        st.builds(lambda ls, f, p: b"".join(ls) + f + p, lines, flush, packs),
        fuzzing.mutated([pkt(ZERO + b" " + sha + b" refs/heads/x\0" + CAPS + b"\n") + b"0000"
                         + pack]),
        st.binary(max_size=64),
    )  # fmt: skip


def upload_bodies(sha: bytes) -> st.SearchStrategy[bytes]:
    wants = st.sampled_from([b"want " + sha + b" side-band-64k ofs-delta\n", b"want " + sha + b"\n",
                             b"want " + b"1" * 40 + b"\n", b"want xyz\n", b"have " + sha + b"\n",
                             b"deepen 1\n", b"deepen -5\n", b"shallow " + ZERO + b"\n",
                             b"done\n", b"filter blob:none\n"])  # fmt: skip
    lines = st.lists(st.one_of(wants.map(pkt), bad_pkt_lines(), st.just(b"0000")), max_size=6)
    good = pkt(b"want " + sha + b" side-band-64k\n") + b"0000" + pkt(b"done\n")
    return st.one_of(st.builds(b"".join, lines), fuzzing.mutated([good]), st.binary(max_size=48))


def object_files(objects: Path) -> set[str]:
    return {str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()}


async def post(hub: ProjectsHub, token: str, service: str, body: bytes) -> tuple[int, bytes]:
    response = await asyncio.wait_for(
        hub.client.post(
            f"/hub/git/alice/demo.git/{service}",
            data=body,
            headers={
                "Authorization": f"token {token}",
                "Content-Type": f"application/x-{service}-request",
            },
        ),
        30,
    )
    return response.status, await asyncio.wait_for(response.read(), 30)


async def test_fuzzed_pkt_lines_and_packs_get_clean_answers_and_move_nothing(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    hub = projects_hub
    git = Git(tmp_path / "home")
    alice = await hub.user_token("alice")
    project = await hub.project(alice, "demo")
    url = with_token(project["clone_url"], alice)
    work = tmp_path / "work"
    sha = (await git.new_repo(work, {"a.txt": b"a\n", "b.bin": os.urandom(300)})).encode()
    await git.ok("push", "-q", url, "main", cwd=work)
    # a pack of a commit the hub does not have yet, as git would send it
    await git.commit(work, {"c.txt": b"c\n"}, "second")
    new = (await git.head(work)).encode()
    packed = await asyncio.create_subprocess_exec(
        "git", "pack-objects", "--stdout", "--revs", cwd=work, env=git.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    pack, _ = await packed.communicate(new + b"\n^" + sha + b"\n")
    assert pack.startswith(b"PACK")

    (repository,) = (hub.data_dir / "projects").glob("*.git")  # the one project's
    objects = repository / "objects"
    refs_before, pushes_before = await refs(pool), await pushes(pool)
    files_before = object_files(objects)

    cases = [("git-receive-pack", b) for b in fuzzing.collect(receive_bodies(sha, pack), 60)]
    cases += [("git-upload-pack", b) for b in fuzzing.collect(upload_bodies(sha), 30)]
    for service, body in cases:
        status, reply = await post(hub, alice, service, body)
        assert status in (200, 400), (service, body, status, reply[:300])
        # A fuzzed body can be a valid push (a new branch at a commit the hub has): then the
        # hub says ok for that ref, and that push, and only that, is recorded.
        accepted = {m.decode() for m in re.findall(rb"ok (refs/\S+)", reply)}
        refs_now, pushes_now = await refs(pool), await pushes(pool)
        moved = {ref for ref in refs_before.keys() | refs_now.keys()
                 if refs_before.get(ref) != refs_now.get(ref)}  # fmt: skip
        assert moved <= accepted, (service, body, reply[:300])
        assert len(pushes_now) == len(pushes_before) + (1 if accepted else 0), reply[:300]
        if service == "git-receive-pack" and b"unpack ok" not in reply:
            assert object_files(objects) == files_before, (body, reply[:300])
        refs_before, pushes_before, files_before = refs_now, pushes_now, object_files(objects)

    # the hub and the repository are still sound: git pushes and clones
    await git.ok("push", "-q", url, "main", cwd=work)
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", url, str(clone))
    assert (clone / "c.txt").read_bytes() == b"c\n"
    assert await git.ok("fsck", "--strict", cwd=clone)


def shrink_first_object(pack: bytes) -> bytes:
    """``pack`` with its first object's header declaring 1 byte: its data inflates past that."""
    at = 12
    end = at
    while pack[end] & 0x80:
        end += 1
    kind = (pack[at] >> 4) & 0x07
    return pack[:at] + bytes(((kind << 4) | 1,)) + pack[end + 1 :]


async def test_regression_a_pack_that_inflates_past_its_size_leaves_no_temporary_file(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    # Found by fuzzing (the test above): dulwich's add_thin_pack left its tmp_pack_* file in
    # the objects directory when indexing failed, so refused pushes piled up on disk; the
    # pack is now received in a quarantine directory, removed whole (hub/projects/packs.py).
    hub = projects_hub
    git = Git(tmp_path / "home")
    alice = await hub.user_token("alice")
    await hub.project(alice, "demo")
    work = tmp_path / "work"
    sha = await git.new_repo(work, {"a.txt": b"hello, " * 100})
    packed = await asyncio.create_subprocess_exec(
        "git", "pack-objects", "--stdout", "--revs", cwd=work, env=git.env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    pack, _ = await packed.communicate(sha.encode() + b"\n")
    command = ZERO + b" " + sha.encode() + b" refs/heads/main\0" + CAPS + b"\n"
    body = pkt(command) + b"0000" + shrink_first_object(pack)
    status, reply = await post(hub, alice, "git-receive-pack", body)
    assert status == 200
    assert b"unpack ok" not in reply
    assert b"unpacker error" in reply
    (repository,) = (hub.data_dir / "projects").glob("*.git")  # made by the push
    assert list(repository.rglob("tmp_pack_*")) == []
    assert list(repository.rglob("incoming-*")) == []  # the quarantine went whole
    assert list(repository.rglob("*.pack")) == []
    assert await refs(pool) == {}
    assert await pushes(pool) == []


@pytest.mark.parametrize(
    "command",
    [
        b"refs/heads/main\0\0report-status\n",  # two NULs: dulwich's unpacking failed, a 500
        b"refs/heads/main\0report-status\0side-band-64k\n",
    ],
)
async def test_regression_a_command_with_two_nuls_is_a_protocol_error(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], command: bytes
) -> None:
    # Found by fuzzing (the first test above): answered 500 "failed on the hub".
    hub = projects_hub
    alice = await hub.user_token("alice")
    await hub.project(alice, "demo")
    body = pkt(ZERO + b" " + b"1" * 40 + b" " + command) + b"0000"
    status, reply = await post(hub, alice, "git-receive-pack", body)
    assert status == 400, reply
    assert b"malformed git request" in reply
    assert await refs(pool) == {}
    assert await pushes(pool) == []
