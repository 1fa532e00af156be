"""Returning feedback: a commit of ``feedback.md`` pushed to the student's submission project
with the service's token, by the real ``git`` command line. The hub records the push
(``project.pushed``, pusher: the service), so its log shows every feedback returned.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import datetime
from pathlib import Path

FILE = "feedback.md"
ATTEMPTS = 3  # a student's push between our clone and our push: clone again on top of it


class GitFailed(Exception):
    """A git command failed: its arguments and what it said."""


def text(
    course: str, assignment: str, score: float, points: float, feedback: str, grader: str,
    at: datetime,
) -> str:  # fmt: skip
    """The feedback file."""
    return (
        f"# Feedback: {course} / {assignment}\n\n"
        f"**Score: {score:g} / {points:g}**\n\n"
        f"Graded by {grader}, {at.isoformat(timespec='minutes')}.\n\n"
        f"{feedback.strip()}\n"
    )


async def push(clone_url: str, token: str, branch: str, content: str, message: str) -> str:
    """Commit ``content`` as ``feedback.md`` on ``branch`` of ``clone_url`` and push it: the
    commit's sha (the current one if the file already said that)."""
    for _ in range(ATTEMPTS):
        with tempfile.TemporaryDirectory(prefix="grader-feedback-") as scratch:
            git = _Git(Path(scratch), token)
            work = Path(scratch) / "work"
            await git("clone", "--quiet", "--branch", branch, clone_url, str(work))
            (work / FILE).write_text(content)
            await git("add", FILE, cwd=work)
            if await git.succeeds("diff", "--cached", "--quiet", cwd=work):
                return (await git("rev-parse", "HEAD", cwd=work)).strip()
            await git("commit", "--quiet", "-m", message, cwd=work)
            sha = (await git("rev-parse", "HEAD", cwd=work)).strip()
            if await git.succeeds("push", "--quiet", "origin", f"HEAD:{branch}", cwd=work):
                return sha
    raise GitFailed(f"could not push {FILE} to {clone_url} after {ATTEMPTS} attempts")


class _Git:
    """git with a private HOME, no prompts, and the token in an HTTP header given through
    the environment (never in a URL or an argument, where logs and ``ps`` would show it)."""

    def __init__(self, home: Path, token: str) -> None:
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: token {token}",
            "GIT_AUTHOR_NAME": "grader service",
            "GIT_AUTHOR_EMAIL": "grader@services.invalid",
            "GIT_COMMITTER_NAME": "grader service",
            "GIT_COMMITTER_EMAIL": "grader@services.invalid",
            "LC_ALL": "C",
        }

    async def _run(self, args: tuple[str, ...], cwd: Path | None) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def __call__(self, *args: str, cwd: Path | None = None) -> str:
        code, out, err = await self._run(args, cwd)
        if code != 0:
            raise GitFailed(f"git {args[0]} failed ({code}): {err.strip()[:500]}")
        return out

    async def succeeds(self, *args: str, cwd: Path | None = None) -> bool:
        code, _, _ = await self._run(args, cwd)
        return code == 0
