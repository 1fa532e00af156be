"""``/hub/api/services`` and the home page's services: JupyterHub's model, with the fields each
scope shows, and chronohub's state of the services the hub runs (a real managed service: the
fake server of the spawner tests, run by the supervisor)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from events import store
from hub.api import models as api_models
from hub.api import services as services_api
from hub.context import HUB
from hub.services import environment
from hub.services import supervisor as services
from tests.helpers import wait_for
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser, running_hub, set_password

pytestmark = pytest.mark.integration

FAKE_SERVER = Path(__file__).resolve().parent.parent / "spawners" / "fake_server.py"
COMMAND = [sys.executable, str(FAKE_SERVER), "serve"]

SERVICES = [
    *CONFIG["services"],
    {
        "name": "board",
        "command": COMMAND,
        "url": "http://127.0.0.1:0",
        "info": {"name": "The board", "description": "What runs where"},
    },
    {"name": "hidden", "command": COMMAND, "url": "http://127.0.0.1:0", "display": False},
    {"name": "outside", "url": "http://10.0.0.9:9999"},
]
ROLES = [
    *CONFIG["roles"],
    {"name": "board-users", "scopes": ["access:services!service=board"], "users": ["ann"]},
    {"name": "every-service", "scopes": ["access:services"], "users": ["cat"]},
    {"name": "names", "scopes": ["read:services:name!service=board"], "users": ["dan"]},
    {
        "name": "listers",
        "scopes": ["list:services!service=board", "read:roles:services"],
        "users": ["eve"],
        "services": ["outside"],
    },
]


@contextlib.asynccontextmanager
async def hub_with_services(
    event_store: store.EventStore, tmp_path: Path
) -> AsyncIterator[tuple[Api, str, services.Supervisor]]:
    async with running_hub(
        event_store, services=SERVICES, roles=ROLES, data_dir=tmp_path / "data"
    ) as (api, base):
        hub_settings = api.client.app[HUB].settings
        supervisor = services.Supervisor(
            event_store, hub_settings, environment.Addresses(api_url=base + "/hub/api")
        )
        async with supervisor:
            api.client.app[services_api.SERVICES].supervisor = supervisor
            await wait_for(
                lambda: all(s.state == "running" for s in supervisor.services.values()),
                timeout_s=20,
            )
            yield api, base, supervisor
            api.client.app[services_api.SERVICES].supervisor = None


async def token_of(api: Api, name: str) -> str:
    return await api.user_token(name)


async def test_admins_see_jupyterhubs_model_with_command_pid_and_state(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    async with hub_with_services(event_store, tmp_path) as (api, _, supervisor):
        token = await token_of(api, "admin")
        status, listed = await api.call("GET", "/services", token=token)
        assert status == 200, listed
        api_models.ServiceMap.model_validate(listed)
        assert sorted(listed) == ["bench", "board", "culler", "hidden", "outside"]
        board = listed["board"]
        live = supervisor.services["board"]
        assert board == {
            "kind": "service",
            "name": "board",
            "admin": False,
            "roles": [],  # admins hold read:roles
            "url": live.url,
            "prefix": "/services/board/",
            "command": COMMAND,
            "pid": live.pid,
            "info": {"name": "The board", "description": "What runs where"},
            "display": True,
            "managed": True,
            "state": "running",
            "since": live.since.isoformat(),
            "restarts": 0,
            "last_exit": None,
            "last_error": None,
            "webhook": None,
        }
        assert board["pid"] > 0
        outside = listed["outside"]
        assert outside["command"] == []
        assert outside["pid"] == 0
        assert outside["managed"] is False
        assert outside["state"] is None
        assert outside["url"] == "http://10.0.0.9:9999"
        assert outside["prefix"] == "/services/outside/"
        assert listed["bench"]["url"] == ""
        assert listed["bench"]["prefix"] == ""
        status, one = await api.call("GET", "/services/board", token=token)
        assert status == 200
        assert one == board
        status, missing = await api.call("GET", "/services/nope", token=token)
        assert status == 404, missing
        assert missing["message"] == "No such service: nope"


async def test_each_scope_shows_its_fields_and_filters_hide_the_rest(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    async with hub_with_services(event_store, tmp_path) as (api, _, _supervisor):
        # read:services:name on one service: kind, name, admin; no other service exists
        dan = await token_of(api, "dan")
        status, board = await api.call("GET", "/services/board", token=dan)
        assert status == 200, board
        assert board == {"kind": "service", "name": "board", "admin": False}
        status, _ = await api.call("GET", "/services/hidden", token=dan)
        assert status == 404
        status, _ = await api.call("GET", "/services", token=dan)
        assert status == 403  # no list:services
        # list:services on one, read:roles:services everywhere: the list holds that one only
        eve = await token_of(api, "eve")
        status, listed = await api.call("GET", "/services", token=eve)
        assert status == 200, listed
        assert listed == {
            "board": {"kind": "service", "name": "board", "admin": False, "roles": []}
        }
        status, outside = await api.call("GET", "/services/outside", token=eve)
        assert status == 200
        assert outside == {
            "kind": "service",
            "name": "outside",
            "admin": False,
            "roles": ["listers"],
        }
        # an ordinary user sees no services at all, as in JupyterHub
        bob = await token_of(api, "bob")
        for path in ("/services", "/services/board"):
            status, reply = await api.call("GET", path, token=bob)
            assert status in (403, 404), reply
        status, reply = await api.call("GET", "/services", token=None)
        assert status == 403


async def test_the_home_page_lists_the_services_a_user_may_open(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    async with hub_with_services(event_store, tmp_path) as (api, base, _supervisor):
        pages: dict[str, Any] = {}
        for name in ("ann", "bob", "cat"):
            await set_password(api, name)
            browser = Browser(base)
            try:
                await browser.follow(await browser.login(name))
                pages[name] = await browser.get("/hub/home")
            finally:
                await browser.close()
    ann = pages["ann"]
    assert ann.status == 200
    assert '<li class="service" data-name="board"><a href="/services/board/">The board</a>' in (
        ann.text
    )
    assert "What runs where" in ann.text
    assert 'data-name="hidden"' not in ann.text  # display = false
    assert "<h2>Services</h2>" not in pages["bob"].text  # no access:services
    cat = pages["cat"].text
    assert 'data-name="board"' in cat
    assert 'data-name="outside"' in cat  # external, with a url
    assert 'data-name="hidden"' not in cat
    assert 'data-name="bench"' not in cat  # no url
