"""The REST API's response bodies as pydantic models, for chronohub's OpenAPI document.

The handlers build these bodies as dicts, with only the fields the caller's scopes grant
(so every field but ``kind`` and ``name`` is optional here); a test checks real replies
against these models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(_Reply):
    """Every error: JupyterHub's shape."""

    status: int
    message: str


class Version(_Reply):
    """``GET /``."""

    version: str = Field(description="The JupyterHub API version this hub implements")


class ComponentInfo(_Reply):
    """A component of the hub and its version."""

    class_: str = Field(alias="class")
    version: str


class Info(_Reply):
    """``GET /info``."""

    version: str
    chronohub_version: str
    python: str
    sys_executable: str
    spawner: ComponentInfo
    authenticator: ComponentInfo


class UserInfo(_Reply):
    """How to show a user."""

    name: str
    display_name: str


class User(_Reply):
    """A user; fields appear where the caller's scopes grant them."""

    kind: Literal["user"]
    name: str
    admin: bool | None = None
    roles: list[str] | None = None
    groups: list[str] | None = None
    server: str | None = None
    pending: str | None = None
    created: str | None = Field(default=None, description="ISO 8601, UTC, with a Z")
    last_activity: str | None = None
    servers: dict[str, Any] | None = None
    auth_state: dict[str, Any] | None = None
    user_info: UserInfo | None = None


class Whoami(_Reply):
    """``GET /user``: the token's owner (a user or a service) and the token's scopes."""

    kind: Literal["user", "service"]
    name: str
    admin: bool
    roles: list[str]
    groups: list[str] | None = None
    server: str | None = None
    pending: str | None = None
    created: str | None = None
    last_activity: str | None = None
    servers: dict[str, Any] | None = None
    auth_state: dict[str, Any] | None = None
    token_id: str
    session_id: str | None
    scopes: list[str] = Field(description="The token's expanded scopes, sorted")


class Group(_Reply):
    """A group; fields appear where the caller's scopes grant them."""

    kind: Literal["group"]
    name: str
    roles: list[str] | None = None
    users: list[str] | None = None
    properties: dict[str, Any] | None = None


class Token(_Reply):
    """An API token's metadata (never the token, but once, when it is issued)."""

    kind: Literal["api_token"]
    id: str
    user: str
    roles: list[str]
    scopes: list[str]
    note: str | None
    created: str
    last_activity: str | None
    expires_at: str | None
    session_id: str | None
    oauth_client: str


class NewToken(Token):
    """``POST /users/{name}/tokens``: the token's metadata and, this once, the token."""

    token: str


class Tokens(_Reply):
    """``GET /users/{name}/tokens``."""

    api_tokens: list[Token]


class NextPage(_Reply):
    """Where the next page is."""

    offset: int
    limit: int
    url: str = Field(description="The absolute URL of the next page")


class Pagination(_Reply):
    """The ``_pagination`` of a paginated reply."""

    offset: int
    limit: int
    total: int
    next: NextPage | None


class UserPage(_Reply):
    """``GET /users`` with ``Accept: application/jupyterhub-pagination+json``."""

    items: list[User]
    pagination: Pagination = Field(alias="_pagination")


class GroupPage(_Reply):
    """``GET /groups`` with ``Accept: application/jupyterhub-pagination+json``."""

    items: list[Group]
    pagination: Pagination = Field(alias="_pagination")


class EventActor(_Reply):
    """Who caused an event."""

    kind: Literal["user", "service", "system"]
    name: str


class Event(_Reply):
    """An event of the log, in its public shape. ``data`` follows the schema of its type
    (the ``event.<type>`` schemas of this document)."""

    id: str = Field(description="Checkpoint '<tx>:<position>', for Last-Event-ID and ?after=")
    position: int
    type: str
    schema_version: int
    stream: str
    version: int = Field(description="The event's version within its stream")
    time: str
    actor: EventActor
    data: dict[str, Any]
    request_id: str | None
    correlation_id: str | None
    causation_id: str | None


class EventsNext(_Reply):
    """Where the next page of history is: after or before a position."""

    after: int | None = None
    before: int | None = None
    limit: int
    url: str


class EventsPagination(_Reply):
    """The ``_pagination`` of an events page (position-based, no total)."""

    limit: int
    next: EventsNext | None


class EventPage(_Reply):
    """``GET /events`` with ``Accept: application/jupyterhub-pagination+json``."""

    items: list[Event]
    pagination: EventsPagination = Field(alias="_pagination")


class Server(_Reply):
    """A user's server (JupyterHub 6's Server model); ``state`` only with admin:server_state."""

    name: str
    display_name: str
    full_name: str
    last_activity: str | None
    started: str | None
    pending: Literal["spawn", "stop"] | None
    ready: bool
    stopped: bool
    url: str
    user_options: dict[str, Any]
    progress_url: str
    full_url: str | None
    full_progress_url: str | None
    state: dict[str, Any] | None = None


class ProxyRoute(_Reply):
    """One route of the proxy (JupyterHub's ``Proxy.get_all_routes`` shape)."""

    routespec: str
    target: str | None
    data: dict[str, Any]


class ProxyTable(RootModel[dict[str, ProxyRoute]]):
    """``GET /proxy``: the routing table, by routespec."""


# --- services (hub/api/services.py) ----------------------------------------------------------


class Service(_Reply):
    """A service, as JupyterHub's model; fields appear where the caller's scopes grant them
    (``command`` and ``pid`` with ``read:services`` only). ``managed`` and the fields after it
    are chronohub's: how a service the hub runs is doing."""

    kind: Literal["service"]
    name: str
    admin: bool
    roles: list[str] | None = None
    url: str | None = None
    prefix: str | None = None
    command: list[str] | None = None
    pid: int | None = Field(default=None, description="Its process id while it runs, else 0")
    info: dict[str, Any] | None = None
    display: bool | None = None
    managed: bool | None = Field(default=None, description="Whether the hub runs it")
    state: Literal["starting", "running", "restarting", "failed", "stopped"] | None = Field(
        default=None,
        description="A managed service's state in this hub process (failed: a crash loop, not"
        " restarted until the hub restarts); null for an external one",
    )
    since: str | None = Field(default=None, description="When it entered that state")
    restarts: int | None = Field(default=None, description="Restarts since the hub started")
    last_exit: int | None = Field(default=None, description="The exit code of its last death")
    last_error: str | None = Field(default=None, description="Why it last died, or failed")
    webhook: dict[str, Any] | None = Field(
        default=None,
        description="How its webhook's deliveries are doing in this hub process (checkpoint,"
        " delivered, failing, last error, next attempt; docs/webhooks.md); null: no webhook",
    )


class ServiceMap(RootModel[dict[str, Service]]):
    """``GET /services``: the services the caller may list, by name (as JupyterHub answers)."""


# --- projects (hub/api/projects.py) ----------------------------------------------------------


class Project(_Reply):
    """A git project: ``clone_url`` for git, ``web_url`` for its page."""

    owner: str
    owner_kind: Literal["user", "group"] = Field(
        description="Whether the owner is a user or a team (the names are apart)"
    )
    name: str
    full_name: str = Field(description="owner/name")
    description: str
    visibility: Literal["private", "hub", "public"]
    default_branch: str
    clone_url: str
    web_url: str
    created: str
    last_push: str | None


class ProjectPage(_Reply):
    """``GET /projects`` with ``Accept: application/jupyterhub-pagination+json``."""

    items: list[Project]
    pagination: Pagination = Field(alias="_pagination")


class ProjectMember(_Reply):
    """A user or group given a role on a project."""

    kind: Literal["user", "group"]
    name: str
    role: Literal["read", "write", "admin"]


class AccessWay(_Reply):
    """One way a user had a role on a project: as its ``owner``, a ``grant`` to them, a grant
    to their ``group``, membership of the owning ``team``, a ``role`` they held, or as
    ``team_admin`` (``admin:groups!group=<team>``)."""

    via: Literal["owner", "grant", "group", "team", "team_admin", "role"]
    role: Literal["read", "write", "admin"]
    group: str | None = None
    role_name: str | None = None


class AccessHolder(_Reply):
    """A user who could use the project, with their best role and every way they had it."""

    name: str
    role: Literal["read", "write", "admin"]
    through: list[AccessWay]


class AccessMoment(_Reply):
    """The point of the log the answer is about (nulls: before the first event)."""

    position: int | None
    time: str | None


class AccessOwner(_Reply):
    """A project's owner then."""

    kind: Literal["user", "group"]
    name: str


class AccessProject(_Reply):
    """The project as it was then (its name then)."""

    full_name: str
    owner: AccessOwner
    visibility: Literal["private", "hub", "public"]


class ProjectAccess(_Reply):
    """Who could read, write or manage a project at a moment, from the log. ``project`` is
    null if it did not exist yet; ``signed_in``/``anyone`` is the role its visibility gave
    every signed-in user / anyone."""

    at: AccessMoment
    project: AccessProject | None
    signed_in: Literal["read"] | None
    anyone: Literal["read"] | None
    users: list[AccessHolder]
