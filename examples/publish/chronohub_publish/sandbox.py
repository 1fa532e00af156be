"""The sandbox a dashboard runs in: bubblewrap (Debian's ``bubblewrap``), as users' servers get.

A dashboard is a project member's code, and the service's account can read what no member
may: the service's state and mirrors, the rendered sites of private projects, and, when the
hub runs as root, the hub's data directory. So each run is a ``bwrap`` sandbox that holds:

* the system's programs and libraries, read-only, at their own paths (``/usr``, ``/etc``…);
* the Python environment the service runs (read-only) and this package (read-only);
* a throwaway copy of the commit's files, read-write, at ``/home/dashboard`` (the working
  directory), so a run changes nothing the service publishes;
* its own ``/tmp`` (empty), ``/proc`` and ``/dev``, in namespaces of its own: PID (the
  service's process, its environment and its signals are not there), IPC, UTS and network
  (only a loopback of its own, where the kernel and nbclient, both inside, talk over ZMQ: a
  dashboard reaches neither the hub nor anything else).

Nothing else: the service's data directory, the hub's, other projects' checkouts and the
service's configuration are not in it. Those of them that lie in a tree it binds (the hub's
configuration directory, ``/etc/chronohub``, which holds the hub's secrets and is readable by
the hub's account, which the service runs as) are covered by an empty directory: the service's
own data directory, and the paths the hub names in ``PUBLISH_HIDE`` (its data directory and
its configuration's directory). A service that runs as root runs its dashboards as
``nobody`` too: inside a mount namespace root could still read every root-only file of
what is bound (``/etc/shadow``) and is one kernel bug from the host.

Written here rather than shared with ``hub/servers/sandbox.py``: the service must not import
the hub's internals (an import-linter contract), and what it binds differs (no user's home;
the working directory is a copy that is thrown away).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The system's programs and libraries, read-only (``-try``: a merged /usr has /bin, /lib… as
# symlinks, which bind as their targets; a missing one is skipped).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc")
INSIDE = Path("/home/dashboard")
"""Where the copy of the commit's files appears in the sandbox (the working directory)."""
PACKAGE = Path(__file__).resolve().parent
VARIABLE = "PUBLISH_SANDBOX"
HIDE = "PUBLISH_HIDE"
"""The hub's paths the runs must not see (``os.pathsep``-separated), from the hub."""
FALSE = ("false", "0", "no", "off")
TRUE = ("true", "1", "yes", "on")
HOW_TO_FIX = (
    "install bubblewrap (Debian: apt-get install bubblewrap) and allow unprivileged user"
    " namespaces, or, unsafe since a dashboard then reads what the service can, set"
    " publish_sandbox = false in the hub's configuration (PUBLISH_SANDBOX=false for the"
    " service)"
)


class Unavailable(RuntimeError):
    """Dashboards cannot be sandboxed here; the message says why and what to do."""


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether dashboards run sandboxed: ``PUBLISH_SANDBOX``, true unless set to false."""
    raw = environ.get(VARIABLE, "true").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise ValueError(f"{VARIABLE}={environ[VARIABLE]!r}: true or false expected")


def hidden_by_hub(environ: Mapping[str, str]) -> list[Path]:
    """The paths ``PUBLISH_HIDE`` names (absolute ones; none when it is not set)."""
    raw = environ.get(HIDE, "")
    paths = [Path(part) for part in raw.split(os.pathsep) if part]
    relative = [str(path) for path in paths if not path.is_absolute()]
    if relative:
        raise ValueError(f"{HIDE}: {relative[0]!r} is not an absolute path")
    return paths


def to_hide(paths: Sequence[Path]) -> tuple[Path, ...]:
    """Those of ``paths`` that are directories in a tree the sandbox binds and can be covered
    whole: not a tree itself (``/``, ``/etc``) nor one holding the environment or this
    package."""
    system = [Path(p) for p in SYSTEM]
    bound = system + environment_paths()
    needed = [*environment_paths(), PACKAGE]
    hidden: list[Path] = []
    for path in paths:
        if path == Path("/") or path in system or not _under(path, bound) or not path.is_dir():
            continue  # a missing one is not seen (and bwrap could not mount over it)
        if any(_under(each, [path]) for each in needed) or path in hidden:
            continue
        hidden.append(path)
    return tuple(hidden)


def bwrap() -> str | None:
    """bubblewrap's path, or None when it is not installed."""
    return shutil.which("bwrap") or shutil.which("bwrap", path="/usr/bin:/bin")


def environment_paths() -> list[Path]:
    """The Python environment the service runs and its interpreter's installation."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(path for path in paths if not _under(path, [Path(p) for p in SYSTEM]))


def _under(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def account() -> tuple[int, int] | None:
    """The (uid, gid) a run switches to: ``nobody``'s when the service is root, else None
    (the service's own account, which the sandbox's mount namespace keeps from its files)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


@dataclass(frozen=True)
class Sandbox:
    """How to run a command in a dashboard's sandbox."""

    program: str
    run_as: tuple[int, int] | None
    hidden: tuple[Path, ...] = ()
    """Directories under a bound one that must not be seen (the service's data directory,
    the hub's data and configuration directories, if they lie there), covered by an empty
    tmpfs."""

    def command(self, argv: Sequence[str], work: Path, chdir: Path = INSIDE) -> list[str]:
        """``argv`` in a sandbox whose working directory ``work`` is seen at ``INSIDE``."""
        args = [
            self.program, "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-net", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--hostname", "dashboard",
        ]  # fmt: skip
        # /tmp first: mounts apply in order, and the binds below may lie under /tmp
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]  # noqa: S108
        for root in SYSTEM:
            args += ["--ro-bind-try", root, root]
        for path in environment_paths():
            args += ["--ro-bind", str(path), str(path)]
        if not _under(PACKAGE, [Path(p) for p in SYSTEM] + environment_paths()):
            args += ["--ro-bind", str(PACKAGE), str(PACKAGE)]
        for path in self.hidden:
            args += ["--tmpfs", str(path)]
        args += ["--bind", str(work), str(INSIDE), "--chdir", str(chdir), "--", *argv]
        return args

    def prepare(self, work: Path) -> None:
        """Give the run's account the throwaway working directory (when it is not ours)."""
        if self.run_as is None:
            return
        uid, gid = self.run_as
        # bwrap, as that account, must reach the directory to bind it
        work.parent.chmod(0o711)
        for root, dirs, files in os.walk(work):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), uid, gid)
        os.lchown(work, uid, gid)


def copy_of(files: Path) -> Path:
    """A throwaway copy of ``files`` (a checkout), ``<tmp>/work``; remove it with ``discard``.

    Symbolic links are copied as links, never followed: a link in a commit to the service's
    own files would otherwise be read here, as the service, and handed to the run.
    """
    top = Path(tempfile.mkdtemp(prefix="chronohub-dashboard-"))
    shutil.copytree(files, top / "work", symlinks=True)
    return top / "work"


def discard(work: Path) -> None:
    """Remove a working directory and its parent, whatever modes the run left on it."""
    top = work.parent
    for root, dirs, _ in os.walk(top):
        for name in dirs:  # walked top-down: a directory is opened after it was made ours
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(top, ignore_errors=True)


class Guard:
    """Finds the sandbox once per service: None when the service's configuration turned it
    off (``PUBLISH_SANDBOX=false``), else the sandbox once bubblewrap was seen to run a Python
    of the environment in it, else ``Unavailable`` (asked again at the next run)."""

    def __init__(self, data_dir: Path, enabled: bool = True, hide: Sequence[Path] = ()) -> None:
        self.data_dir = data_dir
        self.enabled = enabled
        self.hide = tuple(hide)
        self._found: Sandbox | None = None

    async def sandbox(self) -> Sandbox | None:
        """The sandbox runs go in (None: unsandboxed, as configured); ``Unavailable``."""
        if not self.enabled:
            return None
        if self._found is None:
            self._found = await probe(self.data_dir, self.hide)
        return self._found


async def probe(data_dir: Path, hide: Sequence[Path] = ()) -> Sandbox:
    """A sandbox in which bubblewrap ran this package's Python; ``Unavailable`` otherwise.
    ``hide``: more directories it must not see (the hub's, ``PUBLISH_HIDE``)."""
    program = bwrap()
    if program is None:
        raise Unavailable(
            f"dashboards run in a sandbox, and bubblewrap is not installed: {HOW_TO_FIX}"
        )
    found = Sandbox(program, account(), to_hide([data_dir, *hide]))
    work = await asyncio.to_thread(_empty_work)
    try:
        await asyncio.to_thread(found.prepare, work)
        argv = found.command([sys.executable, "-c", "import chronohub_publish"], work)
        user, group = found.run_as or (None, None)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(PACKAGE.parent)}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, user=user, group=group,
                extra_groups=[] if user is not None else None, env=env,
            )  # fmt: skip
        except OSError as exc:  # bwrap not executable, the account not there to switch to
            who = f"uid {user}" if user is not None else "the service's account"
            raise Unavailable(
                f"dashboards run in a sandbox, and bubblewrap could not be started as {who}"
                f" ({exc}): {HOW_TO_FIX}"
            ) from exc
        _, err = await proc.communicate()
    finally:
        await asyncio.to_thread(discard, work)
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise Unavailable(
            f"dashboards run in a sandbox, and bubblewrap cannot run here ({last[0]}): {HOW_TO_FIX}"
        )
    return found


def _empty_work() -> Path:
    top = Path(tempfile.mkdtemp(prefix="chronohub-dashboard-"))
    (top / "work").mkdir()
    return top / "work"
