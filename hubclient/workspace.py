"""A checkout: the folder, its git, its origin and (for a hub project) which project and hub.

Nothing of the hub's lives in a checkout but the origin's URL (``<hub>/hub/git/<owner>/<name>
.git``): the project is read from it, and the token is found anew by every command.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hubclient import config, errors, git


@dataclass
class Workspace:
    """An opened checkout (or a folder about to become one)."""

    path: Path
    git: git.Git
    origin: str | None
    hub: config.Hub | None  # the hub the origin is on (with a token), if it is a hub's
    project: tuple[str, str] | None  # (owner, name) when the origin is a hub project

    @property
    def full_name(self) -> str:
        """``owner/name`` of the project (``errors.Usage`` if it is none)."""
        if self.project is None:
            raise errors.Usage(f"{self.path} is not a checkout of a hub project")
        return "/".join(self.project)

    def has_commits(self) -> bool:
        """Whether the current branch has a commit yet."""
        return self.git.ok("rev-parse", "--verify", "-q", "HEAD^{commit}")

    def branch(self) -> str:
        """The current branch's name; ``errors.Usage`` on a detached HEAD."""
        done = self.git.run("symbolic-ref", "-q", "--short", "HEAD", check=False)
        if done.returncode != 0:
            raise errors.Usage(f"{self.path} is not on a branch (detached HEAD): git switch one")
        return done.stdout.decode().strip()

    def changed(self) -> list[str]:
        """``git status --porcelain`` lines: local changes not committed yet."""
        out = self.git.run("status", "--porcelain", "--untracked-files=all").stdout.decode()
        return [line for line in out.splitlines() if line.strip()]

    def commit_all(self, message: str) -> bool:
        """Commit every change in the folder (new files too); whether there was any."""
        if not self.changed():
            return False
        self.git.run("add", "-A")
        self.git.run("commit", "-q", "--no-verify", "-m", message)
        return True


def identity(hub: config.Hub | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """Who commits when git has no ``user.name`` configured: the hub's user where known
    (``JUPYTERHUB_USER`` in a server, the saved login), else the account's name."""
    name = environ.get("JUPYTERHUB_USER")
    if not name:
        saved = config.load_saved(environ)
        name = saved.user if saved is not None else getpass.getuser()
    host = urlsplit(hub.url).hostname if hub is not None else None
    return name, f"{name}@{host or 'localhost'}"


def git_for(path: Path, hub: config.Hub | None, environ: Mapping[str, str]) -> git.Git:
    """git in ``path``, sending ``hub``'s token (if any) to that hub's git URLs only; with an
    identity to commit as when git has none configured."""
    repo = git.Git(
        path if path.is_dir() else Path.cwd(),
        auth_url=None if hub is None else hub.url + "/hub/git/",
        token=None if hub is None else hub.token,
        environ=dict(environ),
    )
    if repo.run("config", "--get", "user.name", check=False).returncode != 0:
        repo.identity = identity(hub, environ)
    repo.cwd = path
    return repo


def find_root(start: Path) -> Path | None:
    """The top of the git working tree holding ``start``, or None."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def open_checkout(
    directory: str | None, hub: config.Hub | None, environ: Mapping[str, str]
) -> Workspace:
    """The checkout holding ``directory`` (default: the current folder); ``errors.Usage`` if
    it is none."""
    start = Path(directory or os.getcwd()).expanduser().resolve()
    if not start.is_dir():
        raise errors.Usage(f"no such folder: {start}")
    root = find_root(start)
    if root is None:
        raise errors.Usage(
            f"{start} is not a checkout: chronohub project push makes one of a folder,"
            " chronohub project checkout fetches one"
        )
    return describe(root, hub, environ)


def describe(root: Path, hub: config.Hub | None, environ: Mapping[str, str]) -> Workspace:
    """The ``Workspace`` of the git working tree at ``root``."""
    probe = git.Git(root, environ=dict(environ))
    done = probe.run("remote", "get-url", "origin", check=False)
    origin = done.stdout.decode().strip() if done.returncode == 0 else None
    project = None
    target = None
    if origin is not None and (found := config.project_of(origin)) is not None:
        project = (found[1], found[2])
        target = config.for_url(hub, origin, environ) if hub is not None else None
        if target is None and hub is not None:
            raise errors.Usage(
                f"{root} is a checkout of {found[0]}, not of {hub.url}:"
                f" run chronohub login {found[0]}, or give --hub {found[0]} --token …"
            )
    return Workspace(root, git_for(root, target, environ), origin, target, project)
