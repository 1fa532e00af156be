"""``chronohub project …`` run as a person runs it: its own process (``python -m hubclient``,
what ``chronohub project`` hands over to, without the hub command's start-up), a private HOME,
the hub found through the environment a spawned server gets, and the real git."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat


@dataclass(frozen=True)
class Ran:
    """What one command did."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Person:
    """Someone with a HOME, a hub and a token, typing ``chronohub project``."""

    home: Path
    hub_url: str | None
    token: str | None
    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
        if self.hub_url is not None:
            env["JUPYTERHUB_API_URL"] = self.hub_url.rstrip("/") + "/hub/api"
        if self.token is not None:
            env["JUPYTERHUB_API_TOKEN"] = self.token
            env["JUPYTERHUB_USER"] = self.home.name  # as in a server the hub spawned
        return {**env, **self.extra}

    async def __call__(
        self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Ran:
        self.home.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hubclient",
            *args,
            cwd=cwd or self.home,
            env={**self.env(), **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode is not None
        return Ran(process.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, cwd: Path | None = None) -> Ran:
        ran = await self(*args, cwd=cwd)
        assert ran.code == 0, f"chronohub {' '.join(args)} exited {ran.code}:\n{ran.err}"
        return ran

    async def ok_env(self, *args: str, env: dict[str, str]) -> Ran:
        ran = await self(*args, env=env)
        assert ran.code == 0, f"chronohub {' '.join(args)} exited {ran.code}:\n{ran.err}"
        return ran

    async def git(self, *args: str, cwd: Path) -> str:
        """Plain git, as this person (no token: git is the person's own)."""
        process = await asyncio.create_subprocess_exec(
            "git",
            *args,
            cwd=cwd,
            env={
                **self.env(),
                "GIT_AUTHOR_NAME": self.home.name,
                "GIT_AUTHOR_EMAIL": f"{self.home.name}@example.org",
                "GIT_COMMITTER_NAME": self.home.name,
                "GIT_COMMITTER_EMAIL": f"{self.home.name}@example.org",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, f"git {' '.join(args)}: {err.decode()}"
        return out.decode().strip()


def notebook(*sources: str) -> bytes:
    """A valid nbformat 4 notebook with one code cell per source (ids fixed, outputs one)."""
    nb = nbformat.v4.new_notebook()
    for index, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source, id=f"cell-{index}")
        cell.outputs = [nbformat.v4.new_output("stream", text=f"out {index}\n")]
        cell.execution_count = index + 1
        nb.cells.append(cell)
    return (nbformat.writes(nb) + "\n").encode()


def edit_cell(path: Path, index: int, source: str) -> None:
    """Change one cell's source in a notebook on disk, as an editor would."""
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].source = source
    nbformat.write(nb, path)


def sources(path: Path) -> list[str]:
    """The cells' sources of a notebook, checked to be valid nbformat."""
    text = path.read_text()
    assert "<<<<<<<" not in text
    assert ">>>>>>>" not in text
    nb = nbformat.reads(text, as_version=4)
    nbformat.validate(nb)
    return [cell.source for cell in nb.cells]
