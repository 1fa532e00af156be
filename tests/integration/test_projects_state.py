"""Projects in the log's tools: ``projections verify`` and ``rebuild`` cover the project read
models (``project_old_names`` too), ``state --at … projects`` shows past projects and their
members, and an export imported into a fresh database gives the same read models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from hub import database
from projections import projects as projects_projection
from projections import rebuild
from tests.integration.api_fixtures import SERVICE_TOKEN
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub
from tests.integration.test_events_cli import cli, rows, table_rows

pytestmark = [pytest.mark.integration, pytest.mark.interop]

# Every column of the project read models, in a stable order.
READ_MODELS = (
    "SELECT * FROM projects ORDER BY project_id",
    "SELECT * FROM project_members ORDER BY project_id, member_kind, member_id",
    "SELECT * FROM project_refs ORDER BY project_id, ref",
    "SELECT * FROM project_old_names ORDER BY owner_id, name",
)


@dataclass(frozen=True)
class History:
    """Positions in a history of projects, and who was who."""

    granted: int
    """After course was created and shared with bob and with the team, before its push."""
    head: int
    """After the push, the rename, a project deleted and a team deleted."""
    pushed: str


async def head(pool: asyncpg.Pool[Any]) -> int:
    position: int = await pool.fetchval("SELECT max(global_position) FROM events")
    return position


@pytest.fixture
async def history(projects_hub: ProjectsHub, pool: asyncpg.Pool[Any], tmp_path: Path) -> History:
    """create, grant to a user, grant to a team, push, rename, delete, a team deleted."""
    hub = projects_hub
    alice = await hub.user_token("alice")
    await hub.user_token("bob")
    await hub.group("team", "bob")
    await hub.group("gone", "bob")
    project = await hub.project(alice, "course", description="Week 1")
    for path, role in (("users/bob", "read"), ("groups/team", "write"), ("groups/gone", "read")):
        status, reply = await hub.call(
            "PUT", f"/projects/alice/course/members/{path}", alice, json={"role": role}
        )
        assert status == 200, reply
    granted = await head(pool)

    git = Git(tmp_path / "home")
    work = tmp_path / "work"
    pushed = await git.new_repo(work, {"README.md": b"# Course\n"})
    await git.ok("push", with_token(project["clone_url"], alice, "alice"), "main", cwd=work)
    status, reply = await hub.call("PATCH", "/projects/alice/course", alice, json={"name": "c2"})
    assert status == 200, reply
    await hub.project(alice, "scratch")
    assert (await hub.call("DELETE", "/projects/alice/scratch", alice))[0] == 204
    assert (await hub.call("DELETE", "/groups/gone", SERVICE_TOKEN))[0] == 204
    assert await pool.fetchval("SELECT count(*) FROM project_old_names") == 1
    assert await pool.fetchval("SELECT count(*) FROM project_refs") == 1
    return History(granted, await head(pool), pushed)


async def test_verify_covers_the_project_read_models_and_finds_a_tampered_row(
    history: History, projects_hub: ProjectsHub, pool: asyncpg.Pool[Any]
) -> None:
    projection = projects_projection.ProjectsProjection()
    assert set(projection.tables) == {
        "projects",
        "project_members",
        "project_refs",
        "project_old_names",
        "project_sessions",
    }
    result = await rebuild.verify(projects_hub.store, projection)
    assert result.differences == ()

    before = {query: await pool.fetch(query) for query in READ_MODELS}
    await pool.execute("UPDATE project_old_names SET name = 'tampered'")
    await pool.execute("UPDATE project_refs SET sha = repeat('0', 40)")
    result = await rebuild.verify(projects_hub.store, projection)
    differing = {(d.table, d.side) for d in result.differences}
    assert differing == {
        ("project_old_names", "live"),
        ("project_old_names", "rebuilt"),
        ("project_refs", "live"),
        ("project_refs", "rebuilt"),
    }
    [live] = [d.row for d in result.differences if d.side == "live" and d.table == "project_refs"]
    [rebuilt] = [
        d.row for d in result.differences if d.side == "rebuilt" and d.table == "project_refs"
    ]
    assert (live["sha"], rebuilt["sha"]) == ("0" * 40, history.pushed)

    # a rebuild puts back what the log says, row for row
    await rebuild.rebuild(projects_hub.store, projection)
    assert {query: await pool.fetch(query) for query in READ_MODELS} == before
    assert (await rebuild.verify(projects_hub.store, projection)).differences == ()


async def test_state_at_shows_past_projects_with_their_members(
    history: History, db_url: str
) -> None:
    code, out = await cli(db_url, "state", "--at", str(history.granted), "projects")
    assert code == 0, out
    assert f"projects as of position {history.granted}" in out
    [row] = table_rows(out)
    assert row[:3] == [
        "alice/course",
        "private",
        "bob (read), group gone (read), group team (write)",
    ]
    assert row[4] == "never"

    code, out = await cli(db_url, "state", "--at", str(history.head), "projects")
    assert code == 0, out
    [row] = table_rows(out)  # renamed; scratch deleted; the deleted team's grant gone
    assert row[:3] == ["alice/c2", "private", "bob (read), group team (write)"]
    assert row[4] != "never"


async def test_export_and_import_keep_the_project_read_models(
    history: History, db_url: str, empty_db_url: str, tmp_path: Path
) -> None:
    exported = tmp_path / "events.jsonl"
    code, out = await cli(db_url, "events", "export", "-o", str(exported))
    assert code == 0, out
    await database.migrate(empty_db_url)
    code, out = await cli(empty_db_url, "events", "import", str(exported))
    assert code == 0, out
    assert "rebuilt projects:" in out
    for query in READ_MODELS:
        assert await rows(empty_db_url, query) == await rows(db_url, query), query
