"""Clones and fetches served by the installed git: ``git upload-pack --stateless-rpc``.

dulwich builds packs in Python, several times slower than git for a clone of a few MB, and
holds a worker thread while it does; git's C upload-pack streams a pack about as fast as
``git clone file://``. This module runs it as a subprocess, fed the request body and read
into the response as both arrive, with a bounded number at once and a timeout on silence;
the process (and the pack-objects it starts) is killed when the request ends early.

What git serves is decided by PostgreSQL, never by the repository on disk: git runs on a
*snapshot* (``storage.Repositories.snapshot``), a git directory made for the request whose
``packed-refs`` are the refs just read from PostgreSQL and whose objects are the project's
(``GIT_OBJECT_DIRECTORY``). A clone cannot see a ref PostgreSQL does not hold, nor miss one,
whatever happens around it: a push commits its refs in PostgreSQL only, and nothing on disk
has to follow. Wants git accepts are those refs' objects or, in stateless RPC (the request
after the advertisement may meet newer refs), objects reachable from them; never an
unreachable object (a deleted branch, the pack of a refused push). Protocol v2 would serve
any object on disk ("wants can be anything"), so the hub speaks v0 only: ``Git-Protocol``
is not passed on, and git clients fall back to v0 as they do for dulwich.

The ref advertisement (``info/refs``) is written here, on the event loop, from the refs and
the capabilities git announced the first time: byte for byte what ``git upload-pack
--advertise-refs`` would say for the snapshot, without a process or a thread per request.

git runs with an environment of its own: no system or global configuration, a HOME that is
not the hub's, no inherited ``GIT_*`` variables, no hooks (upload-pack runs none, and the
pack-objects hook is only read from the configuration it does not get).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import streams, web

log = logging.getLogger(__name__)

T = TypeVar("T")

ZERO_SHA = "0" * 40
# Reads of git's output and of the request body: as much as has arrived, up to this.
CHUNK = 256 * 1024
# What git writes on stderr is logged; more than this is not kept.
STDERR_LIMIT = 8192


def pkt_line(data: bytes | None) -> bytes:
    """One pkt-line (None: a flush-pkt)."""
    if data is None:
        return b"0000"
    return f"{len(data) + 4:04x}".encode() + data


def advertisement(
    refs: Mapping[str, str],
    peels: Mapping[str, str | None],
    default_branch: str,
    capabilities: Sequence[str],
) -> bytes:
    """The v0 ref advertisement of ``git upload-pack --stateless-rpc --advertise-refs`` for a
    repository with ``refs`` and HEAD naming ``default_branch``; ``peels`` says what each sha
    peels to (None: not a tag). With no refs at all git sends a flush-pkt alone."""
    head = f"refs/heads/{default_branch}"
    lines: list[tuple[str, str]] = []
    caps = list(capabilities)
    if head in refs:
        lines.append((refs[head], "HEAD"))
        # git names the symref just before the object format
        at = next((i for i, c in enumerate(caps) if c.startswith("object-format=")), len(caps))
        caps.insert(at, f"symref=HEAD:{head}")
    for ref in sorted(refs, key=str.encode):
        sha = refs[ref]
        lines.append((sha, ref))
        if (peeled := peels.get(sha)) is not None:
            lines.append((peeled, ref + "^{}"))
    out = []
    for i, (sha, name) in enumerate(lines):
        line = f"{sha} {name}".encode()
        if i == 0:
            line += b"\0" + " ".join(caps).encode()
        out.append(pkt_line(line + b"\n"))
    out.append(pkt_line(None))
    return b"".join(out)


def capabilities_of(advertised: bytes) -> tuple[str, ...] | None:
    """The capabilities on the first line of an advertisement, less the per-repository
    ``symref=``; None when there is no line to carry them (no refs)."""
    if len(advertised) < 4 or advertised[:4] == b"0000":
        return None
    length = int(advertised[:4], 16)
    first = advertised[4:length].rstrip(b"\n")
    _, nul, caps = first.partition(b"\0")
    if not nul:
        return None
    return tuple(c for c in caps.decode().split() if not c.startswith("symref="))


class NativeGit:
    """The installed git's upload-pack, at most ``slots`` at once, each silent for at most
    ``timeout_s`` before it is killed; the capabilities it announces, once learnt."""

    def __init__(self, binary: str, home: Path, *, slots: int, timeout_s: float) -> None:
        self.binary = binary
        self.home = home
        self.timeout_s = timeout_s
        self.capabilities: tuple[str, ...] | None = None
        self._slots = asyncio.Semaphore(slots)
        self._home_made = False

    @classmethod
    def find(cls, enabled: bool, home: Path, *, slots: int, timeout_s: float) -> NativeGit | None:
        """The installed git if ``enabled`` and there is one on PATH; else None (dulwich)."""
        if not enabled:
            return None
        binary = shutil.which("git")
        if binary is None:
            log.warning("git is not installed: clones and fetches are served by dulwich")
            return None
        return cls(binary, home, slots=slots, timeout_s=timeout_s)

    def env(self, objects: Path) -> dict[str, str]:
        """git's whole environment: nothing inherited but PATH."""
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(self.home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_OBJECT_DIRECTORY": str(objects),
            "LC_ALL": "C",
        }

    async def _start(
        self, gitdir: Path, objects: Path, *options: str
    ) -> asyncio.subprocess.Process:
        if not self._home_made:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._home_made = True
        return await asyncio.create_subprocess_exec(
            self.binary,
            "upload-pack",
            "--strict",
            "--stateless-rpc",
            f"--timeout={max(1, round(self.timeout_s))}",
            *options,
            str(gitdir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(objects),
            cwd=str(gitdir),
            # its own process group, so pack-objects goes with it when it is killed
            start_new_session=True,
        )

    async def advertise(self, gitdir: Path, objects: Path) -> bytes:
        """git's own advertisement of the snapshot ``gitdir``; its capabilities are remembered."""
        async with self._slots:
            process = await self._start(gitdir, objects, "--advertise-refs")
            try:
                async with asyncio.timeout(self.timeout_s):
                    out, err = await process.communicate()
            finally:
                await _end(process)
        if process.returncode != 0:
            raise OSError(f"git upload-pack --advertise-refs failed: {_said(err)}")
        if (caps := capabilities_of(out)) is not None:
            self.capabilities = caps
        return out

    async def serve(
        self,
        gitdir: Path,
        objects: Path,
        request: web.Request,
        response: web.StreamResponse,
    ) -> None:
        """Run upload-pack on the snapshot ``gitdir``: the request body in, ``response``
        (prepared here, once git runs) out. ``OSError`` (``TimeoutError``, ``ConnectionError``)
        when the client or git stops taking part; the response may have begun by then."""
        async with self._slots:
            process = await self._start(gitdir, objects)
            try:
                await response.prepare(request)
                await self._pipe(process, request.content, response)
            finally:
                await _end(process)

    async def _pipe(
        self,
        process: asyncio.subprocess.Process,
        body: streams.StreamReader,
        response: web.StreamResponse,
    ) -> None:
        stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
        assert stdin is not None
        assert stdout is not None
        assert stderr is not None
        errors = bytearray()

        async def feed() -> None:
            # git reads the whole request before it answers; if it stops early (it refused
            # a want), the rest of the body has nowhere to go and is dropped
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                while chunk := await self._within(body.readany(), "sending its request"):
                    stdin.write(chunk)
                    await self._within(stdin.drain(), "git reading the request")
            stdin.close()

        async def keep_stderr() -> None:
            while chunk := await stderr.read(4096):
                errors.extend(chunk[: max(0, STDERR_LIMIT - len(errors))])

        # Owned here: awaited when git is done, cancelled (and their errors collected) if the
        # answer breaks off first.
        helpers = (
            asyncio.create_task(feed(), name="git upload-pack request"),
            asyncio.create_task(keep_stderr(), name="git upload-pack stderr"),
        )
        try:
            while data := await self._within(stdout.read(CHUNK), "git answering"):
                await self._within(response.write(data), "taking the answer")
            for helper in helpers:
                await self._within(helper, "git finishing")
            code = await self._within(process.wait(), "git exiting")
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        if code != 0:
            # Told to the client in band already (an ERR pkt-line), when git could.
            log.info("git upload-pack exited with %s: %s", code, _said(bytes(errors)))

    async def _within(self, awaitable: Awaitable[T], what: str) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await awaitable
        except TimeoutError:
            raise TimeoutError(f"silent for {self.timeout_s:g} s: {what}") from None


async def _end(process: asyncio.subprocess.Process) -> None:
    """Kill the process group of ``process`` unless it has exited; reap it."""
    if process.returncode is None:
        # Not reaped yet, so its pid (and the group named after it) is still its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    # asyncio (3.11) tells of the exit only once every pipe has closed, and a pipe whose
    # reading paused (a client that stopped taking the answer) never sees its end: read on.
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            while await stream.read(CHUNK):
                pass
    await process.wait()


def _said(err: bytes) -> str:
    return err.decode("utf-8", "replace").strip().replace("\n", " | ") or "(nothing)"
