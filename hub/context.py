"""What every handler may use: the running hub's parts, stored on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from events import store
from hub import servers as hub_servers
from hub import settings as hub_settings


@dataclass(frozen=True)
class Hub:
    """The parts of a running hub that handlers use."""

    settings: hub_settings.Settings
    store: store.EventStore
    database: str
    servers: hub_servers.ServerManager | None = None


HUB = web.AppKey("hub", Hub)
