"""Tokens issued through the API by concurrent requests: one transaction for a batch of them
(group commit, with each token's hash beside its event), each request with its own answer; a
token whose owner went meanwhile fails alone and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiohttp import test_utils

from events import store
from events.catalog import tokens as token_events
from hub import app, bootstrap, context, errors
from hub import settings as hub_settings
from hub.auth import tokens
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
            await wait_for(lambda: group.lanes.running == 1)
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
        await wait_for(lambda: len(group.lanes.queue) == len(names))
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
        await wait_for(lambda: len(group.lanes.queue) == len(names))
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


async def test_a_retried_token_append_answers_as_the_first(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    # An append of token.issued retried with the same event ids and hash (a caller's retry,
    # or one re-queued after its batch's leader was cancelled) finds the first by its event
    # id: the hash stored already is no error, nothing is written twice. Alone, in a batch,
    # and without group commit.
    assert (await api.call("POST", "/users", json={"usernames": ["tr-one"]}))[0] == 201
    user_id = await pool.fetchval("SELECT user_id FROM users WHERE name = 'tr-one'")
    direct = store.EventStore(pool, inline=base.Inline(catalog.ALL), group_commit_lanes=0)

    def append_token(
        event_store: store.EventStore, fresh: tokens.Fresh, event_id: UUID
    ) -> Awaitable[store.AppendResult]:
        return event_store.append(
            token_events.stream_id(fresh.token_id),
            [
                token_events.TokenIssued(
                    token_id=fresh.token_id, user_id=user_id, owner_name="tr-one", scopes=[]
                )
            ],
            expected=store.NO_STREAM,
            event_ids=[event_id],
            beside=tokens.SecretBeside(fresh, user_id, "tr-one"),
        )

    for event_store in (api.store, direct):
        fresh, event_id = tokens.Fresh.new(), uuid4()
        first = await append_token(event_store, fresh, event_id)
        again = await append_token(event_store, fresh, event_id)
        assert (again.positions, again.checkpoint) == (first.positions, first.checkpoint)
        # the same token id with another secret: no retry of that append
        with pytest.raises(errors.Conflict):
            await append_token(event_store, tokens.Fresh(fresh.token_id, "other"), event_id)

    fresh, event_id = tokens.Fresh.new(), uuid4()
    first = await append_token(api.store, fresh, event_id)
    async with events_held(pool, api.store) as group:
        batched = [
            asyncio.ensure_future(append_token(api.store, fresh, event_id)),
            asyncio.ensure_future(append_token(api.store, tokens.Fresh.new(), uuid4())),
        ]
        await wait_for(lambda: len(group.lanes.queue) == len(batched))
    again, other = await asyncio.gather(*batched)
    assert (again.positions, again.checkpoint) == (first.positions, first.checkpoint)
    assert other.version == 1
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'token.issued'"
            " AND data->>'owner_name' = 'tr-one'"
        )
        == 4
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM token_secrets JOIN tokens USING (token_id) WHERE user_id = $1",
            user_id,
        )
        == 4
    )
    assert (await rebuild.verify(api.store, hub_model.TokensProjection())).differences == ()


@pytest.mark.parametrize(("method", "body"), [("DELETE", None), ("PATCH", {"name": "th-renamed"})])
async def test_a_token_asked_for_while_its_owner_is_deleted_or_renamed(
    api: Api, pool: asyncpg.Pool[Any], method: str, body: dict[str, str] | None
) -> None:
    # The deletion (or rename) is held in its transaction after it locked the user's row and
    # before its event is written (a lock on ``events``); tokens are asked for meanwhile, the
    # owner still there as read. The batch writing them waits for the change, then refuses the
    # changed user's token: the log never holds a token.issued after its owner's change.
    names = ["th-keep", "th-changed"]
    assert (await api.call("POST", "/users", json={"usernames": names}))[0] == 201
    changed = await pool.fetchval("SELECT user_id FROM users WHERE name = 'th-changed'")
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    async with pool.acquire() as blocker:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        try:
            change = asyncio.ensure_future(api.call(method, "/users/th-changed", json=body))
            await wait_for(lambda: pool.fetchval(waiting), timeout_s=10)
            posts = [
                asyncio.ensure_future(api.call("POST", f"/users/{name}/tokens", json={}))
                for name in names
            ]
            # the change waits on events; the token batch on the change (or, without the
            # lock, on events too, its hash written already)
            await wait_for(lambda: _equals(pool.fetchval(waiting), 2), timeout_s=10)
        finally:
            await lock.rollback()
    assert (await change)[0] in (200, 204)
    answers = await asyncio.gather(*posts)
    assert [status for status, _ in answers] == [201, 403], answers
    log = await pool.fetch(
        "SELECT event_type FROM events WHERE stream_id = $1"
        " OR (event_type = 'token.issued' AND (data->>'user_id')::uuid = $2)"
        " ORDER BY global_position",
        f"user-{changed}",
        changed,
    )
    assert [row["event_type"] for row in log] == [
        "user.created",
        "user.deleted" if method == "DELETE" else "user.renamed",
    ]
    assert await pool.fetchval("SELECT count(*) FROM tokens WHERE user_id = $1", changed) == 0
    tokens_model = hub_model.TokensProjection()
    assert (await rebuild.verify(api.store, tokens_model)).differences == ()


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected
