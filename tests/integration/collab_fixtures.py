"""A running hub serving collaboration rooms, on the test database, with users and tokens."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import test_utils

from collab import limits as collab_limits
from collab import persistence, rooms, session_log, sessions
from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from hub.api import collab as collab_api
from hub.api import collab_forward
from tests.integration.api_fixtures import CONFIG, Api

COLLAB_CONFIG: dict[str, Any] = {
    **CONFIG,
    "roles": [
        *CONFIG["roles"],
        {"name": "room-reader", "scopes": ["read:collab!room=shared"], "users": ["reader"]},
        {"name": "team-writer", "scopes": ["write:collab!group=team"], "users": ["mate"]},
        {"name": "room-writer", "scopes": ["write:collab!room=shared"], "users": ["editor"]},
    ],
}


@dataclass
class CollabHub:
    """The hub's API client, its rooms, and the ws:// base URL clients join rooms at."""

    api: Api
    rooms: rooms.Rooms
    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    sessions: sessions.SessionManager | None = None

    async def token(self, user: str, **body: Any) -> str:
        """A token of ``user`` (created on first use), remembered per user."""
        if user not in self.tokens or body:
            self.tokens[user] = await self.api.user_token(user, **body)
        return self.tokens[user]


@contextlib.asynccontextmanager
async def serving(
    event_store: store.EventStore,
    db_url: str,
    limits: collab_limits.Limits | None = None,
    *,
    relay: bool = True,
    session_grace_s: float = 60.0,
    **settings: Any,
) -> AsyncIterator[CollabHub]:
    """The hub app and its rooms on a free port of 127.0.0.1, stopped on exit; ``settings``
    override the hub's (``data_dir`` for projects' repositories)."""
    config = hub_settings.Settings(**{**COLLAB_CONFIG, **settings})
    await bootstrap.reconcile(event_store, config)
    room_set = rooms.Rooms(
        persistence.RoomStore(event_store),
        limits or collab_limits.Limits(room_grace_s=3600),
        dsn=db_url,
        relay=relay,
    )
    async with room_set:
        manager = sessions.SessionManager(
            room_set,
            session_log.StoreRecorder(event_store),
            collab_api.may_write(event_store, room_set),
            grace_period=session_grace_s,
        )
        async with manager:
            hub = context.Hub(
                settings=config,
                store=event_store,
                database="test",
                rooms=room_set,
                collab_sessions=manager,
            )
            server = test_utils.TestServer(app.make_app(hub), host="127.0.0.1")
            async with test_utils.TestClient(server) as client:
                # as a serving hub does: other hubs forward its sessions' calls here
                assert client.app is not None
                collab_forward.serve_at(client.app, f"http://127.0.0.1:{server.port}")
                yield CollabHub(
                    api=Api(client, event_store),
                    rooms=room_set,
                    url=f"ws://127.0.0.1:{server.port}",
                    sessions=manager,
                )


@pytest.fixture
async def collab_hub(event_store: store.EventStore, db_url: str) -> AsyncIterator[CollabHub]:
    """A hub serving rooms (relay on), with the collab roles of ``COLLAB_CONFIG``."""
    async with serving(event_store, db_url) as running:
        yield running
