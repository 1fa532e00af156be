"""Managing projects against a running hub: renames that old clone URLs and REST paths
explain, team admins, access at a past moment computed from the log, project events in the
audit API under their own scope, and no token ever in the log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import store
from hub.api import models as api_models
from hub.api import projects as projects_api
from tests.integration.api_fixtures import CONFIG, SERVICE_TOKEN
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub

pytestmark = [pytest.mark.integration, pytest.mark.interop]

PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}
FILES = {"README.md": b"# Course\n", "week1/intro.ipynb": b'{"cells": []}\n'}


@pytest.fixture
def git(tmp_path: Path) -> Git:
    return Git(tmp_path / "home")


async def position(pool: asyncpg.Pool[Any]) -> int:
    """The position of the last event in the log."""
    value: int = await pool.fetchval("SELECT max(global_position) FROM events")
    return value


async def test_a_renamed_project_answers_its_old_name_with_the_new_one(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    carol = await hub.user_token("carol")
    old_url = (await hub.project(alice, "old"))["clone_url"]
    work = tmp_path / "work"
    first = await git.new_repo(work, FILES)
    await git.ok("remote", "add", "origin", with_token(old_url, alice), cwd=work)
    await git.ok("push", "-q", "origin", "main", cwd=work)
    repos = sorted((hub.data_dir / "projects").glob("*.git"))

    status, renamed = await hub.call("PATCH", "/projects/alice/old", alice, json={"name": "new"})
    assert status == 200, renamed
    new_url = renamed["clone_url"]
    assert new_url.endswith("/hub/git/alice/new.git")
    # the repository is kept by id: nothing moved on disk, the pushed commit is there
    assert sorted((hub.data_dir / "projects").glob("*.git")) == repos
    clone = tmp_path / "clone"
    await git.ok("clone", "-q", with_token(new_url, alice), str(clone))
    assert await git.head(clone) == first

    message = f"project alice/old was renamed to alice/new; git remote set-url origin {new_url}"
    result = await git("fetch", "origin", cwd=work)
    assert not result.ok
    assert f"remote: {message}" in result.err
    result = await git("push", "origin", "main", cwd=work)
    assert not result.ok
    assert message in result.err
    status, reply = await hub.call("GET", "/projects/alice/old", alice)
    assert (status, reply["message"]) == (404, message)
    status, reply = await hub.call("GET", "/projects/alice/OLD/members", alice)
    assert (status, reply["message"]) == (404, message.replace("alice/old", "alice/OLD"))
    # someone who may not read it learns nothing, over REST or git
    status, reply = await hub.call("GET", "/projects/alice/old", carol)
    assert (status, reply["message"]) == (404, "No such project: alice/old")
    result = await git("clone", with_token(old_url, carol), str(tmp_path / "carol"))
    assert "project alice/old not found" in result.err
    assert "alice/new" not in result.err
    [event] = await pool.fetch("SELECT data FROM events WHERE event_type = 'project.renamed'")
    data = json.loads(event["data"])
    assert (data["owner"], data["old_name"], data["name"]) == ("alice", "old", "new")

    # a new project takes the old name: the old name is its now, the message stops
    await hub.project(alice, "old")
    status, reply = await hub.call("GET", "/projects/alice/old", alice)
    assert (status, reply["full_name"]) == (200, "alice/old")
    refs = await git.ok("ls-remote", with_token(old_url, alice))
    assert refs.out.strip() == ""

    # renaming back and forth keeps the latest old name only
    await hub.call("PATCH", "/projects/alice/new", alice, json={"name": "newer"})
    status, reply = await hub.call("GET", "/projects/alice/new", alice)
    assert status == 404
    assert "renamed to alice/newer" in reply["message"]
    await hub.call("PATCH", "/projects/alice/newer", alice, json={"name": "new"})
    assert (await hub.call("GET", "/projects/alice/new", alice))[0] == 200
    assert (
        "renamed to alice/new;"
        in (await hub.call("GET", "/projects/alice/newer", alice))[1]["message"]
    )
    # deleting the project forgets its old names
    assert (await hub.call("DELETE", "/projects/alice/new", alice))[0] == 204
    status, reply = await hub.call("GET", "/projects/alice/newer", alice)
    assert (status, reply["message"]) == (404, "No such project: alice/newer")


TEAM_ROLES = [
    *CONFIG["roles"],
    {"name": "lab-admin", "scopes": ["admin:groups!group=lab"], "users": ["lead"]},
]


async def test_team_members_write_and_team_admins_manage(
    event_store: store.EventStore, tmp_path: Path, git: Git
) -> None:
    async with open_projects_hub(event_store, tmp_path / "data", roles=TEAM_ROLES) as hub:
        admin = await hub.user_token("admin")
        lead = await hub.user_token("lead")
        dana = await hub.user_token("dana")
        erin = await hub.user_token("erin")
        await hub.group("lab", "dana", "erin")
        await hub.group("other")
        # the team admin creates, manages and deletes the team's projects
        created = await hub.project(lead, "notes", owner="lab")
        assert created["full_name"] == "lab/notes"
        status, _ = await hub.call(
            "PUT", "/projects/lab/notes/members/users/admin", lead, json={"role": "read"}
        )
        assert status == 200
        status, _ = await hub.call("PATCH", "/projects/lab/notes", lead, json={"description": "x"})
        assert status == 200
        # ... not another team's, and not a user's
        status, _ = await hub.call("POST", "/projects", lead, json={"name": "x", "owner": "other"})
        assert status == 403
        await hub.project(admin, "plan", owner="other")
        assert (await hub.call("GET", "/projects/other/plan", lead))[0] == 404
        # a token of the team admin without the scope does not manage
        narrow = await hub.user_token("lead", scopes=["read:groups!group=lab"])
        assert (await hub.call("DELETE", "/projects/lab/notes", narrow))[0] == 404
        # the hub-wide admin:groups of a service does not manage team projects
        assert (await hub.call("DELETE", "/projects/lab/notes", SERVICE_TOKEN))[0] == 404

        # members write (git), do not manage
        url = created["clone_url"]
        work = tmp_path / "dana"
        await git.new_repo(work, FILES)
        await git.ok("push", "-q", with_token(url, dana), "main", cwd=work)
        assert (await hub.call("DELETE", "/projects/lab/notes", dana))[0] == 403
        await git.ok("ls-remote", with_token(url, erin))
        # leaving the team ends access at once, over REST and git
        status, _ = await hub.call(
            "DELETE", "/groups/lab/users", SERVICE_TOKEN, json={"users": ["erin"]}
        )
        assert status == 200
        assert (await hub.call("GET", "/projects/lab/notes", erin))[0] == 404
        result = await git("ls-remote", with_token(url, erin))
        assert not result.ok
        assert "project lab/notes not found" in result.err
        result = await git("push", with_token(url, erin), "main", cwd=work)
        assert not result.ok

        assert (await hub.call("DELETE", "/projects/lab/notes", lead))[0] == 204


def ways(answer: dict[str, Any]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    return {u["name"]: (u["role"], u["through"]) for u in answer["users"]}


async def test_access_at_past_moments_comes_from_the_log(
    event_store: store.EventStore, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    async with open_projects_hub(event_store, tmp_path / "data", roles=TEAM_ROLES) as hub:
        alice = await hub.user_token("alice")
        bob = await hub.user_token("bob")
        carol = await hub.user_token("carol")
        admin = await hub.user_token("admin")
        await hub.group("tutors")
        await hub.project(alice, "course")
        created = await position(pool)
        await hub.call(
            "PUT", "/projects/alice/course/members/users/bob", alice, json={"role": "read"}
        )
        granted = await position(pool)
        await hub.call(
            "PUT", "/projects/alice/course/members/groups/tutors", alice, json={"role": "write"}
        )
        await hub.call("POST", "/groups/tutors/users", SERVICE_TOKEN, json={"users": ["carol"]})
        joined = await position(pool)
        _, at_join = await hub.call("GET", f"/projects/alice/course/access?at={joined}", alice)
        await hub.call("DELETE", "/groups/tutors/users", SERVICE_TOKEN, json={"users": ["carol"]})
        left = await position(pool)
        await hub.call("DELETE", "/projects/alice/course/members/users/bob", alice)
        await hub.call("PATCH", "/projects/alice/course", alice, json={"name": "course2"})
        renamed = await position(pool)

        async def access(at: int | str) -> dict[str, Any]:
            status, reply = await hub.call("GET", f"/projects/alice/course2/access?at={at}", alice)
            assert status == 200, reply
            result: dict[str, Any] = reply
            return result

        first = await access(created)
        assert first["at"]["position"] == created
        assert first["project"] == {
            "full_name": "alice/course",
            "owner": {"kind": "user", "name": "alice"},
            "visibility": "private",
        }
        assert (first["signed_in"], first["anyone"]) == (None, None)
        assert ways(first)["alice"] == ("admin", [{"via": "owner", "role": "admin"}])
        assert ways(first)["admin"] == (
            "admin",
            [{"via": "role", "role": "admin", "role_name": "admin"}],
        )
        assert "bob" not in ways(first)
        assert ways(await access(granted))["bob"] == ("read", [{"via": "grant", "role": "read"}])
        seen = ways(await access(joined))
        assert seen["carol"] == ("write", [{"via": "group", "role": "write", "group": "tutors"}])
        assert seen == ways(at_join)  # asked then and asked now about then: the same answer
        seen = ways(await access(left))
        assert "carol" not in seen
        assert "bob" in seen
        last = await access(renamed)
        assert set(ways(last)) == {"alice", "admin"}
        assert last["project"]["full_name"] == "alice/course2"
        # a time works as well as a position; before the project there was nothing
        assert ways(await access(last["at"]["time"])) == ways(last)
        before = await access(created - 1)
        assert (before["project"], before["users"]) == (None, [])

        # who may ask: the project's admins and auditors holding read:events:projects on it
        assert (await hub.call("GET", "/projects/alice/course2/access", bob))[0] == 404
        auditor = await hub.user_token(
            "admin", scopes=["read:events:projects!project=alice/course2"]
        )
        assert (await hub.call("GET", "/projects/alice/course2/access", auditor))[0] == 200
        await hub.project(admin, "elsewhere", owner="bob")
        status, _ = await hub.call("GET", "/projects/bob/elsewhere/access", auditor)
        assert status == 404
        assert (await hub.call("GET", "/projects/alice/course2/access", admin))[0] == 200
        # '²' passes str.isdigit, not int(); a zone can put a time out of range; 10**19 is
        # past any position (a bigint would overflow)
        out_of_range = ("%C2%B2", "0001-01-01T00:00%2B05:00", str(10**19))
        for bad in ("yesterday", "2025-01-01T00:00:00", "-3", str(10**9), *out_of_range):
            status, reply = await hub.call("GET", f"/projects/alice/course2/access?at={bad}", alice)
            assert status == 400, (bad, reply)
            assert reply["message"].startswith("at:")
        del carol


async def test_team_ownership_and_team_admins_at_a_past_moment(
    event_store: store.EventStore, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    async with open_projects_hub(event_store, tmp_path / "data", roles=TEAM_ROLES) as hub:
        lead = await hub.user_token("lead")
        await hub.user_token("dana")
        await hub.group("lab", "dana")
        await hub.project(lead, "notes", owner="lab", visibility="hub")
        status, answer = await hub.call("GET", "/projects/lab/notes/access", lead)
        assert status == 200, answer
        assert answer["signed_in"] == "read"
        assert answer["anyone"] is None
        seen = ways(answer)
        assert seen["dana"] == ("write", [{"via": "team", "role": "write", "group": "lab"}])
        assert seen["lead"] == (
            "admin",
            [{"via": "team_admin", "role": "admin", "group": "lab", "role_name": "lab-admin"}],
        )


async def test_project_events_under_their_own_scope_and_no_token_in_the_log(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    bob = await hub.user_token("bob")
    admin = await hub.user_token("admin")
    await hub.group("team", "bob")
    url = (await hub.project(alice, "course"))["clone_url"]
    await hub.project(bob, "mine")
    await hub.call(
        "PUT", "/projects/alice/course/members/groups/team", alice, json={"role": "write"}
    )
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", with_token(url, alice), "main", cwd=work)
    await git.ok("clone", "-q", with_token(url, bob), str(tmp_path / "bob"))
    await hub.call("PATCH", "/projects/alice/course", alice, json={"name": "course2"})
    await hub.call("DELETE", "/projects/bob/mine", bob)

    async def types(scope: str, query: str = "") -> list[str]:
        token = await hub.user_token("admin", scopes=[scope])
        status, seen = await hub.call("GET", f"/events?type_prefix=project.{query}", token)
        assert status == 200, seen
        return [e["type"] for e in seen]

    everything = await types("read:events")
    assert everything == [
        "project.created",
        "project.created",
        "project.member_granted",
        "project.pushed",
        "project.renamed",
        "project.deleted",
    ]
    assert await types("read:events:projects") == everything
    # alice's projects: her project's whole history (whatever its name now), not bob's
    assert await types("read:events:projects!user=alice") == [
        "project.created",
        "project.member_granted",
        "project.pushed",
        "project.renamed",
    ]
    # bob's: his deleted project's history (grants to his team are the team's)
    assert await types("read:events:projects!user=bob") == ["project.created", "project.deleted"]
    assert await types("read:events:projects!group=team") == [
        "project.created",
        "project.member_granted",
        "project.deleted",
    ]
    assert await types("read:events:projects!project=alice/course2") == [
        "project.created",
        "project.member_granted",
        "project.pushed",
        "project.renamed",
    ]
    assert await types("read:events:users") == []
    token = await hub.user_token("admin", scopes=["read:events:projects"])
    assert (await hub.call("GET", "/events?type_prefix=user.", token))[1] == []

    # no event holds a token handed out, nor file contents
    log = "\n".join(
        f"{r['data']} {r['metadata']}"
        for r in await pool.fetch("SELECT data, metadata FROM events")
    )
    for secret in (alice, bob, admin, SERVICE_TOKEN):
        assert secret not in log
    assert "# Course" not in log
    assert "cells" not in log


async def test_git_with_basic_credentials_records_the_tokens_activity(
    projects_hub: ProjectsHub, git: Git, tmp_path: Path, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    alice = await hub.user_token("alice")
    url = (await hub.project(alice, "course"))["clone_url"]
    for_git = await hub.user_token("alice")  # used by git alone
    count = "SELECT count(*) FROM token_activity"
    before = await pool.fetchval(count)
    work = tmp_path / "work"
    await git.new_repo(work, FILES)
    await git.ok("push", "-q", with_token(url, for_git), "main", cwd=work)
    assert await pool.fetchval(count) == before + 1


async def test_every_project_endpoint_is_in_the_openapi_document_and_replies_match_it(
    projects_hub: ProjectsHub,
) -> None:
    hub = projects_hub
    status, spec = await hub.call("GET", "/openapi.json", None)
    assert status == 200
    documented = {
        (method.upper(), "/hub/api" + path)
        for path, item in spec["paths"].items()
        for method in item
    }
    for route in projects_api.routes():
        path = route.path.replace("{kind:users|groups}", "{kind}")  # type: ignore[attr-defined]
        expanded = (
            [path.replace("{kind}", k) for k in ("users", "groups")] if "{kind}" in path else [path]
        )
        for one in expanded:
            assert (route.method, one) in documented, (route.method, one)  # type: ignore[attr-defined]

    alice = await hub.user_token("alice")
    await hub.user_token("bob")
    api_models.Project.model_validate(await hub.project(alice, "course"))
    _, page = await hub.call("GET", "/projects", alice, headers=PAGINATED)
    api_models.ProjectPage.model_validate(page)
    _, member = await hub.call(
        "PUT", "/projects/alice/course/members/users/bob", alice, json={"role": "read"}
    )
    api_models.ProjectMember.model_validate(member)
    _, members = await hub.call("GET", "/projects/alice/course/members", alice)
    for one in members:
        api_models.ProjectMember.model_validate(one)
    _, answer = await hub.call("GET", "/projects/alice/course/access", alice)
    api_models.ProjectAccess.model_validate(answer)
    _, answer = await hub.call("GET", "/projects/alice/course/access?at=1", alice)
    api_models.ProjectAccess.model_validate(answer)
