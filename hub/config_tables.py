"""The tables of the configuration file that describe one thing each: ``[[services]]``
(``ServiceConfig``: JupyterHub's service entries, managed services' commands, webhooks),
``[[roles]]`` (``RoleConfig``) and ``[upstream_oauth]`` (``UpstreamOAuthConfig``).

Apart from hub/settings.py, which holds the hub-wide settings and loads the file, so that
neither module runs to hundreds of lines of field declarations; ``hub.settings`` re-exports
these classes under their names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# An event type ("project.pushed") or a prefix of one ("server.", "collab").
WEBHOOK_PREFIX = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]*)*")


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
    url: str | None = Field(
        default=None,
        description="Where the service listens, if anywhere; routed at /services/<name>/ (a"
        " managed service on port 0, http://127.0.0.1:0, gets a free port at each start)",
    )
    admin: bool = Field(default=False, description="Grant the admin role (deprecated: use roles)")
    oauth_client_id: str | None = Field(
        default=None,
        pattern=r"^service-\S+$",
        description="OAuth client id of a service with a url (default service-<name>)",
    )
    oauth_redirect_uri: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the hub sends its users back with a code"
        " (default /services/<name>/oauth_callback)",
    )
    oauth_no_confirm: bool = Field(
        default=False, description="Skip the page asking users to approve the service's access"
    )
    oauth_client_allowed_scopes: list[str] = Field(
        default_factory=list,
        description="Scopes the service may ask its users for, beyond access to itself",
    )
    # --- webhooks (hub/audit/webhooks.py, docs/webhooks.md) ---
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="Where the hub POSTs the events the service subscribes to (webhook_events),"
        " signed with webhook_secret; http:// or https://",
    )
    webhook_events: list[str] = Field(
        default_factory=list,
        description='Event-type prefixes the webhook delivers (e.g. ["server.",'
        ' "project.pushed"]); "*" delivers every event',
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Key of the webhook's HMAC-SHA256 signature (X-Chronohub-Signature);"
        " required with webhook_url, never written to the event log",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="How long a webhook's receiver may take to answer one delivery before it"
        " counts as failed and is retried",
    )

    @model_validator(mode="after")
    def _webhook_is_complete(self) -> ServiceConfig:
        """Refuse a webhook that could not be delivered or verified, naming what is wrong."""
        where = f"service {self.name!r}"
        if self.webhook_url is None:
            if self.webhook_events or self.webhook_secret is not None:
                raise ValueError(f"{where}: webhook_events/webhook_secret need a webhook_url")
            return self
        url = urlsplit(self.webhook_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{where}: webhook_url must be an http:// or https:// URL with a"
                             f" host, got {self.webhook_url!r}")  # fmt: skip
        if self.webhook_secret is None or len(self.webhook_secret.get_secret_value()) < 16:
            raise ValueError(f"{where}: a webhook_url needs a webhook_secret of at least 16"
                             " characters (receivers check signatures made with it)")  # fmt: skip
        if not self.webhook_events:
            raise ValueError(f'{where}: webhook_events is empty (use ["*"] for every event)')
        for prefix in self.webhook_events:
            if prefix != "*" and not WEBHOOK_PREFIX.fullmatch(prefix):
                raise ValueError(f"{where}: webhook_events: {prefix!r} is not an event type"
                                 ' or its prefix, like "server." or "project.pushed"')  # fmt: skip
        return self

    # --- managed services: a process the hub runs (hub/services/) ---
    command: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="The service's command: the hub runs it, watches it and restarts it"
        " (a managed service); empty: an external service the hub only knows of",
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Variables of a managed service's environment, applied last (over the"
        " JUPYTERHUB_* ones)",
    )
    cwd: Path | None = Field(
        default=None,
        description="A managed service's working directory (default: its own directory,"
        " <data_dir>/services/<name>)",
    )
    timeout: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds a managed service with a url has to answer at each start",
    )
    display: bool = Field(
        default=True, description="List the service on the home page of users who may open it"
    )
    info: dict[str, Any] = Field(
        default_factory=dict,
        description="Anything a deployment attaches to the service (shown in its REST model)",
    )

    @model_validator(mode="after")
    def _managed_fields_need_a_command(self) -> ServiceConfig:
        """Refuse the settings of a managed service on one without a command, and variable
        names a process cannot have."""
        if not self.command:
            given = [
                name
                for name, value in (("environment", self.environment), ("cwd", self.cwd))
                if value
            ]
            if given:
                raise ValueError(
                    f"service {self.name!r}: {', '.join(given)} only apply to a managed"
                    " service: give it a command"
                )
        elif not self.command[0]:
            raise ValueError(f"service {self.name!r}: the command's program is empty")
        for key in self.environment:
            if not key or "=" in key or "\x00" in key:
                raise ValueError(
                    f"service {self.name!r}: {key!r} is not an environment variable name"
                )
        if self.url is not None and self.command:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"service {self.name!r}: url {self.url!r} must be http(s)://host:port"
                )
        return self


class RoleConfig(BaseModel):
    """A custom role, as JupyterHub's ``c.JupyterHub.load_roles`` entries describe one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The role's name")
    description: str = Field(default="", description="What the role is for")
    scopes: list[str] = Field(default_factory=list, description="The scopes the role grants")
    users: list[str] = Field(default_factory=list, description="Users who hold the role")
    groups: list[str] = Field(default_factory=list, description="Groups whose members hold it")
    services: list[str] = Field(default_factory=list, description="Services that hold it")


class UpstreamOAuthConfig(BaseModel):
    """Log in through an upstream OAuth2/OpenID Connect provider (``authenticator = "oauth"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["generic", "github"] = Field(
        default="generic", description="github fills in GitHub's URLs, scope and username claim"
    )
    authorize_url: str | None = Field(default=None, description="The provider's authorize URL")
    token_url: str | None = Field(default=None, description="The provider's token URL")
    userdata_url: str | None = Field(
        default=None, description="Where the access token reads the user's identity (JSON)"
    )
    client_id: str = Field(min_length=1, description="This hub's client id at the provider")
    client_secret: SecretStr = Field(description="This hub's client secret at the provider")
    scope: list[str] | None = Field(default=None, description="Scopes asked of the provider")
    username_claim: str | None = Field(
        default=None, description="Field of the user data that is the username"
    )
    callback_url: str | None = Field(
        default=None, description="This hub's callback URL (default <public_url>hub/oauth_callback)"
    )
    allowed_users: list[str] = Field(default_factory=list, description="Who may log in")
    allowed_organizations: list[str] = Field(
        default_factory=list, description="GitHub organisations whose members may log in"
    )
    allow_all: bool = Field(default=False, description="Let anyone the provider knows log in")
    login_service: str = Field(default="OAuth", description="The provider's name on the page")
    allow_insecure_http: bool = Field(
        default=False,
        description="Accept http:// provider URLs (a provider on this machine, tests); else https",
    )

    def resolved(self) -> UpstreamOAuthConfig:
        """This configuration with the preset's values filled in where none was given."""
        preset = _OAUTH_PRESETS.get(self.preset, {})
        values = {k: v for k, v in preset.items() if getattr(self, k) in (None, "OAuth")}
        resolved = self.model_copy(update=values)
        missing = [
            name
            for name in ("authorize_url", "token_url", "userdata_url")
            if not getattr(resolved, name)
        ]
        if missing:
            raise ValueError(f"oauth: {', '.join(missing)} must be set (or use preset = 'github')")
        for name in ("authorize_url", "token_url", "userdata_url"):
            url = getattr(resolved, name)
            if not url.startswith("https://") and not (
                self.allow_insecure_http and url.startswith("http://")
            ):
                raise ValueError(
                    f"oauth: {name} must be an https:// URL (allow_insecure_http = true"
                    f" accepts http:// for a provider on this machine): {url}"
                )
        return resolved


_OAUTH_PRESETS: dict[str, dict[str, Any]] = {
    "github": {
        "authorize_url": "https://github.com/login/oauth/authorize",
        "token_url": "https://github.com/login/oauth/access_token",
        "userdata_url": "https://api.github.com/user",
        "scope": ["read:org"],
        "username_claim": "login",
        "login_service": "GitHub",
    }
}
