"""Dashboards: a notebook run in a fresh, limited kernel, published with its outputs.

Each run is a child process (``execute.py``) in a bubblewrap sandbox (``sandbox.py``: it sees
the system, the Python environment and a throwaway copy of the commit's files, nothing of the
service's), in its own process group, its memory limited
with ``RLIMIT_DATA`` (heap and private mappings; the kernel it starts inherits the limit) and
killed, group and all, when it overruns the dashboard's time limit (nbclient's own per-cell
timeout comes first; this one also covers a kernel that never starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from chronohub_publish import manifest, sandbox

STARTUP_GRACE_S = 60
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Run:
    """What one run gave: the executed notebook, or what went wrong and where."""

    notebook: Any | None
    error: str | None
    failing_cell: int | None
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def parameter_key(parameters: dict[str, Any]) -> str:
    """A stable name for a set of parameters (``default`` for none)."""
    if not parameters:
        return "default"
    encoded = json.dumps(parameters, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def _limit(memory_mb: int) -> Any:
    limit = memory_mb * 1024 * 1024

    def apply() -> None:  # runs in the child between fork and exec
        # RLIMIT_DATA, not RLIMIT_AS: ipykernel reserves (but does not use) more than 512 MB of
        # address space (thread stacks, malloc arenas) and cannot even start under RLIMIT_AS
        # at that size, while RLIMIT_DATA counts the memory a notebook really allocates.
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


async def run(
    dashboard: manifest.Dashboard,
    source: bytes,
    checkout: Path,
    parameters: dict[str, Any],
    guard: sandbox.Guard,
) -> Run:
    """Execute ``source`` (the dashboard's notebook) with ``parameters``, in a sandbox (unless
    ``guard`` says they are off) whose working directory is a throwaway copy of ``checkout``."""
    started = time.monotonic()
    try:
        box = await guard.sandbox()
    except sandbox.Unavailable as exc:  # refused: the page and the log say why
        return Run(None, str(exc), None, _since(started))
    work = await asyncio.to_thread(sandbox.copy_of, checkout)
    try:
        if box is not None:
            await asyncio.to_thread(box.prepare, work)
        return await _execute(dashboard, source, work, parameters, box, started)
    finally:
        await asyncio.to_thread(sandbox.discard, work)


async def _execute(
    dashboard: manifest.Dashboard,
    source: bytes,
    work: Path,
    parameters: dict[str, Any],
    box: sandbox.Sandbox | None,
    started: float,
) -> Run:
    folder = Path(dashboard.path).parent
    command = [sys.executable, "-m", "chronohub_publish.execute"]
    user = group = None
    if box is None:
        cwd = work / folder
        # the run imports this package: found where it is installed, or from its source folder
        paths = [PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    else:
        cwd = sandbox.INSIDE / folder
        command = box.command(command, work, chdir=cwd)
        # only the package's folder: the service's own PYTHONPATH may name directories the
        # sandbox does not hold
        paths = [str(sandbox.PACKAGE.parent)]
        user, group = box.run_as or (None, None)
    job = json.dumps(
        {
            "notebook": source.decode(),
            "cwd": str(cwd),
            "timeout_s": dashboard.timeout_s,
            "parameters": parameters,
        }
    ).encode()
    env = run_environment(os.environ, os.pathsep.join(paths))
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        preexec_fn=_limit(dashboard.memory_mb),
        user=user, group=group, extra_groups=[] if user is not None else None,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(job), dashboard.timeout_s + STARTUP_GRACE_S
        )
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        reason = f"the run took longer than {dashboard.timeout_s} s"
        return Run(None, reason, None, _since(started), timed_out=True)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    # Whatever the run left behind in its group goes with it (in a sandbox, bubblewrap's
    # end also ends its PID namespace: the kernel, in a session of its own, too).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        reason = "\n".join(tail) or f"exit status {proc.returncode}"
        if (proc.returncode or 0) < 0 or "MemoryError" in reason:
            reason = f"the run died (memory limit {dashboard.memory_mb} MB?): {reason}"
        return Run(None, reason, None, _since(started))
    result = json.loads(out)
    notebook = nbformat.reads(result["notebook"], as_version=4)  # type: ignore[no-untyped-call]
    return Run(
        notebook, result["error"], result["failing_cell"], _since(started), result["timed_out"]
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


# What a dashboard's kernel keeps of the service's environment: where programs and their
# libraries are, the language. Never the service's token (JUPYTERHUB_API_TOKEN reads every
# project), nor anything else the hub gave the service: the notebook is a project member's
# code.
KEPT = ("PATH", "LANG", "LANGUAGE", "TZ", "VIRTUAL_ENV", "CONDA_PREFIX")


def run_environment(service_env: Mapping[str, str], pythonpath: str) -> dict[str, str]:
    """The environment of a dashboard run, from the service's own."""
    env = {k: v for k, v in service_env.items() if k in KEPT or k.startswith("LC_")}
    env["PYTHONPATH"] = pythonpath
    env["HOME"] = tempfile.gettempdir()  # not the service's home
    return env
