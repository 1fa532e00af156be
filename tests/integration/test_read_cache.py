"""The read cache (hub/reads/cache.py, issue 20 part 4): the users list's answers remembered in
each hub process, emptied by the ``chronohub_auth`` notifications of the token cache it
follows, in every process; and end to end, two ``chronohub serve`` processes on one database:
whatever a client writes to the log through one (users, groups, servers) is on the very next
page the other answers, ``last_activity`` (no event, no notification) within the cache's
maximum age, a caller never gets a page remembered for another, and nothing is served while
the notifications cannot arrive."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events import store
from events.catalog import servers as server_events
from events.catalog import users as user_events
from hub.auth import token_acks, token_cache
from hub.reads import cache as reads_cache
from hub.servers import records
from projections import catalog, rebuild
from tests.helpers import service_toml, wait_for
from tests.integration.serve_process import Served, serving
from tests.integration.spawn_fixtures import fake
from tests.integration.test_token_acks import member_of, members
from tests.integration.test_token_cache import cut_listeners

pytestmark = pytest.mark.integration

OPERATOR = "operator-secret-0123456789abcdef0123"
LISTER = "lister-secret-0123456789abcdef012345"
PAGINATED = {"Accept": "application/jupyterhub-pagination+json"}


@contextlib.asynccontextmanager
async def caches(
    db_url: str, **kwargs: Any
) -> AsyncIterator[tuple[token_cache.TokenCache, reads_cache.ReadCache]]:
    """A listening token cache and the read cache that follows it, as hub/app.py wires them."""
    async with token_cache.TokenCache(db_url, **kwargs) as tokens:
        answers = reads_cache.ReadCache(tokens.serving)
        tokens.followers.append(answers.invalidate)
        await wait_for(tokens.serving)
        yield tokens, answers


async def drawn(pool: Any) -> int:
    """The last notification number drawn (none: 0)."""
    return int(
        await pool.fetchval(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM chronohub_auth_seq"
        )
    )


async def test_the_triggers_and_the_cache_agree_on_which_events_change_the_answers(
    pool: Any,
) -> None:
    found = {}
    for name in ("auth_changed", "reads_changed"):
        definition = await pool.fetchval(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = $1", name
        )
        found[name] = set(re.findall(r"'([a-z_]+\.[a-z_]+)'", definition))
    # what the token cache's notifications already say is not said twice
    assert found["reads_changed"] == reads_cache.CHANGING - token_cache.INVALIDATING
    assert found["auth_changed"] | found["reads_changed"] >= reads_cache.CHANGING
    # the read models the users list reads: a change to any of them is in CHANGING
    assert {"user.created", "user.renamed", "group.members_added", "role.granted"} <= (
        reads_cache.CHANGING
    )
    assert {"server.spawn_requested", "server.ready", "server.stopped"} <= reads_cache.CHANGING
    assert "token.issued" not in reads_cache.CHANGING


async def test_a_change_committed_elsewhere_empties_the_answers_but_not_the_tokens(
    db_url: str, pool: Any, event_store: store.EventStore
) -> None:
    # event_store has no on_append hook: only the notifications can tell these caches
    async with caches(db_url) as (tokens, answers):
        digest = b"\x02" * 32
        tokens.put(digest, token_cache.Entry(object(), None, None), tokens.generation)
        user_id = uuid.uuid4()
        for append in (
            lambda: event_store.append(
                user_events.stream_id(user_id),
                [user_events.UserCreated(user_id=user_id, name="ivy")],
                expected=store.NO_STREAM,
            ),
            lambda: event_store.append(
                server_events.stream_id(user_id, ""),
                [server_events.ServerSpawnRequested(user_id=user_id, user="ivy")],
            ),
        ):
            answers.put("page", b"[]", answers.generation)
            await append()
            await wait_for(lambda: len(answers) == 0)
        assert tokens.get(digest) is not None  # neither changes what a token resolves to


async def test_activity_moved_without_an_event_notifies_nothing(
    db_url: str, pool: Any, event_store: store.EventStore
) -> None:
    # last_activity's writes are hot: no trigger, no ordering lock, no notification, nothing
    # emptied; the answers' maximum age bounds how stale it is instead
    user_id = uuid.uuid4()
    await event_store.append(
        user_events.stream_id(user_id),
        [user_events.UserCreated(user_id=user_id, name="jo")],
        expected=store.NO_STREAM,
    )
    now = datetime.now(UTC)
    async with caches(db_url) as (_tokens, answers):
        before = await drawn(pool)
        answers.put("page", b"[]", answers.generation)
        touch = "INSERT INTO activity (user_id, server_name, last_activity) VALUES ($1, '', $2)"
        touch += " ON CONFLICT (user_id, server_name) DO UPDATE"
        touch += " SET last_activity = greatest(activity.last_activity, excluded.last_activity)"
        for stamp in (now, now + timedelta(seconds=1)):  # a row added, then its time moved
            await pool.execute(touch, user_id, stamp)
        # the proxy's activity of servers (hub/servers/records.py), in one transaction
        await records.record_activity(event_store, {(user_id, ""): now + timedelta(seconds=2)})
        assert await drawn(pool) == before  # no number drawn: nothing was sent
        assert answers.get("page") == b"[]"
        # (a notification sent at any commit would have been drawn before it: none came)


async def test_an_answer_older_than_the_max_age_is_read_again() -> None:
    answers = reads_cache.ReadCache(lambda: True, max_age_s=30.0)
    answers.put("fresh", "f", answers.generation)
    answers.put("old", "o", answers.generation, started=time.monotonic() - 31.0)
    assert answers.get("fresh") == "f"
    assert answers.get("old") is reads_cache.MISSING
    assert len(answers) == 1  # the old one forgotten
    assert (answers.hits, answers.misses) == (1, 1)


async def test_a_rebuild_empties_both_caches_in_every_process(
    db_url: str, pool: Any, event_store: store.EventStore
) -> None:
    # a rebuild (and so an import, which rebuilds every projection) swaps the read models
    # whole, appending nothing: its swap notifies at its commit, of the kind that empties
    # the token caches too
    user_id = uuid.uuid4()
    await event_store.append(
        user_events.stream_id(user_id),
        [user_events.UserCreated(user_id=user_id, name="rob")],
        expected=store.NO_STREAM,
    )
    async with caches(db_url) as (tokens, answers):
        before = await drawn(pool)
        digest = b"\x03" * 32
        tokens.put(digest, token_cache.Entry(object(), None, None), tokens.generation)
        answers.put("page", b"[]", answers.generation)
        [users] = [projection for projection in catalog.ALL if projection.name == "users"]
        await rebuild.rebuild(event_store, users)
        await wait_for(lambda: len(answers) == 0 and tokens.get(digest) is None)
        assert await drawn(pool) == before + 1


async def test_a_fill_that_an_invalidation_overtook_is_not_kept(db_url: str) -> None:
    async with caches(db_url) as (_tokens, answers):
        before = answers.generation  # read before the query
        answers.invalidate()  # a notification arrives while the query runs
        answers.put("page", b"old", before)
        assert answers.get("page") is reads_cache.MISSING
        answers.put("page", b"new", answers.generation)
        assert answers.get("page") == b"new"


async def test_nothing_is_served_or_kept_while_the_listener_is_down(db_url: str) -> None:
    async with caches(db_url, reconnect_s=600) as (tokens, answers):
        answers.put("page", b"[]", answers.generation)
        assert await cut_listeners(db_url) == 1
        await wait_for(lambda: not tokens.listening.is_set())
        assert answers.get("page") is reads_cache.MISSING
        assert len(answers) == 0
        answers.put("page", b"[]", answers.generation)
        assert len(answers) == 0


async def test_the_answers_are_bounded_the_least_recently_used_going_first() -> None:
    answers = reads_cache.ReadCache(lambda: True, max_entries=2)
    for key in ("a", "b"):
        answers.put(key, key, answers.generation)
    assert answers.get("a") == "a"  # b is now the least recently used
    answers.put("c", "c", answers.generation)
    assert len(answers) == 2
    assert answers.get("b") is reads_cache.MISSING
    assert (answers.get("a"), answers.get("c")) == ("a", "c")
    off = reads_cache.ReadCache(lambda: True, max_entries=0)
    off.put("a", "a", off.generation)
    assert off.get("a") is reads_cache.MISSING


async def test_an_answer_is_remembered_under_its_whole_key(pool: Any) -> None:
    answers = reads_cache.ReadCache(lambda: True)
    loads: list[int] = []

    async def load(conn: Any, n: int) -> int:
        loads.append(n)
        return int(await conn.fetchval("SELECT $1::int", n))

    for n in (1, 2, 1, 2):
        assert await answers.fetch(("q", n), pool, lambda conn, n=n: load(conn, n)) == n
    assert loads == [1, 2]  # each key read once, never answered with another key's answer


# --- two processes -------------------------------------------------------------------------


async def call(
    session: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    token: str = OPERATOR,
    **kw: Any,
) -> tuple[int, Any]:
    headers = {"Authorization": f"token {token}", **PAGINATED}
    async with session.request(method, f"{base}hub/api{path}", headers=headers, **kw) as resp:
        body = await resp.json(content_type=None) if resp.status != 204 else None
        return resp.status, body


async def cache_hits(session: aiohttp.ClientSession, base: str) -> float:
    """The read cache's hits in the process at ``base`` (``/hub/metrics``)."""
    async with session.get(
        f"{base}hub/metrics", headers={"Authorization": f"token {OPERATOR}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        text = await resp.text()
    found = re.search(r'^chronohub_read_cache_lookups\{outcome="hit"\} (\S+)$', text, re.M)
    assert found, text
    return float(found[1])


async def page(session: aiohttp.ClientSession, base: str, token: str = OPERATOR) -> dict[str, Any]:
    """The users list's first page through ``base``, asked twice: the second must come from
    the read cache (its hits counted) and agree with the first."""
    first = await call(session, base, "GET", "/users?limit=50", token)
    hits = await cache_hits(session, base)
    second = await call(session, base, "GET", "/users?limit=50", token)
    assert await cache_hits(session, base) > hits  # answered from memory
    assert first[0] == 200, first
    assert first == second
    return {user["name"]: user for user in first[1]["items"]}


async def fresh_page(
    session: aiohttp.ClientSession, base: str, token: str = OPERATOR
) -> dict[str, Any]:
    """The users list's first page through ``base``, asked once."""
    status, body = await call(session, base, "GET", "/users?limit=50", token)
    assert status == 200, body
    return {user["name"]: user for user in body["items"]}


SCOPES = [
    "admin:users",
    "admin:groups",
    "admin:servers",
    "tokens",
    "list:users",
    "read:users",
    "users:activity",
    "read:metrics",
]
QUICK_AGE_S = 1.0  # the answers' maximum age of the ``quick_hubs`` (30 s by default)


@contextlib.asynccontextmanager
async def two_serving(
    db_url: str, tmp_path: Path, settings: str = ""
) -> AsyncIterator[tuple[Served, Served, Any]]:
    """Hubs A and B (``Served``) on one database with ``settings`` (TOML), and a client
    session. Besides the operator, a service ``lister`` that may list users and see their
    names only. Users' servers are fake ones that answer at once."""
    config = tmp_path / "chronohub.toml"
    config.write_text(
        settings
        + f"spawner_cmd = {json.dumps(fake('serve'))}\n"
        + "single_user_mode = true\nsingle_user_mode_all_users = true\n"
        + "start_timeout = 20\nterm_timeout = 2\n"
        + service_toml(OPERATOR, SCOPES)
        + service_toml(LISTER, ["list:users", "read:users:name"], name="lister")
    )
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        a = await stack.enter_async_context(
            serving(db_url, tmp_path, config, tmp_path / "state-a", name="a")
        )
        b = await stack.enter_async_context(
            serving(db_url, tmp_path, config, tmp_path / "state-b", name="b")
        )
        yield a, b, session


@pytest.fixture
async def hubs(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Served, Served, Any]]:
    """``two_serving`` with the default maximum age (30 s)."""
    async with two_serving(db_url, tmp_path) as served:
        yield served


@pytest.fixture
async def quick_hubs(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Served, Served, Any]]:
    """``two_serving`` whose answers are kept at most ``QUICK_AGE_S``."""
    async with two_serving(db_url, tmp_path, f"read_cache_max_age_s = {QUICK_AGE_S}\n") as served:
        yield served


@pytest.fixture
def two_hubs(hubs: tuple[Served, Served, Any]) -> tuple[str, str, Any]:
    """Hubs A and B's addresses, and a client session."""
    a, b, session = hubs
    return a.url, b.url, session


async def test_every_write_through_one_hub_is_on_the_next_page_of_the_other(
    pool: Any, two_hubs: tuple[str, str, Any]
) -> None:
    a, b, session = two_hubs
    assert (await call(session, a, "POST", "/users/kim"))[0] == 201
    assert "kim" in await page(session, b)
    # B answers from memory: a change written behind the log's back (never done by the hub)
    # is not seen until something notifies
    await pool.execute("UPDATE users SET admin = true WHERE name = 'kim'")
    assert (await fresh_page(session, b))["kim"]["admin"] is False
    await pool.execute("UPDATE users SET admin = false WHERE name = 'kim'")

    writes: list[tuple[str, str, dict[str, Any] | None, Any]] = [
        ("POST", "/users/lee", None, lambda users: "lee" in users),
        ("PATCH", "/users/lee", {"admin": True}, lambda users: users["lee"]["admin"]),
        ("POST", "/groups/team", None, lambda users: True),
        (
            "POST",
            "/groups/team/users",
            {"users": ["lee"]},
            lambda users: users["lee"]["groups"] == ["team"],
        ),
        (
            "PATCH",
            "/users/lee",
            {"name": "lea"},
            lambda users: set(users) & {"lee", "lea"} == {"lea"},
        ),
        (
            "DELETE",
            "/groups/team/users",
            {"users": ["lea"]},
            lambda users: users["lea"]["groups"] == [],
        ),
    ]
    for method, path, body, seen in writes:
        await page(session, b)  # B's cache holds the page
        status, answer = await call(session, a, method, path, json=body)
        assert status in (200, 201, 204), (method, path, answer)
        assert seen(await fresh_page(session, b)), (method, path)
        assert seen(await fresh_page(session, a)), (method, path)

    # a server's lifecycle through A's API: its spawn and its stop are on B's next page
    async def lea_on_a() -> dict[str, Any]:
        status, user = await call(session, a, "GET", "/users/lea")  # read each time
        assert status == 200, user
        return dict(user)

    await page(session, b)
    status, answer = await call(session, a, "POST", "/users/lea/server")
    assert status in (201, 202), answer
    spawned = (await fresh_page(session, b))["lea"]
    assert spawned["pending"] == "spawn" or spawned["server"], spawned
    # ready: appended by A's spawn task, after the request answered; B is told soon after
    await wait_for(lambda: _ready(lea_on_a()), timeout_s=30)
    await wait_for(lambda: _ready(fresh_page(session, b), "lea"), timeout_s=10)
    await page(session, b)
    status, answer = await call(session, a, "DELETE", "/users/lea/server")
    assert status in (202, 204), answer
    stopped = (await fresh_page(session, b))["lea"]
    assert stopped["server"] is None or stopped["pending"] == "stop", stopped
    await wait_for(lambda: _stopped(lea_on_a()), timeout_s=30)

    await page(session, b)
    assert (await call(session, a, "DELETE", "/users/lea"))[0] == 204
    assert "lea" not in await fresh_page(session, b)
    assert "lea" not in await fresh_page(session, a)


async def _ready(found: Any, name: str | None = None) -> bool:
    user = await found
    user = user[name] if name else user
    return bool(user["server"]) and user["pending"] is None


async def _stopped(found: Any) -> bool:
    user = await found
    return user["server"] is None and user["pending"] is None


async def test_activity_written_through_one_hub_is_seen_through_the_other_within_the_max_age(
    quick_hubs: tuple[Served, Served, Any],
) -> None:
    a, b, session = quick_hubs
    assert (await call(session, a.url, "POST", "/users/max"))[0] == 201
    status, issued = await call(session, a.url, "POST", "/users/max/tokens", json={})
    assert status == 201, issued
    assert (await page(session, b.url))["max"]["last_activity"] is None
    # the token's first use writes its user's activity (hub/auth/access.py), no event: B's
    # answer moves once its page is older than the maximum age
    assert (await call(session, a.url, "GET", "/user", issued["token"]))[0] == 200

    async def b_shows(check: Any) -> bool:
        return bool(check((await fresh_page(session, b.url))["max"]["last_activity"]))

    timeout = QUICK_AGE_S + 10  # the age, and a loaded machine's slack
    await wait_for(lambda: b_shows(lambda seen: seen is not None), timeout_s=timeout)
    used = (await page(session, b.url))["max"]["last_activity"]  # remembered again
    # an activity report, later than the token's use
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body = {"last_activity": stamp}
    assert (await call(session, a.url, "POST", "/users/max/activity", json=body))[0] == 200
    await wait_for(lambda: b_shows(lambda seen: seen not in (None, used)), timeout_s=timeout)


async def test_a_caller_never_gets_a_page_remembered_for_another(
    two_hubs: tuple[str, str, Any],
) -> None:
    a, b, session = two_hubs
    for name in ("nia", "oto", "pam"):
        assert (await call(session, a, "POST", f"/users/{name}"))[0] == 201
    assert (await call(session, a, "POST", "/groups/team"))[0] == 201
    added = await call(session, a, "POST", "/groups/team/users", json={"users": ["oto"]})
    assert added[0] == 200, added
    # nia, an admin, holds every scope: her tokens ask for less
    assert (await call(session, a, "PATCH", "/users/nia", json={"admin": True}))[0] == 200
    tokens = {}
    for label, scopes in (
        ("team", ["list:users!group=team", "read:users!group=team"]),
        ("names", ["list:users", "read:users:name"]),
        ("all", ["list:users", "read:users"]),
    ):
        status, issued = await call(
            session, a, "POST", "/users/nia/tokens", json={"scopes": scopes}
        )
        assert status == 201, issued
        tokens[label] = issued["token"]
    tokens["lister"] = LISTER  # a service: the same fields of every user, fewer than "all"
    # every order of callers on B, each page asked twice (remembered after the first)
    orders = [("all", "team", "names", "lister"), ("lister", "names", "team", "all")]
    orders.append(("team", "lister", "all", "names"))
    for order in orders:
        for label in order:
            users = await page(session, b, tokens[label])
            if label == "team":
                assert set(users) == {"oto"}
                assert "created" in users["oto"]
            elif label == "names":
                assert set(users) >= {"nia", "oto", "pam"}
                fields = {"kind", "name", "admin", "user_info"}
                # (nia, the token's owner, sees more of herself: her token's own scopes)
                assert all(set(users[name]) <= fields for name in ("oto", "pam")), users
            elif label == "lister":
                assert set(users) >= {"nia", "oto", "pam"}
                fields = {"kind", "name", "admin", "user_info"}
                assert all(set(user) == fields for user in users.values()), users
            else:
                assert set(users) >= {"nia", "oto", "pam"}
                assert "last_activity" in users["pam"]
        # the group's members change through A: the filtered caller's page on B follows
        moved = {"users": ["pam"]}
        assert (await call(session, a, "POST", "/groups/team/users", json=moved))[0] == 200
        assert set(await fresh_page(session, b, tokens["team"])) == {"oto", "pam"}
        assert (await call(session, a, "DELETE", "/groups/team/users", json=moved))[0] == 200
        assert set(await fresh_page(session, b, tokens["team"])) == {"oto"}


async def test_a_write_while_the_listeners_are_cut_is_seen_through_the_other_hub(
    db_url: str, two_hubs: tuple[str, str, Any]
) -> None:
    a, b, session = two_hubs
    assert (await call(session, a, "POST", "/users/quin"))[0] == 201
    assert "quin" in await page(session, b)
    # both hubs' LISTEN connections cut: the notification of what follows reaches neither
    # while they are down; B must not answer from what it remembered
    assert await cut_listeners(db_url) == 2
    assert (await call(session, a, "POST", "/users/rae"))[0] == 201
    assert "rae" in await fresh_page(session, b)


async def test_a_page_asked_for_differently_is_answered_as_asked(
    two_hubs: tuple[str, str, Any],
) -> None:
    a, b, session = two_hubs
    for name in ("sam", "tia", "uma"):
        assert (await call(session, a, "POST", f"/users/{name}"))[0] == 201
    for _ in range(2):  # the second time from what the first left in the cache
        await page(session, b)
        # without the pagination media type: the bare list, from the same remembered items
        async with session.get(
            f"{b}hub/api/users?limit=50", headers={"Authorization": f"token {OPERATOR}"}
        ) as resp:
            bare = await resp.json()
        assert isinstance(bare, list)
        assert [user["name"] for user in bare] == ["sam", "tia", "uma"]
        shifted = await call(session, b, "GET", "/users?limit=1&offset=1")
        assert [user["name"] for user in shifted[1]["items"]] == ["tia"]
        assert shifted[1]["_pagination"]["next"]["offset"] == 2
        found = await call(session, b, "GET", "/users?name_filter=m&sort=-name")
        assert [user["name"] for user in found[1]["items"]] == ["uma", "sam"]
        inactive = await call(session, b, "GET", "/users?state=active")
        assert inactive[1]["items"] == []


async def test_a_write_that_moves_the_page_waits_for_the_other_process_activity_does_not(
    pool: Any, hubs: tuple[Served, Served, Any]
) -> None:
    # B stopped (SIGSTOP): it cannot acknowledge. Activity written through A (a report, a
    # token's first use: whoami) sends nothing and answers at once; a write through A that
    # changes the page with an event answers only once B's lease ran out (and names it), as
    # a revocation does (test_token_acks.py); a read through A does not wait either.
    a, b, session = hubs
    assert (await call(session, a.url, "POST", "/users/vic"))[0] == 201
    status, issued = await call(session, a.url, "POST", "/users/vic/tokens", json={})
    assert status == 201, issued
    b_member = await member_of(pool, b)

    async def b_acknowledged() -> bool:
        return bool((await members(pool))[b_member]["seen"] >= await drawn(pool))

    await wait_for(b_acknowledged)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    os.kill(b.process.pid, signal.SIGSTOP)
    try:
        before = await drawn(pool)
        started = time.monotonic()
        assert (await call(session, a.url, "GET", "/users?limit=50"))[0] == 200
        assert (await call(session, a.url, "POST", "/users/vic/tokens", json={}))[0] == 201
        body = {"last_activity": now}
        assert (await call(session, a.url, "POST", "/users/vic/activity", json=body))[0] == 200
        whoami = await call(session, a.url, "GET", "/user", issued["token"])
        assert whoami[0] == 200, whoami
        # B's lease is still live (renewed at most a quarter of it before it stopped, and
        # each wait would last until it ran out): none of these waited for B
        assert time.monotonic() - started < token_acks.LEASE_S / 2
        assert await drawn(pool) == before  # and none sent a notification
        started = time.monotonic()
        assert (await call(session, a.url, "POST", "/users/wes"))[0] == 201  # an event
        assert time.monotonic() - started > token_acks.LEASE_S / 2
        await wait_for(lambda: b_member in a.log.read_text())
        assert "not acknowledged" in a.log.read_text()
    finally:
        os.kill(b.process.pid, signal.SIGCONT)
    # B is back: it joins again, emptied, and the writes are on its page
    users = await fresh_page(session, b.url)
    assert users["vic"]["last_activity"] is not None
    assert "wes" in users


async def test_each_kind_of_write_through_a_is_acknowledged_by_b_before_a_answers(
    pool: Any, hubs: tuple[Served, Served, Any]
) -> None:
    a, b, session = hubs
    b_member = await member_of(pool, b)
    for second in range(1, 4):
        for method, path, body in (
            ("POST", f"/users/yul{second}", None),  # the read cache's kind ('<n> reads')
            ("PATCH", f"/users/yul{second}", {"admin": True}),  # the token cache's ('<n>')
        ):
            await page(session, b.url)
            status, answer = await call(session, a.url, method, path, json=body)
            assert status in (200, 201), (path, answer)
            # the number this write drew is acknowledged by B already: A waited for it
            assert (await members(pool))[b_member]["seen"] >= await drawn(pool), path


async def test_the_groups_list_follows_every_change_through_the_other_hub(
    two_hubs: tuple[str, str, Any],
) -> None:
    a, b, session = two_hubs

    async def groups(base: str, twice: bool = False) -> dict[str, Any]:
        answers = [await call(session, base, "GET", "/groups") for _ in range(2 if twice else 1)]
        assert answers[0][0] == 200, answers[0]
        assert all(answer == answers[0] for answer in answers)
        return {group["name"]: group for group in answers[0][1]["items"]}

    assert (await call(session, a, "POST", "/users/zed"))[0] == 201
    writes: list[tuple[str, str, Any, Any]] = [
        ("POST", "/groups/crew", None, lambda found: found["crew"]["users"] == []),
        (
            "POST",
            "/groups/crew/users",
            {"users": ["zed"]},
            lambda found: found["crew"]["users"] == ["zed"],
        ),
        (
            "PUT",
            "/groups/crew/properties",
            {"ship": "ark"},
            lambda found: found["crew"]["properties"] == {"ship": "ark"},
        ),
        (
            "PATCH",
            "/users/zed",
            {"name": "zoe"},
            lambda found: found["crew"]["users"] == ["zoe"],
        ),
        ("DELETE", "/groups/crew", None, lambda found: "crew" not in found),
    ]
    for method, path, body, seen in writes:
        await groups(b, twice=True)  # B's cache holds the list
        status, answer = await call(session, a, method, path, json=body)
        assert status in (200, 201, 204), (method, path, answer)
        assert seen(await groups(b)), (method, path)
        assert seen(await groups(a)), (method, path)
