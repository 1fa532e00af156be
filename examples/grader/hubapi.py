"""The hub's public REST API, as this service calls it (aiohttp).

Two kinds of callers: the service itself (its own token: groups, reading and writing
submissions), and a signed-in person (the OAuth token HubOAuth got for them, limited to
``admin:projects!user``: their own projects). Releases and submission projects are created
with the person's token, so the hub's log names who released or started what, and the
service never holds the right to create or share anyone's projects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

PAGINATED = "application/jupyterhub-pagination+json"


class HubError(Exception):
    """The hub refused a call: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Hub:
    """The hub's API at ``api_url`` (``…/hub/api``), called with ``token`` unless told."""

    session: aiohttp.ClientSession
    api_url: str
    token: str

    @property
    def git_base(self) -> str:
        """Where the hub serves git: ``<hub>/hub/git``."""
        return self.api_url.removesuffix("/api") + "/git"

    async def call(
        self, method: str, path: str, *, token: str | None = None, ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """Call the API; the JSON answer (None for 204); ``HubError`` for another status."""
        headers = {"Authorization": f"token {token or self.token}", **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.api_url + path, headers=headers, **kwargs
        ) as response:
            if response.status not in ok:
                try:
                    message = (await response.json())["message"]
                except (aiohttp.ContentTypeError, ValueError, KeyError, TypeError):
                    message = (await response.text())[:500]
                raise HubError(response.status, message)
            if response.status == 204:
                return None
            return await response.json()

    async def groups(self) -> list[dict[str, Any]]:
        """Every group with its members (the service's ``read:groups``), all pages."""
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = await self.call(
                "GET", f"/groups?offset={offset}&limit=200", headers={"Accept": PAGINATED}
            )
            found.extend(page["items"])
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return found
            offset = following["offset"]

    async def project(self, owner: str, name: str, *, token: str | None = None) -> Any:
        """A project's model; ``HubError`` 404 if missing or hidden from the caller."""
        return await self.call("GET", f"/projects/{_q(owner)}/{_q(name)}", token=token)

    async def create_project(self, token: str, name: str, description: str) -> Any:
        """Create ``name`` owned by ``token``'s user; an existing one of theirs is kept."""
        try:
            return await self.call(
                "POST", "/projects", token=token, ok=(201,),
                json={"name": name, "description": description},
            )  # fmt: skip
        except HubError as exc:
            if exc.status != 409:
                raise
        me = await self.call("GET", "/user", token=token)
        return await self.project(me["name"], name, token=token)

    async def share(self, token: str, owner: str, name: str, group: str, role: str) -> None:
        """Give group ``group`` role ``role`` on project ``owner/name`` (as ``token``)."""
        await self.call(
            "PUT", f"/projects/{_q(owner)}/{_q(name)}/members/groups/{_q(group)}",
            token=token, json={"role": role},
        )  # fmt: skip

    async def files(self, owner: str, name: str, ref: str) -> list[dict[str, Any]]:
        """Every file on ``ref`` of a project (none for a project never pushed)."""
        try:
            tree = await self.call(
                "GET", f"/projects/{_q(owner)}/{_q(name)}/tree/{quote(ref)}/?recursive=true"
            )
        except HubError as exc:
            if exc.status in (404, 409) and "No such project" not in exc.message:
                return []  # an empty repository has no HEAD yet
            raise
        return [e for e in tree["entries"] if e["type"] == "file"]

    async def raw(self, owner: str, name: str, ref: str, path: str) -> bytes:
        """A file's bytes on ``ref``; ``path``'s segments are quoted one by one (callers
        refuse ``.`` and ``..`` segments: the URL would resolve them)."""
        segments = "/".join(_q(part) for part in path.split("/"))
        url = f"{self.api_url}/projects/{_q(owner)}/{_q(name)}/raw/{quote(ref)}/{segments}"
        headers = {"Authorization": f"token {self.token}"}
        async with self.session.get(url, headers=headers) as response:
            if response.status != 200:
                raise HubError(response.status, (await response.text())[:500])
            return await response.read()


def _q(part: str) -> str:
    return quote(part, safe="")
