"""Events that define or edit a named server without starting it (stream as ``servers``).

JupyterHub 6's ``PUT /users/{name}/servers/{server_name}`` creates a stopped server and
``PATCH`` changes its display name or options, or renames it; the lifecycle itself is
``events.catalog.servers``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from events.catalog.servers import SERVER_NAME_PATTERN, ServerEvent


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


class ServerRenamed(ServerEvent):
    """A stopped server got a new name (and with it a new URL), on the stream of its old name;
    its later life is on the new name's stream."""

    type: ClassVar[str] = "server.renamed"

    new_name: str = Field(min_length=1, max_length=255, pattern=SERVER_NAME_PATTERN)
    display_name: str = Field(default="", max_length=255)
    options: dict[str, object] = Field(default_factory=dict)
