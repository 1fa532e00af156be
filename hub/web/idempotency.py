"""Idempotent retries of REST writes: the ``Idempotency-Key`` request header (the IETF draft
``draft-ietf-httpapi-idempotency-key-header``).

A ``POST``, ``PATCH``, ``PUT`` or ``DELETE`` under ``/hub/api/`` that carries the header holds
its key (a transaction-scoped advisory lock) while its handler runs, and records the answer
under the caller's key before that transaction commits. A retry with the same key gets the first
answer again (with ``Idempotent-Replayed: true``) and its handler does not run.

Handlers marked ``in_transaction`` (those whose writes are one store session, with their reads
on its connection: creating, renaming users, issuing tokens, groups) run inside that very
transaction (``EventStore.pinned``): their events, inline projections and the answer commit
together. So even a hub killed after the commit and before the answer reached the client has
the answer for the retry, and nothing is appended twice; a hub killed before the commit wrote
nothing, and the retry runs afresh.

Keys belong to the caller (a user's key is not a service's, nor another user's, nor another
token's of the same user), live
``lifetime_s`` (``idempotency_key_lifetime_s``), and are refused with 400 when empty, too long or
not printable ASCII. The same key with another request (method, path or body) answers 422; the
same key while its first request is still under way answers 409, as the draft says. Answers of
5xx are not recorded (the retry runs again), nor answers of handlers that raised (they wrote
nothing: the transaction rolled back).

Other handlers (their work leaves the database: a server's process, a repository on disk, the
proxy, a kernel; or they read through connections of their own) hold the key on a connection
outside any transaction (they may run longer than PostgreSQL lets a transaction sit idle) and
commit on their own, their answer recorded after: a retry gets it, but after a kill between
their commit and the answer's, the retry runs again, which those endpoints answer as JupyterHub
does a second start, stop or delete.

Keys belong to the very token (or browser session) that sent the request, and to what it may
do (``hub.auth.access.idempotency_owner``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events import sql, store
from hub import errors
from hub.context import HUB
from hub.errors import Handler

queries = sql.Queries(__package__ or "hub.web", "idempotency.sql")

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# The answer's headers worth giving back (the rest are set by the hub on every answer).
KEPT_HEADERS = ("Content-Type", "Location")
_INSIDE = "__chronohub_idempotency_in_transaction__"

CallerOf = Callable[[web.Request], str | None]
H = TypeVar("H", bound=Callable[..., Any])


class Unprocessable(errors.HubError):
    """The key was used with another request (422, as the draft says)."""

    status = 422


class KeyBusy(errors.HubError):
    """The key's first request is still under way (409, as the draft says)."""

    status = 409


class _Raced(Exception):
    """Internal: the answer could not be recorded; roll the request's transaction back."""


def in_transaction(handler: H) -> H:
    """Mark a handler whose every write goes through the store (``session``, ``append``), its
    reads on the same connection, and nothing outside the database: with a key, it runs in
    the transaction that records its answer."""
    setattr(handler, _INSIDE, True)
    return handler


def parse_key(values: list[str]) -> str:
    """The key of the request's ``Idempotency-Key`` header (a structured-field string, its
    quotes optional); ``errors.BadRequest`` naming what is wrong with it."""
    if len(values) > 1:
        raise errors.BadRequest(f"{HEADER}: send the header once, not {len(values)} times")
    key = values[0].strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if not key:
        raise errors.BadRequest(f"{HEADER}: the key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise errors.BadRequest(
            f"{HEADER}: the key is {len(key)} characters long, at most {MAX_KEY_LENGTH} allowed"
        )
    if not all(" " <= c <= "~" for c in key):
        raise errors.BadRequest(f"{HEADER}: the key must be printable ASCII characters")
    return key


def middleware(caller_of: CallerOf, lifetime_s: float, secret: bytes) -> Any:
    """The middleware for the hub's application; ``caller_of`` names the request's caller
    (None: nobody authenticated, so no key is kept), ``lifetime_s`` how long a key lives,
    ``secret`` the hub's (its cookie secret, the same in every process) that the stored keys and
    answers are derived with."""

    @web.middleware
    async def idempotent(request: web.Request, handler: Handler) -> web.StreamResponse:
        values = request.headers.getall(HEADER, [])
        if not values or request.method not in METHODS or not request.path.startswith("/hub/api/"):
            return await handler(request)
        key = parse_key(values)
        caller = caller_of(request)
        if caller is None:
            return await handler(request)  # it refuses the request: nothing to remember
        entry = _Entry(secret, caller, key, request.method, request.path_qs, await request.read())
        event_store = request.app[HUB].store
        async with event_store.connection() as conn:
            if (answer := await entry.stored(conn)) is not None:
                return answer
        inside = getattr(request.match_info.handler, _INSIDE, False)
        try:
            async with (
                _inside(event_store, entry) if inside else _beside(event_store, entry)
            ) as conn:
                if (answer := await entry.stored(conn)) is not None:
                    return answer  # its first request committed since the look above
                response = await handler(request)
                if response.status < 500 and not await entry.record(conn, response, lifetime_s):
                    raise _Raced
        except _Raced:
            # a live row of the key appeared though this request held the key (a clock
            # stepped back): the answer is not kept
            raise _busy() from None
        return response

    return idempotent


def _busy() -> KeyBusy:
    return KeyBusy(f"A request with this {HEADER} is under way; retry later")


@contextlib.asynccontextmanager
async def _inside(event_store: store.EventStore, entry: _Entry) -> AsyncIterator[sql.Connection]:
    """The handler's own transaction (``pinned``), the key held until it ends."""
    async with event_store.pinned() as conn:
        if not await conn.fetchval(queries["idempotency_claim"], entry.lookup):
            raise _busy()
        yield conn


@contextlib.asynccontextmanager
async def _beside(event_store: store.EventStore, entry: _Entry) -> AsyncIterator[sql.Connection]:
    """A connection that holds the key (a session-level lock, not a transaction: the handler
    may run longer than PostgreSQL lets a transaction sit idle, an import or a kernel's
    start), its answer recorded in a statement of its own once the handler's work committed.
    The pool does not reset sessions (hub/database.py), so a lock whose release is not
    confirmed (an error, a cancellation, even during the claim) ends with its connection."""
    async with event_store.connection() as conn:
        busy = False
        try:
            if not await conn.fetchval(queries["idempotency_claim_session"], entry.lookup):
                busy = True
                raise _busy()
            yield conn
        finally:
            if not busy:
                await _release(conn, entry.lookup)


async def _release(conn: sql.Connection, lookup: bytes) -> None:
    released = False
    try:
        released = bool(await conn.fetchval(queries["idempotency_release"], lookup))
    except Exception:  # noqa: BLE001, S110 - ended below, which releases the lock
        pass
    finally:
        if not released:
            conn.terminate()  # the lock, if held, goes with the session; the pool opens another


class _Entry:
    """One request's key: where its answer is kept, and how that answer is sealed."""

    def __init__(
        self, secret: bytes, caller: str, key: str, method: str, path: str, body: bytes
    ) -> None:
        scoped = f"{caller}\0{key}".encode()

        def derived(purpose: bytes) -> bytes:
            return hmac.new(secret, purpose + b"\0" + scoped, hashlib.sha256).digest()

        self.lookup = derived(b"chronohub idempotency lookup")
        # Sealed with a key derived from the client's idempotency key and the hub's secret: a
        # reader of the database (a backup, an export) holds neither, and a guessable key
        # ("1") alone does not open an answer that carries a token.
        self._aead = AESGCM(derived(b"chronohub idempotency answer"))
        digest = hashlib.sha256(f"{method}\0{path}\0".encode())
        digest.update(body)
        self.fingerprint = digest.digest()

    async def stored(self, conn: sql.Connection) -> web.Response | None:
        """The stored answer replayed (None: none kept); ``Unprocessable`` if the key was
        used with another request."""
        row = await conn.fetchrow(queries["idempotency_find"], self.lookup)
        if row is None:
            return None
        if row["fingerprint"] != self.fingerprint:
            raise Unprocessable(
                f"This {HEADER} was used with a different request (method, path or body);"
                " use a new key for a new request"
            )
        sealed: bytes = row["answer"]
        body = self._aead.decrypt(sealed[:12], sealed[12:], self.lookup)
        response = web.Response(status=row["status"], body=body or None)
        response.headers.update(json.loads(row["headers"]))
        response.headers[REPLAYED] = "true"
        return response

    async def record(
        self, conn: sql.Connection, response: web.StreamResponse, lifetime_s: float
    ) -> bool:
        """Keep ``response`` under the key (False: a live row of the key is there already)."""
        body = response.body if isinstance(response, web.Response) else None
        plain = bytes(body) if isinstance(body, bytes | bytearray) else b""
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, plain, self.lookup)
        headers = {h: response.headers[h] for h in KEPT_HEADERS if h in response.headers}
        kept = await conn.fetchrow(
            queries["idempotency_store"],
            self.lookup, self.fingerprint, response.status, json.dumps(headers), sealed, lifetime_s,
        )  # fmt: skip
        return kept is not None
