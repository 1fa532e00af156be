"""A running hub app for API tests: the real application on the test database, with config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import test_utils

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from tests.helpers import call_api

SERVICE_TOKEN = "service-secret-0123456789abcdef"
CULLER_TOKEN = "culler-secret-0123456789abcdef"

CONFIG: dict[str, Any] = {
    "database_url": "postgresql://unused",
    "admin_users": ["admin"],
    "cookie_secret": "test-cookie-secret-0123456789abcdef0123456789",
    "services": [
        {"name": "bench", "api_token": SERVICE_TOKEN},
        {"name": "culler", "api_token": CULLER_TOKEN},
    ],
    "roles": [
        {
            "name": "bench-role",
            "scopes": ["admin:users", "tokens", "admin:groups", "read:hub", "read:roles"],
            "services": ["bench"],
        },
        {
            "name": "culler-role",
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": ["culler"],
        },
    ],
}


@dataclass
class Api:
    """A test client bound to the hub, with helpers to call it as someone."""

    client: test_utils.TestClient[Any, Any]
    store: store.EventStore

    async def call(
        self, method: str, path: str, token: str | None = SERVICE_TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        return await call_api(self.client, method, path, token, **kwargs)

    async def user_token(self, name: str, **body: Any) -> str:
        """A token of ``name``'s (creating the user if needed), issued by the service."""
        await self.call("POST", f"/users/{name}")
        status, payload = await self.call("POST", f"/users/{name}/tokens", json=body)
        assert status == 201, payload
        token: str = payload["token"]
        return token


@pytest.fixture
async def api(event_store: store.EventStore) -> AsyncIterator[Api]:
    config = hub_settings.Settings(**CONFIG)
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    async with test_utils.TestClient(test_utils.TestServer(app.make_app(hub))) as client:
        yield Api(client, event_store)
