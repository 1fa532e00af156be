"""The scope table: every scope the hub knows, as data, and the names its own checks use.

``BUILTIN`` is JupyterHub's scopes plus chronohub's (name, description, the scopes each one
implies), checked when it is built: no name twice, no unknown implied scope, no cycle, no
metascope reached through the hierarchy. The constants at the end are the scope names the
hub's handlers ask for, each checked against the table when this module is imported, so a
misspelt one fails at start-up instead of as a 500 at its first request. What scopes *do*
(parsing, expansion, filters, grants, decisions) is ``scopes.py``; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SELF = "self"
INHERIT = "inherit"
METASCOPES = frozenset({SELF, INHERIT})

CUSTOM_SCOPE_PATTERN = re.compile(r"^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$")


class ScopeError(ValueError):
    """A scope, filter, scope definition or role the hub refuses; ``scope``/``role`` name it."""

    def __init__(self, message: str, *, scope: str | None = None, role: str | None = None) -> None:
        self.scope = scope
        self.role = role
        super().__init__(message if role is None else f"Role {role!r}: {message}")


@dataclass(frozen=True)
class Definition:
    """One scope: its name, a one-line description and the scopes it directly implies."""

    name: str
    description: str
    implies: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """A checked set of scope definitions; building one verifies the hierarchy."""

    definitions: tuple[Definition, ...]
    _by_name: Mapping[str, Definition] = field(init=False, repr=False)
    _closure: Mapping[str, frozenset[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_name: dict[str, Definition] = {}
        for definition in self.definitions:
            if definition.name in by_name:
                raise ScopeError(
                    f"Scope {definition.name!r} is defined twice", scope=definition.name
                )
            by_name[definition.name] = definition
        closure = _closures(by_name)
        for name, implied in closure.items():
            # expand() gives metascopes their meaning; reached through a hierarchy they
            # would be copied around as if they were ordinary scopes.
            if implied & METASCOPES - {name}:
                raise ScopeError(f"Scope {name!r} may not imply a metascope", scope=name)
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        object.__setattr__(self, "_closure", MappingProxyType(closure))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Definition:
        return self._by_name[name]

    def names(self) -> frozenset[str]:
        """Every defined scope name."""
        return frozenset(self._by_name)

    def implied(self, name: str) -> frozenset[str]:
        """``name`` and every scope it implies, transitively."""
        return self._closure[name]

    def with_custom(self, definitions: Iterable[Definition]) -> Vocabulary:
        """This vocabulary plus declared ``custom:`` scopes, which may imply only custom scopes."""
        added = tuple(definitions)
        new_names = {d.name for d in added}
        for definition in added:
            name = definition.name
            if not CUSTOM_SCOPE_PATTERN.match(name):
                raise ScopeError(
                    f"Invalid custom scope name {name!r}: it must match"
                    f" {CUSTOM_SCOPE_PATTERN.pattern}",
                    scope=name,
                )
            if name in self and self[name] != definition:
                raise ScopeError(f"Scope {name!r} is already defined differently", scope=name)
            if not definition.description.strip():
                raise ScopeError(f"Custom scope {name!r} needs a description", scope=name)
            for implied in definition.implies:
                # Bundling built-in scopes is what roles are for; JupyterHub refuses it too.
                if not implied.startswith("custom:"):
                    raise ScopeError(
                        f"Custom scope {name!r} implies {implied!r}; custom scopes may imply"
                        " only custom scopes",
                        scope=implied,
                    )
                if implied not in new_names and implied not in self:
                    raise ScopeError(
                        f"Custom scope {name!r} implies {implied!r}, which is not defined",
                        scope=implied,
                    )
        kept = tuple(d for d in self.definitions if d.name not in new_names)
        return Vocabulary(kept + added)


def _closures(by_name: Mapping[str, Definition]) -> dict[str, frozenset[str]]:
    """Each scope's transitive closure; an unknown implied scope or a cycle raises."""
    done: dict[str, frozenset[str]] = {}

    def visit(name: str, path: tuple[str, ...]) -> frozenset[str]:
        if name in done:
            return done[name]
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ScopeError(f"The scope hierarchy has a cycle: {cycle}", scope=name)
        if name not in by_name:
            raise ScopeError(f"Scope {path[-1]!r} implies unknown scope {name!r}", scope=name)
        closure = {name}
        for implied in by_name[name].implies:
            closure |= visit(implied, (*path, name))
        done[name] = frozenset(closure)
        return done[name]

    for name in by_name:
        visit(name, ())
    return done


_D = Definition

# JupyterHub 6.x's scopes (compat §4.1) plus chronohub's own. Descriptions are ours.
BUILTIN = Vocabulary(
    (
        _D(SELF, "Your own resources (metascope for users; nothing for services)"),
        _D(INHERIT, "Everything the token's owner can do (metascope for tokens)"),
        _D("admin-ui", "Open the admin page; its actions need their own scopes"),
        _D(
            "admin:users",
            "Create, read, change and delete users and their auth state, not servers or tokens",
            ("admin:auth_state", "users", "read:roles:users", "delete:users"),
        ),
        _D("admin:auth_state", "Read and write users' authentication state"),
        _D(
            "users",
            "Read and change user models, except servers, tokens and auth state",
            ("read:users", "list:users", "users:activity"),
        ),
        _D("delete:users", "Delete users"),
        _D("list:users", "List users, with at least their names", ("read:users:name",)),
        _D(
            "read:users",
            "Read user models, including the default server's URL",
            ("read:users:name", "read:users:groups", "read:users:activity"),
        ),
        _D("read:users:name", "Read user names"),
        _D("read:users:groups", "Read which groups users belong to"),
        _D("read:users:activity", "Read when users were last active"),
        _D("users:activity", "Report users' activity", ("read:users:activity",)),
        _D(
            "read:roles",
            "Read role assignments",
            ("read:roles:users", "read:roles:services", "read:roles:groups"),
        ),
        _D("read:roles:users", "Read the roles of users"),
        _D("read:roles:services", "Read the roles of services"),
        _D("read:roles:groups", "Read the roles of groups"),
        _D(
            "admin:servers",
            "Read, start, stop, create and delete users' servers, including their state",
            ("admin:server_state", "servers"),
        ),
        _D("admin:server_state", "Read and write the spawner state of users' servers"),
        _D(
            "servers",
            "Start, stop and edit users' servers",
            ("read:servers", "start:servers", "delete:servers"),
        ),
        _D(
            "read:servers",
            "Read user names and their server models, without spawner state",
            ("read:users:name",),
        ),
        _D("start:servers", "Create, start and edit users' servers"),
        _D("delete:servers", "Stop and delete users' servers"),
        _D("tokens", "Create, read and revoke users' API tokens", ("read:tokens",)),
        _D("read:tokens", "Read users' API tokens"),
        _D(
            "admin:groups",
            "Create, change and delete groups",
            ("groups", "read:roles:groups", "delete:groups"),
        ),
        _D(
            "groups",
            "Read and change groups and their members (which can change permissions)",
            ("read:groups", "list:groups"),
        ),
        _D("list:groups", "List groups, with at least their names", ("read:groups:name",)),
        _D("read:groups", "Read group models", ("read:groups:name",)),
        _D("read:groups:name", "Read group names"),
        _D("delete:groups", "Delete groups"),
        _D(
            "admin:services",
            "Create, read and delete services not defined in configuration",
            ("list:services", "read:services", "read:roles:services"),
        ),
        _D(
            "list:services",
            "List services, with at least their names",
            ("read:services:name",),
        ),
        _D("read:services", "Read service models", ("read:services:name",)),
        _D("read:services:name", "Read service names"),
        _D("read:hub", "Read detailed information about the hub"),
        _D("proxy", "Read and sync the proxy's routes, and point the hub at a new proxy"),
        _D("shutdown", "Shut the hub down"),
        _D("access:servers", "Use users' servers through the API or a browser"),
        _D("access:services", "Use services through the API or a browser"),
        _D("read:metrics", "Read Prometheus metrics"),
        _D(
            "shares",
            "Share servers and manage who they are shared with",
            ("access:servers", "read:shares", "users:shares", "groups:shares"),
        ),
        _D("read:shares", "Read who servers are shared with"),
        _D("users:shares", "Read and leave servers shared with users", ("read:users:shares",)),
        _D(
            "groups:shares",
            "Read and leave servers shared with groups",
            ("read:groups:shares",),
        ),
        _D("read:users:shares", "Read the servers shared with users"),
        _D("read:groups:shares", "Read the servers shared with groups"),
        # chronohub's own: the event log, whole or by kind of event
        _D(
            "read:events",
            "Read the hub's event log",
            tuple(
                f"read:events:{c}"
                for c in (
                    "users",
                    "groups",
                    "tokens",
                    "roles",
                    "services",
                    "servers",
                    "collab",
                    "projects",
                    "shares",
                )
            ),
        ),
        _D("read:events:users", "Read the log's user events (user.*)"),
        _D("read:events:groups", "Read the log's group events (group.*)"),
        _D("read:events:tokens", "Read the log's token events (token.*, never a token)"),
        _D("read:events:roles", "Read the log's role events (role.*)"),
        _D("read:events:services", "Read the log's service events (service.*)"),
        _D("read:events:servers", "Read the log's server events (server.*)"),
        _D(
            "read:events:collab",
            "Read the log's collaboration events (collab.*: rooms and who joined them;"
            " collab_session.*: shared execution sessions, who ran which cell)",
            ("read:events:collab_sessions",),
        ),
        _D(
            "read:events:collab_sessions",
            "Read the log's shared execution session events (collab_session.*)",
        ),
        _D(
            "read:events:projects",
            "Read the log's project events (project.*: created, renamed, members, pushes; never"
            " file contents). !user= / !group= show the events of that owner's projects and"
            " grants to them; !project=<owner>/<name> one project's",
        ),
        _D(
            "read:events:shares",
            "Read the log's events of shared servers (share.*: grants, revocations, share codes"
            " created and accepted; never a code). !user= / !group= show the shares of that"
            " user's servers and those given to the user or group",
        ),
        # chronohub's own: collaboration rooms. A room belongs to the user who created it, so
        # !user= / !group= reach the rooms of that user / of the group's members, and
        # !room=<name> one room whoever owns it.
        _D(
            "write:collab",
            "Join collaboration rooms and edit their documents; in a room with a shared"
            " execution session, run code as the session's creator (their system account)",
            ("read:collab",),
        ),
        _D("read:collab", "Join collaboration rooms read-only: see the document and who is there"),
        # chronohub's own: git projects (hub/projects/). A project belongs to a user or a group:
        # !user=<name> reaches that user's projects, !group=<name> the group's, and
        # !project=<owner>/<name> one project. Roles given on a project (its members) count as
        # these scopes on it; a token's scopes narrow them like any other.
        _D(
            "admin:projects",
            "Create and delete projects, rename them, change their settings and members",
            ("write:projects",),
        ),
        _D("write:projects", "Push to projects (git) and change their content", ("read:projects",)),
        _D("read:projects", "Read, browse and clone projects"),
    )
)

# Which events each read:events:<kind> scope shows, by type prefix.
EVENT_SCOPES: Mapping[str, str] = MappingProxyType(
    {
        "read:events:users": "user.",
        "read:events:groups": "group.",
        "read:events:tokens": "token.",
        "read:events:roles": "role.",
        "read:events:services": "service.",
        "read:events:servers": "server.",
        "read:events:collab": "collab.",
        "read:events:collab_sessions": "collab_session.",
        "read:events:projects": "project.",
        "read:events:shares": "share.",
    }
)

# What `self` stands for, each filtered to the owning user (JupyterHub 6.x, fully expanded).
SELF_SCOPES = (
    "read:users",
    "users:shares",
    "read:shares",
    "users:activity",
    "servers",
    "tokens",
    "access:servers",
)


def known(name: str, vocabulary: Vocabulary = BUILTIN) -> str:
    """``name``, once ``vocabulary`` is known to define it (``ScopeError`` if not).

    For scope names written in code: ``READ_USERS = known("read:users")`` fails when its
    module is imported, where a misspelt string would fail only at the first check that used it.
    """
    if name not in vocabulary:
        raise ScopeError(f"Scope {name!r} does not exist", scope=name)
    return name


# The scopes the hub's handlers require, by name (checked above, at import).
ADMIN_UI = known("admin-ui")
ADMIN_USERS = known("admin:users")
ADMIN_AUTH_STATE = known("admin:auth_state")
DELETE_USERS = known("delete:users")
LIST_USERS = known("list:users")
READ_USERS = known("read:users")
READ_USERS_NAME = known("read:users:name")
READ_USERS_GROUPS = known("read:users:groups")
READ_USERS_ACTIVITY = known("read:users:activity")
USERS_ACTIVITY = known("users:activity")
READ_ROLES_USERS = known("read:roles:users")
READ_ROLES_GROUPS = known("read:roles:groups")
ADMIN_SERVER_STATE = known("admin:server_state")
READ_SERVERS = known("read:servers")
START_SERVERS = known("start:servers")
DELETE_SERVERS = known("delete:servers")
ACCESS_SERVERS = known("access:servers")
# sharing servers (hub/api/shares.py)
SHARES = known("shares")
READ_SHARES = known("read:shares")
USERS_SHARES = known("users:shares")
READ_USERS_SHARES = known("read:users:shares")
GROUPS_SHARES = known("groups:shares")
READ_GROUPS_SHARES = known("read:groups:shares")
TOKENS = known("tokens")
READ_TOKENS = known("read:tokens")
ADMIN_GROUPS = known("admin:groups")
GROUPS = known("groups")
LIST_GROUPS = known("list:groups")
READ_GROUPS = known("read:groups")
READ_GROUPS_NAME = known("read:groups:name")
DELETE_GROUPS = known("delete:groups")
READ_HUB = known("read:hub")
READ_METRICS = known("read:metrics")
LIST_SERVICES = known("list:services")
READ_SERVICES = known("read:services")
READ_SERVICES_NAME = known("read:services:name")
READ_ROLES_SERVICES = known("read:roles:services")
ACCESS_SERVICES = known("access:services")
PROXY = known("proxy")
READ_EVENTS = known("read:events")
READ_EVENTS_PROJECTS = known("read:events:projects")
READ_EVENTS_SHARES = known("read:events:shares")
READ_COLLAB = known("read:collab")
WRITE_COLLAB = known("write:collab")
ADMIN_PROJECTS = known("admin:projects")
WRITE_PROJECTS = known("write:projects")
READ_PROJECTS = known("read:projects")
