"""``/hub/admin`` in a browser, through the built-in proxy: users page by page, their servers
started and stopped, users added, made admins and deleted; every action through the REST
API's own rules (scopes, messages, events); bad forms and people without ``admin-ui``
refused with nothing changed."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from events import store
from tests.integration.browser import Browser, Page, running_hub, set_password
from tests.integration.spawn_fixtures import SpawnHub, StartHub

pytestmark = pytest.mark.integration

ROW = re.compile(r'<tr class="user" data-name="([^"]+)">(.*?)</tr>', re.S)
FORM = re.compile(r'<form method="post" action="([^"]+)">(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def rows(page: Page) -> dict[str, str]:
    return dict(ROW.findall(page.text))


def form(row: str, action_end: str) -> tuple[str, dict[str, str]]:
    """The row's form whose action ends with ``action_end``: its action and hidden fields."""
    for action, inner in FORM.findall(row):
        if action.endswith(action_end):
            return action, dict(HIDDEN.findall(inner))
    raise AssertionError(f"no form ending {action_end!r} in {row}")


async def _signed_in(hub: SpawnHub, name: str) -> Browser:
    browser = hub.browser()
    assert (await browser.login(name)).status == 302
    return browser


async def test_the_admin_starts_and_stops_a_users_server_from_the_page(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", admin_users=["admin"])
    await hub.people("admin", "ann")
    admin = await _signed_in(hub, "admin")
    home = await admin.get("/hub/home")
    assert '<a href="/hub/admin">Admin</a>' in home.text
    page = await admin.get("/hub/admin")
    assert page.status == 200, page.text
    assert set(rows(page)) == {"admin", "ann"}
    assert '<span class="state">stopped</span>' in rows(page)["ann"]

    action, fields = form(rows(page)["ann"], "/hub/spawn/ann")
    assert fields["next"] == "/hub/admin"
    started = await admin.post(action, data=fields)
    assert (started.status, started.location) == (302, "/hub/admin")
    page = await admin.get("/hub/admin")
    ann = rows(page)["ann"]
    assert '<span class="state">ready</span>' in ann
    assert '<a href="/user/ann/">open</a>' in ann
    requested = (await hub.events("server.spawn_requested"))[0]["actor"]
    assert "admin" in requested

    action, fields = form(ann, "/hub/stop/ann")
    stopped = await admin.post(action, data=fields)
    assert (stopped.status, stopped.location) == (302, "/hub/admin")
    assert '<span class="state">stopped</span>' in rows(await admin.get("/hub/admin"))["ann"]
    # ``next`` only ever leads back into this hub.
    action, fields = form(rows(await admin.get("/hub/admin"))["ann"], "/hub/spawn/ann")
    await admin.post(action, data=fields)
    action, fields = form(rows(await admin.get("/hub/admin"))["ann"], "/hub/stop/ann")
    away = await admin.post(action, data={**fields, "next": "https://elsewhere.example/"})
    assert away.location == "/hub/home"


async def test_the_admin_page_warns_when_users_code_runs_with_the_hubs_privileges(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("serve", admin_users=["admin"])  # single-user mode, for everyone
    await hub.people("admin")
    page = await (await _signed_in(hub, "admin")).get("/hub/admin")
    assert page.status == 200, page.text
    warning = re.search(r'<p class="warning" id="isolation" role="alert">(.*?)</p>', page.text)
    assert warning, page.text
    assert "SINGLE-USER MODE" in warning[1]
    assert "the hub&#39;s privileges" in warning[1]


async def test_adding_promoting_and_deleting_users(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", admin_users=["admin"])
    await hub.people("admin")
    admin = await _signed_in(hub, "admin")
    page = await admin.get("/hub/admin")
    xsrf = page.hidden("_xsrf")

    added = await admin.post("/hub/admin/users", data={"_xsrf": xsrf, "usernames": "carl\ndora"})
    assert added.status == 200, added.text
    assert "Added carl, dora" in added.text
    assert set(rows(added)) == {"admin", "carl", "dora"}
    again = await admin.post("/hub/admin/users", data={"_xsrf": xsrf, "usernames": "carl dora"})
    assert again.status == 409
    assert "All 2 users already exist" in again.text
    bad = await admin.post("/hub/admin/users", data={"_xsrf": xsrf, "usernames": "ok\na/b"})
    assert bad.status == 400
    assert "usernames.1: String should match pattern" in bad.text
    empty = await admin.post("/hub/admin/users", data={"_xsrf": xsrf, "usernames": " \n "})
    assert empty.status == 400
    assert "Type at least one username" in empty.text
    assert (await hub.call("GET", "/users/ok"))[0] == 404

    action, fields = form(rows(added)["carl"], "/admin")
    promoted = await admin.post(action, data=fields)
    assert "carl is now an admin" in promoted.text
    assert (await hub.call("GET", "/users/carl"))[1]["admin"] is True

    action, fields = form(rows(promoted)["dora"], "/delete")
    unconfirmed = await admin.post(action, data=fields)
    assert unconfirmed.status == 400
    assert "Tick the box to confirm deleting dora" in unconfirmed.text
    assert (await hub.call("GET", "/users/dora"))[0] == 200
    deleted = await admin.post(action, data={**fields, "confirm": "1"})
    assert "Deleted dora" in deleted.text
    assert (await hub.call("GET", "/users/dora"))[0] == 404
    actors = await hub.store.pool.fetch(
        "SELECT event_type, metadata->'actor'->>'name' AS actor FROM events"
        " WHERE event_type IN ('user.created', 'user.admin_changed', 'user.deleted')"
        " AND data->>'name' IS DISTINCT FROM 'admin'"
    )
    assert {(r["event_type"], r["actor"]) for r in actors} >= {
        ("user.created", "admin"),
        ("user.admin_changed", "admin"),
        ("user.deleted", "admin"),
    }

    # No buttons against oneself, and the rule holds when the form is forged.
    own = rows(deleted)["admin"]
    assert "/delete" not in own
    assert "Make admin" not in own
    assert "Remove admin" not in own
    forged = await admin.post("/hub/admin/users/admin/delete", data={"_xsrf": xsrf, "confirm": "1"})
    assert forged.status == 400
    assert "Cannot delete yourself!" in forged.text
    missing = await admin.post(
        "/hub/admin/users/nobody/delete", data={"_xsrf": xsrf, "confirm": "1"}
    )
    assert missing.status == 404
    assert "No such user: nobody" in missing.text


async def test_without_admin_ui_the_page_and_its_actions_are_refused(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", admin_users=["admin"])
    await hub.people("ann")
    anonymous = hub.browser()
    page = await anonymous.get("/hub/admin?offset=50")
    assert page.status == 302
    login = urlsplit(page.location or "")
    assert (login.path, parse_qs(login.query)) == ("/hub/login", {"next": ["/hub/admin?offset=50"]})

    ann = await _signed_in(hub, "ann")
    assert '<a href="/hub/admin">' not in (await ann.get("/hub/home")).text
    refused = await ann.get("/hub/admin")
    assert refused.status == 403
    xsrf = (await ann.get("/hub/token")).hidden("_xsrf")
    tried = await ann.post("/hub/admin/users", data={"_xsrf": xsrf, "usernames": "eve"})
    assert tried.status == 403
    assert (await hub.call("GET", "/users/eve"))[0] == 404
    no_xsrf = await ann.post("/hub/admin/users/ann/admin", data={"admin": "1"})
    assert no_xsrf.status == 403
    assert (await hub.call("GET", "/users/ann"))[1]["admin"] is False


async def test_users_come_page_by_page_and_filter_by_name(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", admin_users=["admin"])
    await hub.people("admin")
    status, _ = await hub.call(
        "POST", "/users", json={"usernames": [f"student-{i:02}" for i in range(60)]}
    )
    assert status == 201
    admin = await _signed_in(hub, "admin")
    first = await admin.get("/hub/admin")
    assert len(rows(first)) == 50
    assert "61 users, 1\N{EN DASH}50 shown" in first.text
    following = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert following is not None
    second = await admin.get(following.group(1).replace("&amp;", "&"))
    assert len(rows(second)) == 11
    assert 'rel="next"' not in second.text
    assert set(rows(first)) | set(rows(second)) == {
        "admin",
        *(f"student-{i:02}" for i in range(60)),
    }
    filtered = await admin.get("/hub/admin?name_filter=student-0")
    assert set(rows(filtered)) == {f"student-0{i}" for i in range(10)}
    assert "10 users" in filtered.text


GROUP_ROW = re.compile(r'<tr class="group" data-name="([^"]+)">(.*?)</tr>', re.S)


def groups(page: Page) -> dict[str, list[str]]:
    return {
        name: re.findall(r'<span class="member">([^<]+)</span>', row)
        for name, row in GROUP_ROW.findall(page.text)
    }


async def _members(hub: SpawnHub, group: str) -> list[str]:
    rows = await hub.store.pool.fetch(
        "SELECT u.name FROM group_members m JOIN users u USING (user_id)"
        " JOIN groups g USING (group_id) WHERE g.name = $1 ORDER BY u.name",
        group,
    )
    return [r["name"] for r in rows]


async def test_groups_are_created_filled_emptied_and_deleted_from_the_page(
    spawn_hub: StartHub,
) -> None:
    hub = await spawn_hub("serve", admin_users=["admin"])
    await hub.people("admin", "ann", "bob")
    admin = await _signed_in(hub, "admin")
    page = await admin.get("/hub/admin/groups")
    assert page.status == 200, page.text
    assert groups(page) == {}
    xsrf = page.hidden("_xsrf")

    made = await admin.post(
        "/hub/admin/groups", data={"_xsrf": xsrf, "name": "lab-1", "usernames": "ann"}
    )
    assert made.status == 200, made.text
    assert "Created group lab-1" in made.text
    assert groups(made) == {"lab-1": ["ann"]}
    again = await admin.post("/hub/admin/groups", data={"_xsrf": xsrf, "name": "lab-1"})
    assert again.status == 409
    assert "Group lab-1 already exists" in again.text
    unknown = await admin.post(
        "/hub/admin/groups", data={"_xsrf": xsrf, "name": "lab-2", "usernames": "nobody"}
    )
    assert unknown.status == 400
    assert "No such user(s): nobody" in unknown.text
    bad = await admin.post("/hub/admin/groups", data={"_xsrf": xsrf, "name": "a/b"})
    assert bad.status == 400
    assert "group name" in bad.text
    assert set(groups(bad)) == {"lab-1"}  # nothing half-made

    row = dict(GROUP_ROW.findall(made.text))["lab-1"]
    action, fields = form(row, "/lab-1/users")
    added = await admin.post(action, data={**fields, "usernames": "bob"})
    assert "Added bob to lab-1" in added.text
    assert groups(added) == {"lab-1": ["ann", "bob"]}
    assert await _members(hub, "lab-1") == ["ann", "bob"]

    row = dict(GROUP_ROW.findall(added.text))["lab-1"]
    action, fields = form(row, "/lab-1/users/remove")  # the first member's button: ann
    removed = await admin.post(action, data=fields)
    assert "Removed ann from lab-1" in removed.text
    assert groups(removed) == {"lab-1": ["bob"]}

    action, fields = form(dict(GROUP_ROW.findall(removed.text))["lab-1"], "/delete")
    unconfirmed = await admin.post(action, data=fields)
    assert unconfirmed.status == 400
    assert "Tick the box to confirm deleting group lab-1" in unconfirmed.text
    deleted = await admin.post(action, data={**fields, "confirm": "1"})
    assert "Deleted group lab-1" in deleted.text
    assert groups(deleted) == {}
    assert await hub.store.pool.fetchval("SELECT count(*) FROM groups") == 0
    types = [
        r["event_type"]
        for r in await hub.store.pool.fetch(
            "SELECT event_type FROM events WHERE event_type LIKE 'group.%'"
            " AND metadata->'actor'->>'name' = 'admin' ORDER BY global_position"
        )
    ]
    assert types == [
        "group.created",
        "group.members_added",
        "group.members_added",
        "group.members_removed",
        "group.deleted",
    ]

    ann = await _signed_in(hub, "ann")
    assert (await ann.get("/hub/admin/groups")).status == 403
    token_page = await ann.get("/hub/token")
    tried = await ann.post(
        "/hub/admin/groups", data={"_xsrf": token_page.hidden("_xsrf"), "name": "mine"}
    )
    assert tried.status == 403
    assert await hub.store.pool.fetchval("SELECT count(*) FROM groups") == 0


async def test_a_hub_without_a_spawner_shows_no_server_controls(
    event_store: store.EventStore,
) -> None:
    async with running_hub(event_store) as (api, base):
        await set_password(api, "admin")
        browser = Browser(base)
        try:
            assert (await browser.login("admin")).status == 302
            page = await browser.get("/hub/admin")
            assert page.status == 200, page.text
            assert set(rows(page)) == {"admin"}
            assert "<th>Servers</th>" not in page.text
            assert "/hub/spawn/" not in page.text
        finally:
            await browser.close()
