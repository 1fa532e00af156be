"""Who could read, write or manage a project at a past moment, and through what.

The answer comes from the log alone: the users, groups, roles and projects read models are
replayed up to that moment into a scratch schema (``projections.snapshots.as_of``: from the
newest snapshot before it, if any), and the same rules as ``hub.projects.access`` are applied
to them. Each user who could use the project is listed with their best role and every way
they had it: as its owner, through a grant to them, a grant to one of their groups,
membership of the owning team, a role held (the hub's admins hold ``admin``), or as a team
admin (``admin:groups!group=<team>``).
Visibility is told once (``signed_in``/``anyone``), not user by user. Tokens are not part
of the answer: they narrow what a person may do, they never widen it.

``decide`` is pure; ``at`` does the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from events import models, sql, store
from hub import errors
from hub.auth import roles, scope_table, scopes
from hub.projects import access
from projections import base, catalog, rebuild, snapshots

queries = sql.Queries(__package__ or "hub.projects", "past_access.sql")

# What the answer replays: who exists, who is in which group, which roles they hold, and the
# projects with their members.
NEEDED = ("users", "groups", "roles", "projects")


@dataclass(frozen=True)
class Way:
    """One way a user had a role on the project."""

    via: str  # owner, grant, group, team, team_admin, role
    role: access.Role
    group: str | None = None
    role_name: str | None = None

    def render(self) -> dict[str, Any]:
        """The JSON shape of this way."""
        shown: dict[str, Any] = {"via": self.via, "role": self.role}
        if self.group is not None:
            shown["group"] = self.group
        if self.role_name is not None:
            shown["role_name"] = self.role_name
        return shown


def _best(ways: Iterable[Way]) -> access.Role | None:
    best: access.Role | None = None
    for way in ways:
        if access.RANK[way.role] > access.RANK[best]:
            best = way.role
    return best


def _scope_role(grants: scopes.Grants, target: access.Target) -> tuple[access.Role | None, bool]:
    """The best role ``grants`` give on ``target`` through scopes, and whether as team admin."""
    for role in ("admin", "write", "read"):
        if grants.filters(access.SCOPE[role]).covers_project(
            target.owner_kind, target.owner, target.name
        ):
            return role, False
    if target.owner_kind == "group" and access.team_admin(grants, target.owner):
        return "admin", True
    return None, False


def decide(
    project: Mapping[str, Any],
    users: Sequence[Mapping[str, Any]],
    members: Sequence[Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    role_grants: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Each user with a role on ``project`` and every way they had it (rows as the
    ``access_*`` queries return them), sorted by name."""
    target = access.target_of(project)
    group_names = {g["group_id"]: g["name"] for g in groups}
    groups_of: dict[UUID, list[UUID]] = {}
    for group in groups:
        for user_id in group["members"]:
            groups_of.setdefault(user_id, []).append(group["group_id"])
    user_grants = {m["id"]: m["role"] for m in members if m["kind"] == "user"}
    group_grants = {m["id"]: m["role"] for m in members if m["kind"] == "group"}
    held_roles: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = {}
    for grant in role_grants:
        key = (grant["principal_kind"], grant["principal"])
        held_roles.setdefault(key, []).append((grant["name"], tuple(grant["scopes"])))
    answer = []
    for user in users:
        user_id = user["user_id"]
        ways: list[Way] = []
        if project["owner_kind"] == "user" and project["owner_id"] == user_id:
            ways.append(Way("owner", "admin"))
        if user_id in user_grants:
            ways.append(Way("grant", user_grants[user_id]))
        for group_id in groups_of.get(user_id, ()):
            if group_id in group_grants:
                ways.append(Way("group", group_grants[group_id], group=group_names[group_id]))
            if project["owner_kind"] == "group" and project["owner_id"] == group_id:
                ways.append(Way("team", "write", group=group_names[group_id]))
        ways += _role_ways(user, groups_of.get(user_id, ()), held_roles, target)
        if ways:
            answer.append(
                {
                    "name": user["name"],
                    "role": _best(ways),
                    "through": [way.render() for way in ways],
                }
            )
    return answer


def _role_ways(
    user: Mapping[str, Any],
    group_ids: Iterable[UUID],
    held_roles: Mapping[tuple[str, str], list[tuple[str, tuple[str, ...]]]],
    target: access.Target,
) -> list[Way]:
    """The roles (other than the default ``user`` role, whose share is ownership) that gave
    the user a role on the project by their scopes."""
    held: dict[str, tuple[str, ...]] = {}
    if user["admin"]:
        held["admin"] = roles.DEFAULT_ROLES["admin"].scopes
    for key in [("user", str(user["user_id"])), *(("group", str(g)) for g in group_ids)]:
        for name, raw in held_roles.get(key, ()):
            held[name] = raw
    owner = scopes.Owner.for_user(user["name"])
    ways = []
    for name, raw in sorted(held.items()):
        try:
            grants = scopes.Grants.of(scopes.expand(raw, owner=owner))
        except scopes.ScopeError:
            continue  # a role defined then with a scope the hub no longer knows gives nothing
        role, as_team_admin = _scope_role(grants, target)
        if role is None:
            continue
        if as_team_admin:
            ways.append(Way("team_admin", role, group=target.owner, role_name=name))
        else:
            ways.append(Way("role", role, role_name=name))
    return ways


def parse_at(raw: str | None) -> int | datetime | None:
    """``?at=``: a global position (digits) or an ISO 8601 time with a zone; None: now."""
    if raw is None or raw == "":
        return None
    if raw.isascii() and raw.isdigit():  # str.isdigit() alone takes '²', which int() refuses
        if len(raw) > 18:
            raise errors.BadRequest(f"at: {raw!r} is past any position in the log")
        return int(raw)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if value.tzinfo is not None:
            value.astimezone(UTC)  # a zone that puts it out of range overflows: refused here
    except (ValueError, OverflowError) as exc:
        raise errors.BadRequest(
            f"at: expected an event position or an ISO 8601 time, got {raw!r}"
        ) from exc
    if value.tzinfo is None:
        raise errors.BadRequest(f"at: the time must include a zone (e.g. 'Z'), got {raw!r}")
    return value


async def checkpoint_at(
    conn: sql.Connection, event_store: store.EventStore, at: int | datetime | None
) -> tuple[models.Checkpoint, datetime | None]:
    """The checkpoint of the event at a position, of the last one at or before a time, or of
    the head (None); ``BadRequest`` naming ``at`` for a position with no readable event."""
    if at is None:
        head = await event_store.head()
        moment = await rebuild.checkpoint_of(conn, head.position)
        return head, moment[1] if moment is not None else None
    moment = await rebuild.checkpoint_of(conn, at)
    if moment is None:
        raise errors.BadRequest(f"at: no event at position {at} (or not yet readable)")
    return moment


def _projection() -> base.Together:
    return base.Together(p for p in catalog.ALL if p.name in NEEDED)


async def at(
    conn: sql.Connection,
    event_store: store.EventStore,
    project_id: UUID,
    when: int | datetime | None,
) -> dict[str, Any]:
    """Who could use project ``project_id`` at ``when`` (see the module's docstring)."""
    checkpoint, recorded_at = await checkpoint_at(conn, event_store, when)
    async with snapshots.as_of(conn, event_store, _projection(), checkpoint):
        project = await conn.fetchrow(queries["access_project"], project_id)
        if project is not None:
            users = await conn.fetch(queries["access_users"])
            members = await conn.fetch(queries["access_members"], project_id)
            groups = await conn.fetch(queries["access_groups"])
            role_grants = await conn.fetch(queries["access_role_grants"])
    moment = {
        "position": checkpoint.position or None,
        "time": recorded_at.isoformat().replace("+00:00", "Z") if recorded_at else None,
    }
    if project is None:
        return {"at": moment, "project": None, "signed_in": None, "anyone": None, "users": []}
    visibility = project["visibility"]
    return {
        "at": moment,
        "project": {
            "full_name": f"{project['owner']}/{project['name']}",
            "owner": {"kind": project["owner_kind"], "name": project["owner"]},
            "visibility": visibility,
        },
        "signed_in": "read" if visibility in ("hub", "public") else None,
        "anyone": "read" if visibility == "public" else None,
        "users": decide(project, users, members, groups, role_grants),
    }


def may_audit(grants: scopes.Grants, target: access.Target) -> bool:
    """Whether ``grants`` let an auditor ask about ``target`` without managing it:
    ``read:events:projects`` on the project (or its owner)."""
    return grants.filters(scope_table.READ_EVENTS_PROJECTS).covers_project(
        target.owner_kind, target.owner, target.name
    )
