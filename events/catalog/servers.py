"""Events of single-user servers (stream ``server-<user_id>/<server_name>``).

A server's life is: spawn requested → started (a process exists) → ready (it answers) →
stop requested → stopped; ``server.failed`` ends it from any state before stopped. Named
servers are removed with ``server.removed``. The default server's name is ``""``.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import Field, field_validator

from events import models
from events.catalog.names import Name

SERVER_NAME_PATTERN = r"^[^/\s!=\x00-\x1f\x7f]{0,255}$"


class ServerEvent(models.Event):
    """Fields every server event carries: whose server, and which one."""

    user_id: UUID
    user: Name
    server_name: str = Field(default="", max_length=255, pattern=SERVER_NAME_PATTERN)


class ServerSpawnRequested(ServerEvent):
    """Somebody asked for the server to start."""

    type: ClassVar[str] = "server.spawn_requested"

    options: dict[str, object] = Field(default_factory=dict)
    token_id: str | None = Field(
        default=None, max_length=64, description="The id (never the secret) of the server's token"
    )


class ServerStarted(ServerEvent):
    """The spawner started the server's process; it may not answer yet."""

    type: ClassVar[str] = "server.started"

    pid: int | None = None
    url: str = Field(min_length=1, max_length=2048)
    spawner_state: dict[str, object] = Field(
        default_factory=dict,
        description="A JupyterHub spawner's get_state() (pod or container names, a pid), by"
        " which it finds the server again after a hub restart; empty for chronohub's own",
    )

    @field_validator("spawner_state")
    @classmethod
    def _no_secret_in_state(cls, state: dict[str, object]) -> dict[str, object]:
        """A spawner's state is the class's to define: a key named like a secret, at any
        depth, may not enter the log (hub/servers/jupyterhub_adapter.py leaves such keys out)."""
        if key := models.secret_key_in(state):
            raise ValueError(f"spawner_state: {key!r} is named like a secret")
        return state


class ServerReady(ServerEvent):
    """The server answered its readiness check; the proxy routes to it."""

    type: ClassVar[str] = "server.ready"

    url: str = Field(min_length=1, max_length=2048)


class ServerStopRequested(ServerEvent):
    """Somebody asked for the server to stop."""

    type: ClassVar[str] = "server.stop_requested"


class ServerStopped(ServerEvent):
    """The server's process is gone after a requested stop."""

    type: ClassVar[str] = "server.stopped"

    forced: bool = Field(default=False, description="SIGKILL was needed: it ignored SIGTERM")


class ServerFailed(ServerEvent):
    """The server could not start, stopped answering, or died on its own."""

    type: ClassVar[str] = "server.failed"

    reason: str = Field(min_length=1, max_length=2000)
    kind: str = Field(default="system", pattern=r"^(policy|system)$")


class ServerRemoved(ServerEvent):
    """A named server was deleted."""

    type: ClassVar[str] = "server.removed"


def stream_id(user_id: UUID, server_name: str = "") -> str:
    """The stream that holds one server's events."""
    return f"server-{user_id}/{server_name}"
