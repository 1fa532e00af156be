"""Who the publishing service counts as a member of a project: users and teams have names
apart, so a team called like a user gets nothing of that user's private projects."""

from __future__ import annotations

from typing import Any

from chronohub_publish import web


class Hub:
    """The two questions ``_is_member`` asks the hub, answered from fixed data."""

    def __init__(self, members: list[dict[str, str]], groups: dict[str, list[str]]) -> None:
        self._members, self._groups = members, groups

    async def members(self, owner: str, name: str) -> list[dict[str, str]]:
        return self._members

    async def groups_of(self, user: str) -> list[str]:
        return self._groups.get(user, [])


def project(owner: str, kind: str) -> dict[str, Any]:
    return {"owner": owner, "owner_kind": kind, "name": "notes"}


async def test_a_team_named_like_a_user_is_not_that_users_project() -> None:
    hub = Hub([], {"mallory": ["alice"]})  # a team called "alice", mallory in it
    assert not await web._is_member(hub, project("alice", "user"), "mallory")  # type: ignore[arg-type]
    assert await web._is_member(hub, project("alice", "user"), "alice")  # type: ignore[arg-type]


async def test_a_teams_members_are_members_of_its_projects() -> None:
    hub = Hub([], {"mallory": ["physics"]})
    assert await web._is_member(hub, project("physics", "group"), "mallory")  # type: ignore[arg-type]
    # a user called like the team is not its member for that
    assert not await web._is_member(hub, project("physics", "group"), "physics")  # type: ignore[arg-type]


async def test_granted_users_and_teams_are_members() -> None:
    hub = Hub(
        [{"kind": "user", "name": "bob"}, {"kind": "group", "name": "tutors"}],
        {"tess": ["tutors"]},
    )
    assert await web._is_member(hub, project("alice", "user"), "bob")  # type: ignore[arg-type]
    assert await web._is_member(hub, project("alice", "user"), "tess")  # type: ignore[arg-type]
    assert not await web._is_member(hub, project("alice", "user"), "eve")  # type: ignore[arg-type]
