"""Whose account users' code runs as, and what it can see: the four modes of a hub.

The hub never runs a user's code with its own privileges (JupyterHub's promise).

* ``system_users`` (the hub is root): each user's servers and shared-session kernels run as a
  system account of that user's own, created on first use as ``<prefix><name>`` (The Littlest
  JupyterHub's ``jupyter-<name>``), with a home directory only it can enter, its own group and
  no other, and a clean environment. The account cannot read the data directory (database,
  cookie secret, logs), the hub's process (``/proc/<pid>/environ``, signals) or other users'
  homes.
* ``sandbox`` (not root, bubblewrap installed): the code runs as the hub's account, but each
  server and kernel in a sandbox of its own (``hub.servers.sandbox``) that holds the system,
  the hub's environment and the user's own home (``<data_dir>/users/<name>``), and not the
  rest of the data directory, the hub's process or other users' processes and homes.
* ``single_user`` (``single_user_mode``): as the hub's own account, unsandboxed, with the hub's
  privileges: for one person, never a team; only admins' code unless
  ``single_user_mode_all_users`` says otherwise.
* ``none`` (not root, no bubblewrap, no single-user mode): nobody's code runs.

``decide_mode`` and ``account_name`` are pure; ``Isolation`` creates and looks up accounts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hub import settings as hub_settings
from hub.servers import sandbox

log = logging.getLogger(__name__)

Mode = Literal["system_users", "sandbox", "single_user", "none"]

# What useradd accepts (Debian's default NAME_REGEX, without the trailing '$' of machine
# accounts), and its length limit.
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]*$")
MAX_ACCOUNT_LENGTH = 32
# The directories a server or kernel finds programs in, after the hub's own environment.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


class CodeRefused(Exception):
    """This user's code may not run on this hub (a policy; the message says why and what to do)."""


class AccountError(Exception):
    """A system account could not be created or used (the machine's fault)."""


def decide_mode(euid: int, single_user_mode: bool, *, can_sandbox: bool) -> Mode:
    """How users' code runs: ``single_user`` when asked for, else as system accounts if root,
    else in a sandbox if bubblewrap is there, else not at all."""
    if single_user_mode:
        return "single_user"
    if euid == 0:
        return "system_users"
    return "sandbox" if can_sandbox else "none"


def describe(mode: Mode, prefix: str) -> str:
    """One sentence for the start-up banner and the admin page."""
    if mode == "system_users":
        return f"each user's code runs as their own system account ({prefix}<name>)"
    if mode == "sandbox":
        return (
            "each user's code runs in a sandbox of its own (bubblewrap) as the hub's account,"
            " seeing only the system, the hub's environment and the user's own home"
        )
    if mode == "single_user":
        return (
            "SINGLE-USER MODE: every user's code runs as the hub's own account, with the hub's"
            " privileges (its database, its cookie secret): fine for one person, not for a team"
        )
    return (
        "users' servers and kernels are OFF: the hub is not root, so it cannot run their code"
        " as their own accounts, and bubblewrap, which would sandbox it, is not installed"
        " (run the hub as root, install bubblewrap, or set single_user_mode = true if only"
        " you use this hub)"
    )


def account_name(user: str, prefix: str, mapping: Mapping[str, str] | None = None) -> str:
    """The system account of hub user ``user``: ``mapping``'s, else ``<prefix><name>``.

    A name that is not a valid account name as it is (upper case, other characters, too
    long) is lower-cased, stripped of what is not allowed, cut, and given a short hash of the
    original. Short hashes can collide, so this is not what keeps two users apart: each
    account records whose it is (``owner_mark``), and one recorded for another is refused.
    """
    if mapping and user in mapping:
        return mapping[user]
    plain = prefix + user
    if _ACCOUNT.match(plain) and len(plain) <= MAX_ACCOUNT_LENGTH:
        return plain
    digest = hashlib.sha256(user.encode()).hexdigest()[:6]
    cleaned = re.sub(r"[^a-z0-9_-]", "", user.lower())
    room = MAX_ACCOUNT_LENGTH - len(prefix) - len(digest) - 1
    return f"{prefix}{cleaned[:room]}-{digest}"


@dataclass(frozen=True)
class Identity:
    """A system account that users' code runs as."""

    account: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: Path
    shell: str
    sandboxed: bool = False
    """The hub's own account, in a sandbox (``hub.servers.sandbox``): nothing to switch to."""
    inside: Path | None = None
    """Where ``home`` appears inside the sandbox (``/home/<name>``)."""

    def environment(self, bin_dir: str) -> dict[str, str]:
        """The account's own variables, and a PATH with the hub's environment first."""
        return {
            "HOME": str(self.inside or self.home),
            "USER": self.account,
            "LOGNAME": self.account,
            "SHELL": self.shell,
            "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        }


@dataclass
class Isolation:
    """Decides whose account a user's code runs as, creating system accounts on first use."""

    mode: Mode
    prefix: str = "jupyter-"
    mapping: Mapping[str, str] = field(default_factory=dict)
    home_pattern: str = "/home/{account}"
    all_users: bool = False
    data_dir: Path = Path(".chronohub")
    """Where sandboxed users' homes are (``users/<name>``)."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def from_settings(cls, config: hub_settings.Settings) -> Isolation:
        """The isolation the hub's settings ask for, on this process's account."""
        return cls(
            mode=decide_mode(
                os.geteuid(),
                config.single_user_mode,
                can_sandbox=config.sandbox and sandbox.bwrap() is not None,
            ),
            prefix=config.system_user_prefix,
            mapping=dict(config.system_user_map),
            home_pattern=config.system_user_home,
            all_users=config.single_user_mode_all_users,
            data_dir=config.data_dir.resolve(),
        )

    def check(self, user: str, *, admin: bool) -> None:
        """Raise ``CodeRefused`` unless ``user``'s code may run here at all (nothing created)."""
        if self.mode == "none":
            raise CodeRefused(
                f"{user}'s code cannot run on this hub: the hub is not root, so it cannot run"
                " it as their own system account, and it has no sandbox (bubblewrap) to run it"
                " in (an admin can run the hub as root, install bubblewrap, or set"
                " single_user_mode = true if only they use it)"
            )
        if self.mode == "single_user" and not admin and not self.all_users:
            raise CodeRefused(
                f"{user}'s code cannot run on this hub: it is in single-user mode, where code"
                " runs with the hub's own privileges, so only admins may start servers and"
                " kernels (single_user_mode_all_users = true allows everyone)"
            )

    async def identity(self, user: str, *, admin: bool) -> Identity | None:
        """The account ``user``'s code runs as (None: the hub's own, in single-user mode).

        Raises ``CodeRefused`` (see ``check``) or ``AccountError``.
        """
        self.check(user, admin=admin)
        if self.mode == "single_user":
            return None
        if self.mode == "sandbox":
            return self._sandboxed(user)
        async with self._lock:  # two first spawns of one user must not both run useradd
            return await asyncio.to_thread(self._ensure, user)

    def _sandboxed(self, user: str) -> Identity:
        """The hub's own account, with the user's home in the data directory, seen inside the
        sandbox as ``/home/<name>`` (the data directory's path tells the sandbox nothing)."""
        entry = pwd.getpwuid(os.geteuid())
        home = self.data_dir / "users" / user
        return Identity(
            entry.pw_name, entry.pw_uid, entry.pw_gid, (), home, "/bin/bash",
            sandboxed=True, inside=Path("/home") / user,
        )  # fmt: skip

    def _ensure(self, user: str) -> Identity:
        name = account_name(user, self.prefix, self.mapping)
        mapped = user in self.mapping
        try:
            entry = pwd.getpwnam(name)
        except KeyError as exc:
            if mapped:
                raise AccountError(
                    f"the system account {name!r} (system_user_map) does not exist"
                ) from exc
            entry = self._create(name, user)
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise AccountError(f"refusing to run users' code as {name!r}: it is a root account")
        if not mapped and entry.pw_gecos != owner_mark(user):
            # An account of that name that the hub did not make for this very user (a system
            # account, another user whose name maps to the same one): never share it.
            raise AccountError(
                f"the system account {name!r} exists but was not made by chronohub for {user};"
                " give them an account with system_user_map"
            )
        home = Path(entry.pw_dir)
        if not mapped:
            # Accounts of our making: a home only they can enter, even if useradd's HOME_MODE
            # or an earlier admin left it open.
            home.chmod(0o700)
        groups = tuple(g for g in os.getgrouplist(name, entry.pw_gid) if g != 0)
        return Identity(name, entry.pw_uid, entry.pw_gid, groups, home, entry.pw_shell or "/bin/sh")

    def _create(self, name: str, user: str) -> pwd.struct_passwd:
        home = self.home_pattern.format(account=name)
        log.info("creating the system account %s (home %s) for %s", name, home, user)
        useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
        if useradd is None:
            raise AccountError("useradd is not installed: cannot create system accounts")
        try:
            subprocess.run(  # noqa: S603 - a fixed program, a validated account name
                [useradd, "--create-home", "--home-dir", home, "--shell", "/bin/bash",
                 "--user-group", "--comment", owner_mark(user), name],
                check=True, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            if "already exists" not in exc.stderr:  # else another hub process was first
                raise AccountError(
                    f"could not create the system account {name}: {exc.stderr.strip()}"
                ) from exc
        except subprocess.TimeoutExpired as exc:
            raise AccountError(f"could not create the system account {name}: {exc}") from exc
        return pwd.getpwnam(name)


def owner_mark(user: str) -> str:
    """The comment (GECOS) field of the account made for hub user ``user``: it names whose
    account it is (a hash, since a hub name may hold characters that field cannot)."""
    return "chronohub " + hashlib.sha256(user.encode()).hexdigest()
