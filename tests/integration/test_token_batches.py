"""Tokens issued through the API by concurrent requests: one transaction for a batch of them
(group commit, with each token's hash beside its event), each request with its own answer; a
token whose owner went meanwhile fails alone and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import test_utils

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from projections import base, catalog, hub_model, rebuild
from tests.helpers import Noted, wait_for
from tests.integration.api_fixtures import CONFIG, Api

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(pool: asyncpg.Pool[Any]) -> AsyncIterator[Api]:
    """The hub's API on a store of one group commit lane: appends queued behind a batch that
    a lock holds stay queued (a spare lane would take them, to wait on the same lock)."""
    one_lane = store.EventStore(pool, inline=base.Inline(catalog.ALL), group_commit_lanes=1)
    config = hub_settings.Settings(**CONFIG)
    await bootstrap.reconcile(one_lane, config)
    hub = context.Hub(settings=config, store=one_lane, database="test")
    async with test_utils.TestClient(test_utils.TestServer(app.make_app(hub))) as client:
        yield Api(client, one_lane)


@contextlib.asynccontextmanager
async def events_held(pool: asyncpg.Pool[Any], event_store: store.EventStore) -> AsyncIterator[Any]:
    """A lock on ``events`` that holds a first append's batch, so that the appends made in the
    block queue behind it and then go as one batch when the block ends."""
    group = event_store.group_commit
    assert group is not None
    async with pool.acquire() as blocker:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        opener = asyncio.ensure_future(event_store.append("note-opener", [Noted(text="x")]))
        try:
            await wait_for(lambda: group._running == 1)
            yield group
        finally:
            await lock.rollback()
            await opener


async def test_concurrent_requests_share_one_commit(api: Api, pool: asyncpg.Pool[Any]) -> None:
    names = [f"tb{i}" for i in range(6)]
    assert (await api.call("POST", "/users", json={"usernames": names}))[0] == 201
    body = {"note": "batch", "expires_in": 3600}
    async with events_held(pool, api.store) as group:
        posts = [
            asyncio.ensure_future(api.call("POST", f"/users/{name}/tokens", json=body))
            for name in names
        ]
        await wait_for(lambda: len(group._queue) == len(names))
        batches = group.batches
    answers = await asyncio.gather(*posts)
    assert group.batches == batches + 1
    assert [status for status, _ in answers] == [201] * len(names), answers
    ids = [made["id"] for _, made in answers]
    txs = await pool.fetch(
        "SELECT DISTINCT tx_id::text FROM events WHERE event_type = 'token.issued'"
        " AND data->>'token_id' = ANY($1::text[])",
        ids,
    )
    assert len(txs) == 1, "the tokens were issued in one transaction"
    for name, (_, made) in zip(names, answers, strict=True):
        assert made["user"] == name
        secret = made.pop("token")
        assert await api.call("GET", f"/users/{name}/tokens/{made['id']}") == (200, made)
        status, me = await api.call("GET", "/user", token=secret)
        assert (status, me["name"]) == (200, name)
    tokens = hub_model.TokensProjection()
    assert (await rebuild.verify(api.store, tokens)).differences == ()


async def test_a_token_whose_owner_went_meanwhile_fails_alone(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    names = ["tw-keep", "tw-gone", "tw-also"]
    assert (await api.call("POST", "/users", json={"usernames": names}))[0] == 201
    gone = await pool.fetchval("SELECT user_id FROM users WHERE name = 'tw-gone'")
    async with events_held(pool, api.store) as group:
        posts = [
            asyncio.ensure_future(api.call("POST", f"/users/{name}/tokens", json={}))
            for name in names
        ]
        # judged and queued: the owner is read already; now it goes (as a deletion's
        # projection would remove it) before the batch is written
        await wait_for(lambda: len(group._queue) == len(names))
        await pool.execute("DELETE FROM users WHERE user_id = $1", gone)
    answers = await asyncio.gather(*posts)
    assert [status for status, _ in answers] == [201, 403, 201], answers
    assert answers[1][1]["message"] == (
        "User tw-gone not found or no permissions to generate tokens"
    )
    issued = await pool.fetch(
        "SELECT data->>'owner_name' AS owner, tx_id::text AS tx FROM events"
        " WHERE event_type = 'token.issued' AND data->>'owner_name' LIKE 'tw-%'"
    )
    assert sorted(row["owner"] for row in issued) == ["tw-also", "tw-keep"]
    assert len({row["tx"] for row in issued}) == 1
    # nothing half-written: every hash has its token, every token its hash
    orphans = await pool.fetchval(
        "SELECT count(*) FROM token_secrets s FULL JOIN tokens t USING (token_id)"
        " WHERE s.token_id IS NULL OR t.token_id IS NULL"
    )
    assert orphans == 0
    assert await pool.fetchval("SELECT count(*) FROM tokens WHERE user_id = $1", gone) == 0
