"""Roles: named lists of scopes, the defaults JupyterHub defines, and checks of custom ones."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hub.auth import scopes

ROLE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9\-_~\.]{1,253}[a-z0-9]$")


@dataclass(frozen=True)
class Role:
    """A named list of raw scopes, assigned to users, groups, services or tokens."""

    name: str
    description: str
    scopes: tuple[str, ...]


_ADMIN_SCOPES = (
    "admin-ui",
    "admin:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
    "read:events",
    "write:collab",
    "admin:projects",
)

DEFAULT_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        role.name: role
        for role in (
            # chronohub adds to JupyterHub's user role: the rooms a user creates are theirs, and
            # so are their projects (those shared with them come from the projects' members).
            Role(
                "user",
                "Standard user privileges",
                (scopes.SELF, "write:collab!user", "admin:projects!user"),
            ),
            Role("admin", "Elevated privileges (can do anything)", _ADMIN_SCOPES),
            Role(
                "server",
                "A server's own token: report activity, let its users in",
                ("users:activity!user", "access:servers!server"),
            ),
            Role("token", "A token with the same permissions as its owner", (scopes.INHERIT,)),
        )
    }
)


def define_role(
    name: str,
    raw_scopes: Iterable[str],
    description: str | None = None,
    *,
    vocabulary: scopes.Vocabulary = scopes.BUILTIN,
) -> Role:
    """Validate a role from configuration; errors name the role and the offending scope."""
    if not ROLE_NAME_PATTERN.match(name):
        raise scopes.ScopeError(
            "invalid role name: role names are 3-255 characters of lowercase letters, digits"
            " and '-._~', start with a letter and end with a letter or digit",
            role=name,
        )
    parsed: list[str] = []
    for text in raw_scopes:
        try:
            scope = scopes.parse_scope(text, unvalued=True, vocabulary=vocabulary)
        except scopes.ScopeError as exc:
            raise scopes.ScopeError(str(exc), scope=text, role=name) from exc
        if str(scope) not in parsed:
            parsed.append(str(scope))
    default = DEFAULT_ROLES.get(name)
    if description is None:
        description = default.description if default is not None else ""
    role = Role(name, description, tuple(parsed))
    # The admin role is what `admin: true` means; JupyterHub refuses to let config redefine it.
    if name == "admin" and default is not None:
        if set(role.scopes) != set(default.scopes):
            raise scopes.ScopeError("the admin role's scopes cannot be changed", role=name)
        if role.description != default.description:
            raise scopes.ScopeError("the admin role's description cannot be changed", role=name)
    return role


def expand_roles(
    held: Iterable[Role], *, owner: scopes.Owner, vocabulary: scopes.Vocabulary = scopes.BUILTIN
) -> frozenset[scopes.Scope]:
    """The expanded scopes an owner holds through its roles (group roles included by caller)."""
    return scopes.expand(
        (scope for role in held for scope in role.scopes), owner=owner, vocabulary=vocabulary
    )
