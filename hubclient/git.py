"""The ``git`` command line, run for the client: the hub's token handed over per command,
never written into a checkout.

The token travels as ``http.<hub>/hub/git/.extraHeader`` in git's environment configuration
(``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n``): scoped to the hub's git URLs, so a checkout of
any other URL never sends it, and gone when the command ends. Prompts are off: a refused
token fails at once instead of waiting for a password nobody will type.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hubclient import errors

# git's progress lines: "Receiving objects:  42% (21/50), 1.2 MiB | 3 MiB/s"
PROGRESS = re.compile(r"^(?:remote: )?([A-Za-z][A-Za-z ]+):\s+(\d+)% \((\d+)/(\d+)\)")

Progress = Callable[[str, int, int], None]
GIT = "git"  # the git on PATH, as a person typing git would run


class GitError(errors.ClientError):
    """A git command failed: its arguments, status and what it said."""

    def __init__(self, args: Sequence[str], status: int, stderr: str) -> None:
        said = " ".join(line.strip() for line in stderr.strip().splitlines()[-6:])
        super().__init__(f"git {' '.join(args[:2])} failed ({status}): {said}")
        self.args_ = tuple(args)
        self.status = status
        self.stderr = stderr


@dataclass
class Git:
    """git in the folder ``cwd``, with ``token`` for URLs under ``auth_url`` (if any)."""

    cwd: Path
    auth_url: str | None = None
    token: str | None = None
    identity: tuple[str, str] | None = None  # (name, email) when git has none configured
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a git command."""
        env = dict(self.environ)
        env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
        env.pop("GIT_ASKPASS", None)
        settings: list[tuple[str, str]] = []
        if self.auth_url and self.token:
            settings.append(
                (f"http.{self.auth_url}.extraHeader", f"Authorization: token {self.token}")
            )
        if settings:
            count = int(env.get("GIT_CONFIG_COUNT", "0") or "0")
            for index, (key, value) in enumerate(settings, start=count):
                env[f"GIT_CONFIG_KEY_{index}"] = key
                env[f"GIT_CONFIG_VALUE_{index}"] = value
            env["GIT_CONFIG_COUNT"] = str(count + len(settings))
        if self.identity is not None:
            name, email = self.identity
            for role in ("AUTHOR", "COMMITTER"):
                env.setdefault(f"GIT_{role}_NAME", name)
                env.setdefault(f"GIT_{role}_EMAIL", email)
        if extra:
            env.update(extra)
        return env

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        extra_env: Mapping[str, str] | None = None,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``git args`` and capture its output; ``GitError`` if it fails and ``check``."""
        try:
            done = subprocess.run(  # noqa: S603 (git, with arguments, no shell)
                [GIT, *args],
                cwd=cwd or self.cwd,
                input=stdin,
                capture_output=True,
                env=self.env(extra_env),
                check=False,
            )
        except FileNotFoundError as exc:
            raise errors.Failed("git is not installed (the client needs the git command)") from exc
        if check and done.returncode != 0:
            raise GitError(args, done.returncode, done.stderr.decode("utf-8", "replace"))
        return done

    def out(self, *args: str, **kwargs: object) -> str:
        """Run git and return its standard output as text, stripped."""
        return self.run(*args, **kwargs).stdout.decode("utf-8", "replace").strip()  # type: ignore[arg-type]

    def ok(self, *args: str) -> bool:
        """Whether ``git args`` succeeds (for questions such as ``rev-parse --verify``)."""
        return self.run(*args, check=False).returncode == 0

    def transfer(
        self, *args: str, progress: Progress | None = None, cwd: Path | None = None
    ) -> str:
        """Run a network command (clone, fetch, push), reporting git's progress lines to
        ``progress(stage, done, total)`` as they come; its stderr as text, or ``GitError``."""
        command = [GIT, *args]
        if progress is not None:
            command.insert(2, "--progress")
        try:
            process = subprocess.Popen(  # noqa: S603 (git, with arguments, no shell)
                command,
                cwd=cwd or self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=self.env(),
            )
        except FileNotFoundError as exc:
            raise errors.Failed("git is not installed (the client needs the git command)") from exc
        with process:  # closes the pipe however this ends
            said = self._read_progress(process, progress)
            status = process.wait()
        text = "\n".join(said)
        if status != 0:
            raise GitError(args, status, text)
        return text

    @staticmethod
    def _read_progress(process: subprocess.Popen[bytes], progress: Progress | None) -> list[str]:
        """git's stderr: progress lines to ``progress``, the other lines returned."""
        assert process.stderr is not None
        said: list[str] = []
        pending = b""
        while chunk := process.stderr.read1(4096):  # type: ignore[attr-defined]
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                matched = PROGRESS.match(line)
                if matched and progress is not None:
                    progress(matched.group(1), int(matched.group(3)), int(matched.group(4)))
                elif line.strip() and not matched:
                    said.append(line)
        if pending.strip():
            said.append(pending.decode("utf-8", "replace"))
        return said
