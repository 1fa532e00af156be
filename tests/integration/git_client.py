"""The real ``git`` command line, run asynchronously (the hub it talks to runs on the same
event loop), with a private HOME and prompts off so the machine's configuration and a
waiting terminal play no part."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit


@dataclass(frozen=True)
class Result:
    """What a git command did."""

    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


class Git:
    """Runs git with an environment of its own under ``home``."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.org",
            "GIT_COMMITTER_NAME": "Test Author",
            "GIT_COMMITTER_EMAIL": "author@example.org",
            "LC_ALL": "C",
        }

    async def __call__(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> Result:
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd or self.home,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, cwd: Path | None = None, timeout: float = 120) -> Result:
        """Run git and insist that it succeeds."""
        result = await self(*args, cwd=cwd, timeout=timeout)
        assert result.ok, f"git {' '.join(args)} failed ({result.code}):\n{result.err}"
        return result

    async def new_repo(self, path: Path, files: dict[str, bytes], message: str = "start") -> str:
        """A repository at ``path`` (branch main) with one commit of ``files``: its sha."""
        path.mkdir(parents=True)
        await self.ok("init", "-q", "-b", "main", cwd=path)
        return await self.commit(path, files, message)

    async def commit(self, path: Path, files: dict[str, bytes], message: str) -> str:
        """Write ``files`` into the work tree at ``path`` and commit them all: the sha."""
        for name, content in files.items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        await self.ok("add", "-A", cwd=path)
        await self.ok("commit", "-q", "-m", message, cwd=path)
        return await self.head(path)

    async def head(self, path: Path, rev: str = "HEAD") -> str:
        """The sha of ``rev`` in the repository at ``path``."""
        return (await self.ok("rev-parse", rev, cwd=path)).out.strip()


def with_token(url: str, token: str | None, user: str = "git") -> str:
    """``url`` with ``user:token`` as its credentials (none when ``token`` is None)."""
    if token is None:
        return url
    parts = urlsplit(url)
    netloc = f"{quote(user)}:{quote(token)}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))
