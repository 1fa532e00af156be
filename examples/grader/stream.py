"""Following the hub's event stream (``/hub/api/events/stream``) for ``project.*`` events.

Pushes are learnt from ``project.pushed`` as they happen, not by polling; project ids are
mapped to names from ``project.created``/``renamed``/``deleted`` on the same stream. After a
disconnect, a hub restart or a restart of the service, it reconnects with ``Last-Event-ID``
set to the cursor saved in the gradebook, and the gradebook ignores anything at or before
it: no push is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from . import gradebook

log = logging.getLogger("grader")

TYPES = "project."
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


async def follow(api_url: str, token: str, book: gradebook.Gradebook) -> None:
    """Follow the stream forever, reconnecting (with backoff) from the saved cursor."""
    failures = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=90)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            headers = {"Authorization": f"token {token}", "Accept": "text/event-stream"}
            if (last := book.last_event_id()) is not None:
                headers["Last-Event-ID"] = last
            try:
                async with session.get(
                    f"{api_url}/events/stream", params={"type_prefix": TYPES}, headers=headers
                ) as response:
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(
                            response.request_info, (), status=response.status,
                            message=(await response.text())[:300],
                        )  # fmt: skip
                    failures = 0
                    await read(response, book)
                log.info("the event stream ended; reconnecting")
                await asyncio.sleep(RETRY_S[0])
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("event stream: %s; reconnecting", exc)
                await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                failures += 1


async def read(response: aiohttp.ClientResponse, book: gradebook.Gradebook) -> None:
    """Apply each server-sent event of ``response`` (comment lines are heartbeats)."""
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
                book.apply(event_id, json.loads("\n".join(data)))
            data = []
