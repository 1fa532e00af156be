"""``/hub/events`` in a browser (without script): the audit timeline newest first, its filters
(type or kind, user, group, time range) as a GET form, pages by position, each event's data
escaped, its subjects' links; who may open it; the rows the live script fetches; and
``/hub/events/at/{position}`` against the projections' own state at that position."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import asyncpg
import pytest

from events import store
from hub.pages import events as events_page
from projections import rebuild
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.browser import Browser, Page, running_hub, set_password

pytestmark = pytest.mark.integration

ROW = re.compile(
    r'<li class="event" id="event-(\d+)" data-position="\d+">(.*?)</article>\s*</li>', re.S
)
TYPE = re.compile(r'<h3 class="type">([^<]+)</h3>')
OLDER = re.compile(r'<a href="([^"]+)" rel="next" id="older">')


def events_of(page: Page) -> list[tuple[int, str, str]]:
    """(position, type, the row's HTML) of each event shown, in order."""
    found = []
    for position, row in ROW.findall(page.text):
        match = TYPE.search(row)
        assert match, row
        found.append((int(position), html.unescape(match.group(1)), row))
    return found


@pytest.fixture
async def hub(event_store: store.EventStore, tmp_path: Path) -> AsyncIterator[tuple[Api, str]]:
    async with running_hub(event_store, data_dir=tmp_path) as running:
        await set_password(running[0], "admin")
        await set_password(running[0], "bob")
        yield running


async def signed_in(base: str, name: str) -> Browser:
    browser = Browser(base)
    assert (await browser.login(name)).status == 302
    return browser


@pytest.fixture
async def admin(hub: tuple[Api, str]) -> AsyncIterator[Browser]:
    browser = await signed_in(hub[1], "admin")
    yield browser
    await browser.close()


async def test_signed_out_to_login_and_without_the_scope_refused(hub: tuple[Api, str]) -> None:
    anonymous = Browser(hub[1])
    bob = await signed_in(hub[1], "bob")
    try:
        page = await anonymous.get("/hub/events?type=user.")
        assert page.status == 302
        assert page.location is not None
        assert page.location.startswith("/hub/login?next=")
        assert unquote(page.location.split("=", 1)[1]) == "/hub/events?type=user."
        assert (await anonymous.get("/hub/events/at/1")).status == 302
        refused = await bob.get("/hub/events")
        assert refused.status == 403, refused.text
        assert "requires any of [read:events]" in refused.text
        assert 'href="/hub/events"' not in (await bob.get("/hub/home")).text  # no nav link
        assert (await bob.get("/hub/events/at/1")).status == 403
        fragment = await bob.get("/hub/events/rows")
        assert fragment.status == 403
        assert 'class="event"' not in fragment.text
    finally:
        await anonymous.close()
        await bob.close()


async def test_newest_first_with_filters_as_a_form(hub: tuple[Api, str], admin: Browser) -> None:
    api, _ = hub
    await api.call("POST", "/users", json={"usernames": ["alice", "carol"]})
    await api.call("POST", "/groups/team", json={"users": ["alice"]})
    await api.call("PATCH", "/users/carol", json={"admin": True})

    page = await admin.get("/hub/events")
    assert page.status == 200, page.text
    assert page.response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert '<a href="/hub/events" aria-current="page">Events</a>' in page.text
    shown = events_of(page)
    positions = [p for p, _, _ in shown]
    assert positions == sorted(positions, reverse=True)
    assert shown[0][1] == "user.admin_changed"
    for label in ("Type or kind", "User", "Group", "From (UTC)", "To (UTC, before)"):
        assert f'">{label}' in page.text, label
    assert page.text.count("<label for=") == 6  # the five filters and the live switch

    kinds = await admin.get("/hub/events?type=user.")
    assert {t for _, t, _ in events_of(kinds)} == {
        "user.created",
        "user.admin_changed",
        "user.password_set",
        "user.logged_in",
    }
    assert 'value="user."' in kinds.text  # the form shows what was asked
    exact = await admin.get("/hub/events?type=group.created")
    assert [t for _, t, _ in events_of(exact)] == ["group.created"]

    about_alice = await admin.get("/hub/events?user=alice")
    assert [t for _, t, _ in events_of(about_alice)] == ["group.members_added", "user.created"]
    about_team = await admin.get("/hub/events?group=team")
    # about a group: its own events and its members' (as the audit API counts them)
    assert [t for _, t, _ in events_of(about_team)] == [
        "group.members_added",
        "group.created",
        "user.created",
    ]

    # Each subject links to everything about it.
    row = next(r for _, t, r in events_of(page) if t == "group.members_added")
    assert '<a href="/hub/events?user=alice">everything about alice</a>' in row
    assert '<a href="/hub/events?group=team">everything about group team</a>' in row
    position = next(p for p, t, _ in events_of(page) if t == "group.members_added")
    assert f'<a href="/hub/events/at/{position}">The hub at this moment</a>' in row

    # Time range: before everything, nothing; the range around now, everything.
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    none = await admin.get(f"/hub/events?{urlencode({'to': past})}")
    assert events_of(none) == []
    assert "No events match these filters." in none.text
    both = await admin.get(f"/hub/events?{urlencode({'from': past, 'to': future})}")
    assert [p for p, _, _ in events_of(both)] == positions


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("type=user.nonsense", "type: no event type is called &#39;user.nonsense&#39;"),
        ("type=nothing.", "type: no kind of event is called &#39;nothing.&#39;"),
        ("from=yesterday", "from: &#39;yesterday&#39; is not a date and time"),
        ("to=2025-13-01T00:00", "to: &#39;2025-13-01T00:00&#39; is not a date and time"),
        ("from=2025-02-01T00:00&to=2025-01-01T00:00", "from: must be before to"),
        ("before=-3", "before: must be a position in the log"),
        ("before=abc", "before: must be a position in the log"),
        ("before=%C2%B2", "before: must be a position in the log"),  # '²': isdigit, not int
        # a zone that puts the time before year 1 or after 9999 once in UTC
        ("from=0001-01-01T00:00%2B05:00", "from: &#39;0001-01-01T00:00+05:00&#39; is not a date"),
        ("to=9999-12-31T23:59-05:00", "to: &#39;9999-12-31T23:59-05:00&#39; is not a date"),
    ],
)
async def test_bad_filters_are_refused_with_the_form_and_why(
    admin: Browser, query: str, message: str
) -> None:
    page = await admin.get(f"/hub/events?{query}")
    assert page.status == 400, page.text
    assert message in page.text
    assert '<p class="error" role="alert">' in page.text
    assert '<form class="fields timeline-filters" method="get"' in page.text
    assert events_of(page) == []


async def test_pages_by_position_lose_and_repeat_nothing(
    hub: tuple[Api, str], admin: Browser, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_page, "PAGE_SIZE", 4)
    api, _ = hub
    await api.call("POST", "/users", json={"usernames": [f"u{i}" for i in range(9)]})
    expected = [
        r["global_position"]
        for r in await pool.fetch(
            "SELECT global_position FROM events WHERE event_type = 'user.created'"
            " ORDER BY global_position DESC"
        )
    ]
    seen: list[int] = []
    url: str | None = "/hub/events?type=user.created"
    pages = 0
    while url:
        page = await admin.get(url)
        assert page.status == 200, page.text
        shown = [p for p, _, _ in events_of(page)]
        assert len(shown) <= 4
        seen += shown
        older = OLDER.search(page.text)
        url = html.unescape(older.group(1)) if older else None
        if url:
            assert "type=user.created" in url  # the filters travel with the cursor
            assert (
                'href="/hub/events?type=user.created">Newest events' in (await admin.get(url)).text
            )
        pages += 1
    assert seen == expected
    assert pages == 3  # 11 users (admin, bob and nine): 4 + 4 + 3


async def test_hostile_values_in_event_data_are_escaped(
    hub: tuple[Api, str], admin: Browser
) -> None:
    api, _ = hub
    hostile_group = "<script>alert(1)<"
    status, reply = await api.call("POST", f"/groups/{quote(hostile_group, safe='')}")
    assert status == 201, reply
    description = '</code></pre><script>alert("x")</script><img src=x onerror=alert(2)>'
    token = await api.user_token("admin")
    status, reply = await api.call(
        "POST", "/projects", token, json={"name": "p1", "description": description}
    )
    assert status == 201, reply
    page = await admin.get("/hub/events")
    assert page.status == 200
    assert "<script>" not in page.text.split("</head>", 1)[1]
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(1)&lt;" in page.text
    # in the data's JSON (its quotes escaped by JSON, then by HTML)
    assert "&lt;/code&gt;&lt;/pre&gt;&lt;script&gt;alert(\\&#34;x\\&#34;)" in page.text
    # the group's subject link is escaped and its name URL-encoded
    assert (
        '<a href="/hub/events?group=%3Cscript%3Ealert%281%29%3C">'
        "everything about group &lt;script&gt;alert(1)&lt;</a>"
    ) in page.text
    about = await admin.get("/hub/events?" + urlencode({"group": hostile_group}))
    assert [t for _, t, _ in events_of(about)] == ["group.created"]


async def test_the_live_scripts_rows_are_the_pages_rows(
    hub: tuple[Api, str], admin: Browser
) -> None:
    api, _ = hub
    await api.call("POST", "/users", json={"usernames": ["r1", "r2", "r3"]})
    page = await admin.get("/hub/events?type=user.created")
    listing = re.search(
        r'<ol class="timeline" id="timeline" data-stream="([^"]+)" data-rows="([^"]+)"'
        r' data-after="(\d+:\d+)">',
        page.text,
    )
    assert listing, page.text
    assert html.unescape(listing.group(1)) == "/hub/api/events/stream?type=user.created"
    # the live-follow script: the bundle's events entry, by its hashed name
    assert re.search(r'<script type="module" src="/hub/static/app/events-\w+\.js">', page.text), (
        "the live page links the bundle's events entry (run `make frontend`)"
    )
    shown = events_of(page)
    newest, second = shown[0][0], shown[1][0]
    rows_url = html.unescape(listing.group(2)) + f"&from_position={second}&to_position={newest}"
    fragment = await admin.get(rows_url)
    assert fragment.status == 200, fragment.text
    assert [(p, t) for p, t, _ in events_of(fragment)] == [(p, t) for p, t, _ in shown[:2]]
    assert [r for _, _, r in events_of(fragment)] == [r for _, _, r in shown[:2]]
    # An older page does not follow live.
    older = await admin.get(f"/hub/events?before={newest}")
    assert "data-stream" not in older.text
    assert '<script type="module"' not in older.text
    for raw in ("x", "%C2%B9"):  # '¹' passes str.isdigit
        bad = await admin.get(f"/hub/events/rows?from_position={raw}")
        assert bad.status == 400
        assert "from_position: must be a position in the log" in bad.text


async def test_the_stream_follows_with_the_login_cookie(
    hub: tuple[Api, str], admin: Browser
) -> None:
    api, base = hub
    head = await api.store.head()
    url = f"{base}/hub/api/events/stream?type=user.created&after={head}"
    async with admin.session.get(url) as response:
        assert response.status == 200, await response.text()
        await api.call("POST", "/users/streamed")
        async with asyncio.timeout(10):
            while True:
                line = (await response.content.readline()).decode()
                if line.startswith("data:"):
                    assert '"name": "streamed"' in line
                    break


async def test_the_hub_at_a_moment_is_the_projections_state_then(
    hub: tuple[Api, str], admin: Browser, pool: asyncpg.Pool[Any]
) -> None:
    api, _ = hub
    await api.call("POST", "/users", json={"usernames": ["alice", "dora"]})
    await api.call("POST", "/groups/team", json={"users": ["alice", "dora"]})
    token = await api.user_token("alice")
    status, _ = await api.call("POST", "/projects", token, json={"name": "notes"})
    assert status == 201
    at = await pool.fetchval("SELECT max(global_position) FROM events")
    # The live projections at that position, read right then.
    users_then = [r["name"] for r in await pool.fetch("SELECT name FROM users ORDER BY name")]
    members_then = await pool.fetchval(
        "SELECT string_agg(u.name, ', ' ORDER BY u.name) FROM groups g"
        " JOIN group_members m USING (group_id) JOIN users u USING (user_id)"
        " WHERE g.name = 'team'"
    )
    projects_then = await pool.fetchval("SELECT count(*) FROM projects")
    # Later changes that the moment must not show.
    await api.call("DELETE", "/users/dora")
    await api.call("POST", "/users/zed")
    await api.call("POST", "/groups/later")

    page = await admin.get(f"/hub/events/at/{at}")
    assert page.status == 200, page.text
    sections = dict(
        re.findall(r'<section aria-labelledby="view-(\w+)" class="moment-view".*?>(.*?)</section>',
                   page.text, re.S)
    )  # fmt: skip
    assert set(sections) == {"users", "groups", "servers", "projects"}
    users_shown = sorted(
        html.unescape(m) for m in re.findall(r"<tr><td>([^<]+)</td>", sections["users"])
    )
    assert users_shown == users_then
    assert "zed" not in sections["users"]
    assert f"<td>team</td><td>{members_then}</td>" in sections["groups"]
    assert "later" not in sections["groups"]
    assert f"Projects <small>({projects_then})</small>" in page.text
    assert "<td>alice/notes</td>" in sections["projects"]
    assert "<h1>The hub at position " in page.text

    missing = await admin.get("/hub/events/at/999999")
    assert missing.status == 404
    assert "position 999999 is past the end of the log (its last event is at" in missing.text
    bad = await admin.get("/hub/events/at/abc")
    assert bad.status == 400
    assert "position: &#39;abc&#39; is not a position in the log" in bad.text
    superscript = await admin.get("/hub/events/at/%C2%B2")
    assert superscript.status == 400


async def test_a_filtered_holder_sees_only_its_subjects_and_no_moment(
    event_store: store.EventStore, tmp_path: Path
) -> None:
    auditor = {"name": "auditor", "scopes": ["read:events!user=alice"], "users": ["bob"]}
    async with running_hub(event_store, data_dir=tmp_path, roles=[*CONFIG["roles"], auditor]) as (
        api,
        base,
    ):
        await set_password(api, "bob")
        await api.call("POST", "/users", json={"usernames": ["alice", "eve"]})
        bob = await signed_in(base, "bob")
        try:
            page = await bob.get("/hub/events")
            assert page.status == 200, page.text
            shown = events_of(page)
            assert shown
            assert all("alice" in row for _, _, row in shown), shown
            assert not any("&#34;eve&#34;" in row for _, _, row in shown)
            assert "The hub at this moment" not in page.text
            outside = await bob.get("/hub/events?user=eve")
            assert outside.status == 404
            assert (await bob.get(f"/hub/events/at/{shown[0][0]}")).status == 403
        finally:
            await bob.close()


async def _scratch(pool: asyncpg.Pool[Any]) -> list[str]:
    rows = await pool.fetch(rebuild.scratch_queries["named"], rebuild.AS_OF)
    return [row["name"] for row in rows]


async def test_a_second_replay_is_refused_not_queued(
    hub: tuple[Api, str], admin: Browser, pool: asyncpg.Pool[Any]
) -> None:
    """Replays do not queue (a client that left still has its handler run to the end): while
    one runs, the page answers 503 with Retry-After at once."""
    api, _ = hub
    await api.call("POST", "/users/alice")
    at = await pool.fetchval("SELECT max(global_position) FROM events")
    async with api.client.app[events_page.REPLAYS]:  # a replay under way
        busy = await asyncio.wait_for(admin.get(f"/hub/events/at/{at}"), 10)
        assert busy.status == 503, busy.text
        assert busy.response.headers["Retry-After"] == "30"
        assert "already replaying the log" in busy.text
    assert (await admin.get(f"/hub/events/at/{at}")).status == 200
    assert await _scratch(pool) == []


async def test_a_replay_past_its_time_stops_and_leaves_no_scratch(
    hub: tuple[Api, str], admin: Browser, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, _ = hub
    await api.call("POST", "/users/alice")
    at = await pool.fetchval("SELECT max(global_position) FROM events")
    monkeypatch.setattr(events_page, "AT_TIMEOUT_S", 0.0)  # past it after the first page
    page = await admin.get(f"/hub/events/at/{at}")
    assert page.status == 503, page.text
    assert page.response.headers["Retry-After"] == "30"
    assert f"replaying the log up to position {at} took longer than 0 s" in page.text
    assert await _scratch(pool) == []  # dropped all the same
    # the connection went back to the pool as it came: no statement_timeout left on it
    settings = await pool.fetch("SELECT current_setting('statement_timeout') AS t")
    assert settings[0]["t"] == "0"
    monkeypatch.setattr(events_page, "AT_TIMEOUT_S", 30.0)
    assert (await admin.get(f"/hub/events/at/{at}")).status == 200
    assert await _scratch(pool) == []


async def test_scratch_left_by_a_stopped_replay_is_dropped_at_start(
    event_store: store.EventStore, pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    """A hub (or ``chronohub state --at``) that stopped mid-replay left its scratch schema:
    the next hub drops it at start, but not one another process is replaying into now."""
    left, in_use = "state_00000000000000ab", "state_00000000000000cd"
    async with pool.acquire() as other:  # another process's replay, under way
        await other.fetchval(rebuild.scratch_queries["hold"], in_use)
        for name in (left, in_use):
            await pool.execute(f'CREATE SCHEMA "{name}"')
            await pool.execute(f'CREATE TABLE "{name}".users (name text)')
        try:
            async with running_hub(event_store, data_dir=tmp_path / "hub"):
                assert await _scratch(pool) == [in_use]
        finally:
            await pool.execute(f'DROP SCHEMA IF EXISTS "{in_use}" CASCADE')
            await pool.execute(f'DROP SCHEMA IF EXISTS "{left}" CASCADE')
            await other.fetchval(rebuild.scratch_queries["release"], in_use)
