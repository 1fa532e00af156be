"""Repositories on disk follow the projects: a deleted project's goes, so do those of a
deleted user's or team's projects, after the commit; a removal that fails is logged and the
delete stands; the sweep at start-up takes what is left and old scratch directories."""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from events import store
from hub.projects import cleanup, storage
from tests.integration.api_fixtures import SERVICE_TOKEN
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub

pytestmark = pytest.mark.integration


def place_of(hub: ProjectsHub) -> storage.Storage:
    return hub.client.server.app[storage.STORAGE]


async def project_id(pool: asyncpg.Pool[Any], owner: str, name: str) -> UUID:
    found: UUID = await pool.fetchval(
        "SELECT p.project_id FROM projects p"
        " LEFT JOIN users u ON p.owner_kind = 'user' AND u.user_id = p.owner_id"
        " LEFT JOIN groups g ON p.owner_kind = 'group' AND g.group_id = p.owner_id"
        " WHERE coalesce(u.name, g.name) = $1 AND p.name = $2",
        owner,
        name,
    )
    assert found is not None
    return found


async def with_repository(hub: ProjectsHub, pool: asyncpg.Pool[Any], owner: str, name: str) -> Path:
    """The project's repository, made as a first push makes it."""
    place = place_of(hub)
    pid = await project_id(pool, owner, name)
    repo = await place.workers.run(place.repositories.open, pid)
    repo.close()
    path = place.repositories.path(pid)
    assert path.is_dir()
    return path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def test_repositories_leave_the_disk_with_their_project_owner_or_team(
    projects_hub: ProjectsHub, pool: asyncpg.Pool[Any]
) -> None:
    hub = projects_hub
    admin = await hub.user_token("admin")
    alice = await hub.user_token("alice")
    carol = await hub.user_token("carol")
    await hub.group("lab", "alice")
    await hub.project(alice, "keep")
    await hub.project(alice, "doomed")
    await hub.project(carol, "notes")
    await hub.project(admin, "notes", owner="lab")
    keep = await with_repository(hub, pool, "alice", "keep")
    doomed = await with_repository(hub, pool, "alice", "doomed")
    carols = await with_repository(hub, pool, "carol", "notes")
    labs = await with_repository(hub, pool, "lab", "notes")

    assert (await hub.call("DELETE", "/projects/alice/doomed", alice))[0] == 204
    assert not doomed.exists()
    assert (await hub.call("DELETE", "/users/carol", SERVICE_TOKEN))[0] == 204
    assert not carols.exists()
    assert (await hub.call("DELETE", "/groups/lab", SERVICE_TOKEN))[0] == 204
    assert not labs.exists()
    assert keep.is_dir()
    assert sorted(p.name for p in keep.parent.iterdir()) == [keep.name]  # nothing half-removed
    assert await pool.fetchval("SELECT count(*) FROM projects") == 1


async def test_a_failed_removal_is_logged_and_the_sweep_at_start_takes_it(
    event_store: store.EventStore,
    pool: asyncpg.Pool[Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = tmp_path / "data"
    root = data / "projects"

    def refuse(self: storage.Repositories, project_id: UUID) -> None:
        raise PermissionError(13, "Permission denied", str(self.path(project_id)))

    async with open_projects_hub(event_store, data) as hub:
        dana = await hub.user_token("dana")
        await hub.project(dana, "thesis")
        await hub.project(dana, "kept")
        thesis = await with_repository(hub, pool, "dana", "thesis")
        with monkeypatch.context() as patched:
            patched.setattr(storage.Repositories, "remove", refuse)
            with caplog.at_level(logging.ERROR, logger=cleanup.__name__):
                assert (await hub.call("DELETE", "/projects/dana/thesis", dana))[0] == 204
        assert (await hub.call("GET", "/projects/dana/thesis", dana))[0] == 404
        assert thesis.is_dir()
        [record] = [r for r in caplog.records if r.name == cleanup.__name__]
        assert "could not remove the repository of project" in record.getMessage()
        kept = await with_repository(hub, pool, "dana", "kept")

    # what the sweep finds: the failed removal's repository, strays and scratch, old and new
    stray, young = root / f"{uuid.uuid4()}.git", root / f"{uuid.uuid4()}.git"
    old_import, new_import = root / ".import-old", root / ".import-new"
    half_deleted, not_ours = root / f".deleted-{uuid.uuid4()}.git", root / "notes.git"
    for path in (stray, young, old_import, new_import, half_deleted, not_ours):
        (path / "objects").mkdir(parents=True)
    for path in (thesis, kept, stray, old_import, not_ours):
        age(path, cleanup.SCRATCH_AGE_S + 60)

    async with open_projects_hub(event_store, data):
        left = sorted(p.name for p in root.iterdir())
    assert left == sorted([kept.name, young.name, new_import.name, not_ours.name])
