"""What a spawner is: start a single-user server's process, stop it, find it again after a restart.

Spawners know processes, not users or events: ``hub.servers.manager`` decides and records, a spawner
only acts. Failures come in two kinds, as in JupyterHub: ``PolicyError`` when the request is
at fault (bad options, a limit reached; the user can fix it), ``SystemFailure`` when the hub or
the machine is (a command that does not exist, a server that crashes or never answers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable
from uuid import UUID

from hub import errors
from hub.servers import isolation


class SpawnError(errors.HubError):
    """A server could not be started or kept running; ``kind`` says whose fault it is.

    A ``HubError``, so a handler lets it rise: the error middleware answers with its status.
    """

    kind: Literal["policy", "system"] = "system"


class PolicyError(SpawnError):
    """The request is refused: bad options, or a limit (named servers, concurrent spawns)."""

    kind: Literal["policy", "system"] = "policy"

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SystemFailure(SpawnError):
    """The server failed for reasons of the hub or the machine (answered as 500)."""

    @property
    def reply(self) -> str:
        """What the client reads: that the spawn failed, and why."""
        return f"Spawn failed: {self.message}"


@dataclass(frozen=True)
class SpawnSpec:
    """Everything a spawner needs to start one server."""

    user: str
    server_name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    workdir: Path
    log_path: Path
    ip: str
    port: int
    identity: isolation.Identity | None = None
    """The system account to run as; None: the hub's own (single-user mode)."""
    user_id: UUID | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """The user's options for this spawn (``user_options``, from the API or the spawn form)."""
    groups: tuple[str, ...] = ()
    report: Callable[[dict[str, Any]], None] | None = None
    """Where a spawner's own progress events go (the spawn's progress stream)."""


class ServerProcess(Protocol):
    """A running server's process, started here or adopted after a hub restart."""

    @property
    def pid(self) -> int:
        """The process id (also its process group's id)."""
        ...

    def exit_code(self) -> int | None:
        """None while it runs; its exit code (or -signal) once it is gone."""
        ...

    async def wait(self) -> int:
        """Wait until it exits; its exit code."""
        ...

    async def stop(self, term_timeout: float) -> bool:
        """SIGTERM its process group, SIGKILL after ``term_timeout``; True if SIGKILL was needed."""
        ...


@runtime_checkable
class LocatedProcess(ServerProcess, Protocol):
    """A server a JupyterHub spawner started: it says where the server listens, keeps a state
    to find it again, and is polled (it may not be a local process at all)."""

    @property
    def url(self) -> str:
        """The server's URL, its path included."""
        ...

    def state(self) -> dict[str, Any]:
        """The spawner's state (``get_state``), recorded with ``server.started``."""
        ...

    async def poll(self) -> int | None:
        """None while it runs, else its exit status (the spawner's ``poll``)."""
        ...


@runtime_checkable
class ResumingSpawner(Protocol):
    """A spawner that finds its servers again from their recorded state, not a pid."""

    async def resume(
        self, *, user_id: UUID, user: str, server_name: str, url: str, state: dict[str, Any]
    ) -> ServerProcess | None:
        """The server if it still runs (after a hub restart), else None (its state cleared)."""
        ...


@runtime_checkable
class FormSpawner(Protocol):
    """A spawner with an options form on the spawn page (a JupyterHub class's)."""

    async def options_form(self, *, user: str, server_name: str, user_id: UUID | None) -> str:
        """The form's HTML (the admin's configuration), or ""."""
        ...

    def options_from_form(
        self, form: Mapping[str, list[str]], *, user: str, server_name: str, user_id: UUID | None
    ) -> dict[str, Any]:
        """The submitted form (each field a list of strings) as the spawn's options."""
        ...


class Spawner(Protocol):
    """Starts servers and finds them again."""

    async def start(self, spec: SpawnSpec) -> ServerProcess:
        """Start the server's process; ``SystemFailure`` if it cannot be started at all."""
        ...

    def adopt(self, pid: int) -> ServerProcess | None:
        """The process ``pid`` if it still exists (after a hub restart), else None."""
        ...


class OAuthClients(Protocol):
    """Where a spawned server's OAuth client is registered (the hub's OAuth provider).

    The server manager calls ``register`` before starting a server and ``unregister`` once it
    has stopped or failed. A serving hub registers with its own provider
    (``hub.auth.oauth.clients.ServerClients``); tests may hand in a recorder.
    """

    async def register(
        self, *, user: str, server_name: str, redirect_uri: str, token_id: str
    ) -> str:
        """Register (or update) the server's client, whose secret is the server token
        ``token_id``; returns the client id."""
        ...

    async def unregister(self, *, user: str, server_name: str) -> None:
        """Forget the server's client."""
        ...
