"""Lockout and rate limits of login attempts: pure decisions over failure counters.

Two counters per attempt: ``user:<name>`` (``login_lockout_failures`` failures in a row lock
the account for ``login_lockout_seconds``, whatever password comes next) and
``address:<ip>`` (``login_address_max_failures`` failures in one window refuse that address
until the window ends). A success clears the user's counter. Counters live in the
``login_failures`` table: they are telemetry, not hub actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from events import sql

queries = sql.Queries(__package__ or "hub.auth", "auth.sql")


@dataclass(frozen=True)
class Counter:
    """Failures counted since ``window_start``; ``locked_until`` once over the threshold."""

    failures: int
    window_start: datetime
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Limits:
    """Thresholds, from the settings."""

    user_failures: int
    address_failures: int
    window: timedelta


@dataclass(frozen=True)
class Refusal:
    """An attempt refused before the password is looked at."""

    reason: Literal["locked", "rate_limited"]
    retry_after_s: int

    @property
    def message(self) -> str:
        """What the person is told."""
        if self.reason == "locked":
            return (
                "Too many failed logins for this user: the account is locked;"
                f" try again in {self.retry_after_s} seconds"
            )
        return (
            f"Too many failed logins from this address; try again in {self.retry_after_s} seconds"
        )


def user_key(name: str) -> str:
    """The counter of a user name."""
    return f"user:{name.lower()}"


def address_key(address: str | None) -> str:
    """The counter of a client address."""
    return f"address:{address or 'unknown'}"


def _retry(until: datetime, now: datetime) -> int:
    return max(1, int((until - now).total_seconds() + 0.999))


def check(
    user: Counter | None, address: Counter | None, now: datetime, limits: Limits
) -> Refusal | None:
    """Whether an attempt may go ahead, given the current counters."""
    if user is not None and user.locked_until is not None and user.locked_until > now:
        return Refusal("locked", _retry(user.locked_until, now))
    if address is not None and address.locked_until is not None and address.locked_until > now:
        return Refusal("rate_limited", _retry(address.locked_until, now))
    return None


def after_failure(
    counter: Counter | None, now: datetime, threshold: int, window: timedelta
) -> Counter:
    """The counter after one more failure: a new window if the last one is over."""
    if counter is None or now - counter.window_start >= window:
        counter = Counter(0, now)
    failures = counter.failures + 1
    locked = now + window if failures >= threshold else None
    return Counter(failures, counter.window_start, locked)


def _counter(row: Any) -> Counter:
    return Counter(row["failures"], row["window_start"], row["locked_until"])


async def refusal(
    conn: sql.Connection, name: str, address: str | None, now: datetime, limits: Limits
) -> Refusal | None:
    """Whether this attempt is refused by a lockout or a rate limit."""
    rows = {
        r["key"]: _counter(r)
        for r in await conn.fetch(queries["failures_get"], [user_key(name), address_key(address)])
    }
    return check(rows.get(user_key(name)), rows.get(address_key(address)), now, limits)


async def record_failure(
    conn: sql.Connection, name: str, address: str | None, now: datetime, limits: Limits
) -> bool:
    """Count a failure for the user and the address; True if it just locked the user."""
    keys = {user_key(name): limits.user_failures, address_key(address): limits.address_failures}
    async with conn.transaction():
        rows = {
            r["key"]: _counter(r) for r in await conn.fetch(queries["failures_lock"], list(keys))
        }
        locked_now = False
        for key, threshold in keys.items():
            before = rows.get(key)
            after = after_failure(before, now, threshold, limits.window)
            if (
                key.startswith("user:")
                and after.locked_until
                and not (before and before.locked_until and before.locked_until > now)
            ):
                locked_now = True
            await conn.execute(
                queries["failures_put"], key, after.failures, after.window_start, after.locked_until
            )
    return locked_now


async def record_success(conn: sql.Connection, name: str) -> None:
    """A successful login clears the user's counter (not the address's)."""
    await conn.execute(queries["failures_clear"], user_key(name))
