"""A sandbox for users' code when the hub is not root: bubblewrap (Debian's ``bubblewrap``).

A hub that is not root cannot switch accounts, so each server and session kernel runs as the
hub's own account, but inside a bubblewrap sandbox of its own: a new mount namespace whose
root holds only the system's programs and libraries (``/usr``, ``/etc``), the hub's Python
environment (read-only), the user's own home (``<data_dir>/users/<name>``, seen as
``/home/<name>``) and whatever else the process must write (a kernel's runtime directory);
a PID namespace with its own
``/proc``, so the hub's process (its environment, its signals) and other users' processes
cannot be seen; its own ``/tmp`` and IPC. The data directory (database socket and password,
cookie secret, logs, other users' homes), the hub's configuration file, the directory that
holds it (``hidden_directory``: where deployments keep every secret of the hub, the
environment file with the database's password, the TOML with OAuth client secrets) and its
working directory are not in it. The network is shared: the server listens on 127.0.0.1, where the
hub and the proxy reach it (another user's server there still wants that user's token).

bubblewrap adds about 5 ms to a start (measured here: ``python -c pass`` 10-20 ms with and
without it).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

# The system's programs and libraries: read-only, at the same paths (``-try``: a merged /usr
# has /bin, /lib… as symlinks, which bind as their targets; a missing one is skipped).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")


def bwrap() -> str | None:
    """bubblewrap's path, or None when it is not installed."""
    return shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin")


def environment_paths() -> list[Path]:
    """The hub's Python environment and its interpreter's installation, which servers and
    kernels run (read-only)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(path for path in paths if not _under_system(path))


def _under_system(path: Path) -> bool:
    return any(path == Path(root) or Path(root) in path.parents for root in SYSTEM)


def hidden_directory(config: Path, keep: Sequence[Path] = ()) -> Path | None:
    """The directory of the hub's configuration file ``config`` when it is one of its own, which
    the sandbox hides whole (deployments keep every secret of the hub there: the environment
    file, the TOML, keys); None when it is a shared one (``/``, a system root such as ``/etc``)
    or holds what the sandbox must see (``keep``: the home, the hub's environment)."""
    directory = config.parent
    shared = {Path("/"), *(Path(root) for root in SYSTEM)}
    if directory in shared:
        return None
    if any(
        path == directory or directory in path.parents for path in [*keep, *environment_paths()]
    ):
        return None
    return directory


def wrap(
    program: str,
    command: Sequence[str],
    *,
    home: Path,
    inside: Path,
    writable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
    unset: Sequence[str] = (),
) -> list[str]:
    """``command`` inside a sandbox (``program`` is bubblewrap) that sees the system, the hub's
    environment, ``home`` (read-write, at ``inside``, where the command starts) and
    ``writable`` (read-write, at their own paths), and not ``hidden`` (files or directories
    under a bound directory, replaced by empty ones); the variables ``unset`` are removed."""
    args = [program, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    # A /tmp of its own, empty: nothing of the host's /tmp (kernels' sockets) is seen. First:
    # mounts apply in order, and the binds below may lie under /tmp (a checkout there).
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
    for root in SYSTEM:
        args += ["--ro-bind-try", root, root]
    for path in environment_paths():
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(home), str(inside)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    visible = [Path(root) for root in SYSTEM] + environment_paths()
    for path in hidden:
        if not any(root in path.parents for root in visible):
            continue  # not bound: not there anyway
        if path.is_dir():
            args += ["--tmpfs", str(path)]  # an empty directory over it, and all it holds
        elif path.is_file():
            args += ["--ro-bind", os.devnull, str(path)]
    for name in unset:
        args += ["--unsetenv", name]
    args += ["--chdir", str(inside), "--", *command]
    return args
