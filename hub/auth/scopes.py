"""Scopes: JupyterHub's RBAC vocabulary, expansion, filters and checks (roles in roles.py).

Nothing here does I/O. Group membership, which lives in the database, is passed in by the
caller as a mapping or a function from a user name to that user's group names.

Words as JupyterHub uses them: *raw* scopes may hold metascopes (``self``, ``inherit``) and
unvalued filters (``!user``); *expanded* scopes are their transitive closure with every filter
resolved; *grants* are expanded scopes indexed by scope name for lookups.

The scope table itself (every scope's name, description and sub-scopes, and the scope names
the hub's checks use) is data in ``scope_table.py``; the names callers use from it are
repeated here, so ``scopes.BUILTIN`` and ``scopes.ScopeError`` read as they always did.

At ~650 lines the logic stays one module: filters, their coverage and the grants built from
them are one algebra whose property tests (``tests/unit/test_scopes.py``) check them together;
the seam, if it grows, is ``Filter``/``Filters`` apart from ``Grants``/``Decision``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, assert_never

from events.catalog import collab as collab_events
from hub.auth import scope_table

# The table's names, as this module's: the vocabulary and the errors its checks raise.
ScopeError = scope_table.ScopeError
Definition = scope_table.Definition
Vocabulary = scope_table.Vocabulary
BUILTIN = scope_table.BUILTIN
EVENT_SCOPES = scope_table.EVENT_SCOPES
SELF_SCOPES = scope_table.SELF_SCOPES
SELF = scope_table.SELF
INHERIT = scope_table.INHERIT
METASCOPES = scope_table.METASCOPES
CUSTOM_SCOPE_PATTERN = scope_table.CUSTOM_SCOPE_PATTERN

Kind = Literal["user", "group", "server", "service", "room", "project"]
KINDS: tuple[Kind, ...] = ("user", "group", "server", "service", "room", "project")
_KIND_BY_NAME: Mapping[str, Kind] = {kind: kind for kind in KINDS}

# A user name -> that user's group names; a mapping works too (missing users are in no group).
Membership = Callable[[str], Collection[str]] | Mapping[str, Collection[str]]

NOT_FOUND_MESSAGE = "No access to resources or resources not found"
FORBIDDEN_MESSAGE = "Forbidden"


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
