"""A JupyterHub authenticator class after the login, through the adapters: its auth_state
reaching the spawner (``pre_spawn_start``, the spawner's ``auth_state_hook``) and the real
``jupyterhub-singleuser``; ``refresh_user`` on browser requests and before a spawn; the admin
status it decides at each login (demotion included); ``allowed_users``, ``blocked_users``,
``allow_existing_users`` and ``allow_all``.

The class is a real ``jupyterhub.auth.Authenticator`` subclass (JupyterHub's own base, its
``get_authenticated_user`` and checks), configured by a ``jupyterhub_config.py`` written by
the test, as an admin would; what it answers is set per test in its class variables.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jupyterhub.auth import Authenticator

from hub.auth import identity
from hub.auth.authenticators.auth_state import Keeper, parse_keys
from hub.auth.authenticators.jupyterhub_adapter import JupyterHubAuthenticator
from tests.helpers import wait_for
from tests.integration.api_fixtures import CONFIG as API_CONFIG
from tests.integration.browser import Browser
from tests.integration.spawn_fixtures import SpawnHub, StartHub
from tests.integration.test_jupyterhub_spawners import simple

pytestmark = [pytest.mark.integration, pytest.mark.interop]

PASSWORD = "open sesame"
CRYPT_KEY = secrets.token_hex(32)
SECRET_PREFIX = "upstream-secret-"


class TeamAuthenticator(Authenticator):  # type: ignore[misc]
    """A password authenticator: the password is ``PASSWORD``; its login result carries an
    upstream token in auth_state, and ``logins[name]`` (admin, groups) on top;
    ``refresh_user`` answers ``refreshes[name]`` (True by default); ``pre_spawn_start`` puts
    the upstream token into the spawner's environment, as OAuthenticator setups do."""

    logins: ClassVar[dict[str, dict[str, Any]]] = {}
    refreshes: ClassVar[dict[str, Any]] = {}
    refreshed: ClassVar[list[str]] = []
    gate: ClassVar[asyncio.Event | None] = None
    """When set, ``refresh_user`` answers once it is (a slow provider)."""

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        if data["password"] != PASSWORD:
            return None
        name = data["username"]
        return {
            "name": name,
            "auth_state": {"upstream_token": SECRET_PREFIX + name},
            "groups": [],
            **self.logins.get(name, {}),
        }

    async def refresh_user(self, user: Any, handler: Any = None) -> Any:
        self.refreshed.append(user.name)
        if self.gate is not None:
            await self.gate.wait()
        return self.refreshes.get(user.name, True)

    async def pre_spawn_start(self, user: Any, spawner: Any) -> None:
        state = await user.get_auth_state()
        spawner.environment["UPSTREAM_TOKEN"] = state["upstream_token"]
        spawner.environment["SPAWNING_FOR"] = f"{user.name} in {[g.name for g in user.groups]}"


ENV_DUMP = """\
import json, os, sys
with open(os.environ["ENV_DUMP"], "w") as out:
    json.dump(dict(os.environ), out)
os.execv(sys.argv[1], sys.argv[1:])
"""

CONFIG_FILE = """\
c.Authenticator.enable_auth_state = True
c.Authenticator.manage_groups = True
c.Authenticator.admin_users = {"root_of_all"}
c.Authenticator.blocked_users = {"mal"}
c.Authenticator.refresh_pre_spawn = True
c.Authenticator.auth_refresh_age = 300

def hook(spawner, auth_state):
    spawner.environment["FROM_HOOK"] = "the hook saw " + auth_state["upstream_token"][:9]

c.Spawner.auth_state_hook = hook
"""


@pytest.fixture(autouse=True)
def answers() -> None:
    TeamAuthenticator.logins = {}
    TeamAuthenticator.refreshes = {}
    TeamAuthenticator.refreshed = []
    TeamAuthenticator.gate = None


TeamHub = Callable[..., Awaitable[tuple[SpawnHub, JupyterHubAuthenticator]]]


@pytest.fixture
def team_hub(spawn_hub: StartHub, tmp_path: Path) -> TeamHub:
    """A spawning hub logging people in with ``TeamAuthenticator``, configured by a
    jupyterhub_config.py (``CONFIG_FILE`` plus ``extra`` lines: by default allow_all), its spawner
    SimpleLocalProcessSpawner running the real jupyterhub-singleuser behind an environment
    dump (``tmp_path/env.json``)."""

    async def start(
        extra: str = "c.Authenticator.allow_all = True\n",
    ) -> tuple[SpawnHub, JupyterHubAuthenticator]:
        file = tmp_path / "jupyterhub_config.py"
        file.write_text(CONFIG_FILE + extra)
        dump = tmp_path / "dump_env.py"
        dump.write_text(ENV_DUMP)
        settings = simple(tmp_path, environment={"ENV_DUMP": str(tmp_path / "env.json")})
        settings["spawner_config"]["cmd"] = [
            sys.executable,
            str(dump),
            *settings["spawner_config"]["cmd"],
        ]
        hub = await spawn_hub(
            **settings,
            spawner_config_file=file,
            authenticator_class=f"{__name__}.TeamAuthenticator",
            authenticator_config_file=file,
            crypt_key=CRYPT_KEY,
            cookie_secret=API_CONFIG["cookie_secret"],
        )
        assert hub.client.app is not None
        adapter = hub.client.app[identity.AUTH].authenticator
        assert isinstance(adapter, JupyterHubAuthenticator)
        return hub, adapter

    return start


async def log_in(hub: SpawnHub, name: str, password: str = PASSWORD) -> tuple[Browser, int]:
    browser = hub.browser()
    done = await browser.login(name, password)
    return browser, done.status


async def whoami(browser: Browser) -> tuple[int, Any]:
    page = await browser.get("/hub/api/user")
    return page.status, (json.loads(page.text) if page.status == 200 else None)


async def log_text(hub: SpawnHub) -> str:
    async with hub.store.pool.acquire() as conn:
        text: str = await conn.fetchval(
            "SELECT string_agg(data::text || metadata::text, ' ') FROM events"
        )
    return text


async def user_events(hub: SpawnHub, name: str) -> list[tuple[str, Any, str]]:
    """(type, admin, actor) of the user's admin and group events, in order."""
    rows = await hub.events("")
    found = []
    for row in rows:
        data = json.loads(row["data"])
        if row["event_type"] == "user.admin_changed" or (
            row["event_type"].startswith("group.members") and name in data.get("users", [])
        ):
            found.append((row["event_type"], data.get("admin"), row["actor"]))
    return found


# --- 1. auth_state reaches the spawner ---


async def test_auth_state_reaches_the_real_singleuser_and_stays_out_of_the_log(
    team_hub: TeamHub, tmp_path: Path
) -> None:
    hub, _ = await team_hub()
    TeamAuthenticator.logins["ann"] = {"groups": ["physics"]}
    browser, status = await log_in(hub, "ann")
    assert status == 302
    form = await browser.get("/hub/spawn/ann")
    assert form.status == 200, form.text
    started = await browser.post(
        "/hub/spawn/ann", data={"_xsrf": form.hidden("_xsrf"), "next": "/hub/home"}
    )
    assert started.status in (302, 303), started.text
    await hub.manager.wait_idle(90)
    assert (await hub.server("ann"))["state"] == "ready"  # type: ignore[index]
    # what the real server process got: the authenticator's and the hook's variables
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["UPSTREAM_TOKEN"] == SECRET_PREFIX + "ann"
    assert env["FROM_HOOK"] == "the hook saw upstream-"
    assert env["SPAWNING_FOR"] == "ann in ['physics']"
    assert env["JUPYTERHUB_USER"] == "ann"
    # before the spawn, refresh_pre_spawn asked the class (it answered True)
    assert TeamAuthenticator.refreshed == ["ann"]
    assert (await hub.call("DELETE", "/users/ann/server"))[0] in (202, 204)
    await hub.manager.wait_idle(30)
    assert SECRET_PREFIX + "ann" not in await log_text(hub)
    assert await hub.event_types() == [
        "server.spawn_requested",
        "server.started",
        "server.ready",
        "server.stop_requested",
        "server.stopped",
    ]


# --- 2. refresh_user ---


async def test_refresh_user_on_browser_requests_and_before_a_spawn(team_hub: TeamHub) -> None:
    hub, adapter = await team_hub()
    browser, status = await log_in(hub, "ben")
    assert status == 302
    assert (await whoami(browser))[1]["admin"] is False
    # auth younger than auth_refresh_age: the class is not asked
    assert TeamAuthenticator.refreshed == []

    # older: refreshed; a dict applies admin, managed groups and auth_state, with events
    TeamAuthenticator.refreshes["ben"] = {
        "admin": True,
        "groups": ["chemistry"],
        "auth_state": {"upstream_token": SECRET_PREFIX + "rotated"},
    }
    adapter.refreshed["ben"] = time.monotonic() - 301
    status, me = await whoami(browser)
    assert status == 200
    assert (me["admin"], me["groups"]) == (True, ["chemistry"])
    assert TeamAuthenticator.refreshed == ["ben"]
    assert await user_events(hub, "ben") == [
        ("user.admin_changed", True, "system:refresh_user"),
        ("group.members_added", None, "system:refresh_user"),
    ]
    async with hub.store.pool.acquire() as conn:
        sealed = await conn.fetchval(
            "SELECT encrypted FROM auth_states JOIN users USING (user_id) WHERE name = 'ben'"
        )
    assert Keeper(parse_keys(CRYPT_KEY)).decrypt(bytes(sealed)) == {
        "upstream_token": SECRET_PREFIX + "rotated"
    }
    # refreshed just now: not asked again
    assert (await whoami(browser))[0] == 200
    assert TeamAuthenticator.refreshed == ["ben"]

    # refresh_pre_spawn: a refusal stops the user's own spawn, nothing recorded
    TeamAuthenticator.refreshes["ben"] = False
    form = await browser.get("/hub/spawn/ben")
    refused = await browser.post(
        "/hub/spawn/ben", data={"_xsrf": form.hidden("_xsrf"), "next": "/hub/home"}
    )
    assert refused.status == 403
    assert "auth has expired for ben, login again" in refused.text
    assert await hub.event_types() == []

    # the age passed and refresh_user refuses: the browser session no longer counts
    adapter.refreshed["ben"] = time.monotonic() - 301
    assert (await whoami(browser))[0] == 403
    home = await browser.get("/hub/home")
    assert home.status == 302
    assert (home.location or "").startswith("/hub/login")
    # a token of ben's is not sent to log in again (JupyterHub's rule): it keeps working
    status, reply = await hub.call("POST", "/users/ben/tokens", json={})
    assert status == 201, reply
    status, me = await hub.call("GET", "/user", token=reply["token"])
    assert (status, me["name"]) == (200, "ben")
    # a new login starts afresh
    TeamAuthenticator.refreshes["ben"] = True
    again, status = await log_in(hub, "ben")
    assert status == 302
    assert (await whoami(again))[0] == 200
    assert SECRET_PREFIX + "rotated" not in await log_text(hub)


async def test_parallel_requests_of_one_user_refresh_once(team_hub: TeamHub) -> None:
    """Eight requests of ben's at once, his auth past auth_refresh_age, the provider slow: it
    is asked once, its answer's events are recorded once, and every request succeeds (before:
    eight calls, duplicate events or a stream conflict answered 409/500 to a GET)."""
    hub, adapter = await team_hub()
    browser, status = await log_in(hub, "ben")
    assert status == 302
    TeamAuthenticator.refreshes["ben"] = {"admin": True, "groups": ["chemistry"]}
    TeamAuthenticator.gate = asyncio.Event()
    adapter.refreshed["ben"] = time.monotonic() - 301
    requests = [asyncio.create_task(whoami(browser)) for _ in range(8)]
    # every request has reached the refresh: one asks the provider, seven wait for it
    await wait_for(lambda: len(TeamAuthenticator.refreshed) >= 1)
    await wait_for(lambda: "ben" in adapter.refreshing and adapter.refreshing["ben"].users == 8)
    TeamAuthenticator.gate.set()
    answers = await asyncio.gather(*requests)
    assert [status for status, _ in answers] == [200] * 8
    assert all(me["admin"] is True and me["groups"] == ["chemistry"] for _, me in answers)
    assert TeamAuthenticator.refreshed == ["ben"]
    assert await user_events(hub, "ben") == [
        ("user.admin_changed", True, "system:refresh_user"),
        ("group.members_added", None, "system:refresh_user"),
    ]
    assert adapter.refreshing == {}  # nothing kept once nobody waits

    # a refusal: asked once for the requests that waited for its answer, which all follow it
    TeamAuthenticator.refreshes["ben"] = False
    TeamAuthenticator.refreshed = []
    TeamAuthenticator.gate = asyncio.Event()
    adapter.refreshed["ben"] = time.monotonic() - 301
    requests = [asyncio.create_task(whoami(browser)) for _ in range(4)]
    await wait_for(lambda: "ben" in adapter.refreshing and adapter.refreshing["ben"].users == 4)
    TeamAuthenticator.gate.set()
    assert [status for status, _ in await asyncio.gather(*requests)] == [403] * 4
    assert TeamAuthenticator.refreshed == ["ben"]
    assert adapter.refreshing == {}


async def test_a_class_that_does_not_override_refresh_user_is_never_asked(
    team_hub: TeamHub,
) -> None:
    hub, adapter = await team_hub()
    adapter.overrides_refresh = False  # as for jupyterhub.auth.PAMAuthenticator
    browser, _ = await log_in(hub, "cy")
    adapter.refreshed["cy"] = time.monotonic() - 301
    assert (await whoami(browser))[0] == 200
    assert TeamAuthenticator.refreshed == []


# --- 3. admin as the class decides it at each login ---


async def test_the_admin_status_follows_the_class_at_each_login(team_hub: TeamHub) -> None:
    hub, _ = await team_hub()
    TeamAuthenticator.logins["dee"] = {"admin": True}
    browser, _ = await log_in(hub, "dee")
    assert (await whoami(browser))[1]["admin"] is True
    # an explicit False demotes (JupyterHub's auth_to_user; OAuthenticator's admin_groups)
    TeamAuthenticator.logins["dee"] = {"admin": False}
    browser, _ = await log_in(hub, "dee")
    assert (await whoami(browser))[1]["admin"] is False
    # no answer (is_admin: not in admin_users gives None) leaves it as it is
    TeamAuthenticator.logins["dee"] = {}
    await hub.call("PATCH", "/users/dee", json={"admin": True})
    browser, _ = await log_in(hub, "dee")
    assert (await whoami(browser))[1]["admin"] is True
    # admin_users: is_admin says True
    browser, _ = await log_in(hub, "root_of_all")
    assert (await whoami(browser))[1]["admin"] is True
    rows = [
        (r["event_type"], json.loads(r["data"])["admin"], r["actor"])
        for r in await hub.events("user.")
        if r["event_type"] in ("user.admin_changed", "user.created")
    ]
    assert rows == [
        ("user.created", True, "system:login"),
        ("user.admin_changed", False, "system:login"),
        ("user.admin_changed", True, "service:operator"),
        ("user.created", True, "system:login"),
    ]


# --- 4. who may log in ---


async def test_allowed_blocked_and_existing_users(team_hub: TeamHub) -> None:
    hub, adapter = await team_hub('c.Authenticator.allowed_users = {"eve"}\n')
    a = adapter.authenticator
    assert a.allow_existing_users  # JupyterHub 5's default when allowed_users is set
    await hub.user("fred")  # a user the hub has, not in allowed_users
    await hub.user("mal")  # blocked, though the hub has him
    outcomes = {}
    for name in ("eve", "fred", "mal", "stranger"):
        _, outcomes[name] = await log_in(hub, name)
    assert outcomes == {"eve": 302, "fred": 302, "mal": 403, "stranger": 403}
    async with hub.store.pool.acquire() as conn:
        assert not await conn.fetchval("SELECT count(*) FROM users WHERE name = 'stranger'")
    # a session of a user blocked since it began no longer counts
    browser, _ = await log_in(hub, "eve")
    assert (await whoami(browser))[0] == 200
    eve_token = await hub.user("eve")
    assert (await hub.call("GET", "/user", token=eve_token))[0] == 200
    a.blocked_users = {"mal", "eve"}
    assert (await whoami(browser))[0] == 403
    # nor do their tokens (JupyterHub strips a blocked user's roles)
    assert (await hub.call("GET", "/user", token=eve_token))[0] == 403
    assert (await log_in(hub, "eve"))[1] == 403
    # nor is a server started for them, even by an admin
    status, reply = await hub.call("POST", "/users/eve/server")
    assert (status, reply["message"]) == (403, "eve is blocked from this hub (blocked_users)")
    assert await hub.event_types() == []


async def test_without_allow_existing_users_only_the_allowed_get_in(team_hub: TeamHub) -> None:
    hub, _ = await team_hub(
        'c.Authenticator.allowed_users = {"gil"}\nc.Authenticator.allow_existing_users = False\n'
    )
    await hub.user("hal")
    assert (await log_in(hub, "gil"))[1] == 302
    assert (await log_in(hub, "hal"))[1] == 403


async def test_allow_all_lets_everyone_but_the_blocked_in(team_hub: TeamHub) -> None:
    hub, _ = await team_hub("c.Authenticator.allow_all = True\n")
    assert (await log_in(hub, "ivy"))[1] == 302
    assert (await log_in(hub, "mal"))[1] == 403
    assert (await log_in(hub, "ivy", "wrong"))[1] == 403


async def test_with_no_allow_configuration_nobody_gets_in(team_hub: TeamHub) -> None:
    hub, _ = await team_hub("")
    # JupyterHub 5: allow_all is False by default, and nothing else allows anyone
    assert (await log_in(hub, "jo"))[1] == 403
