"""chronohub's settings: one object, from ``CHRONOHUB_*`` variables, a TOML file and defaults.

Built once in ``main()`` and passed down. The database is, in order: ``CHRONOHUB_DATABASE_URL``,
``DATABASE_URL``, the standard ``PG*`` variables (when ``PGHOST`` or ``PGDATABASE`` is set),
else an embedded PostgreSQL in ``data_dir``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "CHRONOHUB_CONFIG"
DEFAULT_CONFIG = Path("chronohub.toml")


class ServiceConfig(BaseModel):
    """A service as JupyterHub's ``c.JupyterHub.services`` entries describe one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$",
        description="The service's name; it is reached at /services/<name>/",
    )
    api_token: SecretStr | None = Field(
        default=None, description="A token the service authenticates with (kept as a hash)"
    )
    url: str | None = Field(default=None, description="Where the service listens, if anywhere")
    admin: bool = Field(default=False, description="Grant the admin role (deprecated: use roles)")


class RoleConfig(BaseModel):
    """A custom role, as JupyterHub's ``c.JupyterHub.load_roles`` entries describe one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The role's name")
    description: str = Field(default="", description="What the role is for")
    scopes: list[str] = Field(default_factory=list, description="The scopes the role grants")
    users: list[str] = Field(default_factory=list, description="Users who hold the role")
    groups: list[str] = Field(default_factory=list, description="Groups whose members hold it")
    services: list[str] = Field(default_factory=list, description="Services that hold it")


class Settings(BaseSettings):
    """Every setting of a chronohub process."""

    model_config = SettingsConfigDict(env_prefix="CHRONOHUB_", extra="forbid")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CHRONOHUB_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="PostgreSQL URL; when unset (and no PG* variables), an embedded server is used",
    )
    data_dir: Path = Field(
        default=Path(".chronohub"),
        description="Where chronohub keeps its state: the embedded database, later git objects",
    )
    bind_ip: str = Field(default="127.0.0.1", description="Address the hub listens on")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the hub listens on")
    db_pool_min: int = Field(default=2, ge=1, description="Connections the pool keeps open")
    db_pool_max: int = Field(default=10, ge=1, description="Most connections the pool opens")
    max_event_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest event payload the log accepts, in bytes"
    )
    log_level: str = Field(default="INFO", description="Python logging level")
    public_url: str | None = Field(
        default=None,
        description="The hub's public base URL (https://hub.example.org/), for absolute links"
        " such as pagination's next.url when the hub sits behind a proxy",
    )
    admin_users: list[str] = Field(
        default_factory=list, description="Users created at startup, with the admin role"
    )
    services: list[ServiceConfig] = Field(
        default_factory=list, description="Services and their preset tokens"
    )
    roles: list[RoleConfig] = Field(
        default_factory=list, description="Custom roles and who holds them"
    )
    api_page_default_limit: int = Field(default=50, ge=1, description="Default page size")
    api_page_max_limit: int = Field(default=200, ge=1, description="Largest page size")
    token_expires_in_max_seconds: int = Field(
        default=0, ge=0, description="Longest lifetime a new token may ask for (0: no limit)"
    )
    # Real-time collaboration (collab/): limits of one connection, and room housekeeping.
    collab_max_message_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest y-websocket message (an update, say) a connection may send; a"
        " larger one closes that connection (4413) and nothing of it is stored",
    )
    collab_rate_per_s: float = Field(
        default=200.0,
        gt=0,
        description="Messages per second a connection may send on average; a flood beyond"
        " collab_rate_burst closes that connection (4429)",
    )
    collab_rate_burst: int = Field(
        default=1000, ge=1, description="Messages a connection may send at once"
    )
    collab_send_buffer_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=64 * 1024,
        description="Bytes waiting to be sent to one connection before it is closed as too slow",
    )
    collab_room_grace_s: float = Field(
        default=60.0,
        ge=1,
        description="How long a room with nobody connected stays loaded before it is unloaded",
    )
    collab_durable_updates: bool = Field(
        default=False,
        description="Wait for PostgreSQL's disk flush before broadcasting each batch of"
        " updates; off, a database crash may lose the last fraction of a second of edits,"
        " which Yjs clients send again when they reconnect",
    )
    collab_compact_after_updates: int = Field(
        default=1000,
        ge=1,
        description="Updates after which a room's log is compacted into a snapshot",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments, then the environment, then the TOML file."""
        toml_file = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))

    def uses_pg_environment(self) -> bool:
        """Whether the standard PG* variables name the database."""
        return self.database_url is None and any(
            os.environ.get(name) for name in ("PGHOST", "PGDATABASE")
        )

    def describe_database(self) -> str:
        """Where the database is, for the startup message; no password shown."""
        if self.database_url:
            return _redact(self.database_url)
        if self.uses_pg_environment():
            return "from PG* environment variables"
        return f"embedded PostgreSQL in {self.data_dir.resolve() / 'postgres'}"


_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('[^']*'|[^&\s]*)", re.IGNORECASE)


def _redact(url: str) -> str:
    """The URL or connection string with any password replaced by ``***``."""
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def load(**overrides: Any) -> Settings:
    """Settings from the environment and the TOML file, with ``overrides`` on top."""
    return Settings(**overrides)
