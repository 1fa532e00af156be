"""Parts of the server manager that need no database: its per-server locks, its settings'
``hub_url``, and a shutdown where a server cannot be stopped."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from events import models, store
from hub import settings as hub_settings
from hub.servers import config, running, spawner
from hub.servers import manager as servers
from tests.helpers import wait_for


async def test_a_lock_is_kept_only_while_held_or_awaited() -> None:
    locks: running.KeyedLocks[str] = running.KeyedLocks()
    holding, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with locks.hold("a"):
            holding.set()
            await release.wait()
            order.append("first")

    async def second() -> None:
        async with locks.hold("a"):
            order.append("second")

    one = asyncio.create_task(first())
    await holding.wait()
    two = asyncio.create_task(second())
    await wait_for(lambda: "a" in locks)
    release.set()
    await asyncio.gather(one, two)
    assert order == ["first", "second"]  # still one lock while the second waited
    assert len(locks) == 0  # and gone once nobody holds or waits


async def test_a_lock_is_dropped_when_its_holder_fails() -> None:
    locks: running.KeyedLocks[str] = running.KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("a"):
            raise RuntimeError("boom")
    assert len(locks) == 0


def test_hub_url_comes_from_the_settings_before_anything_serves() -> None:
    plain = hub_settings.Settings(hub_ip="127.0.0.2", hub_port=8123)
    assert config.settings_from(plain).hub_url == "http://127.0.0.2:8123/hub/"
    ipv6 = hub_settings.Settings(hub_ip="::1", hub_port=8124)
    assert config.settings_from(ipv6).hub_url == "http://[::1]:8124/hub/"
    bound = config.settings_from(plain, hub_url="http://127.0.0.1:40001/hub/")
    assert bound.hub_url == "http://127.0.0.1:40001/hub/"  # the socket serve() bound


async def test_a_server_that_cannot_be_stopped_at_shutdown_is_logged_and_the_others_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = config.settings_from(hub_settings.Settings(data_dir=tmp_path))
    manager = servers.ServerManager(cast("store.EventStore", object()), settings)
    assert manager.hub_url == "http://127.0.0.1:8081/hub/"
    for name in ("broken", "gone", "fine"):
        live = running.Live(uuid.uuid4(), name, "")
        manager._live[live.key] = live
    stopped: list[str] = []

    async def stop(user_id: Any, user: str, server_name: str, meta: models.Metadata) -> str:
        if user == "broken":
            raise spawner.SystemFailure("the process would not die")
        if user == "gone":
            raise spawner.PolicyError("gone's server is not running")
        stopped.append(user)
        return "stopped"

    manager.stop = stop  # type: ignore[method-assign,assignment]
    caplog.set_level(logging.INFO, logger=servers.__name__)
    await manager.close(stop_servers=True)
    assert stopped == ["fine"]
    [failed] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert failed.getMessage() == "at shutdown, could not stop broken/"
    assert failed.exc_info is not None
    assert isinstance(failed.exc_info[1], spawner.SystemFailure)
    assert any("gone's server is not running" in r.getMessage() for r in caplog.records)
