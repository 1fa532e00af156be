"""Scopes: JupyterHub's RBAC vocabulary, expansion, filters and checks (roles in roles.py).

Nothing here does I/O. Group membership, which lives in the database, is passed in by the
caller as a mapping or a function from a user name to that user's group names.

Words as JupyterHub uses them: *raw* scopes may hold metascopes (``self``, ``inherit``) and
unvalued filters (``!user``); *expanded* scopes are their transitive closure with every filter
resolved; *grants* are expanded scopes indexed by scope name for lookups.

Longer than the house's 700 lines (about 890): over half is the scope table itself (every
scope's name, description and sub-scopes, checked when built). Splitting the table as data
from ``Filters``/``Grants``/``Decision`` is the restructure's next step for this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, assert_never

from events.catalog import collab as collab_events

Kind = Literal["user", "group", "server", "service", "room", "project"]
KINDS: tuple[Kind, ...] = ("user", "group", "server", "service", "room", "project")
_KIND_BY_NAME: Mapping[str, Kind] = {kind: kind for kind in KINDS}

# A user name -> that user's group names; a mapping works too (missing users are in no group).
Membership = Callable[[str], Collection[str]] | Mapping[str, Collection[str]]

SELF = "self"
INHERIT = "inherit"
METASCOPES = frozenset({SELF, INHERIT})

CUSTOM_SCOPE_PATTERN = re.compile(r"^custom:[a-z0-9][a-z0-9_\-\*:]+[a-z0-9_\*]$")

NOT_FOUND_MESSAGE = "No access to resources or resources not found"
FORBIDDEN_MESSAGE = "Forbidden"


class ScopeError(ValueError):
    """A scope, filter, scope definition or role the hub refuses; ``scope``/``role`` name it."""

    def __init__(self, message: str, *, scope: str | None = None, role: str | None = None) -> None:
        self.scope = scope
        self.role = role
        super().__init__(message if role is None else f"Role {role!r}: {message}")


class ScopesNotHeld(ScopeError):
    """A token asked for scopes its owner does not hold; ``excess`` lists them."""

    def __init__(self, excess: Iterable[str], owner: Owner) -> None:
        self.excess = tuple(sorted(excess))
        self.owner = owner
        super().__init__(
            f"Not assigning requested scopes {','.join(self.excess)}"
            f" not held by {owner.kind.title()} {owner.name}",
            scope=self.excess[0] if self.excess else None,
        )


# ---------------------------------------------------------------------------------------------
# The vocabulary


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
                for c in ("users", "groups", "tokens", "roles", "services", "servers", "collab")
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


# ---------------------------------------------------------------------------------------------
# Scopes and filters


def _filter_problem(kind: Kind, value: str | None) -> str | None:
    """Why ``!kind[=value]`` is malformed, or None."""
    if kind == "room":
        return "!room needs a value" if value is None else _room_problem(value)
    if kind == "project":
        owner, slash, name = (value or "").partition("/")
        if not slash or not owner or not name or "/" in name:
            return "a project filter is !project=<owner>/<name>"
        return None
    if value is None:
        # An unvalued filter resolves against the owner; a group never owns anything.
        return "!group needs a value" if kind == "group" else None
    if not value:
        return f"!{kind}= needs a value"
    if kind == "server":
        user, slash, _ = value.partition("/")
        if not slash or not user:
            return "a server filter is !server=<user>/<server>"
    return None


ROOM_FILTER_PATTERN = re.compile(collab_events.ROOM_PATTERN)


def _room_problem(value: str) -> str | None:
    if ROOM_FILTER_PATTERN.match(value):
        return None
    return "a room filter is !room=<name>: letters, digits and ._:@/- (at most 200)"


@dataclass(frozen=True)
class Filter:
    """``!kind=value``: a user, group, server (``user/name``) or service; also a resource.

    ``value`` is None only for the unvalued ``!user``, ``!server``, ``!service`` of roles.
    """

    kind: Kind
    value: str | None = None

    def __post_init__(self) -> None:
        problem = _filter_problem(self.kind, self.value)
        if problem is not None:
            raise ScopeError(f"Malformed filter !{self}: {problem}", scope=f"!{self}")

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}={self.value}"

    @classmethod
    def user(cls, name: str) -> Filter:
        """The user ``name`` (and, as a filter, all of that user's servers)."""
        return cls("user", name)

    @classmethod
    def group(cls, name: str) -> Filter:
        """The group ``name`` (and, as a filter, its members and their servers)."""
        return cls("group", name)

    @classmethod
    def server(cls, user: str, name: str = "") -> Filter:
        """The server ``name`` of ``user``; ``""`` is the default server."""
        return cls("server", f"{user}/{name}")

    @classmethod
    def service(cls, name: str) -> Filter:
        """The service ``name``."""
        return cls("service", name)

    @classmethod
    def room(cls, name: str) -> Filter:
        """The collaboration room ``name``."""
        return cls("room", name)

    @classmethod
    def project(cls, owner: str, name: str) -> Filter:
        """The project ``owner/name``."""
        return cls("project", f"{owner}/{name}")

    @property
    def server_parts(self) -> tuple[str, str]:
        """(user, server name) of a valued server filter."""
        if self.kind != "server" or self.value is None:
            raise ValueError(f"!{self} is not a valued server filter")
        user, _, name = self.value.partition("/")
        return user, name


@dataclass(frozen=True)
class Scope:
    """A scope name with an optional filter; ``str()`` gives JupyterHub's spelling."""

    name: str
    filter: Filter | None = None

    def __post_init__(self) -> None:
        if self.name in METASCOPES and self.filter is not None:
            raise ScopeError(f"Scope {str(self)!r}: {self.name} takes no filter", scope=str(self))

    def __str__(self) -> str:
        return self.name if self.filter is None else f"{self.name}!{self.filter}"


def parse_scope(text: str, *, unvalued: bool = False, vocabulary: Vocabulary = BUILTIN) -> Scope:
    """Parse ``name[!filter]``; ``unvalued`` admits ``!user``/``!server``/``!service`` (roles)."""
    name, bang, rest = text.partition("!")
    if name not in vocabulary:
        raise ScopeError(_unknown_scope_message(name, text), scope=text)
    if not bang:
        return Scope(name)
    kind_name, equals, value = rest.partition("=")
    kind = _KIND_BY_NAME.get(kind_name)
    if kind is None:
        raise ScopeError(
            f"Scope {text!r} has an unknown filter !{rest};"
            " filters are !user=, !group=, !server=, !service=, !room= and !project=",
            scope=text,
        )
    problem = _filter_problem(kind, value if equals else None)
    if problem is not None:
        raise ScopeError(f"Scope {text!r} has a malformed filter: {problem}", scope=text)
    if not equals and not unvalued:
        raise ScopeError(
            f"Scope {text!r} has an unvalued filter !{kind}, allowed only in role definitions",
            scope=text,
        )
    return Scope(name, Filter(kind, value if equals else None))


def _unknown_scope_message(name: str, text: str) -> str:
    if name == "all":
        return f"Scope {text!r} does not exist; the draft scope 'all' is called 'inherit'"
    if name.startswith("custom:"):
        return f"Scope {text!r} does not exist; custom scopes must be declared first"
    return f"Scope {text!r} does not exist"


def check_scope_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` unchanged, after checking each is a built-in or well-formed custom scope."""
    checked = tuple(names)
    for name in checked:
        if name not in BUILTIN and not CUSTOM_SCOPE_PATTERN.match(name):
            raise ScopeError(f"Scope {name!r} does not exist", scope=name)
    return checked


# ---------------------------------------------------------------------------------------------
# Owners and expansion


@dataclass(frozen=True)
class Owner:
    """Who holds raw scopes: ``self`` and unvalued filters resolve against it.

    ``server_name`` names the one server of the user the scopes are for (server tokens, OAuth
    clients of a spawner); only then does ``!server`` resolve.
    """

    kind: Literal["user", "service"]
    name: str
    server_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("an owner needs a name")
        if self.server_name is not None and self.kind != "user":
            raise ValueError("only a user owns servers")

    @classmethod
    def for_user(cls, name: str) -> Owner:
        """The user ``name``."""
        return cls("user", name)

    @classmethod
    def for_service(cls, name: str) -> Owner:
        """The service ``name``."""
        return cls("service", name)

    @classmethod
    def for_server(cls, user: str, server_name: str = "") -> Owner:
        """The server ``server_name`` of ``user``: ``!user`` is the user, ``!server`` the server."""
        return cls("user", user, server_name)


def _resolve(scope_filter: Filter | None, owner: Owner | None) -> Filter | None:
    """A valued filter for an unvalued one, from the owner; None when it cannot resolve."""
    if scope_filter is None or scope_filter.value is not None:
        return scope_filter
    if owner is None:
        return None
    if scope_filter.kind == "user" and owner.kind == "user":
        return Filter.user(owner.name)
    if scope_filter.kind == "service" and owner.kind == "service":
        return Filter.service(owner.name)
    if scope_filter.kind == "server" and owner.server_name is not None:
        return Filter.server(owner.name, owner.server_name)
    return None


def _dropped_for(name: str, target: Filter | None) -> bool:
    # A server filter on a user-reading scope (read:servers -> read:users:name) would match
    # nothing meaningful, so JupyterHub drops such implied scopes; we do the same.
    return target is not None and target.kind == "server" and name.startswith("read:users")


def expand(
    scopes: Iterable[str | Scope],
    *,
    owner: Owner | None = None,
    vocabulary: Vocabulary = BUILTIN,
) -> frozenset[Scope]:
    """The transitive closure of raw scopes, filters carried down and resolved against ``owner``.

    ``self`` without a user owner and unvalued filters that cannot resolve are dropped.
    """
    expanded: set[Scope] = set()
    for raw in scopes:
        scope = (
            raw
            if isinstance(raw, Scope)
            else parse_scope(raw, unvalued=True, vocabulary=vocabulary)
        )
        if scope.name not in vocabulary:
            raise ScopeError(_unknown_scope_message(scope.name, str(scope)), scope=str(scope))
        if scope.name == SELF:
            if owner is not None and owner.kind == "user":
                expanded |= _self_scopes(owner.name, vocabulary)
            continue
        target = _resolve(scope.filter, owner)
        if scope.filter is not None and target is None:
            continue
        expanded.update(
            Scope(name, target)
            for name in vocabulary.implied(scope.name)
            if not _dropped_for(name, target)
        )
    return _reduce(expanded)


def _self_scopes(user: str, vocabulary: Vocabulary) -> frozenset[Scope]:
    target = Filter.user(user)
    return frozenset(
        Scope(name, target) for base in SELF_SCOPES for name in vocabulary.implied(base)
    )


def _reduce(scopes: Iterable[Scope]) -> frozenset[Scope]:
    """Drop filtered scopes whose unfiltered form is also held (JupyterHub renders it so)."""
    scopes = frozenset(scopes)
    everywhere = {s.name for s in scopes if s.filter is None}
    return frozenset(s for s in scopes if s.filter is None or s.name not in everywhere)


def identify_scopes(owner: Owner) -> frozenset[Scope]:
    """The scopes an owner needs to identify itself (whoami)."""
    if owner.kind == "user":
        target = Filter.user(owner.name)
        return frozenset({Scope("read:users:name", target), Scope("read:users:groups", target)})
    return frozenset({Scope("read:services:name", Filter.service(owner.name))})


def access_scope(target: Filter) -> Scope:
    """The scope that lets a token use a server or a service (OAuth ``access:*``)."""
    if target.value is None or target.kind not in ("server", "service"):
        raise ValueError(f"!{target} is not a server or service")
    return Scope("access:servers" if target.kind == "server" else "access:services", target)


def render(scopes: Iterable[Scope]) -> list[str]:
    """Sorted scope strings, as ``GET /hub/api/user`` returns them."""
    return sorted(str(scope) for scope in _reduce(scopes))


# ---------------------------------------------------------------------------------------------
# Checking: the parsed form


def _groups_of(membership: Membership | None, user: str) -> Collection[str]:
    if membership is None:
        return ()
    if isinstance(membership, Mapping):
        return membership.get(user, ())
    return membership(user)


@dataclass(frozen=True)
class Filters:
    """The resources one scope is held on: everything, or the listed ones."""

    everything: bool = False
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    servers: frozenset[tuple[str, str]] = frozenset()
    services: frozenset[str] = frozenset()
    rooms: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()

    @classmethod
    def of(cls, targets: Iterable[Filter]) -> Filters:
        """Filters holding exactly these valued targets."""
        by_kind: dict[Kind, set[str]] = {kind: set() for kind in KINDS}
        for target in targets:
            if target.value is None:
                raise ScopeError(f"Unresolved filter !{target}; expand first", scope=f"!{target}")
            by_kind[target.kind].add(target.value)
        return cls(
            users=frozenset(by_kind["user"]),
            groups=frozenset(by_kind["group"]),
            servers=frozenset(Filter("server", v).server_parts for v in by_kind["server"]),
            services=frozenset(by_kind["service"]),
            rooms=frozenset(by_kind["room"]),
            projects=frozenset(by_kind["project"]),
        )

    @property
    def held(self) -> bool:
        """True when the scope is held on anything at all."""
        return self.everything or bool(
            self.users
            or self.groups
            or self.servers
            or self.services
            or self.rooms
            or self.projects
        )

    @property
    def kinds(self) -> frozenset[Kind]:
        """The filter kinds present (empty when held everywhere or not at all)."""
        present: tuple[tuple[Kind, Collection[object]], ...] = (
            ("user", self.users),
            ("group", self.groups),
            ("server", self.servers),
            ("service", self.services),
            ("room", self.rooms),
            ("project", self.projects),
        )
        return frozenset(kind for kind, values in present if values)

    def targets(self) -> frozenset[Filter]:
        """Each filter as a valued Filter (none when held everywhere)."""
        return frozenset(
            [Filter.user(u) for u in self.users]
            + [Filter.group(g) for g in self.groups]
            + [Filter.server(u, s) for u, s in self.servers]
            + [Filter.service(s) for s in self.services]
            + [Filter.room(r) for r in self.rooms]
            + [Filter("project", p) for p in self.projects]
        )

    def covers(self, target: Filter | None, *, groups_of: Membership | None = None) -> bool:
        """Whether these filters reach ``target``; None means every resource (unfiltered)."""
        if self.everything:
            return True
        if target is None:
            return False
        value = target.value
        if value is None:
            raise ScopeError(f"Unresolved filter !{target} is not a resource", scope=f"!{target}")
        if target.kind == "group":
            return value in self.groups
        if target.kind == "service":
            return value in self.services
        if target.kind == "server":
            user_name, server_name = target.server_parts
            return (user_name, server_name) in self.servers or self._covers_user(
                user_name, groups_of
            )
        if target.kind == "user":
            return self._covers_user(value, groups_of)
        if target.kind == "room":
            return value in self.rooms
        if target.kind == "project":
            # owner/name: reached by name or through its owner, a user (!user=) or a group
            # (!group=) of that name; an owner name is one or the other (hub/api/projects.py)
            owner = value.partition("/")[0]
            return value in self.projects or owner in self.users or owner in self.groups
        assert_never(target.kind)

    def covers_room(
        self, room: str, owner: str | None, *, groups_of: Membership | None = None
    ) -> bool:
        """Whether these filters reach room ``room`` of user ``owner`` (None: no user's)."""
        if self.everything or room in self.rooms:
            return True
        return owner is not None and self._covers_user(owner, groups_of)

    def covers_project(self, owner_kind: Literal["user", "group"], owner: str, name: str) -> bool:
        """Whether these filters reach project ``owner/name``: by name, or through its owner
        (``!user=`` for a user's projects, ``!group=`` for a group's)."""
        if self.everything or f"{owner}/{name}" in self.projects:
            return True
        return owner in (self.users if owner_kind == "user" else self.groups)

    def _covers_user(self, user: str, groups_of: Membership | None) -> bool:
        if user in self.users:
            return True
        # Membership may cost a query: ask only when a group filter could decide.
        if not self.groups:
            return False
        return not self.groups.isdisjoint(_groups_of(groups_of, user))

    def intersect(self, other: Filters, *, groups_of: Membership | None = None) -> Filters:
        """Filters reaching only what both reach (conservative for group against group)."""
        if self.everything:
            return other
        if other.everything:
            return self
        # Keep each target of one side that the other side covers: a user covered through a
        # group, a server through its user. Two different groups share no target we can name.
        kept = {t for t in self.targets() if other.covers(t, groups_of=groups_of)}
        kept |= {t for t in other.targets() if self.covers(t, groups_of=groups_of)}
        return Filters.of(kept)


NOTHING = Filters()


@dataclass(frozen=True)
class Decision:
    """The outcome of a check: allowed, or the HTTP status and message to answer with."""

    status: Literal[200, 403, 404]
    message: str = ""

    @property
    def allowed(self) -> bool:
        """True when the request may go on."""
        return self.status == 200


ALLOWED = Decision(200)


@dataclass(frozen=True)
class Grants:
    """Expanded scopes indexed by scope name: what a request may do, and on what."""

    table: Mapping[str, Filters]

    @classmethod
    def of(cls, scopes: Iterable[Scope]) -> Grants:
        """Index expanded scopes (every filter valued)."""
        everywhere: set[str] = set()
        targets: dict[str, list[Filter]] = {}
        for scope in scopes:
            if scope.filter is None:
                everywhere.add(scope.name)
            else:
                targets.setdefault(scope.name, []).append(scope.filter)
        table = {name: Filters(everything=True) for name in everywhere}
        for name, filters in targets.items():
            parsed = Filters.of(filters)  # also refuses unresolved filters
            if name not in table:
                table[name] = parsed
        return cls(MappingProxyType(table))

    def scopes(self) -> frozenset[Scope]:
        """Back to expanded scopes."""
        result: set[Scope] = set()
        for name, filters in self.table.items():
            if filters.everything:
                result.add(Scope(name))
            else:
                result.update(Scope(name, target) for target in filters.targets())
        return frozenset(result)

    def holds(self, scope: str) -> bool:
        """Whether ``scope`` is held with any filter (decides 403 versus 404)."""
        return scope in self.table

    def filters(self, scope: str) -> Filters:
        """The filters ``scope`` is held with, e.g. to restrict the rows of a list endpoint."""
        return self.table.get(scope, NOTHING)

    def allows(
        self, scope: str, target: Filter | None = None, *, groups_of: Membership | None = None
    ) -> bool:
        """Whether ``scope`` is held on ``target`` (None: on everything, unfiltered)."""
        return self.filters(scope).covers(target, groups_of=groups_of)

    def authorize(
        self,
        any_of: Sequence[str],
        target: Filter | None = None,
        *,
        groups_of: Membership | None = None,
        post_filter: bool = False,
    ) -> Decision:
        """JupyterHub's ``@needs_scope``: allowed if any scope covers ``target``, else 404/403.

        ``post_filter`` (list endpoints, no target) allows filtered holders; rows are then
        restricted with ``filters()``.
        """
        check_scope_names(any_of)
        if not any_of:
            raise ValueError("authorize needs at least one scope")
        if post_filter and target is not None:
            raise ValueError("post_filter is only for checks without a target")
        for scope in any_of:
            filters = self.filters(scope)
            if filters.covers(target, groups_of=groups_of) or (post_filter and filters.held):
                return ALLOWED
        if target is not None and any(self.holds(scope) for scope in any_of):
            # Held, but not on this resource: answer as if it did not exist, on purpose.
            return Decision(404, NOT_FOUND_MESSAGE)
        return Decision(
            403,
            f"Action is not authorized with current scopes; requires any of [{', '.join(any_of)}]",
        )

    def authorize_list(self, scope: str, *, kinds: Collection[Kind]) -> Decision:
        """A list endpoint whose rows can be restricted only by filters of ``kinds``.

        Other filters answer 403 rather than widening to all rows (``GET /users`` with a
        ``list:users!server=...`` token, for instance).
        """
        decision = self.authorize([scope], post_filter=True)
        if decision.allowed and not self.filters(scope).kinds <= frozenset(kinds):
            return Decision(403, FORBIDDEN_MESSAGE)
        return decision

    def intersect(self, other: Grants, *, groups_of: Membership | None = None) -> Grants:
        """What both grant, filter by filter."""
        table: dict[str, Filters] = {}
        for name in self.table.keys() & other.table.keys():
            common = self.table[name].intersect(other.table[name], groups_of=groups_of)
            if common.held:
                table[name] = common
        return Grants(MappingProxyType(table))


def intersect(
    a: Iterable[Scope], b: Iterable[Scope], *, groups_of: Membership | None = None
) -> frozenset[Scope]:
    """Expanded scopes granting only what both ``a`` and ``b`` grant."""
    return Grants.of(a).intersect(Grants.of(b), groups_of=groups_of).scopes()


# ---------------------------------------------------------------------------------------------
# Tokens


def effective_token_scopes(
    token_scopes: Iterable[str | Scope],
    owner_scopes: Iterable[Scope],
    *,
    owner: Owner,
    groups_of: Membership | None = None,
    vocabulary: Vocabulary = BUILTIN,
) -> frozenset[Scope]:
    """What a token may do: expand(token) plus identify scopes, intersected with the owner's.

    ``owner_scopes`` are expanded (roles plus shares); ``inherit`` returns them as they are.
    """
    raw = tuple(token_scopes)
    if any(str(scope) == INHERIT for scope in raw):
        return _reduce(owner_scopes)
    requested = expand(raw, owner=owner, vocabulary=vocabulary) | identify_scopes(owner)
    return intersect(requested, owner_scopes, groups_of=groups_of)


def check_token_scopes(
    requested: Iterable[str | Scope],
    owner_scopes: Iterable[Scope],
    *,
    owner: Owner,
    groups_of: Membership | None = None,
    vocabulary: Vocabulary = BUILTIN,
) -> None:
    """Raise ScopesNotHeld if a new token asks for more than its owner holds."""
    raw = [scope for scope in requested if str(scope) != INHERIT]
    wanted = expand(raw, owner=owner, vocabulary=vocabulary)
    if not wanted:
        return
    granted = Grants.of(owner_scopes)
    excess = [
        str(scope)
        for scope in wanted
        if not granted.allows(scope.name, scope.filter, groups_of=groups_of)
    ]
    if excess:
        raise ScopesNotHeld(excess, owner)
