"""The hub's REST API and event stream, as the service's token (or a user's) reaches them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

log = logging.getLogger("publish")
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class HubError(RuntimeError):
    """The hub answered a request with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Api:
    """A client of ``api_url`` (``…/hub/api``) holding ``token``."""

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, token: str | None = None) -> Any:
        """``GET`` a path of the API as ``token`` (default: the service's)."""
        headers = {"Authorization": f"token {token or self.token}"}
        async with self.session.get(self.api_url + path, headers=headers) as response:
            if response.status != 200:
                raise HubError(response.status, await response.text())
            return await response.json()

    async def project(self, owner: str, name: str) -> dict[str, Any]:
        """The project model of ``owner/name``."""
        result: dict[str, Any] = await self.get(f"/projects/{quote(owner)}/{quote(name)}")
        return result

    async def members(self, owner: str, name: str) -> list[dict[str, str]]:
        """Who holds which role on ``owner/name``."""
        result: list[dict[str, str]] = await self.get(
            f"/projects/{quote(owner)}/{quote(name)}/members"
        )
        return result

    async def report(self, service: str, kind: str, subject: str, data: dict[str, Any]) -> None:
        """Put what the service did into the hub's log (``service.reported``, on the
        service's own stream): retried a few times, then given up with a warning, since a
        report is not worth stopping the publishing for."""
        headers = {"Authorization": f"token {self.token}"}
        body = {"kind": kind, "subject": subject[:300], "data": _scalars(data)}
        url = f"{self.api_url}/services/{quote(service)}/events"
        for pause in (*RETRY_S, None):
            try:
                async with self.session.post(url, json=body, headers=headers) as response:
                    if response.status == 201:
                        return
                    problem = f"{response.status}: {await response.text()}"
                    if response.status < 500:  # the hub refuses it: trying again won't help
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = str(exc)
            if pause is None:
                break
            await asyncio.sleep(pause)
        log.warning("could not report %s on %s to the hub: %s", kind, subject, problem)

    async def groups_of(self, user: str) -> list[str]:
        """The groups ``user`` belongs to."""
        model = await self.get(f"/users/{quote(user)}")
        return list(model.get("groups", []))

    async def follow(
        self, types: str, cursor: str | None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(id, event)`` from ``/events/stream``, forever, from after ``cursor``; after a
        disconnect it resumes with ``Last-Event-ID`` = the last id it yielded."""
        failures = 0
        while True:
            headers = {"Authorization": f"token {self.token}", "Accept": "text/event-stream"}
            if cursor is not None:
                headers["Last-Event-ID"] = cursor
            try:
                async with self.session.get(
                    f"{self.api_url}/events/stream", params={"type_prefix": types},
                    headers=headers,
                ) as response:  # fmt: skip
                    if response.status != 200:
                        raise HubError(response.status, await response.text())
                    failures = 0
                    async for event_id, event in _events(response):
                        yield event_id, event
                        cursor = event_id
                await asyncio.sleep(RETRY_S[0])
            except (aiohttp.ClientError, TimeoutError, HubError) as exc:
                log.warning("event stream: %s; reconnecting", exc)
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event_id: str | None = None
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            if event_id is not None:
                yield event_id, json.loads("\n".join(data))
            data = []


def _scalars(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the hub takes a report's values: short scalars (lists joined, anything
    else as its JSON, each cut to 2,000 characters), at most 32 of them."""
    result: dict[str, Any] = {}
    for key, value in list(data.items())[:32]:
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(item) for item in value)
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            value = json.dumps(value, sort_keys=True, default=str)
        result[key] = value[:2000] if isinstance(value, str) else value
    return result
