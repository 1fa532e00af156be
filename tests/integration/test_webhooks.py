"""Services' webhooks against real receivers on loopback: signed, in order, at least once,
retried after failures, a slow receiver delaying only itself, a backlog delivered when a
receiver comes back, and a hub restart that neither loses nor repeats acknowledged events."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import test_utils, web

from events import store
from hub import app, bootstrap, context
from hub import settings as hub_settings
from hub.audit import webhooks
from tests.helpers import Noted, call_api, wait_for
from tests.integration.api_fixtures import CONFIG as API_CONFIG
from tests.integration.api_fixtures import SERVICE_TOKEN

pytestmark = pytest.mark.integration

READER_TOKEN = "hooked-reader-0123456789abcdef"
SECRET = "webhook-secret-0123456789abcdef"
OTHER_SECRET = "other-webhook-secret-0123456789"


@dataclass
class Delivery:
    """One request as the receiver got it."""

    delivery: str
    event_type: str
    body: dict[str, Any]
    signed: bool


Behaviour = Callable[[Delivery], Awaitable[int]]


async def acknowledge(_delivery: Delivery) -> int:
    return 200


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that checks each signature as docs/webhooks.md says
    (written out here, not through the hub's own code) and answers what ``behaviour`` says."""

    secret: str
    behaviour: Behaviour = acknowledge
    received: list[Delivery] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        timestamp = request.headers["X-Chronohub-Timestamp"]
        expected = hmac.new(
            self.secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256
        ).hexdigest()
        signed = hmac.compare_digest(request.headers["X-Chronohub-Signature"], "sha256=" + expected)
        signed = signed and abs(time.time() - int(timestamp)) < 300
        delivery = Delivery(
            request.headers["X-Chronohub-Delivery"],
            request.headers["X-Chronohub-Event"],
            json.loads(raw),
            signed,
        )
        self.received.append(delivery)
        if not signed:
            return web.Response(status=401, text="bad signature")
        return web.Response(status=await self.behaviour(delivery))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        application = web.Application()
        application.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(application, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ids(self) -> list[str]:
        """The delivery ids received, in order, each once (what a receiver that de-duplicates
        keeps)."""
        return list(dict.fromkeys(d.delivery for d in self.received))


@contextlib.asynccontextmanager
async def receiver(
    secret: str = SECRET, behaviour: Behaviour = acknowledge
) -> AsyncIterator[Receiver]:
    found = Receiver(secret, behaviour)
    await found.start()
    try:
        yield found
    finally:
        await found.stop()


def service(
    name: str, url: str, events: list[str], secret: str = SECRET, **more: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "webhook_url": url,
        "webhook_events": events,
        "webhook_secret": secret,
        **more,
    }


@contextlib.asynccontextmanager
async def hub(
    event_store: store.EventStore, *services: dict[str, Any]
) -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    """The hub's application (with the API fixtures' services) and these services' webhooks,
    retried quickly."""
    # a role for the services that hold a token: they read the log and the services API
    readers = [s["name"] for s in services if "api_token" in s]
    role = {
        "name": "event-readers",
        "scopes": ["read:events", "read:services"],
        "services": readers,
    }
    config = hub_settings.Settings(
        **{
            **API_CONFIG,
            "services": [*API_CONFIG["services"], *services],
            "roles": [*API_CONFIG["roles"], *([role] if readers else [])],
        },
        webhook_retry_initial_s=0.02,
        webhook_retry_max_s=0.2,
    )
    await bootstrap.reconcile(event_store, config)
    running = context.Hub(settings=config, store=event_store, database="test")
    async with test_utils.TestClient(test_utils.TestServer(app.make_app(running))) as client:
        # each worker has found its checkpoint (or another hub's lease) before the test appends
        await wait_for(lambda: all(ready(client, s["name"]) for s in services))
        yield client


def ready(client: test_utils.TestClient[Any, Any], name: str) -> bool:
    found = webhooks.status(client.app, name)
    return found is not None and bool(found["checkpoint"] or found["standby"])


def status(client: test_utils.TestClient[Any, Any], name: str) -> dict[str, Any]:
    found = webhooks.status(client.app, name)
    assert found is not None
    return found


async def note(event_store: store.EventStore, *texts: str, stream: str = "note-1") -> list[str]:
    """Append one test.noted event per text, in one transaction; their public ids."""
    result = await event_store.append(stream, [Noted(text=t) for t in texts])
    return [str(e.checkpoint) for e in result.events]


async def test_events_are_delivered_signed_in_order_and_only_those_subscribed(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    hooked = service("hooked", "http://unused/", ["test.noted"])
    async with (
        receiver() as rx,
        hub(event_store, {**hooked, "webhook_url": rx.url, "api_token": READER_TOKEN}) as client,
    ):
        ids = await note(event_store, "a", "b")
        await event_store.append("note-2", [Noted(text="c")])  # wanted too: another stream
        ids.append(str((await event_store.read_stream("note-2"))[-1].checkpoint))
        # Not subscribed: user.* events (a user created through the API).
        assert (await call_api(client, "POST", "/users/ursula", SERVICE_TOKEN))[0] == 201
        ids += await note(event_store, "d")
        await wait_for(lambda: len(rx.received) == 4)
        assert [d.delivery for d in rx.received] == ids
        assert all(d.signed for d in rx.received)
        assert {d.event_type for d in rx.received} == {"test.noted"}
        # The body is the event as the audit API renders it.
        code, listed = await call_api(client, "GET", "/events?type=test.noted", READER_TOKEN)
        assert code == 200, listed
        assert [d.body for d in rx.received] == listed
        assert [d.body["id"] for d in rx.received] == ids
        assert [d.body["data"]["text"] for d in rx.received] == ["a", "b", "c", "d"]
        await wait_for(lambda: status(client, "hooked")["checkpoint"] >= ids[-1])
        got = status(client, "hooked")
        assert (got["delivered"], got["failing"], got["pending"]) == (4, False, None)
        # The services API shows the same status to those with read:services, never the secret
        code, shown = await call_api(client, "GET", "/services/hooked", READER_TOKEN)
        assert code == 200, shown
        assert shown["webhook"]["delivered"] == 4, shown
        assert SECRET not in json.dumps(shown)
    # The secret is nowhere in the log.
    assert (
        await pool.fetchval("SELECT count(*) FROM events WHERE data::text LIKE $1", f"%{SECRET}%")
        == 0
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM events WHERE metadata::text LIKE $1", f"%{SECRET}%"
        )
        == 0
    )


async def test_a_wrong_secret_is_refused_by_the_receiver_and_retried(
    event_store: store.EventStore,
) -> None:
    """A receiver with another secret refuses (401): the hub keeps retrying the same event."""
    async with (
        receiver(secret=OTHER_SECRET) as rx,
        hub(event_store, service("hooked", rx.url, ["test."])) as client,
    ):
        await note(event_store, "a", "b")
        await wait_for(lambda: len(rx.received) >= 3)
        assert not any(d.signed for d in rx.received)
        assert {d.body["data"]["text"] for d in rx.received} == {"a"}  # b waits behind a
        got = status(client, "hooked")
        assert got["failing"]
        assert got["failures"] >= 3
        assert got["last_error"].startswith("HTTP 401")


async def test_a_receiver_failing_at_first_gets_everything_in_order(
    event_store: store.EventStore,
) -> None:
    attempts = 0

    async def fail_three_times(_delivery: Delivery) -> int:
        nonlocal attempts
        attempts += 1
        return 503 if attempts <= 3 else 200

    async with (
        receiver(behaviour=fail_three_times) as rx,
        hub(event_store, service("hooked", rx.url, ["test."])) as client,
    ):
        ids = await note(event_store, *"abcde")
        await wait_for(lambda: rx.ids() == ids)
        assert [d.delivery for d in rx.received] == [ids[0]] * 4 + ids[1:]  # retried, then on
        await wait_for(lambda: not status(client, "hooked")["failing"])
        assert status(client, "hooked")["last_error"].startswith("HTTP 503")


async def test_a_slow_receiver_delays_only_its_own_deliveries(
    event_store: store.EventStore,
) -> None:
    release = asyncio.Event()

    async def hang_until_released(_delivery: Delivery) -> int:
        await release.wait()
        return 200

    async with (
        receiver(behaviour=hang_until_released) as slow,
        receiver() as fast,
        hub(
            event_store,
            service("slow", slow.url, ["user."], webhook_timeout_s=1.0),
            service("fast", fast.url, ["user."]),
        ) as client,
    ):
        names = [f"user{i}" for i in range(8)]
        latencies = []
        for name in names:
            began = time.monotonic()
            code, _ = await call_api(client, "POST", f"/users/{name}", SERVICE_TOKEN)
            latencies.append(time.monotonic() - began)
            assert code == 201
        await wait_for(lambda: len(fast.received) == len(names))
        assert [d.body["data"]["name"] for d in fast.received] == names
        # the slow one is still at its first event, timing out and retrying
        await wait_for(lambda: status(client, "slow")["failures"] >= 2)
        assert {d.body["data"]["name"] for d in slow.received} == {names[0]}
        assert "no answer within 1s" in status(client, "slow")["last_error"]
        # The appending requests never waited on the receiver, which answered none of them
        # (each would have taken the whole timeout): each well under it.
        assert max(latencies) < 1.0, latencies
        release.set()
        await wait_for(lambda: len(slow.ids()) == len(names))
        assert slow.ids() == [d.delivery for d in fast.received]


async def test_a_receiver_down_for_a_while_gets_its_backlog_in_order(
    event_store: store.EventStore,
) -> None:
    async with receiver() as rx, hub(event_store, service("hooked", rx.url, ["test."])) as client:
        first = await note(event_store, "before")
        await wait_for(lambda: rx.ids() == first)
        port = rx.port
        await rx.stop()  # down: connections refused
        backlog = await note(event_store, *(f"n{i}" for i in range(250)))  # pages of 100
        await wait_for(lambda: status(client, "hooked")["failures"] >= 3)
        assert "Connect" in status(client, "hooked")["last_error"]
        rx.port = port
        await rx.start()  # back on the same address
        await wait_for(lambda: rx.ids() == first + backlog, timeout_s=30)
        # none acknowledged twice: only the first of the backlog was being retried
        assert len(rx.received) == len(first + backlog)
        await wait_for(lambda: status(client, "hooked")["delivered"] == 251)


async def test_a_hub_restart_loses_nothing_and_resends_only_the_delivery_in_flight(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    stuck = asyncio.Event()
    release = asyncio.Event()

    async def hang_on_the_fourth(delivery: Delivery) -> int:
        if delivery.body["data"]["text"] == "d" and not release.is_set():
            stuck.set()
            await release.wait()
        return 200

    async with receiver(behaviour=hang_on_the_fourth) as rx:
        config = service("hooked", rx.url, ["test."], webhook_timeout_s=30)
        async with hub(event_store, config):
            ids = await note(event_store, *"abcdef")
            await stuck.wait()  # a, b, c acknowledged; d in flight when the hub stops
            await wait_for(
                lambda: pool.fetchval(
                    "SELECT delivered = 3 FROM webhook_checkpoints WHERE service = 'hooked'"
                )
            )
        ids += await note(event_store, "g", "h")  # appended while the hub is down
        release.set()
        async with hub(event_store, config) as client:
            await wait_for(lambda: rx.ids() == ids)
            await wait_for(lambda: status(client, "hooked")["delivered"] == 8)
        counts = {i: [d.delivery for d in rx.received].count(i) for i in ids}
        # a, b, c were checkpointed: never sent again; d was in flight: sent again, with the
        # same delivery id and body, which is what a receiver de-duplicates on.
        assert counts == {i: 2 if i == ids[3] else 1 for i in ids}
        twice = [d for d in rx.received if d.delivery == ids[3]]
        assert twice[0].body == twice[1].body
        assert [d.delivery for d in rx.received] == ids[:4] + ids[3:]


async def test_a_new_webhook_starts_at_the_head_of_the_log(event_store: store.EventStore) -> None:
    """The hub's past is not sent to a webhook configured today."""
    await note(event_store, "old")
    async with receiver() as rx, hub(event_store, service("hooked", rx.url, ["*"])):
        new = await note(event_store, "new")
        await wait_for(lambda: rx.ids() == new)


async def test_a_worker_that_dies_says_so_in_its_status_and_the_log(
    event_store: store.EventStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_args: Any) -> Any:
        raise RuntimeError("a bug in rendering")

    async with receiver() as rx, hub(event_store, service("hooked", rx.url, ["test."])) as client:
        monkeypatch.setattr("hub.audit.feed.render", broken)
        await note(event_store, "a")
        await wait_for(lambda: status(client, "hooked")["stopped"])
        got = status(client, "hooked")
        assert got["failing"]
        assert "a bug in rendering" in got["last_error"]
        assert rx.received == []
    assert "webhook task chronohub-webhook-hooked died" in caplog.text


async def test_two_hub_processes_deliver_each_event_once_and_one_takes_over(
    event_store: store.EventStore,
) -> None:
    """Two hubs on one database: the one holding the lease delivers, the other stands by,
    and takes over when the first stops."""
    async with receiver() as rx:
        config = service("hooked", rx.url, ["test."])
        first = hub(event_store, config)
        leader = await first.__aenter__()
        stopped = False
        try:
            async with hub(event_store, config) as other:
                assert status(other, "hooked")["standby"]
                assert not status(leader, "hooked")["standby"]
                ids = await note(event_store, *"abc")
                await wait_for(lambda: rx.ids() == ids)
                await first.__aexit__(None, None, None)  # it lets go of its lease
                stopped = True
                ids += await note(event_store, *"de")
                await wait_for(lambda: rx.ids() == ids)
                assert not status(other, "hooked")["standby"]
                # counted once the checkpoint is written, just after the receiver answered
                await wait_for(lambda: status(other, "hooked")["delivered"] == 5)
        finally:
            if not stopped:
                await first.__aexit__(None, None, None)
        assert [d.delivery for d in rx.received] == ids  # each once, in order
