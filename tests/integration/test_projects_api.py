"""The projects REST API against real PostgreSQL: create, read, list, change, rename, delete,
members and teams; who may see what (denied reads are 404); strict bodies; the read models
verified against the log."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from projections import projects as projects_projection
from projections import rebuild
from tests.integration.api_fixtures import SERVICE_TOKEN
from tests.integration.projects_fixtures import ProjectsHub

pytestmark = pytest.mark.integration

PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}
SHAPE = {
    "owner",
    "owner_kind",
    "name",
    "full_name",
    "description",
    "visibility",
    "default_branch",
    "clone_url",
    "web_url",
    "created",
    "last_push",
}


async def project_events(pool: asyncpg.Pool[Any]) -> list[str]:
    rows = await pool.fetch(
        "SELECT event_type FROM events WHERE stream_id LIKE 'project-%' ORDER BY global_position"
    )
    return [r[0] for r in rows]


async def test_a_user_creates_reads_changes_and_deletes_a_project(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    created = await hub.project(alice, "Course", description="Week 1")
    assert set(created) == SHAPE
    assert (created["owner"], created["owner_kind"]) == ("alice", "user")
    assert created["full_name"] == "alice/Course"
    assert created["visibility"] == "private"
    assert created["default_branch"] == "main"
    assert created["clone_url"] == f"{hub.base_url}/hub/git/alice/Course.git"
    assert created["web_url"] == f"{hub.base_url}/hub/projects/alice/Course"
    assert created["created"].endswith("Z")
    assert created["last_push"] is None

    status, got = await hub.call("GET", "/projects/alice/course", alice)  # any case
    assert (status, got) == (200, created)
    status, reply = await hub.call("POST", "/projects", alice, json={"name": "COURSE"})
    assert status == 409, reply

    status, changed = await hub.call(
        "PATCH", "/projects/alice/Course", alice, json={"visibility": "hub", "name": "course-2"}
    )
    assert status == 200, changed
    assert (changed["name"], changed["visibility"]) == ("course-2", "hub")
    assert (await hub.call("GET", "/projects/alice/Course", alice))[0] == 404

    assert (await hub.call("DELETE", "/projects/alice/course-2", alice))[0] == 204
    assert (await hub.call("GET", "/projects/alice/course-2", alice))[0] == 404
    assert await project_events(pool) == [
        "project.created",
        "project.renamed",
        "project.updated",
        "project.deleted",
    ]
    actors = {
        r[0] for r in await pool.fetch("SELECT actor FROM events WHERE stream_id LIKE 'project-%'")
    }
    assert actors == {"user:alice"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "colour": "red"}, "colour: unknown field"),
        ({"name": "a/b"}, "name:"),
        ({"name": ".hidden"}, "name:"),
        ({"name": "repo.git"}, "name:"),
        ({"name": "x", "visibility": "secret"}, "visibility:"),
        ({"name": "x", "default_branch": "a..b"}, "default_branch:"),
        ({"name": "x", "owner": "nobody"}, "owner:"),
        ({"name": "x", "import_url": "file:///srv/r.git"}, "import_url:"),
        ({}, "name:"),
    ],
)
async def test_bad_bodies_are_refused_naming_the_field_and_write_nothing(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], body: dict[str, Any], field: str
) -> None:
    alice = await projects_hub.user_token("alice")
    status, reply = await projects_hub.call("POST", "/projects", alice, json=body)
    assert status == 400, reply
    assert field in reply["message"]
    assert await project_events(pool) == []


async def test_patch_is_strict_too(projects_hub: ProjectsHub, pool: asyncpg.Pool[Any]) -> None:
    alice = await projects_hub.user_token("alice")
    await projects_hub.project(alice, "p")
    status, reply = await projects_hub.call(
        "PATCH", "/projects/alice/p", alice, json={"visibility": "world", "owner": "bob"}
    )
    assert status == 400
    assert "visibility:" in reply["message"]
    assert "owner: unknown field" in reply["message"]
    assert await project_events(pool) == ["project.created"]


async def test_private_projects_are_404_to_others_and_visibility_opens_them(
    projects_hub: ProjectsHub,
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    bob = await hub.user_token("bob")
    await hub.project(alice, "secret")
    status, reply = await hub.call("GET", "/projects/alice/secret", bob)
    missing = await hub.call("GET", "/projects/alice/nothing-here", bob)
    assert status == 404
    assert missing == (404, {"status": 404, "message": "No such project: alice/nothing-here"})
    assert reply["message"] == "No such project: alice/secret"  # the same answer: no leak
    assert (await hub.call("PATCH", "/projects/alice/secret", bob, json={}))[0] == 404
    assert (await hub.call("DELETE", "/projects/alice/secret", bob))[0] == 404
    assert (await hub.call("GET", "/projects/alice/secret", None))[0] == 404

    await hub.call("PATCH", "/projects/alice/secret", alice, json={"visibility": "hub"})
    assert (await hub.call("GET", "/projects/alice/secret", bob))[0] == 200
    assert (await hub.call("GET", "/projects/alice/secret", None))[0] == 404
    status, reply = await hub.call("PATCH", "/projects/alice/secret", bob, json={})
    assert status == 403  # may read, may not manage
    assert "admin:projects" in reply["message"]

    await hub.call("PATCH", "/projects/alice/secret", alice, json={"visibility": "public"})
    assert (await hub.call("GET", "/projects/alice/secret", None))[0] == 200


async def test_members_users_and_groups(projects_hub: ProjectsHub) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    bob = await hub.user_token("bob")
    carol = await hub.user_token("carol")
    await hub.group("tutors", "carol")
    await hub.project(alice, "course")
    await hub.project(alice, "other")

    status, reply = await hub.call(
        "PUT", "/projects/alice/course/members/users/bob", alice, json={"role": "read"}
    )
    assert (status, reply) == (200, {"kind": "user", "name": "bob", "role": "read"})
    await hub.call(
        "PUT", "/projects/alice/course/members/groups/tutors", alice, json={"role": "write"}
    )
    status, members = await hub.call("GET", "/projects/alice/course/members", bob)
    assert status == 200
    assert members == [
        {"kind": "user", "name": "bob", "role": "read"},
        {"kind": "group", "name": "tutors", "role": "write"},
    ]
    assert (await hub.call("GET", "/projects/alice/course", carol))[0] == 200
    # bob reads but does not manage
    status, _ = await hub.call(
        "PUT", "/projects/alice/course/members/users/carol", bob, json={"role": "admin"}
    )
    assert status == 403

    status, mine = await hub.call("GET", "/projects?shared_with_me=true", bob)
    assert [p["full_name"] for p in mine] == ["alice/course"]
    status, listed = await hub.call("GET", "/projects", alice, headers=PAGINATED)
    assert [p["full_name"] for p in listed["items"]] == ["alice/course", "alice/other"]
    assert listed["_pagination"]["total"] == 2

    # leaving the team ends its role at once
    await hub.call("DELETE", "/groups/tutors/users", SERVICE_TOKEN, json={"users": ["carol"]})
    assert (await hub.call("GET", "/projects/alice/course", carol))[0] == 404

    for path in ("users/carol", "groups/nobody"):
        status, reply = await hub.call(
            "PUT", f"/projects/alice/course/members/{path}", alice, json={"role": "owner"}
        )
        assert status == 400
        assert "role:" in reply["message"]
    status, reply = await hub.call(
        "PUT", "/projects/alice/course/members/users/nobody", alice, json={"role": "read"}
    )
    assert status == 400
    assert reply["message"].startswith("user:")

    assert (await hub.call("DELETE", "/projects/alice/course/members/users/bob", alice))[0] == 204
    assert (await hub.call("GET", "/projects/alice/course", bob))[0] == 404


async def test_team_projects(projects_hub: ProjectsHub) -> None:
    hub = projects_hub
    admin = await hub.user_token("admin")
    dana = await hub.user_token("dana")
    erin = await hub.user_token("erin")
    await hub.group("lab", "dana")
    created = await hub.project(admin, "notes", owner="lab")
    assert created["full_name"] == "lab/notes"
    assert (await hub.call("GET", "/projects/lab/notes", dana))[0] == 200
    assert (await hub.call("GET", "/projects/lab/notes", erin))[0] == 404
    # members write, they do not manage; and they may not create the team's projects
    assert (await hub.call("DELETE", "/projects/lab/notes", dana))[0] == 403
    status, _ = await hub.call("POST", "/projects", dana, json={"name": "x", "owner": "lab"})
    assert status == 403
    status, listed = await hub.call("GET", "/projects?owner=lab", dana)
    assert [p["full_name"] for p in listed] == ["lab/notes"]


async def test_a_token_narrows_what_its_owner_may_do(projects_hub: ProjectsHub) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    await hub.user_token("bob")
    await hub.project(alice, "course")
    await hub.project(alice, "other")
    for name in ("course", "other"):
        await hub.call(
            "PUT", f"/projects/alice/{name}/members/users/bob", alice, json={"role": "write"}
        )
    ci = await hub.user_token("bob", scopes=["read:projects!project=alice/course"])
    assert (await hub.call("GET", "/projects/alice/course", ci))[0] == 200
    assert (await hub.call("GET", "/projects/alice/other", ci))[0] == 404
    status, listed = await hub.call("GET", "/projects", ci)
    assert [p["full_name"] for p in listed] == ["alice/course"]

    alice_ci = await hub.user_token("alice", scopes=["read:projects!project=alice/course"])
    assert (await hub.call("GET", "/projects/alice/other", alice_ci))[0] == 404
    assert (await hub.call("DELETE", "/projects/alice/course", alice_ci))[0] == 403
    status, _ = await hub.call("POST", "/projects", alice_ci, json={"name": "new"})
    assert status == 403


async def test_the_admin_sees_and_manages_everything(projects_hub: ProjectsHub) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    admin = await hub.user_token("admin")
    await hub.project(alice, "p")
    assert (await hub.call("GET", "/projects/alice/p", admin))[0] == 200
    status, created = await hub.call(
        "POST", "/projects", admin, json={"name": "q", "owner": "alice"}
    )
    assert (status, created["full_name"]) == (201, "alice/q")
    assert (await hub.call("DELETE", "/projects/alice/p", admin))[0] == 204


async def test_the_read_models_match_a_replay_of_the_log(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    await hub.user_token("bob")
    await hub.group("team", "bob")
    await hub.project(alice, "a", description="first")
    await hub.project(alice, "b", visibility="public")
    await hub.call("PUT", "/projects/alice/a/members/users/bob", alice, json={"role": "read"})
    await hub.call("PUT", "/projects/alice/a/members/groups/team", alice, json={"role": "write"})
    await hub.call("PATCH", "/projects/alice/b", alice, json={"name": "c", "description": "x"})
    await hub.call("DELETE", "/projects/alice/a/members/users/bob", alice)
    await hub.call("DELETE", "/groups/team", SERVICE_TOKEN)
    assert await pool.fetchval("SELECT count(*) FROM project_members") == 0
    result = await rebuild.verify(hub.store, projects_projection.ProjectsProjection())
    assert result.differences == ()
    assert result.events >= 6
