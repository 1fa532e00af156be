"""The in-process broadcast edge that wakes subscribers after a commit."""

from __future__ import annotations

import asyncio

from events import notify


def test_a_token_taken_before_fire_is_set_by_it() -> None:
    wakeup = notify.Wakeup()
    token = wakeup.token()
    assert not token.is_set()
    wakeup.fire()
    assert token.is_set()


def test_a_token_taken_after_fire_is_not_set() -> None:
    wakeup = notify.Wakeup()
    wakeup.fire()
    token = wakeup.token()
    assert not token.is_set()
    wakeup.fire()
    assert token.is_set()


def test_tokens_taken_between_two_fires_are_the_same_edge() -> None:
    wakeup = notify.Wakeup()
    first, second = wakeup.token(), wakeup.token()
    assert first is second
    wakeup.fire()
    assert wakeup.token() is not first


async def test_wait_returns_false_when_nothing_fires() -> None:
    wakeup = notify.Wakeup()
    assert await notify.Wakeup.wait(wakeup.token(), 0.01) is False


async def test_wait_returns_true_when_fired_from_another_task() -> None:
    wakeup = notify.Wakeup()
    token = wakeup.token()

    async def fire_soon() -> None:
        wakeup.fire()

    waiter = asyncio.create_task(notify.Wakeup.wait(token, 10))
    await asyncio.sleep(0)  # a yield, not a delay: let the waiter start waiting
    assert not waiter.done()
    firing = asyncio.create_task(fire_soon())
    assert await waiter is True
    await firing


async def test_wait_on_an_already_fired_token_returns_true_at_once() -> None:
    wakeup = notify.Wakeup()
    token = wakeup.token()
    wakeup.fire()
    assert await notify.Wakeup.wait(token, 0.01) is True


async def test_one_fire_wakes_every_waiter() -> None:
    wakeup = notify.Wakeup()
    token = wakeup.token()
    waiters = [asyncio.create_task(notify.Wakeup.wait(token, 10)) for _ in range(3)]
    wakeup.fire()
    assert await asyncio.gather(*waiters) == [True, True, True]
