"""Projects without a database: who may do what (``hub.projects.access.decide``), the rules a
push must pass (``hub.projects.refs``), and what the events accept."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events.catalog import projects as project_events
from hub.auth import roles, scopes
from hub.projects import access, refs

COURSE = access.Target(owner_kind="user", owner="alice", name="course", visibility="private")
TEAM = access.Target(owner_kind="group", owner="lab", name="notes", visibility="private")
A, B, C = "a" * 40, "b" * 40, "c" * 40
ZERO = refs.ZERO_SHA


def user(name: str, *raw: str, admin: bool = False) -> scopes.Grants:
    role_names = ["user", "admin"] if admin else ["user"]
    owned = roles.expand_roles(
        [roles.DEFAULT_ROLES[r] for r in role_names], owner=scopes.Owner.for_user(name)
    )
    if raw:
        requested = scopes.expand(raw, owner=scopes.Owner.for_user(name))
        return scopes.Grants.of(scopes.intersect(requested, owned))
    return scopes.Grants.of(owned)


def token(name: str, *raw: str) -> scopes.Grants:
    return scopes.Grants.of(scopes.expand(raw, owner=scopes.Owner.for_user(name)))


def holder(
    grants: scopes.Grants, role: Any = None, tok: scopes.Grants | None = None
) -> access.Holder:
    return access.Holder(grants=grants, token=tok, member_role=role, signed_in_user=True)


def test_owners_manage_their_projects_and_others_see_nothing() -> None:
    assert access.best_role(COURSE, holder(user("alice"))) == "admin"
    assert access.best_role(COURSE, holder(user("bob"))) is None
    assert access.best_role(COURSE, holder(user("root", admin=True))) == "admin"
    assert access.best_role(COURSE, access.ANONYMOUS) is None


@pytest.mark.parametrize("role", ["read", "write", "admin"])
def test_a_member_holds_exactly_its_role(role: Any) -> None:
    assert access.best_role(COURSE, holder(user("bob"), role)) == role


def test_visibility() -> None:
    hub_wide = access.Target("user", "alice", "course", "hub")
    public = access.Target("user", "alice", "course", "public")
    assert access.best_role(hub_wide, holder(user("bob"))) == "read"
    assert access.best_role(hub_wide, access.ANONYMOUS) is None
    assert access.best_role(public, access.ANONYMOUS) == "read"
    assert access.best_role(public, holder(user("bob"), "write")) == "write"


def test_a_token_narrows_membership_and_ownership() -> None:
    ci = token("bob", "read:projects!project=alice/course")
    assert access.best_role(COURSE, holder(user("bob"), "write", ci)) == "read"
    other = access.Target("user", "alice", "other", "private")
    assert access.best_role(other, holder(user("bob"), "write", ci)) is None
    alice_ci = user("alice", "read:projects!project=alice/course")
    assert (
        access.best_role(
            COURSE, holder(alice_ci, None, token("alice", "read:projects!project=alice/course"))
        )
        == "read"
    )
    assert (
        access.best_role(
            other, holder(alice_ci, None, token("alice", "read:projects!project=alice/course"))
        )
        is None
    )


def test_group_filters_reach_the_groups_projects() -> None:
    grants = scopes.Grants.of(scopes.expand(["write:projects!group=lab"]))
    assert access.best_role(TEAM, holder(grants)) == "write"
    assert access.best_role(COURSE, holder(grants)) is None


ROLES = st.sampled_from([None, "read", "write", "admin"])
TOKENS = st.lists(
    st.sampled_from(
        [
            "read:projects",
            "write:projects!project=alice/course",
            "read:projects!user=alice",
            "admin:projects!project=alice/other",
            "read:users",
        ]
    ),
    max_size=3,
)
VISIBILITY = st.sampled_from(["private", "hub", "public"])


@given(role=ROLES, raw=TOKENS, visibility=VISIBILITY)
def test_a_token_never_grants_more_than_its_owner_has(
    role: Any, raw: list[str], visibility: Any
) -> None:
    target = access.Target("user", "alice", "course", visibility)
    owner_grants = user("bob")
    whole = access.best_role(target, holder(owner_grants, role))
    narrowed_grants = scopes.Grants.of(
        scopes.intersect(
            scopes.expand(raw, owner=scopes.Owner.for_user("bob")), owner_grants.scopes()
        )
    )
    narrowed = access.best_role(target, holder(narrowed_grants, role, token("bob", *raw)))
    assert access.RANK[narrowed] <= access.RANK[whole]


def kinds(table: dict[str, str]) -> refs.KindOf:
    return table.get


def check(*commands: refs.Command, ff: bool = True) -> dict[str, str | None]:
    return refs.check(
        commands,
        default_branch="main",
        kind_of=kinds({A: "commit", B: "commit", C: "blob"}),
        fast_forward=lambda old, new: ff,
    )


def test_a_fast_forward_and_new_branches_and_tags_pass() -> None:
    assert check(
        refs.Command(A, B, "refs/heads/main"),
        refs.Command(ZERO, A, "refs/heads/topic"),
        refs.Command(ZERO, C, "refs/tags/blob-tag"),
    ) == {"refs/heads/main": None, "refs/heads/topic": None, "refs/tags/blob-tag": None}


@pytest.mark.parametrize(
    ("command", "ff", "reason"),
    [
        (refs.Command(A, B, "refs/heads/main"), False, "non-fast-forward"),
        (refs.Command(A, ZERO, "refs/heads/main"), True, "deleting the default branch"),
        (refs.Command(ZERO, A, "HEAD"), True, "funny refname"),
        (refs.Command(ZERO, A, "refs/notes/x"), True, "funny refname"),
        (refs.Command(ZERO, A, "refs/heads/a..b"), True, "funny refname"),
        (refs.Command(ZERO, A, "refs/heads/x.lock"), True, "funny refname"),
        (refs.Command(ZERO, "d" * 40, "refs/heads/x"), True, "missing object"),
        (refs.Command(ZERO, C, "refs/heads/x"), True, "must point at a commit"),
    ],
)
def test_what_a_push_may_not_do(command: refs.Command, ff: bool, reason: str) -> None:
    result = check(command, refs.Command(ZERO, A, "refs/heads/fine"), ff=ff)
    assert reason in (result[command.ref] or "")
    assert result["refs/heads/fine"] == refs.ATOMIC_FAILED  # all or nothing


def test_force_pushing_and_deleting_other_branches_is_allowed() -> None:
    assert check(refs.Command(A, B, "refs/heads/topic"), ff=False) == {"refs/heads/topic": None}
    assert check(refs.Command(A, ZERO, "refs/heads/topic")) == {"refs/heads/topic": None}


def test_stale_refs() -> None:
    current = {"refs/heads/main": A}
    assert refs.stale([refs.Command(A, B, "refs/heads/main")], current) == []
    assert refs.stale([refs.Command(B, C, "refs/heads/main")], current) == ["refs/heads/main"]
    assert refs.stale([refs.Command(ZERO, A, "refs/heads/main")], current) == ["refs/heads/main"]
    assert refs.stale([refs.Command(ZERO, A, "refs/heads/new")], current) == []


@pytest.mark.parametrize("name", ["a/b", ".x", "-x", "x.git", "X.GIT", "", "a b", "x" * 101])
def test_bad_project_names(name: str) -> None:
    with pytest.raises(ValidationError):
        project_events.ProjectCreated(
            project_id=uuid4(), owner_kind="user", owner_id=uuid4(), owner="alice", name=name
        )


def test_a_push_event_holds_refs_and_no_content() -> None:
    event = project_events.ProjectPushed(
        project_id=uuid4(),
        refs=[project_events.RefUpdate(ref="refs/heads/main", old=ZERO, new=A)],
        pusher="alice",
        commits=1,
    )
    assert set(event.model_dump()) == {
        "project_id",
        "refs",
        "pusher",
        "pusher_kind",
        "commits",
        "via",
    }
    with pytest.raises(ValidationError):
        project_events.RefUpdate(ref="HEAD", old=ZERO, new=A)
    with pytest.raises(ValidationError):
        project_events.RefUpdate(ref="refs/heads/main", old=ZERO, new="not-a-sha")
