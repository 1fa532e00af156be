"""The local-process spawner: each server is a child process in its own process group.

A server with an ``identity`` (``hub.servers.isolation``) runs as that system account (the hub
is root: its uid, its group and its supplementary groups) or in a sandbox of its own
(``hub.servers.sandbox``), in its home directory, with an environment of JupyterHub's contract
(built by ``hub.servers.manager``), the account's own variables and a PATH that finds the hub's
environment, and nothing of the hub's: the hub's environment may hold database credentials.
Without one (single-user mode) it runs as the hub's account with a few variables kept from the
hub's (``ENV_KEEP``, as JupyterHub's ``Spawner.env_keep``). Its output goes to a log file in
the data directory, which the server cannot read. The process itself is started, signalled
and waited for by ``hub.processes``, which the service supervisor shares.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from hub import data_dir, processes
from hub import settings as hub_settings
from hub.servers import isolation, sandbox, spawner

ENV_KEEP = (
    "PATH",
    "PYTHONPATH",
    "CONDA_ROOT",
    "CONDA_DEFAULT_ENV",
    "VIRTUAL_ENV",
    "LANG",
    "LC_ALL",
    "JUPYTERHUB_SINGLEUSER_APP",
)
# What a server running as its own account keeps of the hub's environment: the locale only.
IDENTITY_ENV_KEEP = ("LANG", "LC_ALL")


class LocalSpawner:
    """Starts servers as local child processes of the hub."""

    def __init__(self, env_keep: Sequence[str] = ENV_KEEP) -> None:
        self.env_keep = tuple(env_keep)

    async def start(self, spec: spawner.SpawnSpec) -> spawner.ServerProcess:
        """Start ``spec.command`` (as ``spec.identity``), in a new session (its own process
        group)."""
        identity = spec.identity
        if identity is None:
            env = {k: os.environ[k] for k in self.env_keep if k in os.environ}
            workdir = spec.workdir
            env["HOME"] = str(workdir)
        else:
            env = {k: os.environ[k] for k in IDENTITY_ENV_KEEP if k in os.environ}
            env.update(identity.environment(environment_bin()))
            workdir = identity.home
        env.update(spec.env)
        try:
            if identity is None or identity.sandboxed:
                data_dir.private_subdir(workdir)
            command = _command(spec.command, identity)
            process = await processes.start(command, env=env, cwd=workdir, log_path=spec.log_path)
        except FileNotFoundError as exc:
            raise spawner.SystemFailure(
                f"the spawner command {spec.command[0]!r} does not exist"
            ) from exc
        except PermissionError as exc:
            who = f" by {identity.account}" if identity else ""
            raise spawner.SystemFailure(
                f"the spawner command {spec.command[0]!r} is not executable{who}"
            ) from exc
        except OSError as exc:
            raise spawner.SystemFailure(f"could not start {spec.command[0]!r}: {exc}") from exc
        return process

    def adopt(self, pid: int) -> spawner.ServerProcess | None:
        """The process group ``pid`` if it still exists."""
        if pid <= 1 or not processes.exists(pid):
            return None
        return processes.AdoptedProcess(pid)


def log_path(root: Path, user: str, server_name: str) -> Path:
    """Where a server's output goes."""
    return root / "logs" / (f"{user}-{server_name}.log" if server_name else f"{user}.log")


def environment_bin() -> str:
    """The hub's own environment's ``bin`` directory, where the server command is looked for
    first (``jupyterhub-singleuser`` installed beside the hub)."""
    return str(Path(sys.executable).parent)


def _command(command: Sequence[str], identity: isolation.Identity | None) -> Sequence[str]:
    """What to run: ``command`` itself, in a sandbox, or as another account."""
    if identity is None:
        return command
    if identity.sandboxed:
        return sandboxed(identity, command)
    return as_account(identity, command)


def sandboxed(
    identity: isolation.Identity,
    command: Sequence[str],
    writable: Sequence[Path] = (),
    unset: Sequence[str] = (),
) -> list[str]:
    """``command`` in a bubblewrap sandbox holding ``identity``'s home (``hub.servers.sandbox``)."""
    program = sandbox.bwrap()
    if program is None:
        raise spawner.SystemFailure("bubblewrap (bwrap) is not installed: no sandbox to run in")
    config = hub_settings.config_path()
    # The configuration file, and the directory holding it when it is one of the hub's own
    # (/etc/chronohub: the environment file with the database's password, the TOML).
    secrets = [
        config,
        *filter(None, [sandbox.hidden_directory(config, [identity.home, *writable])]),
    ]
    return sandbox.wrap(
        program,
        command,
        home=identity.home,
        inside=identity.inside or identity.home,
        writable=writable,
        hidden=secrets,
        unset=unset,
    )


def setpriv() -> str:
    """util-linux's setpriv, which a root hub starts servers through (see ``as_account``)."""
    found = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
    if found is None:
        raise spawner.SystemFailure(
            "setpriv (util-linux) is not installed: a root hub needs it to run servers as"
            " their users' accounts"
        )
    return found


def as_account(identity: isolation.Identity, command: Sequence[str]) -> list[str]:
    """``command`` run as ``identity``: its uid, its gid and its groups, nothing of root's.

    Through setpriv, because the event loop's subprocess support (uvloop) takes no user or
    group, and a ``preexec_fn`` that switches accounts is unsafe in a process with threads.
    """
    groups = ",".join(str(gid) for gid in identity.groups)
    return [
        setpriv(),
        f"--reuid={identity.uid}",
        f"--regid={identity.gid}",
        f"--groups={groups}" if groups else "--clear-groups",
        "--",
        *command,
    ]


def resolve_command(command: Sequence[str]) -> tuple[str, ...]:
    """``command`` with its program found: in the hub's own environment first, then on PATH.

    Raises ``SystemFailure`` naming what to install when it is nowhere.
    """
    program = command[0]
    if "/" not in program:
        found = shutil.which(program, path=environment_bin()) or shutil.which(program)
        if found is None:
            raise spawner.SystemFailure(
                f"the spawner command {program!r} is not installed (looked for in"
                f" {environment_bin()} and on PATH): install it beside the hub"
                " (jupyterhub-singleuser comes with `pip install jupyterhub jupyterlab`), or set"
                " spawner_cmd"
            )
        program = found
    elif not os.access(program, os.X_OK):
        raise spawner.SystemFailure(f"the spawner command {program!r} is not an executable file")
    return (program, *command[1:])


def closed_to_users(program: str) -> Path | None:
    """The first directory other accounts cannot pass through on the way to ``program``, its
    real file, or the interpreter its ``#!`` line names; None if they reach all of them."""
    steps = [Path(program), Path(program).resolve()]
    with contextlib.suppress(OSError), open(program, "rb") as file:
        first = file.readline(256)
        if first.startswith(b"#!") and first[2:].split():
            interpreter = Path(first[2:].split()[0].decode(errors="replace"))
            steps += [interpreter, interpreter.resolve()]
    for step in steps:
        if closed := data_dir.closed_to_others(step.parent):
            return closed
    return None
