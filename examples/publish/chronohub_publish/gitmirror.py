"""A bare mirror of each project, fetched over the hub's smart HTTP with the service's token.

The token travels in git's environment (``GIT_CONFIG_*``: an ``Authorization`` header), never
on a command line another account could read with ``ps``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path


class GitError(RuntimeError):
    """A git command failed; the message holds its stderr."""


@dataclass(frozen=True)
class Entry:
    """One file of a commit: its path, blob id and mode."""

    path: str
    blob: str
    mode: str


class Mirror:
    """The bare repositories under ``root`` (one per project id)."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        root.mkdir(parents=True, exist_ok=True)

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: token {self.token}",
        }

    async def git(self, repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
        """Run git in ``repo``; its stdout, or ``GitError``."""
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(repo), *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self._env(),
        )  # fmt: skip
        out, err = await proc.communicate(stdin)
        if proc.returncode != 0:
            raise GitError(f"git {args[0]}: {err.decode(errors='replace').strip()}")
        return out

    async def fetch(self, project_id: str, clone_url: str, branch: str, commit: str) -> Path:
        """The mirror of ``project_id`` holding ``commit`` (``branch`` fetched if it does not
        yet: the hub serves refs, not arbitrary commits)."""
        repo = self.root / f"{project_id}.git"
        if not repo.exists():
            repo.mkdir(parents=True)
            await self.git(repo, "init", "--bare", "-q")
        try:
            await self.git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
        except GitError:
            ref = f"refs/heads/{branch}"
            await self.git(repo, "fetch", "-q", "--no-tags", clone_url, f"+{ref}:{ref}")
            await self.git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
        return repo

    async def files(self, repo: Path, commit: str) -> list[Entry]:
        """Every file of ``commit`` (blobs; submodules and symlinks left out)."""
        out = await self.git(repo, "ls-tree", "-r", "-z", "--full-tree", commit)
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            meta, _, path = record.partition(b"\t")
            mode, kind, blob = meta.decode().split()
            if kind == "blob" and mode in ("100644", "100755"):
                entries.append(Entry(path.decode(), blob, mode))
        return entries

    async def read(self, repo: Path, blob: str) -> bytes:
        """The content of ``blob``."""
        return await self.git(repo, "cat-file", "blob", blob)

    async def checkout(self, repo: Path, commit: str, into: Path) -> None:
        """The files of ``commit`` written into ``into`` (a dashboard's working directory)."""
        await asyncio.to_thread(into.mkdir, parents=True, exist_ok=True)
        archive = await self.git(repo, "archive", "--format=tar", commit)
        proc = await asyncio.create_subprocess_exec(
            "tar", "-x", "-C", str(into), stdin=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate(archive)
        if proc.returncode != 0:
            raise GitError(f"tar: {err.decode(errors='replace').strip()}")
