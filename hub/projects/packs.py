"""Receiving a pushed pack into a project's object store, and nothing left when it is refused.

dulwich's ``DiskObjectStore.add_thin_pack`` (1.2) writes the incoming pack to a temporary
``tmp_pack_*`` file in the objects directory and leaves that file behind when the pack turns
out broken (found by fuzzing, tests/integration/test_fuzz_git.py: a pack whose data inflates
past its declared size). A client could fill the disk with refused pushes until the
collector's grace period ends (hub/projects/gc.py), and the file's name cannot be had from
outside to remove it, nor told apart from a concurrent push's. So this is dulwich's method
with one change: the temporary file is removed when anything fails. It calls the same
private helpers dulwich's does; ``dulwich`` is pinned narrowly in pyproject.toml for that.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from dulwich import object_store
from dulwich.pack import PackData, PackIndexer, PackStreamCopier


def add_thin_pack(
    store: Any,
    read_all: Callable[[int], bytes],
    read_some: Callable[[int], bytes] | None,
    *,
    max_input_size: int | None,
) -> Any:
    """Add a (thin) pack read from the wire to ``store`` (a ``DiskObjectStore``); on any
    failure its temporary file is gone before the error goes on."""
    if max_input_size:
        read_all, read_some = object_store._bound_read_callables(
            read_all, read_some, max_input_size
        )
    fd, path = tempfile.mkstemp(dir=store.path, prefix="tmp_pack_")
    completed = False
    try:
        with os.fdopen(fd, "w+b") as f:
            os.chmod(path, object_store.PACK_MODE)
            indexer = PackIndexer(f, store.object_format.hash_func, resolve_ext_ref=store.get_raw)
            copier = PackStreamCopier(
                store.object_format.hash_func,
                read_all,
                read_some,
                f,
                delta_iter=indexer,  # type: ignore[arg-type]  # as dulwich passes it
            )
            copier.verify()
            f.flush()
            f.seek(0)
            with PackData(path, file=f, object_format=store.object_format) as data:
                indexer.set_pack_data(data)
                entries, ext_refs = store._index_pack(indexer, len(copier))
            pack = store._complete_pack(f, path, entries, ext_refs)
            completed = True
            return pack
    finally:
        if not completed:
            with suppress(FileNotFoundError):
                os.remove(path)
