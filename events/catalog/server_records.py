"""Events that define or edit a named server without starting it (stream as ``servers``).

JupyterHub 6's ``PUT /users/{name}/servers/{server_name}`` creates a stopped server and
``PATCH`` changes its display name or options; the lifecycle itself is ``events.catalog.servers``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from events.catalog.servers import ServerEvent


class ServerDefined(ServerEvent):
    """A named server was created, stopped, with a display name and options."""

    type: ClassVar[str] = "server.defined"

    display_name: str = Field(default="", max_length=255)
    options: dict[str, object] = Field(default_factory=dict)


class ServerModified(ServerEvent):
    """A stopped server's display name or options changed."""

    type: ClassVar[str] = "server.modified"

    display_name: str = Field(default="", max_length=255)
    options: dict[str, object] = Field(default_factory=dict)
