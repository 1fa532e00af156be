"""Helpers shared by the tests: waiting with a deadline, calling the hub API, the environment
of a hub run as a process, and event types used only by tests."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from aiohttp import test_utils
from pydantic import Field

from events import models
from tests import ports


async def call_api(
    client: test_utils.TestClient[Any, Any],
    method: str,
    path: str,
    token: str | None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Call ``/hub/api<path>`` with ``token``: the status and the JSON reply (text if not JSON)."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"token {token}"
    response = await client.request(method, "/hub/api" + path, headers=headers, **kwargs)
    text = await response.text()
    try:
        payload = await response.json(content_type=None) if text else None
    except ValueError:
        payload = text
    return response.status, payload


def hub_base_env() -> dict[str, str]:
    """This process's environment minus any database or chronohub settings, but for the ports
    this worker's hubs hand out (``tests.ports.HUB_RANGE``): a hub subprocess's to build on."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "PGHOST", "PGDATABASE") and not k.startswith("CHRONOHUB_")
    }
    return env | {"CHRONOHUB_PORT_RANGE": ports.HUB_RANGE}


def hub_process_env(db_url: str, config: Path, data_dir: Path) -> dict[str, str]:
    """The environment of a ``chronohub serve`` subprocess on the test database: this one's,
    minus any database or chronohub settings but this worker's ports, plus the test's."""
    return hub_base_env() | {
        "CHRONOHUB_DATABASE_URL": db_url,
        "CHRONOHUB_CONFIG": str(config),
        "CHRONOHUB_DATA_DIR": str(data_dir),
    }


def service_toml(token: str, scopes: Sequence[str], name: str = "operator") -> str:
    """Configuration (TOML) of a service ``name`` holding ``token`` and a role ``<name>-role``
    granting it ``scopes``: how a test drives a ``chronohub serve`` process through the API."""
    return f"""
[[services]]
name = "{name}"
api_token = "{token}"

[[roles]]
name = "{name}-role"
scopes = {json.dumps(list(scopes))}
services = ["{name}"]
"""


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]], *, timeout_s: float = 10.0, every_s: float = 0.01
) -> None:
    """Poll ``predicate`` (plain or async) until it is true; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(every_s)


class Noted(models.Event):
    """A test event: some text noted on a stream."""

    type: ClassVar[str] = "test.noted"

    text: str = Field(max_length=100_000)


class Counted(models.Event):
    """A test event at schema version 3; versions 1 and 2 named and shaped the field differently."""

    type: ClassVar[str] = "test.counted"
    schema_version: ClassVar[int] = 3
    upcasters: ClassVar[dict[int, Any]] = {
        1: lambda d: {"count": d["n"]},
        2: lambda d: {"count": d["count"], "unit": "item"},
    }

    count: int
    unit: str


class Touched(models.Event):
    """A test event carrying an id, for projections written in tests."""

    type: ClassVar[str] = "test.touched"

    thing: UUID
