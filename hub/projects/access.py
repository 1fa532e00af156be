"""Who may read, write or manage a project: scopes, members and visibility, decided together.

Two ways lead to a project. Scopes held through roles (``admin:projects!user=alice`` in the
default ``user`` role for alice's own projects, ``admin:projects`` for the hub's admins) work
as they do everywhere: the token's effective scopes decide. A role given *on the project*
(a member, a member's team, the owning team) or its visibility (``hub``: every signed-in user
reads; ``public``: anyone does) is data, not a scope of the owner's; it counts as the
matching scope on that project, and the token still narrows it: a token used through a
membership must itself hold the scope on the project (a token that inherits its owner's
rights does). So a CI token with ``read:projects!project=alice/course`` reads that one
project and nothing else its owner may read.

A team-owned project: the team's members write (through the owning group, data), and the
team's admins manage it. A team admin is whoever holds ``admin:groups!group=<team>`` (a role
naming that group, the hub's way of making someone admin of one group) or
``admin:projects!group=<team>``; the hub's admins hold ``admin:projects`` everywhere. An
*unfiltered* ``admin:groups`` (a group-sync service's) does not manage every team's projects:
administering groups is not administering their work.

``decide`` is pure; ``lookup`` does the reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from events import sql
from events.catalog import projects as project_events
from hub.auth import access, scope_table, scopes

queries = sql.Queries(__package__ or "hub.projects", "projects.sql")

Role = project_events.Role
RANK: dict[Role | None, int] = {None: 0, "read": 1, "write": 2, "admin": 3}
SCOPE: dict[Role, str] = {
    "read": scope_table.READ_PROJECTS,
    "write": scope_table.WRITE_PROJECTS,
    "admin": scope_table.ADMIN_PROJECTS,
}


@dataclass(frozen=True)
class Target:
    """The project asked about: its owner, name and visibility."""

    owner_kind: Literal["user", "group"]
    owner: str
    name: str
    visibility: project_events.Visibility

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class Holder:
    """What the caller brings: its effective scopes (None: anonymous), the token's own scopes
    (None: it inherits its owner's), and the best role its owner holds on the project."""

    grants: scopes.Grants | None
    token: scopes.Grants | None
    member_role: Role | None
    signed_in_user: bool


ANONYMOUS = Holder(grants=None, token=None, member_role=None, signed_in_user=False)


def best_role(target: Target, holder: Holder) -> Role | None:
    """The highest role ``holder`` has on ``target`` (None: no access at all)."""
    for role in ("admin", "write", "read"):
        if decide(role, target, holder):
            return role
    return None


def decide(need: Role, target: Target, holder: Holder) -> bool:
    """Whether ``holder`` may act on ``target`` with role ``need`` (or a higher one)."""
    scope = SCOPE[need]
    if holder.grants is not None and (
        holder.grants.filters(scope).covers_project(target.owner_kind, target.owner, target.name)
        or (target.owner_kind == "group" and team_admin(holder.grants, target.owner))
    ):
        return True
    derived = holder.member_role
    if target.visibility == "public" or (target.visibility == "hub" and holder.signed_in_user):
        derived = derived if RANK[derived] >= RANK["read"] else "read"
    if RANK[derived] < RANK[need]:
        return False
    return holder.token is None or holder.token.filters(scope).covers_project(
        target.owner_kind, target.owner, target.name
    )


def team_admin(grants: scopes.Grants, group: str) -> bool:
    """Whether ``grants`` make their holder an admin of team ``group`` (``admin:groups``
    filtered to that group by name), who manages the team's projects."""
    return group in grants.filters(scope_table.ADMIN_GROUPS).groups


def may_create(
    grants: scopes.Grants, owner_kind: Literal["user", "group"], owner: str, name: str
) -> bool:
    """Whether ``grants`` may create project ``owner/name``: ``admin:projects`` on it (or on
    its owner), or admin of the owning team."""
    if grants.filters(scope_table.ADMIN_PROJECTS).covers_project(owner_kind, owner, name):
        return True
    return owner_kind == "group" and team_admin(grants, owner)


def target_of(row: Any) -> Target:
    """The ``Target`` of a ``project_by_name`` row."""
    return Target(
        owner_kind=row["owner_kind"],
        owner=row["owner"],
        name=row["name"],
        visibility=row["visibility"],
    )


async def holder_of(
    conn: sql.Connection, caller: access.Caller | None, member_role: Role | None
) -> Holder:
    """The ``Holder`` for ``caller`` (None: anonymous) with its role from membership."""
    if caller is None:
        return ANONYMOUS
    raw = await conn.fetchval(queries["token_scopes"], caller.token_id)
    token: scopes.Grants | None = None
    if raw is not None and scopes.INHERIT not in raw:
        owner = (
            scopes.Owner.for_user(caller.name)
            if caller.kind == "user"
            else scopes.Owner.for_service(caller.name)
        )
        token = scopes.Grants.of(scopes.expand(raw, owner=owner))
    return Holder(
        grants=caller.grants,
        token=token,
        member_role=member_role if caller.kind == "user" else None,
        signed_in_user=caller.kind == "user",
    )


async def lookup(
    conn: sql.Connection, owner: str, name: str, caller: access.Caller | None
) -> tuple[Any, Holder] | None:
    """The project ``owner/name`` (a ``project_by_name`` row) and the caller as a ``Holder``;
    None when there is no such project."""
    user_id = caller.user_id if caller is not None and caller.kind == "user" else None
    row = await conn.fetchrow(queries["project_by_name"], owner, name, user_id)
    if row is None:
        return None
    return row, await holder_of(conn, caller, row["member_role"])


async def renamed(
    conn: sql.Connection, owner: str, name: str, caller: access.Caller | None
) -> str | None:
    """The name now (``owner/name``) of the project once called ``owner/name``, if the caller
    may read it; None otherwise (a hidden project's new name does not leak)."""
    row = await conn.fetchrow(queries["renamed_project"], owner, name)
    if row is None:
        return None
    found = await lookup(conn, row["owner"], row["name"], caller)
    if found is None or not decide("read", target_of(found[0]), found[1]):
        return None
    return target_of(found[0]).full_name


def renamed_message(old: str, new: str, clone_url: str) -> str:
    """What an old name answers: the new one, and how to point a clone at it."""
    return f"project {old} was renamed to {new}; git remote set-url origin {clone_url}"
