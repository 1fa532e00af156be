"""The quarantine a pushed pack is received through (hub/projects/packs.py), on a dulwich
repository in a temporary directory: what lands, and what a refused or repeated pack leaves."""

from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path

import pytest
from dulwich.errors import ChecksumMismatch
from dulwich.object_format import DEFAULT_OBJECT_FORMAT
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import Blob
from dulwich.pack import write_pack_objects
from dulwich.repo import Repo

from hub.projects import packs

BLOBS = [Blob.from_string(f"blob {i}\n".encode() * 50) for i in range(3)]


def pack_of(blobs: list[Blob]) -> bytes:
    out = io.BytesIO()
    write_pack_objects(out.write, [(blob, None) for blob in blobs], DEFAULT_OBJECT_FORMAT)
    return out.getvalue()


def listing(objects: Path) -> dict[str, tuple[int, int] | None]:
    return {
        str(p.relative_to(objects)): None
        if p.is_dir()
        else (p.stat().st_size, p.stat().st_mtime_ns)
        for p in objects.rglob("*")
    }


def receive(repository: Path, data: bytes, max_input_size: int | None = None) -> None:
    with contextlib.closing(Repo(str(repository))) as repo:
        source = io.BytesIO(data)
        packs.add_thin_pack(repo.object_store, source.read, None, max_input_size=max_input_size)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    Repo.init_bare(str(tmp_path / "r.git"), mkdir=True).close()
    return tmp_path / "r.git"


def test_a_pack_lands_and_the_same_objects_again_only_make_it_young(repository: Path) -> None:
    receive(repository, pack_of(BLOBS))
    pack_dir = repository / "objects" / "pack"
    landed = sorted(p.name for p in pack_dir.iterdir())
    assert [Path(name).suffix for name in landed] == [".idx", ".pack"]
    assert sorted(p.name for p in (repository / "objects").iterdir()) == ["info", "pack"]
    with contextlib.closing(Repo(str(repository))) as repo:
        assert [repo[blob.id].as_raw_string() for blob in BLOBS] == [b.data for b in BLOBS]

    # the same objects once more (another order, so other bytes): the pack there stays, made
    # young again so that the collector leaves it to the push about to reference it
    old = time.time() - 7200
    for file in pack_dir.iterdir():
        os.utime(file, (old, old))
    receive(repository, pack_of(BLOBS[::-1]))
    assert sorted(p.name for p in pack_dir.iterdir()) == landed
    (data,) = pack_dir.glob("*.pack")
    assert data.stat().st_mtime > old + 3600
    assert sorted(p.name for p in (repository / "objects").iterdir()) == ["info", "pack"]


def test_a_pack_over_the_limit_leaves_the_objects_as_they_were(repository: Path) -> None:
    receive(repository, pack_of(BLOBS[:1]))
    before = listing(repository / "objects")
    big = Blob.from_string(os.urandom(64 * 1024))
    with pytest.raises(PackInputTooLarge):
        receive(repository, pack_of([big]), max_input_size=32 * 1024)
    assert listing(repository / "objects") == before


def test_a_broken_pack_leaves_the_objects_as_they_were(repository: Path) -> None:
    receive(repository, pack_of(BLOBS[:1]))
    before = listing(repository / "objects")
    data = pack_of(BLOBS[1:])
    with pytest.raises(ChecksumMismatch):
        receive(repository, data[:-1] + bytes([data[-1] ^ 1]))
    assert listing(repository / "objects") == before
