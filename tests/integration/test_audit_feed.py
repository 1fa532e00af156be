"""The shared live feed of ``/hub/api/events/stream``: one subscription per process, each
event rendered once, a seam without loss or duplicate, slow followers dropped, and every
stream ended at shutdown."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiohttp import test_utils

from events import models, store
from events.catalog import groups as group_events
from hub import app, bootstrap, context
from hub import settings as hub_settings
from hub.audit import feed as audit_feed
from hub.audit import history as audit
from tests.helpers import wait_for
from tests.integration.api_fixtures import CONFIG, Api
from tests.integration.test_projections import create_user

pytestmark = pytest.mark.integration

LOG_ORDER = (
    "SELECT tx_id::text || ':' || global_position FROM events ORDER BY tx_id, global_position"
)


def feed_of(api: Api) -> audit_feed.Feed:
    return api.client.server.app[audit.FEED]


async def collect_ids(response: Any, until: str, ids: list[str]) -> None:
    """Append to ``ids`` the ids of the events of an SSE response as they come, up to and
    including the one named ``until`` (a ``user.created`` event's name)."""
    current: str | None = None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("id: "):
            current = line[4:]
        elif line.startswith("data: "):
            assert current is not None
            ids.append(current)
            if json.loads(line[6:])["data"].get("name") == until:
                return


async def sse_ids(response: Any, until: str, timeout_s: float = 30) -> list[str]:
    """The ids of the events of an SSE response up to and including the one named ``until``."""
    ids: list[str] = []
    await asyncio.wait_for(collect_ids(response, until, ids), timeout_s)
    return ids


def after(ids: list[str], checkpoint: str) -> list[str]:
    """The ids of the log after ``checkpoint``, in the readers' order."""
    mark = models.Checkpoint.parse(checkpoint)
    return [i for i in ids if models.Checkpoint.parse(i) > mark]


async def test_streams_joining_during_appends_miss_and_repeat_nothing(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    token = await api.user_token("admin")
    headers = {"Authorization": f"token {token}"}

    async def writer(w: int) -> None:
        for i in range(60):
            await create_user(api.store, f"w{w}-{i}")

    writers = [asyncio.create_task(writer(w)) for w in range(4)]
    streams = []
    joined_at: list[str] = []
    try:
        for k in range(8):
            await create_user(api.store, f"mark{k}")
            head = await api.store.head()
            # Half join at the head (the feed may not be there yet), half further back.
            mark = head if k % 2 == 0 else models.Checkpoint(head.tx, max(head.position - 7, 0))
            if k % 2:
                back = await pool.fetchval(
                    "SELECT tx_id::text || ':' || global_position FROM events"
                    " WHERE global_position <= $1 ORDER BY tx_id DESC, global_position DESC"
                    " LIMIT 1",
                    mark.position,
                )
                mark = models.Checkpoint.parse(back)
            response = await api.client.get(f"/hub/api/events/stream?after={mark}", headers=headers)
            assert response.status == 200
            streams.append(response)
            joined_at.append(str(mark))
            await asyncio.sleep(0.02 * k)  # joins spread over the appends
    finally:
        await asyncio.gather(*writers)
    await create_user(api.store, "the-end")
    log = [row[0] for row in await pool.fetch(LOG_ORDER)]
    try:
        for mark, response in zip(joined_at, streams, strict=True):
            assert await sse_ids(response, "the-end") == after(log, mark)
    finally:
        for response in streams:
            response.close()
    assert len(feed_of(api).followers) <= len(streams)


async def test_a_client_ahead_of_the_feed_gets_only_what_follows_its_cursor(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    """A client may resume from an event this process's feed has not handed out yet (it
    read it through another hub process): the feed's events up to its cursor are skipped."""
    token = await api.user_token("admin")
    headers = {"Authorization": f"token {token}"}
    feed = feed_of(api)
    first = await api.client.get("/hub/api/events/stream?type=user.created", headers=headers)
    held: list[list[models.RecordedEvent]] = []
    dispatch = feed.dispatch
    feed.dispatch = held.append  # type: ignore[method-assign] # the feed falls behind
    try:
        for i in range(5):
            await create_user(api.store, f"ahead{i}")
        log = [row[0] for row in await pool.fetch(LOG_ORDER)]
        cursor = log[-3]  # ahead of the feed, which stands before ahead0
        assert feed.checkpoint is not None
        assert models.Checkpoint.parse(cursor) > feed.checkpoint
        second = await api.client.get(f"/hub/api/events/stream?after={cursor}", headers=headers)
    finally:
        feed.dispatch = dispatch  # type: ignore[method-assign]
        for page in held:
            dispatch(page)
    try:
        await create_user(api.store, "ahead-end")
        log = [row[0] for row in await pool.fetch(LOG_ORDER)]
        assert await sse_ids(second, "ahead-end") == after(log, cursor)
        assert len(await sse_ids(first, "ahead-end")) >= 6
    finally:
        first.close()
        second.close()


async def test_a_page_read_twice_hands_out_each_event_once(event_store: store.EventStore) -> None:
    """The seam between reads: a page that overlaps one already handed out (read again after
    a retry, or by a read that raced the checkpoint) repeats nothing on any stream."""
    start = await event_store.head()
    for i in range(3):
        await create_user(event_store, f"twice{i}")
    page = await event_store.read_all(start, limit=100)
    assert len(page) == 3
    async with audit_feed.Feed(event_store) as feed:
        feed.checkpoint = start
        follower = audit_feed.Follower(audit_feed.Selection())
        feed.followers.add(follower)
        feed.dispatch(page[:2])
        feed.dispatch(page)  # overlaps the first two
        feed.dispatch(page)  # all of it again
        handed = [checkpoint for checkpoint, _ in await follower.take(0) or []]
    assert handed == [event.checkpoint for event in page]


async def test_one_subscription_renders_each_event_once(api: Api, monkeypatch: Any) -> None:
    token = await api.user_token("admin")
    headers = {"Authorization": f"token {token}"}
    rendered: list[int] = []
    original = audit_feed.sse

    def counting(event: models.RecordedEvent, data: Any = None) -> bytes:
        rendered.append(event.position)
        return original(event, data)

    monkeypatch.setattr(audit_feed, "sse", counting)
    head = await api.store.head()
    feed = feed_of(api)
    responses = [
        await api.client.get(f"/hub/api/events/stream?after={head}", headers=headers)
        for _ in range(5)
    ]
    try:
        for i in range(10):
            await create_user(api.store, f"r{i}")
        for response in responses:
            ids = await sse_ids(response, "r9")
            assert len(ids) == 10
        assert len(rendered) == 10  # once per event, not once per stream
        assert len(set(rendered)) == 10
        assert len(feed.followers) == 5
        assert feed._task is not None
        assert not feed._task.done()
    finally:
        for response in responses:
            response.close()


async def test_a_follower_too_far_behind_is_dropped_and_resumes_without_loss(
    api: Api, pool: asyncpg.Pool[Any]
) -> None:
    token = await api.user_token("admin")
    feed = feed_of(api)
    feed.max_backlog = 20
    head = await api.store.head()
    server = api.client.server
    # The slow follower: a raw connection with a tiny receive buffer that reads nothing.
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    await asyncio.get_running_loop().sock_connect(slow, (server.host, server.port))
    request = (
        f"GET /hub/api/events/stream?after={head} HTTP/1.1\r\nHost: hub\r\n"
        f"Authorization: token {token}\r\n\r\n"
    )
    await asyncio.get_running_loop().sock_sendall(slow, request.encode())
    await wait_for(lambda: feed.followers)
    [lagging] = feed.followers
    fast = await api.client.get(
        f"/hub/api/events/stream?after={head}", headers={"Authorization": f"token {token}"}
    )
    fast_ids: list[str] = []
    reading = asyncio.create_task(collect_ids(fast, "after-the-drop", fast_ids))
    try:
        # Events of ~30 kB, one commit each, until the slow one's writes are stuck and its
        # backlog overflows; the fast one receives each before the next is appended.
        blob = "x" * 30_000
        sent = 0
        async with asyncio.timeout(60):
            while lagging.dropped is None:
                group_id = uuid4()
                result = await api.store.append(
                    group_events.stream_id(group_id),
                    [group_events.GroupCreated(group_id=group_id, name=f"g{sent}",
                                               properties={"blob": blob})],
                )  # fmt: skip
                sent += 1
                await wait_for(
                    lambda: str(result.checkpoint) in fast_ids[-1:],  # noqa: B023 - awaited here
                    timeout_s=30,
                    every_s=0.005,
                )
        assert "more than 20 events behind" in lagging.dropped
        assert sent > 20
        await create_user(api.store, "after-the-drop")
        await asyncio.wait_for(reading, 30)
        log = [row[0] for row in await pool.fetch(LOG_ORDER)]
        assert fast_ids == after(log, str(head))  # the fast one was never held up or dropped
        assert lagging not in feed.followers

        # The slow one's connection was closed; it resumes from the last event it has whole.
        received = b""
        async with asyncio.timeout(10):
            while chunk := await asyncio.get_running_loop().sock_recv(slow, 1 << 20):
                received += chunk
        whole = received[: received.rfind(b"\n\n") + 2]
        last_ids = [line[4:].decode() for line in whole.split(b"\n") if line.startswith(b"id: ")]
        resume = last_ids[-1] if last_ids else str(head)
        async with api.client.get(
            "/hub/api/events/stream",
            headers={"Authorization": f"token {token}", "Last-Event-ID": resume},
        ) as again:
            assert await sse_ids(again, "after-the-drop") == after(log, resume)
    finally:
        reading.cancel()
        fast.close()
        slow.close()


async def test_shutdown_ends_every_stream_and_the_feed(event_store: store.EventStore) -> None:
    config = hub_settings.Settings(**CONFIG)
    await bootstrap.reconcile(event_store, config)
    hub = context.Hub(settings=config, store=event_store, database="test")
    server = test_utils.TestServer(app.make_app(hub))
    client = test_utils.TestClient(server)
    await client.start_server()
    token = await Api(client, event_store).user_token("admin")
    feed = server.app[audit.FEED]
    response = await client.get(
        "/hub/api/events/stream", headers={"Authorization": f"token {token}"}
    )
    assert response.status == 200
    await response.content.readuntil(b"\n\n")  # the stream is live
    task = feed._task
    assert task is not None
    try:
        await asyncio.wait_for(server.close(), 10)  # the hub shuts down
        assert task.done()
        assert feed._task is None
        assert not feed.followers
        await asyncio.wait_for(response.content.read(), 10)  # the stream ended cleanly
        assert response.content.at_eof()
    finally:
        await client.close()


async def test_a_database_error_ends_the_streams_which_resume_and_the_feed_reads_on(
    api: Api, pool: asyncpg.Pool[Any], monkeypatch: Any
) -> None:
    token = await api.user_token("admin")
    headers = {"Authorization": f"token {token}"}
    head = await api.store.head()
    feed = feed_of(api)
    monkeypatch.setattr(audit_feed, "RETRY_S", 0.05)
    stream = await api.client.get(f"/hub/api/events/stream?after={head}", headers=headers)
    await create_user(api.store, "before-the-error")
    received = await sse_ids(stream, "before-the-error")
    [follower] = feed.followers

    read_all = api.store.read_all
    failed = asyncio.Event()

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        if not failed.is_set():
            failed.set()
            raise asyncpg.InterfaceError("connection lost (simulated)")
        return await read_all(*args, **kwargs)

    monkeypatch.setattr(api.store, "read_all", failing_once)
    await create_user(api.store, "during-the-error")
    await asyncio.wait_for(failed.wait(), 10)
    await wait_for(lambda: follower.dropped is not None)
    assert follower.dropped == "the live feed lost its database"
    await asyncio.wait_for(stream.content.read(), 10)  # the stream ended
    stream.close()

    # The client resumes from the last event it has; the feed reads on from where it stood.
    await create_user(api.store, "after-the-error")
    resume = {**headers, "Last-Event-ID": received[-1]}
    async with api.client.get("/hub/api/events/stream", headers=resume) as again:
        ids = await sse_ids(again, "after-the-error")
    log = [row[0] for row in await pool.fetch(LOG_ORDER)]
    assert ids == after(log, received[-1])
    assert feed._task is not None
    assert not feed._task.done()


@pytest.mark.parametrize(
    "query",
    [
        "type_prefix=user.",
        "type=group.created,user.renamed",
        "actor=service:bench",
        "user=lf1",
        "group=lfg",
        "type_prefix=group.&user=lf2",
    ],
)
async def test_live_filters_admit_what_the_history_query_returns(api: Api, query: str) -> None:
    """The feed filters in Python what the history (and the catch-up) filter in SQL."""
    token = await api.user_token("admin")
    headers = {"Authorization": f"token {token}"}
    await api.call("POST", "/users", json={"usernames": ["lf1", "lf2", "lf3"]})
    await api.call("POST", "/groups", json={"groups": ["lfg"], "users": ["lf1"]})
    head = await api.store.head()
    async with api.client.get(
        f"/hub/api/events/stream?after={head}&{query}", headers=headers
    ) as stream:
        # (A stream resolves user and group names to ids when it connects: nothing here
        # changes who lf1, lf2 or lfg are.)
        await api.call("PUT", "/groups/lfg/properties", json={"quota": 5})
        await api.call("PATCH", "/users/lf3", json={"name": "lf3-renamed"})
        await api.call("POST", "/groups", json={"groups": ["other"], "users": ["lf2"]})
        await api.user_token("lf1")
        await api.call("PATCH", "/users/lf1", json={"admin": True}, token=token)
        status, expected = await api.call(
            "GET", f"/events?after={head.position}&{query}", token=token
        )
        assert status == 200
        assert expected  # every filter here admits something
        received: list[str] = []
        async with asyncio.timeout(10):
            async for raw in stream.content:
                line = raw.decode()
                if line.startswith("id: "):
                    received.append(line[4:].strip())
                if len(received) == len(expected):
                    break
    assert received == [event["id"] for event in expected]


async def test_a_quiet_stream_gets_heartbeats(api: Api, monkeypatch: Any) -> None:
    monkeypatch.setattr(audit, "HEARTBEAT_S", 0.05)
    token = await api.user_token("admin")
    head = await api.store.head()
    async with api.client.get(
        f"/hub/api/events/stream?after={head}", headers={"Authorization": f"token {token}"}
    ) as stream:
        async with asyncio.timeout(5):
            assert await stream.content.readuntil(b"\n\n") == b": keepalive\n\n"
            assert await stream.content.readuntil(b"\n\n") == b": keepalive\n\n"


async def test_a_feed_that_crashes_ends_its_streams_and_restarts_with_the_next(
    api: Api, pool: asyncpg.Pool[Any], monkeypatch: Any
) -> None:
    token = await api.user_token("admin")
    headers = {"Authorization": f"token {token}"}
    feed = feed_of(api)
    head = await api.store.head()
    stream = await api.client.get(f"/hub/api/events/stream?after={head}", headers=headers)
    [follower] = feed.followers

    def broken(page: list[models.RecordedEvent]) -> None:
        raise RuntimeError("a bug in the feed")

    monkeypatch.setattr(feed, "dispatch", broken)
    await create_user(api.store, "crash")
    await wait_for(lambda: follower.dropped is not None)
    assert follower.dropped == "the live feed failed"
    await asyncio.wait_for(stream.content.read(), 10)  # the stream ended
    stream.close()
    monkeypatch.undo()

    # The next stream starts the feed again, from where it stood: nothing is skipped.
    async with api.client.get(f"/hub/api/events/stream?after={head}", headers=headers) as again:
        await create_user(api.store, "after-the-crash")
        ids = await sse_ids(again, "after-the-crash")
    log = [row[0] for row in await pool.fetch(LOG_ORDER)]
    assert ids == after(log, str(head))
