"""Webhooks: the hub POSTs the events a service subscribes to, in order, at least once.

One worker task per service with a ``webhook_url``, owned by ``Webhooks`` and cancelled when
the hub stops. It reads the log from the service's checkpoint (table ``webhook_checkpoints``)
in fenced pages of the event types it wants, POSTs each event (the audit API's JSON shape,
signed as ``webhook_signing`` says) and moves the checkpoint past it only once the receiver
has answered 2xx. A failure is retried, waiting twice as long each time up to
``webhook_retry_max_s``, and nothing after it is sent meanwhile: order per service is the
log's. A receiver down for an hour finds its backlog waiting in the log, read in pages.

At least once: a delivery acknowledged but not yet checkpointed when the hub dies (the
instant between the 2xx and the UPDATE) is sent again after the restart with the same
``X-Chronohub-Delivery`` (the event's id): receivers de-duplicate on it. Nothing
acknowledged *and* checkpointed is sent again; nothing after the checkpoint is lost.

With several hub processes, the one holding a webhook's lease (``LEASE_S``, renewed while
it works) delivers, and the others stand by until it lets go or its lease runs out. A holder
that was killed (SIGKILL: nothing let go) on this machine is seen dead by its pid, recorded
in its name: a hub restarted after it takes over at once instead of waiting out the lease.

Workers wake on the store's wake-up (a commit in this process, or a NOTIFY from another),
as the live feed and the projection runner do; the request that appended never waits for a
delivery. Each worker has its own queue and a timeout per attempt, so a slow or dead
receiver delays only its own service's deliveries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from events import errors, models, sql, store, tasks
from hub import processes
from hub import settings as hub_settings
from hub.audit import feed, webhook_signing
from hub.context import HUB

T = TypeVar("T")
log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.audit", "webhooks.sql")

PAGE = 100
"""Events read from the log at a time (a backlog is read in pages of this many)."""
POLL_S = 1.0
"""The longest a caught-up worker waits without a wake-up before it reads again."""
DB_RETRY_S = 1.0
"""After a database error a worker tries again after this pause."""
LEASE_S = 30.0
"""How long a hub process's hold on a webhook lasts unless renewed: with several processes,
one delivers (in order); if it dies without letting go, another takes over after this."""
RENEW_S = 10.0
"""How often the process delivering renews its lease while it waits for events."""
STANDBY_S = 1.0
"""How often a process that does not hold a webhook's lease asks for it."""
RELEASE_TIMEOUT_S = 2.0
TASK_PREFIX = "chronohub-webhook-"
ERROR_TEXT = 200
"""Characters of a failing receiver's answer kept for the log and the status."""


def dead_here(holder: str) -> bool:
    """Whether the lease holder ``holder`` (``Webhooks.holder``) was a process of this machine
    that is gone: another machine's, or one named the older way, is never judged dead here."""
    host, _, rest = holder.partition(":")
    pid, _, unique = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit() or not unique:
        return False
    return int(pid) != os.getpid() and not processes.exists(int(pid))


class LeaseLost(Exception):
    """Another hub process took over a webhook's deliveries (this one's lease expired)."""


@dataclass(frozen=True)
class Hook:
    """One service's webhook, from its configuration."""

    service: str
    url: str
    prefixes: tuple[str, ...] | None  # None: every event ("*")
    secret: str
    timeout_s: float

    @classmethod
    def of(cls, service: hub_settings.ServiceConfig) -> Hook | None:
        """The webhook ``service`` configures, if any (the settings checked it is complete)."""
        if service.webhook_url is None or service.webhook_secret is None:
            return None
        prefixes = None if "*" in service.webhook_events else tuple(service.webhook_events)
        return cls(
            service=service.name,
            url=service.webhook_url,
            prefixes=prefixes,
            secret=service.webhook_secret.get_secret_value(),
            timeout_s=service.webhook_timeout_s,
        )


@dataclass
class Status:
    """How a service's deliveries are going, for the log and the services API."""

    service: str
    url: str
    checkpoint: str | None = None
    delivered: int = 0
    """Events acknowledged since the webhook was first configured (kept in the database)."""
    failures: int = 0
    """Failed attempts in a row at the delivery now pending (0: none failing)."""
    pending: str | None = None
    """The id of the event being delivered, while it is not yet acknowledged."""
    last_error: str | None = None
    standby: bool = False
    """Another hub process holds the webhook's lease and delivers; this one waits."""
    stopped: bool = False
    """The worker died of an unexpected error (logged with its traceback): nothing is sent
    until the hub restarts."""
    last_success_at: datetime | None = None
    next_attempt_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, times in ISO 8601 (no secret: the url is the service's own)."""
        return {
            "url": self.url,
            "checkpoint": self.checkpoint,
            "delivered": self.delivered,
            "failing": self.failures > 0 or self.stopped,
            "stopped": self.stopped,
            "standby": self.standby,
            "failures": self.failures,
            "pending": self.pending,
            "last_error": self.last_error,
            "last_success_at": _iso(self.last_success_at),
            "next_attempt_at": _iso(self.next_attempt_at),
        }


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


@dataclass
class Webhooks:
    """The webhook workers of a hub process; ``async with`` or ``start``/``stop``."""

    event_store: store.EventStore
    hooks: list[Hook]
    retry_initial_s: float = 1.0
    retry_max_s: float = 300.0
    statuses: dict[str, Status] = field(default_factory=dict)
    holder: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
    )
    """This process's name on the leases it holds: machine, pid (so that a process restarted
    on the machine sees a killed holder dead) and a unique part."""
    _renewed: dict[str, float] = field(default_factory=dict)
    _tasks: tasks.TaskOwner = field(init=False)
    _session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self._tasks = tasks.TaskOwner("webhook", logger=log, on_death=self._died)

    def _died(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        # Logged with its traceback by the owner; shown in the status too.
        status = self.statuses.get(task.get_name().removeprefix(TASK_PREFIX))
        if status is not None:
            status.stopped = True
            status.last_error = f"the delivery worker died: {exc!r}"

    @classmethod
    def from_settings(
        cls, event_store: store.EventStore, config: hub_settings.Settings
    ) -> Webhooks:
        """The webhooks the configuration's services ask for."""
        hooks = [hook for service in config.services if (hook := Hook.of(service)) is not None]
        return cls(
            event_store,
            hooks,
            retry_initial_s=config.webhook_retry_initial_s,
            retry_max_s=max(config.webhook_retry_max_s, config.webhook_retry_initial_s),
        )

    async def start(self) -> None:
        """Start one worker per webhook."""
        if not self.hooks:
            return
        # No cookies, no proxy from the environment: each POST stands alone.
        self._session = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, raise_for_status=False
        )
        for hook in self.hooks:
            self.statuses[hook.service] = Status(hook.service, hook.url)
            self._tasks.start(self._work(hook), TASK_PREFIX + hook.service)

    async def stop(self) -> None:
        """Cancel every worker (a delivery in flight is sent again by the next start)."""
        await self._tasks.close()
        if self.hooks:
            await self._release()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Webhooks:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def status(self, service: str) -> dict[str, Any] | None:
        """How ``service``'s webhook is doing (None: it has none): for the services API."""
        found = self.statuses.get(service)
        return None if found is None else found.as_json()

    # --- one worker ---

    async def _work(self, hook: Hook) -> None:
        """Deliver while this process holds the webhook's lease; stand by while another does."""
        status = self.statuses[hook.service]
        await self._until_done(hook, self._ensure)
        while True:
            checkpoint = await self._until_done(hook, self._acquire)
            if checkpoint is None:
                status.standby = True
                await asyncio.sleep(STANDBY_S)
                continue
            status.standby = False
            status.checkpoint = str(checkpoint)
            try:
                await self._lead(hook, status, checkpoint)
            except LeaseLost:
                log.warning("webhook %s: another hub process delivers now", hook.service)

    async def _lead(self, hook: Hook, status: Status, checkpoint: models.Checkpoint) -> None:
        wanted = store.EventFilter(type_prefixes=hook.prefixes)
        retry_s = POLL_S
        while True:
            token = self.event_store.wakeup.token()
            await self._renew(hook, LEASE_S)
            try:
                # The head seen before the read is covered by the read's fence: a short page
                # lets the checkpoint skip the unwanted events up to it.
                head = await self.event_store.head()
                page = await self.event_store.read_all(checkpoint, filter=wanted, limit=PAGE)
            except errors.DatabaseUnavailable as exc:
                log.warning("webhook %s: cannot read the log (%s); retrying", hook.service, exc)
                await asyncio.sleep(DB_RETRY_S)
                continue
            for event in page:
                await self._deliver(hook, status, event)
                checkpoint = await self._advance(hook, status, checkpoint, event.checkpoint, 1)
            if len(page) == PAGE:
                continue
            if head > checkpoint:
                checkpoint = await self._advance(hook, status, checkpoint, head, 0)
            woken = await self.event_store.wakeup.wait(token, retry_s)
            # After a wake-up the commit may still sit behind the fence: read again soon.
            retry_s = 0.005 if woken else min(retry_s * 2, POLL_S)

    async def _until_done(self, hook: Hook, step: Callable[[Hook], Awaitable[T]]) -> T:
        """``step(hook)``, tried again while the database is out of reach."""
        while True:
            try:
                return await step(hook)
            except errors.DatabaseUnavailable as exc:
                log.warning("webhook %s: %s; retrying", hook.service, exc)
                await asyncio.sleep(DB_RETRY_S)

    async def _ensure(self, hook: Hook) -> None:
        async with self.event_store.connection() as conn:
            head = await self.event_store.head(conn=conn)
            await conn.execute(queries["ensure"], hook.service, str(head.tx), head.position)

    async def _acquire(self, hook: Hook) -> models.Checkpoint | None:
        """Take the lease if it is free (or expired); where the webhook stands, or None."""
        async with self.event_store.connection() as conn:
            row = await conn.fetchrow(queries["lease"], hook.service, self.holder, LEASE_S)
            if row is None:
                holder = await conn.fetchval(queries["lease_holder"], hook.service)
                if holder is not None and dead_here(holder):
                    log.info("webhook %s: its holder %s is dead; taking over", hook.service, holder)
                    row = await conn.fetchrow(
                        queries["lease_from_dead"], hook.service, self.holder, LEASE_S, holder
                    )
        if row is None:
            return None
        self._renewed[hook.service] = time.monotonic()
        self.statuses[hook.service].delivered = row["delivered"]
        return models.Checkpoint(int(row["tx"]), row["position"])

    async def _renew(self, hook: Hook, seconds: float, *, now: bool = False) -> None:
        """Keep the lease for ``seconds`` more (at most every ``RENEW_S`` unless ``now``);
        ``LeaseLost`` if another process has it."""
        if not now and time.monotonic() - self._renewed.get(hook.service, 0.0) < RENEW_S:
            return

        async def renew(hook: Hook) -> bool:
            async with self.event_store.connection() as conn:
                held = await conn.fetchval(queries["renew"], hook.service, self.holder, seconds)
            return held is not None

        if not await self._until_done(hook, renew):
            raise LeaseLost(hook.service)
        self._renewed[hook.service] = time.monotonic()

    async def _release(self) -> None:
        """Give up every lease this process holds, so another takes over at once."""
        try:
            async with self.event_store.connection(timeout=RELEASE_TIMEOUT_S) as conn:
                await conn.execute(queries["release"], self.holder)
        except (errors.DatabaseUnavailable, TimeoutError) as exc:
            log.warning("webhooks: could not release their leases (%s): they expire", exc)

    async def _advance(
        self,
        hook: Hook,
        status: Status,
        old: models.Checkpoint,
        new: models.Checkpoint,
        delivered: int,
    ) -> models.Checkpoint:
        """Record that everything up to ``new`` is done; ``LeaseLost`` if another process
        has taken the webhook over meanwhile."""

        async def write(hook: Hook) -> bool:
            async with self.event_store.connection() as conn:
                moved = await conn.fetchval(
                    queries["advance"],
                    hook.service, str(old.tx), old.position, str(new.tx), new.position,
                    delivered, self.holder,
                )  # fmt: skip
            return moved is not None

        if not await self._until_done(hook, write):
            raise LeaseLost(hook.service)
        status.checkpoint = str(new)
        status.delivered += delivered
        return new

    async def _deliver(self, hook: Hook, status: Status, event: models.RecordedEvent) -> None:
        """POST ``event`` until the receiver answers 2xx, backing off between attempts."""
        body = json.dumps(feed.render(event), separators=(",", ":")).encode()
        delivery = str(event.checkpoint)
        status.pending = delivery
        wait_s = self.retry_initial_s
        while True:
            # Held through the attempt, however long the receiver takes to answer.
            await self._renew(hook, LEASE_S + hook.timeout_s, now=True)
            error = await self._attempt(hook, event.type, delivery, body)
            if error is None:
                status.failures, status.pending, status.next_attempt_at = 0, None, None
                status.last_success_at = datetime.now(UTC)
                return
            status.failures += 1
            status.last_error = error
            status.next_attempt_at = datetime.fromtimestamp(time.time() + wait_s, UTC)
            log.warning(
                "webhook %s: delivery %s (%s) to %s failed (attempt %d): %s; retrying in %.1fs",
                hook.service, delivery, event.type, hook.url, status.failures, error, wait_s,
            )  # fmt: skip
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, self.retry_max_s)

    async def _attempt(self, hook: Hook, event_type: str, delivery: str, body: bytes) -> str | None:
        """One POST; None if the receiver acknowledged it, else what went wrong."""
        assert self._session is not None
        headers = webhook_signing.headers(hook.secret, int(time.time()), body, event_type, delivery)
        try:
            async with self._session.post(
                hook.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return None
                text = (await response.content.read(ERROR_TEXT)).decode(errors="replace")
                return f"HTTP {response.status} {text}".strip()
        except TimeoutError:
            return f"no answer within {hook.timeout_s:g}s"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"


WEBHOOKS = web.AppKey("webhooks", Webhooks)


def install(app: web.Application) -> None:
    """Run the hub's webhooks while ``app`` runs (``app[WEBHOOKS]`` for their status)."""
    app.cleanup_ctx.append(_webhooks_context)


async def _webhooks_context(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    async with Webhooks.from_settings(hub.store, hub.settings) as webhooks:
        app[WEBHOOKS] = webhooks
        yield


def status(app: web.Application, service: str) -> dict[str, Any] | None:
    """``service``'s webhook status for the services API (None: no webhook, or none running)."""
    webhooks = app.get(WEBHOOKS)
    return None if webhooks is None else webhooks.status(service)
