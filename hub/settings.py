"""chronohub's settings: one object, from ``CHRONOHUB_*`` variables, a TOML file and defaults.

Built once in ``main()`` and passed down. The database is, in order: ``CHRONOHUB_DATABASE_URL``,
``DATABASE_URL``, the standard ``PG*`` variables (when ``PGHOST`` or ``PGDATABASE`` is set),
else an embedded PostgreSQL in ``data_dir``.

Over 700 lines, on purpose: one model holds every setting with its description, the source the
configuration reference (docs/configuration.md) is generated from, and the checks that tie
settings together; the tables of the TOML file (services, roles…) are apart, in
``hub.config_tables``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hub import ports

# the tables of the file, re-exported: callers name them hub.settings.ServiceConfig etc.
from hub.config_tables import RoleConfig as RoleConfig
from hub.config_tables import ServiceConfig as ServiceConfig
from hub.config_tables import UpstreamOAuthConfig as UpstreamOAuthConfig

CONFIG_ENV = "CHRONOHUB_CONFIG"
DEFAULT_CONFIG = Path("chronohub.toml")


# The longest lifetime of a token or session: a century (a later expiry is past the dates
# Python can represent).
MAX_LIFETIME_S = 100 * 365 * 24 * 3600

# Where the hub's own proxy connects from (it runs beside the hub).
LOOPBACK: tuple[IPvAnyNetwork, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)


# Settings renamed when the proxy became the one public address: their new names, and why.
RENAMED = {
    "bind_ip": ("hub_ip", "for the hub's own address; ip is the public one now, the proxy's"),
    "proxy_ip": ("ip", "the proxy's address is the public one"),
    "proxy_port": ("port", "the proxy's port is the public one; the hub's own is hub_port"),
}


# What ``publish = true`` adds: the publishing service (examples/publish/chronohub_publish,
# installed with the hub as the package chronohub_publish) and the scopes its token needs: read
# every project (to fetch and to check members), follow project events, see users' groups.
PUBLISH_SERVICE = ServiceConfig(
    name="publish",
    command=["python3", "-m", "chronohub_publish"],
    url="http://127.0.0.1:0",
    oauth_no_confirm=True,
    info={"name": "Published projects", "description": "Projects' notebooks as web pages"},
)
# ...and what it gives every user (hub/bootstrap.py adds it to the user role): to sign in to
# the service, whose pages then follow each project's own visibility and members
PUBLISH_ACCESS = "access:services!service=publish"
PUBLISH_ROLE = RoleConfig(
    name="publish-service",
    description="The publishing service: fetch projects, follow their pushes, check members",
    scopes=["read:projects", "read:events:projects", "read:users:groups"],
    services=["publish"],
)


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
        description="Where chronohub keeps its state: the embedded database and its password, the"
        " cookie secret, users' home directories (sandbox and single-user modes) and servers'"
        " logs; mode 0700, the hub's alone",
    )
    # One public address, JupyterHub's way: the proxy's (bind_url), routing /hub/ to the hub's
    # own internal address (hub_bind_url).
    ip: str = Field(
        default="127.0.0.1",
        description="The public address: where the proxy listens for people and clients",
    )
    port: int = Field(
        default=8000, ge=0, le=65535, description="The public port: the proxy's (0: a free one)"
    )
    hub_ip: str = Field(
        default="127.0.0.1",
        description="The hub's internal address: the proxy and single-user servers reach it there",
    )
    hub_port: int = Field(
        default=8081, ge=0, le=65535, description="The hub's internal port (0: a free one)"
    )
    db_pool_min: int = Field(default=2, ge=1, description="Connections the pool keeps open")
    db_pool_max: int = Field(default=10, ge=1, description="Most connections the pool opens")
    db_acquire_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a request waits for a database connection (borrowing or opening"
        " one) before it answers 503 with Retry-After",
    )
    db_statement_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one database statement of the serving hub may take before it is"
        " cancelled and the request answers 503 with Retry-After (one-shot commands have no"
        " limit)",
    )
    max_event_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest event payload the log accepts, in bytes"
    )
    snapshot_every_events: int = Field(
        default=1_000_000,
        ge=0,
        description="A serving hub copies every read model each time the log has grown by this"
        " many positions, so that 'chronohub state --at' and the audit's past views replay"
        " only the events after the newest copy at or before the point asked for (0: never;"
        " 'chronohub projections snapshot' takes one by hand)",
    )
    snapshot_keep: int = Field(
        default=8,
        ge=1,
        description="Most snapshots of the read models kept: those built by other projection"
        " code are dropped first, then the one whose neighbours are closest (never the newest),"
        " so that those kept stay spread over the log; each holds a copy of every read"
        " model's tables",
    )
    log_level: str = Field(
        default="INFO", description="Python logging level: DEBUG, INFO, WARNING or ERROR"
    )
    public_url: str | None = Field(
        default=None,
        description="The public base URL (https://hub.example.org/) when it is not the proxy's"
        " own address (a TLS terminator in front of it): for absolute links such as"
        " pagination's next.url, and the start-up banner",
    )
    admin_users: list[str] = Field(
        default_factory=list,
        description="Users created at startup with the admin role (made admins if they exist)",
    )
    services: list[ServiceConfig] = Field(
        default_factory=list,
        description="Services, as JupyterHub's services entries: name, url, a preset API token,"
        " OAuth client settings ([[services]] tables)",
    )
    publish: bool = Field(
        default=False,
        description="Run the publishing service (chronohub_publish, shipped with the hub) as the"
        " managed service publish, at /services/publish/: a project with a publish.toml is"
        " rendered to HTML at each push (docs/publishing.md)",
    )
    publish_sandbox: bool = Field(
        default=True,
        description="The publishing service runs each dashboard in a bubblewrap sandbox, and"
        " refuses dashboards where bubblewrap cannot run. false (UNSAFE) runs them as the"
        " service's account, unsandboxed: a project's writer can then read what the service"
        " can (other projects' private pages, its state)",
    )
    idempotency_key_lifetime_s: float = Field(
        default=86400.0,
        ge=60,
        description="How long the hub keeps a REST write's answer under its Idempotency-Key"
        " header, so that a retry with the key gets that answer again instead of writing twice",
    )
    webhook_retry_initial_s: float = Field(
        default=1.0,
        gt=0,
        description="Wait before a failed webhook delivery is retried; doubled after each"
        " failure in a row, up to webhook_retry_max_s",
    )
    webhook_retry_max_s: float = Field(
        default=300.0, gt=0, description="Longest wait between two attempts of a delivery"
    )
    service_stop_grace_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Seconds a managed service has to exit after SIGTERM before SIGKILL",
    )
    service_restart_first_s: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="First wait before a managed service that died is started again; each"
        " further death doubles it",
    )
    service_restart_max_s: float = Field(
        default=60.0, gt=0, le=86400, description="Longest wait before a restart"
    )
    service_stable_s: float = Field(
        default=60.0,
        gt=0,
        description="A managed service up this long is deemed healthy: the wait before its"
        " next restart starts again from service_restart_first_s",
    )
    service_crash_loop_deaths: int = Field(
        default=5,
        ge=1,
        description="Deaths within service_crash_loop_window_s that mark a managed service"
        " failed: not restarted again until the hub restarts",
    )
    service_crash_loop_window_s: float = Field(
        default=300.0, gt=0, description="The window of service_crash_loop_deaths"
    )
    roles: list[RoleConfig] = Field(
        default_factory=list,
        description="Custom roles: their scopes, and the users, groups and services that hold"
        " them ([[roles]] tables); an unknown scope refuses to start",
    )
    api_page_default_limit: int = Field(
        default=50,
        ge=1,
        description="Items in a page of a REST list when the request sets no limit",
    )
    api_page_max_limit: int = Field(
        default=200, ge=1, description="Largest limit a REST list request may ask for"
    )
    read_cache_entries: int = Field(
        default=256,
        ge=0,
        description="Answers of the users and groups lists' queries each hub process"
        " remembers (pages asked for again, by any caller), emptied in every process whenever"
        " the log changes anything on them (last_activity: see read_cache_max_age_s); the least"
        " recently used go first. 0: none, every request reads the database",
    )
    read_cache_max_age_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an answer stays in the read cache at most: users' last_activity,"
        " which moves without notifying the other processes, may lag by this much in the users"
        " list (everything else is seen at once)",
    )
    token_expires_in_max_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_LIFETIME_S,
        description="Longest lifetime a new token may ask for (0: no limit)",
    )
    # --- login, browser sessions, OAuth (issue 4) ---
    authenticator: Literal["native", "oauth", "dummy"] = Field(
        default="native", description="How people log in: native passwords, upstream OAuth, dummy"
    )
    dummy_authenticator_enabled: bool = Field(
        default=False,
        description="Required beside authenticator = 'dummy': it lets anyone in, development only",
    )
    dummy_password: SecretStr | None = Field(
        default=None, description="With the dummy authenticator: the one password (unset: any)"
    )
    oauth: UpstreamOAuthConfig | None = Field(
        default=None,
        description="The upstream provider of authenticator = 'oauth' (an [oauth] table)",
    )
    authenticator_class: str | None = Field(
        default=None,
        description="A JupyterHub authenticator class, used unchanged: a dotted name"
        " ('oauthenticator.generic.GenericOAuthenticator', 'jupyterhub.auth.PAMAuthenticator')"
        " or an entry point name of jupyterhub.authenticators ('pam', 'generic-oauth');"
        " overrides authenticator",
    )
    authenticator_config: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="The class's own traitlets: [authenticator_config.<ClassName>] tables, as"
        " c.<ClassName>.<trait> = value in a jupyterhub_config.py; an unknown trait refuses"
        " to start",
    )
    authenticator_config_file: Path | None = Field(
        default=None,
        description="A jupyterhub_config.py-style file configuring the authenticator class"
        " (it is Python code, run at startup: keep it as private as the hub's own settings)",
    )
    crypt_key: SecretStr | None = Field(
        default=None,
        description="Keys (32 bytes, hex or base64, ';'-separated, the first encrypts) that"
        " encrypt JupyterHub authenticators' auth_state; unset: JUPYTERHUB_CRYPT_KEY",
    )
    allow_signup: bool = Field(
        default=False, description="Native: people may ask for an account; an admin approves"
    )
    min_password_length: int = Field(default=8, ge=1, description="Shortest password accepted")
    cookie_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs login cookies; unset: generated into <data_dir>/cookie_secret",
    )
    cookie_max_age_seconds: int = Field(
        default=14 * 24 * 3600,
        ge=60,
        le=MAX_LIFETIME_S,
        description="How long a browser session lasts, in seconds (default: 14 days)",
    )
    login_lockout_failures: int = Field(
        default=5, ge=1, description="Failed logins in a row after which a user is locked out"
    )
    login_lockout_seconds: int = Field(
        default=300, ge=1, description="How long a lockout (and the failure window) lasts"
    )
    login_address_max_failures: int = Field(
        default=20, ge=1, description="Failed logins from one address per window before 429s"
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=lambda: list(LOOPBACK),
        description="Addresses whose X-Forwarded-For is believed when finding a request's "
        "client (the hub's proxy runs on loopback); [] believes no one",
    )
    oauth_code_expires_in_seconds: int = Field(
        default=300, ge=1, le=3600, description="Lifetime of an OAuth authorization code"
    )
    oauth_token_expires_in_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_LIFETIME_S,
        description="Lifetime of OAuth access tokens (0: the session's)",
    )

    # --- git projects (hub/projects/) ---
    project_max_push_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="Largest pack one git push may send (receive.maxInputSize); larger pushes"
        " are refused with nothing stored",
    )
    project_git_threads: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Threads serving git clones, fetches and pushes at once; more wait their turn",
    )
    project_git_native: bool = Field(
        default=True,
        description="Serve clones and fetches with the installed git (git upload-pack, several"
        " times faster than dulwich) when git is on PATH; false: always dulwich",
    )
    project_git_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="A git client that sends or takes nothing for this long is disconnected",
    )
    project_import_max_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="Most bytes an import or sync (import_url) may download from the remote"
        " repository; a larger one is refused with nothing kept",
    )
    project_import_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest an import or sync (import_url) may take, answered within the"
        " request; a slower remote is refused with nothing kept",
    )
    project_import_allow_private: bool = Field(
        default=False,
        description="Let import_url reach loopback, private, link-local, multicast and"
        " reserved addresses (refused by default: the hub's network is not the caller's)",
    )
    project_import_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks import_url may reach although they are not global, such as an"
        ' internal git server\'s (e.g. ["10.1.2.0/24"]); others stay refused',
    )

    @model_validator(mode="before")
    @classmethod
    def _no_renamed_settings(cls, data: Any) -> Any:
        """Refuse the names the addresses had before the proxy became the public address,
        naming the new one, rather than let extra="forbid" just call them unknown."""
        # An unknown CHRONOHUB_* variable is ignored by the settings sources: look for these.
        environment = {key.upper() for key in os.environ}
        given = set(data) if isinstance(data, dict) else set()
        given |= {name for name in RENAMED if f"CHRONOHUB_{name.upper()}" in environment}
        renamed = sorted(RENAMED.keys() & given)
        if renamed:
            old = renamed[0]
            new, why = RENAMED[old]
            raise ValueError(
                f"{old} (CHRONOHUB_{old.upper()}) was renamed: use {new}"
                f" (CHRONOHUB_{new.upper()}) instead ({why})"
            )
        return data

    @model_validator(mode="after")
    def _publishing_service(self) -> Settings:
        """With ``publish``, add the publishing service and the role its token holds."""
        if not self.publish:
            return self
        taken = [s.name for s in self.services if s.name == PUBLISH_SERVICE.name]
        taken += [r.name for r in self.roles if r.name == PUBLISH_ROLE.name]
        if taken:
            raise ValueError(
                f"publish = true adds the service 'publish' and its role 'publish-service':"
                f" a [[services]] or [[roles]] entry is already called {taken[0]!r}"
            )
        # What its dashboards must not see, even where it lies in a tree their sandbox binds
        # (chronohub_publish.sandbox): the hub's data directory and the directory of its
        # configuration, where deployments keep the hub's secrets (/etc/chronohub).
        hide = [self.data_dir.resolve(), config_path().parent]
        environment = {"PUBLISH_HIDE": os.pathsep.join(str(path) for path in hide)}
        if not self.publish_sandbox:  # the service's own opt-out (chronohub_publish.sandbox)
            environment["PUBLISH_SANDBOX"] = "false"
        service = PUBLISH_SERVICE.model_copy(update={"environment": environment})
        self.services = [*self.services, service]
        self.roles = [*self.roles, PUBLISH_ROLE]
        return self

    @model_validator(mode="after")
    def _authenticator_is_usable(self) -> Settings:
        """Refuse a dummy authenticator nobody enabled, oauth without its provider, and a
        JupyterHub authenticator_class beside another authenticator."""
        if self.authenticator_class is not None and self.authenticator != "native":
            raise ValueError(
                f"authenticator_class replaces authenticator = {self.authenticator!r}:"
                " set only one of them"
            )
        if (
            self.authenticator_config or self.authenticator_config_file
        ) and not self.authenticator_class:
            raise ValueError(
                "authenticator_config and authenticator_config_file configure an"
                " authenticator_class, and none is set"
            )
        if self.authenticator == "dummy" and not self.dummy_authenticator_enabled:
            raise ValueError(
                "authenticator = 'dummy' lets anyone log in: it is for development only and"
                " needs dummy_authenticator_enabled = true as well"
            )
        if self.authenticator == "oauth":
            if self.oauth is None:
                raise ValueError("authenticator = 'oauth' needs an [oauth] section")
            self.oauth.resolved()
        return self

    # --- spawning single-user servers and the proxy (issue 5) ---
    spawner_cmd: list[str] = Field(
        default_factory=lambda: ["jupyterhub-singleuser"],
        min_length=1,
        description="The single-user server's command; the spawner adds nothing but spawner_args",
    )
    spawner_args: list[str] = Field(
        default_factory=list,
        description="Extra arguments after spawner_cmd, e.g. --allow-root, which"
        " jupyterhub-singleuser needs to run as root (a root hub in single_user_mode)",
    )
    spawner_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for single-user servers"
    )
    spawner_ip: str = Field(default="127.0.0.1", description="Where single-user servers listen")
    spawner_class: str | None = Field(
        default=None,
        description="A JupyterHub spawner class to start servers with, unchanged: a dotted path"
        " (jupyterhub.spawner.LocalProcessSpawner, kubespawner.KubeSpawner) or an entry point"
        " name of jupyterhub.spawners (simple, localprocess); unset: chronohub's own spawner."
        " spawner_cmd, spawner_args and the isolation settings' way of running code do not apply"
        " to it: the class's own configuration does",
    )
    spawner_config: dict[str, Any] = Field(
        default_factory=dict,
        description="The spawner_class's traits, as c.<ClassName>.<trait> in"
        " jupyterhub_config.py (a [spawner_config] table); a trait the class lacks is an error",
    )
    spawner_config_file: Path | None = Field(
        default=None,
        description="A jupyterhub_config.py-style file configuring spawner_class (c.KubeSpawner..."
        "); it is Python code, run by the hub at start-up: keep it as private as this file",
    )
    start_timeout: float = Field(
        default=60,
        gt=0,
        description="Seconds a server may take from spawn to ready before the spawn fails",
    )
    slow_spawn_timeout: float = Field(
        default=10,
        ge=0,
        description="Seconds POST /users/{name}/server waits for ready before answering 202",
    )
    term_timeout: float = Field(
        default=5, gt=0, description="Seconds between SIGTERM and SIGKILL when stopping a server"
    )
    concurrent_spawn_limit: int = Field(
        default=100, ge=0, description="Most spawns pending at once (0: no limit)"
    )
    named_server_limit_per_user: int = Field(
        default=0, ge=0, description="Most named servers a user may have (0: no limit)"
    )
    server_token_projects: bool = Field(
        default=True,
        description="Let a server's own token (JUPYTERHUB_API_TOKEN) create, push to and share"
        " its user's projects, and use those shared with them, so that chronohub project works in"
        " the server's terminal; false gives it only JupyterHub's server role (whoever can use"
        " the server can read its token)",
    )
    allow_named_servers: bool = Field(
        default=True,
        description="Let users run named servers (/user/<name>/<server>/) beside their default one",
    )
    cleanup_servers: bool = Field(
        default=True,
        description="Stop servers when the hub shuts down, if no other hub process sharing"
        " the database is live; false leaves them running, and the next hub process re-adopts"
        " them",
    )
    proxy: str = Field(
        default="builtin",
        pattern=r"^(builtin|chp|none)$",
        description="builtin (in the hub process), chp (configurable-http-proxy), both on"
        " ip:port, or none (no proxy: the hub's own address is the public one)",
    )
    chp_command: list[str] = Field(
        default_factory=lambda: ["configurable-http-proxy"],
        min_length=1,
        description="How to start configurable-http-proxy (proxy = chp, chp_api_url unset)",
    )
    chp_api_url: str | None = Field(
        default=None,
        description="REST API of an external configurable-http-proxy; unset: the hub starts one",
    )
    chp_auth_token: SecretStr | None = Field(
        default=None, description="CONFIGPROXY_AUTH_TOKEN of an external proxy"
    )
    port_range: str | None = Field(
        default=None,
        description="Ports the hub hands out to what it starts (single-user servers, managed"
        " services whose url has port 0, configurable-http-proxy's API), as LOW-HIGH such as"
        " 20000-29999: a port of it nothing listens on. Outside the kernel's ephemeral range"
        " (/proc/sys/net/ipv4/ip_local_port_range) no outgoing connection can take a port"
        " between its choice and its server's start, and a firewall can open just these;"
        " unset: the kernel's choice",
    )
    proxy_check_interval: float = Field(
        default=5,
        gt=0,
        description="Seconds between checks of the proxy's routing table against the routes"
        " read model (a route change is applied at once as well)",
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
    # Shared execution sessions (collab/sessions.py, hub/api/collab.py)
    collab_session_grace_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a shared execution session's kernel runs with nobody in its"
        " room before the session shuts down",
    )
    collab_kernel_startup_timeout_s: float = Field(
        default=60.0, gt=0, description="How long a session's kernel may take to start"
    )
    process_lease_s: float = Field(
        default=15.0,
        ge=0.3,
        description="How long a hub process counts as live unrenewed (it renews every third"
        " of this): the spawns and stops of a process that died are failed or finished by"
        " another once this has passed; a process stopping while another is live leaves"
        " users' servers running (cleanup_servers applies to the last one)",
    )
    collab_session_lease_s: float = Field(
        default=15.0,
        ge=0.3,
        description="How long a hub process's hold on a shared execution session lasts"
        " unrenewed (it renews every third of this): once a process that died has not renewed"
        " for this long, another process takes its sessions over and restarts their kernels",
    )

    # Isolation of users' code (servers, session kernels) and of the embedded database.
    single_user_mode: bool = Field(
        default=False,
        description="Run users' servers and session kernels as the hub's own account, for a"
        " hub that one person uses: their code then has the hub's privileges (its database,"
        " its cookie secret). Needed when the hub does not run as root, which it must to run"
        " each user's code as their own system account",
    )
    sandbox: bool = Field(
        default=True,
        description="A hub that is not root runs each user's servers and kernels in a"
        " bubblewrap sandbox of its own (if bwrap is installed); false: not at all, unless"
        " single_user_mode",
    )
    single_user_mode_all_users: bool = Field(
        default=False,
        description="In single_user_mode, let every user start servers and kernels; by"
        " default only admins may, since that code runs with the hub's privileges",
    )
    system_user_prefix: str = Field(
        default="jupyter-",
        pattern=r"^[a-z_][a-z0-9_-]{0,15}$",
        description="A root hub runs each user's code as the system account <prefix><name>,"
        " created on first use (The Littlest JupyterHub's convention)",
    )
    system_user_map: dict[str, str] = Field(
        default_factory=dict,
        description="Existing system accounts to use for these hub users instead of"
        " <prefix><name> (never created by the hub)",
    )
    system_user_home: str = Field(
        default="/home/{account}",
        pattern=r"^/.*\{account\}",
        description="Home directory of a system account the hub creates ({account} is its name)",
    )
    embedded_db_listen: str = Field(
        default="",
        pattern=r"^[0-9a-fA-F.:,* ]*$",
        description="TCP addresses the embedded PostgreSQL listens on besides its private Unix"
        " socket (PostgreSQL's listen_addresses); empty: none",
    )
    embedded_db_port: int = Field(
        default=5432,
        ge=1,
        le=65535,
        description="The embedded PostgreSQL's port (its socket's name, and its TCP port when"
        " embedded_db_listen is set)",
    )

    @field_validator("port_range")
    @classmethod
    def _port_range_is_a_range(cls, value: str | None) -> str | None:
        """``LOW-HIGH`` within 1..65535, not reversed, written back plainly."""
        if value is None:
            return None
        low, high = ports.parse(value)
        return f"{low}-{high}"

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
        toml_file = config_path()
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


def config_path() -> Path:
    """The TOML file settings are read from (it may hold secrets: tokens, client secrets)."""
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)).resolve()


def load(**overrides: Any) -> Settings:
    """Settings from the environment and the TOML file, with ``overrides`` on top."""
    return Settings(**overrides)
