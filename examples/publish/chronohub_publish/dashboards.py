"""Dashboards: a notebook run in a fresh, limited kernel, published with its outputs.

Each run is a child process (``execute.py``) in its own process group, its memory limited
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

from chronohub_publish import manifest

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
    cwd: Path,
    parameters: dict[str, Any],
) -> Run:
    """Execute ``source`` (the dashboard's notebook) in ``cwd`` with ``parameters``."""
    started = time.monotonic()
    job = json.dumps(
        {
            "notebook": source.decode(),
            "cwd": str(cwd / Path(dashboard.path).parent),
            "timeout_s": dashboard.timeout_s,
            "parameters": parameters,
        }
    ).encode()
    # the run imports this package: found where it is installed, or from its source folder
    paths = [PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = run_environment(os.environ, os.pathsep.join(paths))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chronohub_publish.execute",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        preexec_fn=_limit(dashboard.memory_mb),
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
    # Whatever the run left behind in its group (a kernel's children) goes with it.
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
