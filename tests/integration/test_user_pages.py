"""What a browser meets at ``/user/<name>/...`` when the server is not running, the start and
stop buttons, and the "starting" page: the real hub, spawner (the fake server) and built-in
proxy, a cookie-keeping client that only ever talks to the proxy's address."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import make_mocked_request

from hub.pages import user as user_pages
from tests.integration.spawn_fixtures import CONFIG, StartHub

pytestmark = pytest.mark.integration


async def test_a_stopped_server_sends_to_login_then_offers_to_start_it_and_goes_back(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("serve")
    await hub.people("ann")
    ann = hub.browser()

    # Not signed in: to the hub's prefix (where the login cookie is sent), then the login.
    page = await ann.get("/user/ann/echo?x=1")
    assert (page.status, page.location) == (302, "/hub/user/ann/echo?x=1")
    page = await ann.get(page.location or "")
    assert page.status == 302
    login = urlsplit(page.location or "")
    assert login.path == "/hub/login"
    assert parse_qs(login.query) == {"next": ["/hub/user/ann/echo?x=1"]}

    # Signed in, server stopped: a page with a "Start my server" form (424, as JupyterHub).
    signed_in = await ann.login("ann", next_url="/hub/user/ann/echo%3Fx%3D1")
    assert signed_in.location == "/hub/user/ann/echo?x=1"
    offer = await ann.get(signed_in.location or "")
    assert offer.status == 424, offer.text
    assert "Start my server" in offer.text
    assert 'action="/hub/spawn/ann"' in offer.text
    assert offer.hidden("next") == "/user/ann/echo?x=1"
    # An API call to the stopped server: JupyterHub's 424 JSON, wherever it arrives.
    for method, path in (("GET", "/hub/user/ann/api/status"), ("POST", "/user/ann/api/x")):
        answer = await ann.request(method, path)
        assert answer.status == 424
        assert json.loads(answer.text)["message"].startswith("JupyterHub server no longer")

    # Starting without the XSRF token is refused and starts nothing.
    refused = await ann.post("/hub/spawn/ann", data={"next": "/user/ann/echo?x=1"})
    assert refused.status == 403
    assert await hub.event_types() == []

    started = await ann.post("/hub/spawn/ann", data=offer.fields())
    assert (started.status, started.location) == (302, "/user/ann/echo?x=1")
    assert await hub.event_types() == [
        "server.spawn_requested",
        "server.started",
        "server.ready",
    ]
    actor = (await hub.events("server.spawn_requested"))[0]["actor"]
    assert "ann" in actor
    echoed = await ann.get(started.location or "")
    assert echoed.status == 200, echoed.text
    assert json.loads(echoed.text)["path"] == "/user/ann/echo?x=1"

    # A ready server reached at the hub's prefix: back to the server, counting the trips.
    back = await ann.get("/hub/user/ann/echo?x=1")
    assert (back.status, back.location) == (302, "/user/ann/echo?x=1&redirects=1")
    looped = await ann.get(f"/hub/user/ann/echo?redirects={user_pages.MAX_REDIRECTS}")
    assert looped.status == 503


async def test_a_slow_server_gets_a_page_that_refreshes_until_it_is_ready(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("slow", slow_spawn_timeout=0.2, spawner_env={"FAKE_DELAY": "1.5"})
    await hub.people("ann")
    ann = hub.browser()
    await ann.login("ann")
    offer = await ann.get("/hub/user/ann/echo")
    started = await ann.post("/hub/spawn/ann", data=offer.fields())
    assert started.status == 303
    pending_url = started.location or ""
    assert pending_url.startswith("/hub/spawn-pending/ann?next=")
    waiting = await ann.get(pending_url)
    assert waiting.status == 200
    assert '<meta http-equiv="refresh"' in waiting.text
    # Meanwhile, the server's URL at the hub sends here too.
    again = await ann.get("/hub/user/ann/echo")
    assert again.status == 303
    assert (again.location or "").startswith("/hub/spawn-pending/ann?next=")
    await hub.manager.wait_idle(30)
    ready = await ann.get(pending_url)
    assert (ready.status, ready.location) == (302, "/user/ann/echo")


async def test_someone_elses_server_is_not_found_and_cannot_be_started(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve")
    await hub.people("ann", "bob")
    bob = hub.browser()
    await bob.login("bob")
    page = await bob.get("/hub/user/ann/echo")
    assert page.status == 404
    assert "Start" not in page.text
    form = await bob.get("/hub/home")
    started = await bob.post("/hub/spawn/ann", data={"_xsrf": form.hidden("_xsrf")})
    assert started.status == 404
    stopped = await bob.post("/hub/stop/ann", data={"_xsrf": form.hidden("_xsrf")})
    assert stopped.status == 404
    assert await hub.event_types() == []


async def test_home_starts_and_stops_the_default_and_named_servers(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", allow_named_servers=True)
    await hub.people("ann")
    token = await hub.user("ann")
    status, _ = await hub.call("PUT", "/users/ann/servers/lab", token=token)
    assert status == 201
    ann = hub.browser()
    await ann.login("ann")
    home = await ann.get("/hub/home")
    assert home.status == 200
    assert 'action="/hub/spawn/ann"' in home.text
    assert 'action="/hub/spawn/ann/lab"' in home.text
    xsrf = home.hidden("_xsrf")

    started = await ann.post("/hub/spawn/ann/lab", data={"_xsrf": xsrf, "next": "/user/ann/lab/"})
    assert (started.status, started.location) == (302, "/user/ann/lab/")
    home = await ann.get("/hub/home")
    assert 'action="/hub/stop/ann/lab"' in home.text
    assert 'href="/user/ann/lab/"' in home.text
    # A named server's URL at the hub is that server's, not the default one's.
    assert (await ann.get("/hub/user/ann/lab/echo")).location == "/user/ann/lab/echo?redirects=1"
    assert (await ann.get("/hub/user/ann/echo")).status == 424

    stopped = await ann.post("/hub/stop/ann/lab", data={"_xsrf": xsrf})
    assert (stopped.status, stopped.location) == (302, "/hub/home")
    row = await hub.server("ann", "lab")
    assert row is not None
    assert row["state"] == "stopped"
    # Stopping a stopped server: a clear refusal.
    again = await ann.post("/hub/stop/ann/lab", data={"_xsrf": xsrf})
    assert again.status == 400
    assert "not running" in again.text

    # A new named server from the home page's form; a bad name is refused by name.
    added = await ann.post("/hub/spawn/ann", data={"_xsrf": xsrf, "server_name": "new-one"})
    assert (added.status, added.location) == (302, "/user/ann/new-one/")
    assert 'action="/hub/stop/ann/new-one"' in (await ann.get("/hub/home")).text
    bad = await ann.post("/hub/spawn/ann", data={"_xsrf": xsrf, "server_name": "Bad Name!"})
    assert bad.status == 400
    assert "Invalid server_name" in bad.text


def test_decisions() -> None:
    visit = user_pages.Visit(signed_in=True, has_access=True, state=None, api_request=False)
    assert user_pages.decide(visit) == "not_running"
    assert user_pages.decide(visit.__class__(False, False, None, False)) == "login"
    assert user_pages.decide(visit.__class__(True, False, "ready", False)) == "not_found"
    assert user_pages.decide(visit.__class__(True, True, "ready", True)) == "redirect"
    assert user_pages.decide(visit.__class__(True, True, "failed", True)) == "api_error"
    assert user_pages.decide(visit.__class__(True, True, "started", False)) == "pending"
    assert user_pages.decide(visit.__class__(True, True, "stopping", False)) == "pending"
    assert user_pages.is_api_request(["lab"], "application/json")
    assert not user_pages.is_api_request(["lab"], "text/html,application/json;q=0.9")
    assert user_pages.is_api_request(["x", "api", "status"], "")


def _sample(route: Any, name: str) -> str:
    """A value for the path parameter ``name`` that the route's own pattern accepts: the first
    of its alternatives where it is one of a few words (``{kind:users|groups}``), else any."""
    pattern = route.resource.get_info().get("pattern") if route.resource is not None else None
    if pattern is not None:
        found = re.search(rf"\(\?P<{name}>([\w-]+)[|)]", pattern.pattern)
        if found:
            return found[1]
    return "sample"


async def test_no_route_hides_another(spawn_hub: StartHub) -> None:
    """Every route of the hub (login pages, servers API, these pages, ...) is the one a
    request for its own path and method reaches: none is shadowed by an earlier one."""
    hub = await spawn_hub("serve")
    app = hub.client.app
    assert app is not None
    checked = 0
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        path = re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m, r=route: _sample(r, m[1]), canonical)
        method = "GET" if route.method in ("*", "HEAD") else route.method
        match = await app.router.resolve(make_mocked_request(method, path, app=app))
        assert match.route is route or (
            match.route.resource is route.resource and route.method == "HEAD"
        ), f"{route.method} {canonical} is reached by {match.route}"
        checked += 1
    assert checked > 60


async def test_access_through_a_group_shows_the_page_but_starting_needs_its_own_scope(
    spawn_hub: StartHub,
) -> None:
    operator = {**CONFIG["roles"][0], "scopes": [*CONFIG["roles"][0]["scopes"], "admin:groups"]}
    peek = {"name": "peek", "scopes": ["access:servers!group=team"], "users": ["bob"]}
    hub = await spawn_hub("serve", roles=[operator, peek])
    await hub.people("ann", "bob")
    assert (await hub.call("POST", "/groups/team"))[0] == 201
    assert (await hub.call("POST", "/groups/team/users", json={"users": ["ann"]}))[0] == 200
    bob = hub.browser()
    await bob.login("bob")
    page = await bob.get("/hub/user/ann/echo")
    assert page.status == 424, page.text
    assert "Start ann&#39;s server" in page.text
    started = await bob.post("/hub/spawn/ann", data=page.fields())
    assert started.status == 404  # access, but no start:servers on ann's server
    assert await hub.event_types() == []
