"""The configurable-http-proxy adapter: starts (or connects to) a real CHP and keeps its
routing table in line with the routes read model through CHP's REST API.

CHP's API (``/api/routes``, ``Authorization: token $CONFIGPROXY_AUTH_TOKEN``): ``GET`` lists
routes (``{path: {target, last_activity, ...data}}``), ``POST /api/routes/<path>`` adds one,
``DELETE`` removes one. Paths are given without their trailing slash, as JupyterHub does.
Each sync adds the routes CHP lacks (or has with another target), deletes those it should
not have, and reports the traffic CHP saw on each server's route as that server's activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from hub import ports as hub_ports
from hub.proxy import table

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Plan:
    """What a sync changes in CHP."""

    add: dict[str, dict[str, Any]]  # chp path -> body of the POST
    delete: list[str]


def chp_path(routespec: str) -> str:
    """CHP's path of a routespec: no trailing slash, except for ``/``."""
    return routespec[:-1] if routespec != "/" and routespec.endswith("/") else routespec


def desired(routes: Sequence[table.Route], hub_target: str) -> dict[str, dict[str, Any]]:
    """The routes CHP should have, with their data (JupyterHub's shapes)."""
    table: dict[str, dict[str, Any]] = {"/": {"target": hub_target, "hub": True}}
    for route in routes:
        body: dict[str, Any] = {"target": route.target}
        if route.activity_key is not None:
            user, _, server_name = route.prefix.removeprefix("/user/").rstrip("/").partition("/")
            body |= {"user": user, "server_name": server_name}
        elif route.prefix.startswith("/services/"):
            body["service"] = route.prefix.removeprefix("/services/").rstrip("/")
        table[chp_path(route.prefix)] = body
    return table


def plan(want: Mapping[str, dict[str, Any]], have: Mapping[str, Mapping[str, Any]]) -> Plan:
    """Add what is missing, points elsewhere or lacks its data (the route CHP makes for
    ``--default-target`` has no ``hub`` flag); delete what should not be there."""
    add = {
        path: body
        for path, body in want.items()
        if path not in have or any(have[path].get(key) != value for key, value in body.items())
    }
    return Plan(add=add, delete=sorted(path for path in have if path not in want))


class ChpProxy:
    """A configurable-http-proxy this hub starts, or an external one at ``api_url``."""

    def __init__(
        self,
        *,
        command: Sequence[str],
        api_url: str | None,
        auth_token: str | None,
        ip: str,
        port: int,
        hub_target: str,
        on_activity: table.OnActivity | None = None,
        ports: hub_ports.Ports | None = None,
    ) -> None:
        self.command = list(command)
        # Where its API's port comes from: the hub's one picker (port_range).
        self.ports = ports or hub_ports.Ports()
        self.api_url = api_url
        self.auth_token = auth_token or secrets.token_hex(32)
        self.ip, self.port = ip, port
        self.hub_target = hub_target
        self.on_activity = on_activity
        self.process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._seen: dict[str, str] = {}

    @property
    def headers(self) -> dict[str, str]:
        """The API's authorization."""
        return {"Authorization": f"token {self.auth_token}"}

    async def start(self) -> None:
        """Start CHP unless an external one is configured; wait until its API answers."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        if self.api_url is None:
            await self._launch()
        await self._wait_for_api()

    async def _launch(self) -> None:
        api_port = self.ports.pick("127.0.0.1")
        self.api_url = f"http://127.0.0.1:{api_port}"
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.auth_token}
        args = [
            *self.command,
            "--ip", self.ip,
            "--port", str(self.port),
            "--api-ip", "127.0.0.1",
            "--api-port", str(api_port),
            "--default-target", self.hub_target,
            "--error-target", f"{self.hub_target}/hub/error",
            "--log-level", "warn",
        ]  # fmt: skip
        try:
            self.process = await asyncio.create_subprocess_exec(
                *args, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as exc:
            raise RuntimeError(
                f"could not start configurable-http-proxy ({self.command[0]!r}): {exc}"
            ) from exc

    async def _wait_for_api(self) -> None:
        assert self._session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if self.process is not None and self.process.returncode is not None:
                raise RuntimeError(
                    f"configurable-http-proxy exited with code {self.process.returncode}"
                )
            try:
                async with self._session.get(
                    f"{self.api_url}/api/routes", headers=self.headers
                ) as response:
                    if response.status == 200:
                        return
                    if response.status == 403:
                        raise RuntimeError("configurable-http-proxy refused the auth token")
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise RuntimeError(f"configurable-http-proxy did not answer at {self.api_url}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Stop the CHP this hub started; close the API client."""
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> ChpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def routes(self) -> dict[str, dict[str, Any]]:
        """CHP's routing table."""
        assert self._session is not None
        async with self._session.get(f"{self.api_url}/api/routes", headers=self.headers) as reply:
            reply.raise_for_status()
            table: dict[str, dict[str, Any]] = await reply.json()
            return table

    async def sync(self, routes: list[table.Route]) -> Plan:
        """Bring CHP's table in line with ``routes``; restart a CHP of ours that died."""
        assert self._session is not None
        if self.process is not None and self.process.returncode is not None:
            log.error("configurable-http-proxy exited (%s); restarting it", self.process.returncode)
            await self._launch()
            await self._wait_for_api()
        have = await self.routes()
        changes = plan(desired(routes, self.hub_target), have)
        for path, body in changes.add.items():
            async with self._session.post(
                f"{self.api_url}/api/routes{quote(path)}", json=body, headers=self.headers
            ) as reply:
                reply.raise_for_status()
        for path in changes.delete:
            async with self._session.delete(
                f"{self.api_url}/api/routes{quote(path)}", headers=self.headers
            ) as reply:
                if reply.status != 404:
                    reply.raise_for_status()
        if changes.add or changes.delete:
            log.info("proxy routes: added %s, deleted %s", list(changes.add), changes.delete)
        await self._report_activity(routes, have)
        return changes

    async def _report_activity(
        self, routes: list[table.Route], have: Mapping[str, Mapping[str, Any]]
    ) -> None:
        if self.on_activity is None:
            return
        seen: dict[table.ActivityKey, datetime] = {}
        for route in routes:
            if route.activity_key is None:
                continue
            stamp = have.get(chp_path(route.prefix), {}).get("last_activity")
            if not isinstance(stamp, str) or self._seen.get(route.prefix) == stamp:
                continue
            with contextlib.suppress(ValueError):
                seen[route.activity_key] = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                self._seen[route.prefix] = stamp
        if seen:
            await self.on_activity(seen)
