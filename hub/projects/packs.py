"""Receiving a pushed pack into a project's object store through a quarantine.

dulwich's ``DiskObjectStore.add_thin_pack`` leaves its temporary ``tmp_pack_*`` file behind
when the pack is refused (found by fuzzing, tests/integration/test_fuzz_git.py), so refused
pushes could fill the disk. As git does (``receive.quarantine``), each pack is received into
a fresh ``objects/incoming-*`` directory of its own, moved into ``objects/pack/`` once
complete, and the whole directory removed whatever happens. The collector removes the
directory a hub killed mid-push leaves (hub/projects/gc.py).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dulwich.object_store import DiskObjectStore
from dulwich.objects import ObjectID, RawObjectID

QUARANTINE_PREFIX = "incoming-"
"""The name of a quarantine directory under a repository's ``objects/`` starts so."""


class Quarantine(DiskObjectStore):
    """An object store of its own for one incoming pack, which finds the objects it lacks (a
    thin pack's bases) in the repository's real store."""

    def __init__(self, path: str, real: DiskObjectStore) -> None:
        super().__init__(
            path,
            object_format=real.object_format,
            pack_compression_level=real.pack_compression_level,
            pack_index_version=real.pack_index_version,
            fsync_object_files=real.fsync_object_files,
        )
        self.real = real

    def get_raw(self, name: RawObjectID | ObjectID) -> tuple[int, bytes]:
        """The object from this store, or else from the real one; ``KeyError`` if neither."""
        try:
            return super().get_raw(name)
        except KeyError:
            return self.real.get_raw(name)


def add_thin_pack(
    store: DiskObjectStore,
    read_all: Callable[[int], bytes],
    read_some: Callable[[int], bytes] | None,
    *,
    max_input_size: int | None,
) -> None:
    """Add a (thin) pack read from the wire to ``store``; on any failure nothing of it stays
    and the error goes on unchanged. Blocking."""
    objects = os.fspath(store.path)
    path = Path(tempfile.mkdtemp(prefix=QUARANTINE_PREFIX, dir=objects))
    try:
        (path / "pack").mkdir()
        quarantine = Quarantine(os.fspath(path), store)
        try:
            quarantine.add_thin_pack(read_all, read_some, max_input_size=max_input_size)
        finally:
            quarantine.close()  # its pack's files closed before they move
        (index,) = (path / "pack").glob("*.idx")  # the one pack it holds
        _land(path / "pack", index.stem, Path(os.fspath(store.pack_dir)))
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _land(source: Path, name: str, pack_dir: Path) -> None:
    """Move pack ``name``'s files from ``source`` into ``pack_dir``: the data first, the index
    last, since a reader takes a pack only once its index is there."""
    # add_thin_pack writes the data and its index only (a bitmap needs refs it is not given);
    # any other file of the pack goes between the two.
    extras = sorted(
        file
        for file in source.iterdir()
        if file.name.startswith(f"{name}.") and file.suffix not in (".pack", ".idx")
    )
    with _locked(pack_dir):
        if (pack_dir / f"{name}.idx").exists():
            # The same objects are there already (the name is their hash), perhaps laid out
            # otherwise: replacing the data under a reader of the old index would mislead it.
            # Made young again (as git freshens a pack it finds), so that the collector, which
            # goes by age, leaves it to the push that is about to move refs to it.
            os.utime(pack_dir / f"{name}.pack")
            return
        moved: list[Path] = []
        try:
            for file in [source / f"{name}.pack", *extras, source / f"{name}.idx"]:
                os.rename(file, pack_dir / file.name)  # same filesystem: objects/ holds both
                moved.append(pack_dir / file.name)
        except BaseException:
            # the index is the last to move, so it is not there: what moved is unreachable
            for file in moved:
                file.unlink(missing_ok=True)
            raise


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (flock: other processes too, as replicas that
    share the data directory), so two pushes of the same objects never interleave their
    files under one name."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
