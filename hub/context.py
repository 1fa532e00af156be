"""What every handler may use: the running hub's parts, stored on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from collab import rooms as collab_rooms
from collab import sessions as collab_sessions
from events import store
from hub import database_watch
from hub import settings as hub_settings
from hub.auth import token_cache as hub_token_cache
from hub.servers import isolation
from hub.servers import manager as hub_servers


@dataclass(frozen=True)
class Hub:
    """The parts of a running hub that handlers use."""

    settings: hub_settings.Settings
    store: store.EventStore
    database: str
    # the database's state (outages, the embedded server's supervision), when the hub serves
    database_watch: database_watch.DatabaseWatch | None = None
    servers: hub_servers.ServerManager | None = None
    # whose account users' code runs as (the start-up banner and the admin page say)
    isolation: isolation.Isolation | None = None
    rooms: collab_rooms.Rooms | None = None  # collaboration rooms, when the hub serves them
    # shared execution sessions on those rooms (hub/api/collab.py)
    collab_sessions: collab_sessions.SessionManager | None = None
    # the callers tokens resolve to, kept while notifications keep it true (hub/auth/access.py)
    token_cache: hub_token_cache.TokenCache | None = None


HUB = web.AppKey("hub", Hub)
