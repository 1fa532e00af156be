"""The data directory: the hub's private state (database, cookie secret, logs, git objects).

Nobody but the hub's account may read it. A new one is made with mode 0700; an existing one
that other accounts can read or enter is refused, with the command that fixes it (its
contents may already have been read, so the hub does not quietly close it and go on). The one
exception: a root hub's embedded PostgreSQL runs as an account of its own, which must pass
through the data directory to reach its cluster, so that account's group (and no other) may
enter it (mode 0710).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class DataDirError(Exception):
    """The data directory cannot be made, or others can read it."""


def prepare(path: Path, *, group: int | None = None) -> Path:
    """Create ``path`` (mode 0700) or check it; ``group`` may then enter it (mode 0710)."""
    path = path.resolve()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise DataDirError(
            f"the data directory {path} is not writable ({exc.strerror or exc}): choose"
            " another with data_dir = … in chronohub.toml or CHRONOHUB_DATA_DIR=…"
        ) from exc
    if info.st_uid != os.geteuid():
        raise DataDirError(
            f"the data directory {path} belongs to another account (uid {info.st_uid});"
            f" the hub runs as uid {os.geteuid()}: run it as that account or choose another"
            " data_dir"
        )
    allowed = 0o010 if group is not None and info.st_gid == group else 0
    if stat.S_IMODE(info.st_mode) & 0o077 & ~allowed:
        raise DataDirError(
            f"the data directory {path} is open to other accounts (mode"
            f" {stat.S_IMODE(info.st_mode):o}): it holds the database, the cookie secret and"
            f" the logs. Close it with: chmod 700 {path} (its contents may have been read:"
            " consider deleting its cookie_secret, which signs everyone out)"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(
            f"the data directory {path} is not writable by the hub's account: choose another"
            " with data_dir = … in chronohub.toml or CHRONOHUB_DATA_DIR=…"
        )
    if group is not None:
        os.chown(path, -1, group)
        path.chmod(0o710)
    return path


def private_subdir(path: Path) -> Path:
    """A directory inside the data directory (logs, users' scratch space) with mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it whole (never half-written)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    partial.replace(path)


def check_private_file(path: Path) -> None:
    """Refuse a secret file that other accounts can read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise DataDirError(
            f"{path} is readable by other accounts (mode {mode:o}); close it with: chmod 600 {path}"
        )


def closed_to_others(path: Path) -> Path | None:
    """The first directory on the way to ``path`` (itself included) that other accounts cannot
    pass through (no ``o+x``), or None if they can reach it."""
    for step in [*reversed(path.parents), path]:
        try:
            mode = step.stat().st_mode
        except OSError:
            return step
        if step.is_dir() and not mode & stat.S_IXOTH:
            return step
    return None
