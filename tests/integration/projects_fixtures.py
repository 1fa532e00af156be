"""A running hub for the projects tests: the real application, its data directory a temporary
one (repositories go there), and helpers to make users, groups and projects."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import test_utils

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from tests.integration.api_fixtures import CONFIG, SERVICE_TOKEN, Api


@dataclass
class ProjectsHub(Api):
    """The API test client, plus where the hub keeps repositories and its base URL."""

    data_dir: Path
    settings: hub_settings.Settings

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def project(self, token: str, name: str, **fields: Any) -> dict[str, Any]:
        """Create project ``name`` as ``token``'s owner (or ``fields["owner"]``)."""
        status, reply = await self.call("POST", "/projects", token, json={"name": name, **fields})
        assert status == 201, reply
        result: dict[str, Any] = reply
        return result

    async def group(self, name: str, *users: str) -> None:
        """Create group ``name`` with ``users`` as members (as the bench service)."""
        status, reply = await self.call("POST", f"/groups/{name}", SERVICE_TOKEN)
        assert status == 201, reply
        if users:
            status, reply = await self.call(
                "POST", f"/groups/{name}/users", SERVICE_TOKEN, json={"users": list(users)}
            )
            assert status == 200, reply


def projects_settings(data_dir: Path, **overrides: Any) -> hub_settings.Settings:
    """The API tests' configuration, repositories under ``data_dir``."""
    return hub_settings.Settings(**{**CONFIG, "data_dir": data_dir, **overrides})


@contextlib.asynccontextmanager
async def open_projects_hub(
    event_store: store.EventStore, data_dir: Path, **overrides: Any
) -> AsyncIterator[ProjectsHub]:
    """A hub serving HTTP on a loopback port (real git clients can reach it)."""
    config = projects_settings(data_dir, **{"project_git_timeout_s": 20, **overrides})
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    server = test_utils.TestServer(app.make_app(hub))
    async with test_utils.TestClient(server) as client:
        yield ProjectsHub(client, event_store, data_dir, config)


@pytest.fixture
async def projects_hub(event_store: store.EventStore, tmp_path: Path) -> AsyncIterator[ProjectsHub]:
    async with open_projects_hub(event_store, tmp_path / "data") as hub:
        yield hub
