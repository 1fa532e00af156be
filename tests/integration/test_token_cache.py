"""The hub's token cache (hub/auth/token_cache.py, issue 20 part 4): emptied by the event
log's ``chronohub_auth`` notifications in every process, bypassed while its LISTEN connection
is down, expiry checked at each use; and end to end, two ``chronohub serve`` processes on one
database refuse a revoked token at once (the revocation waits for the other cache's
acknowledgement: test_token_acks.py), also when the cache's listeners were cut."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from events import store
from events.catalog import users as user_events
from hub.auth import token_cache
from tests.helpers import service_toml, wait_for
from tests.integration.serve_process import chronohub_serve

pytestmark = pytest.mark.integration

DIGEST = b"\x01" * 32


def entry(expires_at: float | None = None) -> token_cache.Entry:
    return token_cache.Entry(caller=object(), expires_at=expires_at, profile=None)


@contextlib.asynccontextmanager
async def listening(db_url: str, **kwargs: Any) -> AsyncIterator[token_cache.TokenCache]:
    async with token_cache.TokenCache(db_url, **kwargs) as cache:
        await wait_for(cache.serving)
        yield cache


async def cut_listeners(db_url: str) -> int:
    """Terminate the token caches' LISTEN connections on this database (as a failover or a
    network fault would); how many there were."""
    conn = await asyncpg.connect(db_url)
    try:
        cut: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1 AND datname = current_database()",
            token_cache.APPLICATION_NAME,
        )
    finally:
        await conn.close()
    return cut


async def test_the_trigger_and_the_cache_agree_on_which_events_invalidate(pool: Any) -> None:
    definition = await pool.fetchval(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = 'auth_changed'"
    )
    assert set(re.findall(r"'([a-z_]+\.[a-z_]+)'", definition)) == token_cache.INVALIDATING


async def test_an_invalidating_event_committed_elsewhere_empties_the_cache(
    db_url: str, event_store: store.EventStore
) -> None:
    # event_store has no on_append hook: only the notification can tell this cache
    async with listening(db_url) as cache:
        user_id = uuid.uuid4()
        stream = user_events.stream_id(user_id)
        cache.put(DIGEST, entry(), cache.generation)
        created = user_events.UserCreated(user_id=user_id, name="carol")
        await event_store.append(stream, [created], expected=store.NO_STREAM)
        assert cache.get(DIGEST) is not None  # a new user changes no token: nothing sent
        await event_store.append(
            stream, [user_events.UserDeleted(user_id=user_id, name="carol")], expected=1
        )
        await wait_for(lambda: len(cache) == 0)
        assert cache.get(DIGEST) is None


async def test_a_lookup_that_an_invalidation_overtook_is_not_kept(db_url: str) -> None:
    async with listening(db_url) as cache:
        before = cache.generation  # read before the database lookup
        cache.invalidate()  # a notification arrives while the lookup runs
        cache.put(DIGEST, entry(), before)
        assert cache.get(DIGEST) is None
        cache.put(DIGEST, entry(), cache.generation)
        assert cache.get(DIGEST) is not None


async def test_an_expired_token_is_not_served_from_the_cache(db_url: str) -> None:
    async with listening(db_url) as cache:
        cache.put(DIGEST, entry(expires_at=time.time() - 0.001), cache.generation)
        assert cache.get(DIGEST) is None
        cache.put(DIGEST, entry(expires_at=time.time() + 3600), cache.generation)
        assert cache.get(DIGEST) is not None


async def test_an_entry_older_than_max_age_is_read_again(db_url: str) -> None:
    async with listening(db_url, max_age_s=0.0) as cache:
        cache.put(DIGEST, entry(), cache.generation)
        assert cache.get(DIGEST) is None


async def test_while_the_listener_is_down_nothing_is_served_or_kept(db_url: str) -> None:
    # reconnect_s: it stays down for the length of the test
    async with listening(db_url, reconnect_s=600) as cache:
        cache.put(DIGEST, entry(), cache.generation)
        assert await cut_listeners(db_url) == 1
        await wait_for(lambda: not cache.listening.is_set())
        assert cache.get(DIGEST) is None
        assert len(cache) == 0
        cache.put(DIGEST, entry(), cache.generation)  # a lookup while down is not kept
        assert len(cache) == 0


async def test_the_cache_is_emptied_when_its_listener_is_back(db_url: str) -> None:
    async with listening(db_url, reconnect_s=0.05) as cache:
        cache.put(DIGEST, entry(), cache.generation)
        before = cache.generation
        assert await cut_listeners(db_url) == 1
        # whatever was sent while it was down is unknown: back, it starts empty
        await wait_for(lambda: cache.generation > before and cache.listening.is_set())
        assert cache.get(DIGEST) is None


async def test_the_cache_forgets_at_once_what_this_process_committed(db_url: str) -> None:
    async with listening(db_url) as cache:
        cache.put(DIGEST, entry(), cache.generation)
        cache.on_append(["user.created", "token.issued", "server.started"])
        assert cache.get(DIGEST) is not None
        cache.on_append(["token.revoked"])
        assert cache.get(DIGEST) is None


# --- two processes -------------------------------------------------------------------------

OPERATOR = "operator-secret-0123456789abcdef0123"


async def call(
    session: aiohttp.ClientSession, base: str, method: str, path: str, token: str, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"token {token}"}
    async with session.request(method, f"{base}hub/api{path}", headers=headers, **kw) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text else None


@pytest.fixture
async def two_hubs(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[str, str, Any]]:
    """Hubs A and B on one database, and a client session."""
    toml = service_toml(OPERATOR, ["admin:users", "tokens"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        a = await stack.enter_async_context(chronohub_serve(db_url, tmp_path / "a", toml))
        b = await stack.enter_async_context(chronohub_serve(db_url, tmp_path / "b", toml))
        yield a, b, session


async def test_a_token_revoked_while_the_listeners_are_cut_is_refused_by_the_other_hub(
    db_url: str, two_hubs: tuple[str, str, Any]
) -> None:
    a, b, session = two_hubs
    assert (await call(session, a, "POST", "/users/dora", OPERATOR))[0] == 201
    status, issued = await call(session, a, "POST", "/users/dora/tokens", OPERATOR, json={})
    assert status == 201, issued
    token = issued["token"]
    for _ in range(3):  # B resolves it once, then answers from its cache
        status, me = await call(session, b, "GET", "/user", token)
        assert (status, me["name"]) == (200, "dora")
    # Both hubs' LISTEN connections cut: the revocation's notification reaches neither while
    # they are down; B must not answer from what it remembered.
    assert await cut_listeners(db_url) == 2
    status, _ = await call(session, a, "DELETE", f"/users/dora/tokens/{issued['id']}", OPERATOR)
    assert status == 204
    assert (await call(session, b, "GET", "/user", token))[0] == 403
    assert (await call(session, a, "GET", "/user", token))[0] == 403


async def test_a_revoked_token_is_refused_by_the_other_hub_on_the_very_next_request(
    two_hubs: tuple[str, str, Any],
) -> None:
    # The revocation answers only once B's cache acknowledged it (hub/auth/token_acks.py):
    # the very next request to B is refused, in every round.
    a, b, session = two_hubs
    assert (await call(session, a, "POST", "/users/erin", OPERATOR))[0] == 201
    for _round in range(20):  # many rounds: a race lost once would show in one of them
        status, issued = await call(session, a, "POST", "/users/erin/tokens", OPERATOR, json={})
        assert status == 201, issued
        token = issued["token"]
        for _ in range(2):
            assert (await call(session, b, "GET", "/user", token))[0] == 200
        path = f"/users/erin/tokens/{issued['id']}"
        assert (await call(session, a, "DELETE", path, OPERATOR))[0] == 204
        assert (await call(session, b, "GET", "/user", token))[0] == 403, _round
        assert (await call(session, a, "GET", "/user", token))[0] == 403  # its own: at once
