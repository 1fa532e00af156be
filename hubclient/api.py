"""The hub's REST API, as the client uses it: projects, members, the caller, tokens.

Plain ``urllib`` (no third-party HTTP library: the client must stay light enough to install
into any server's environment, and start fast). Each HTTP failure becomes one typed error,
here, with the hub's own message.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from hubclient import config, errors

TIMEOUT_S = 30.0
USER_AGENT = "chronohub-project-cli"


class ApiError(errors.ClientError):
    """The hub answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = errors.ACCESS if status in (401, 403, 404) else errors.FAILED


def _message(raw: bytes, status: int) -> str:
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    except ValueError:
        pass
    text = raw.decode("utf-8", "replace").strip()
    return text[:300] or f"HTTP {status}"


def _unreachable(url: str, exc: BaseException) -> errors.Unreachable:
    reason = getattr(exc, "reason", exc)
    return errors.Unreachable(f"cannot reach the hub at {url}: {reason}")


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Leave redirects to the caller (the login form answers a redirect on success)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_API_OPENER = urllib.request.build_opener(NoRedirects)


@dataclass
class Api:
    """Calls to one hub with one token."""

    hub: config.Hub
    timeout_s: float = TIMEOUT_S

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """``method`` on ``/hub/api{path}``: the decoded JSON reply (None when empty)."""
        url = self.hub.api + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http(s): config.normalize)
        request.add_header("User-Agent", USER_AGENT)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.hub.token:
            request.add_header("Authorization", f"token {self.hub.token}")
        try:
            # redirects are not followed: urllib would send the token on to wherever they point
            with _API_OPENER.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            if 300 <= status < 400:
                raise errors.Usage(
                    f"the hub at {self.hub.url} answered with a redirect to"
                    f" {exc.headers.get('Location')}: use that address (--hub), the token was"
                    " not sent on"
                ) from exc
            message = _message(raw, status)
            # JupyterHub answers an unknown token 403 "Missing or invalid credentials."
            if status == 401 or (status == 403 and "invalid credentials" in message):
                raise errors.Access(
                    f"the hub at {self.hub.url} refused the token ({self.hub.source}): it was"
                    f" revoked, has expired or was never valid; run chronohub login {self.hub.url}"
                ) from exc
            raise ApiError(status, message) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _unreachable(self.hub.url, exc) from exc
        return json.loads(raw) if raw.strip() else None

    def pages(self, path: str, query: dict[str, str] | None = None) -> list[Any]:
        """Every item of a paginated list."""
        items: list[Any] = []
        offset = 0
        while True:
            reply = self.call("GET", path, query={**(query or {}), "offset": str(offset)})
            if isinstance(reply, list):  # an unpaginated answer: the whole list
                return reply
            batch = reply.get("items", [])
            items.extend(batch)
            following = (reply.get("_pagination") or {}).get("next")
            if not batch or not following:
                return items
            offset = int(following.get("offset", offset + len(batch)))

    # --- what the commands use -----------------------------------------------------------

    def me(self) -> str:
        """The name of the token's user."""
        reply = self.call("GET", "/user")
        if reply.get("kind") not in (None, "user"):
            raise errors.Access(f"the token belongs to a {reply.get('kind')}, not a user")
        return str(reply["name"])

    def project(self, owner: str, name: str) -> dict[str, Any] | None:
        """The project ``owner/name``; None when the hub has none it lets us see."""
        try:
            reply: dict[str, Any] = self.call("GET", f"/projects/{_q(owner)}/{_q(name)}")
        except ApiError as exc:
            if exc.status == 404:
                # A refused token reads as anonymous, to whom a private project is a 404 too:
                # make sure it is the project that is missing, not the token.
                self.me()
                return None
            raise
        return reply

    def create_project(self, owner: str, name: str) -> dict[str, Any]:
        """Create ``owner/name`` (private: sharing grants access)."""
        reply: dict[str, Any] = self.call("POST", "/projects", {"owner": owner, "name": name})
        return reply

    def set_member(self, owner: str, name: str, kind: str, member: str, role: str | None) -> None:
        """Give ``member`` (``users`` or ``groups``) ``role`` on the project; None revokes."""
        path = f"/projects/{_q(owner)}/{_q(name)}/members/{kind}/{_q(member)}"
        if role is None:
            self.call("DELETE", path)
        else:
            self.call("PUT", path, {"role": role})

    def members(self, owner: str, name: str) -> list[dict[str, str]]:
        """Who holds which role on the project."""
        reply: list[dict[str, str]] = self.call("GET", f"/projects/{_q(owner)}/{_q(name)}/members")
        return reply

    def projects(self, *, shared: bool = False) -> list[dict[str, Any]]:
        """The projects the token can read (only those shared with its user: ``shared``)."""
        return self.pages("/projects", {"shared_with_me": "true"} if shared else None)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


XSRF_FIELD = re.compile(r'name="_xsrf"\s+value="([^"]+)"')


def login(url: str, user: str, password: str, note: str, timeout_s: float = TIMEOUT_S) -> str:
    """A new API token for ``user``, got as a browser would: the hub's login form, then
    ``POST /hub/api/users/{user}/tokens`` with the session (the hub's REST API takes no
    password, and the form is the same way in for every password authenticator)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirects)
    opener.addheaders = [("User-Agent", USER_AGENT)]

    def send(request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with opener.open(request, timeout=timeout_s) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise _unreachable(url, exc) from exc

    status, page = send(urllib.request.Request(url + "/hub/login"))  # noqa: S310 (http(s) only)
    found = XSRF_FIELD.search(page.decode("utf-8", "replace"))
    if status != 200 or found is None:
        raise errors.Failed(f"{url}/hub/login has no login form (HTTP {status}): is this a hub?")
    xsrf = found.group(1)
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf})
    status, page = send(
        urllib.request.Request(url + "/hub/login", data=form.encode(), method="POST")  # noqa: S310
    )
    if status not in (302, 303):
        error = re.search(r'class="error"[^>]*>([^<]+)<', page.decode("utf-8", "replace"))
        reason = error.group(1).strip() if error else f"HTTP {status}"
        raise errors.Access(f"the hub refused the login: {reason}")
    request = urllib.request.Request(  # noqa: S310 (http(s) only)
        f"{url}/hub/api/users/{_q(user)}/tokens",
        data=json.dumps({"note": note}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-XSRFToken": xsrf},
    )
    status, raw = send(request)
    if status != 201:
        raise ApiError(status, f"the hub issued no token: {_message(raw, status)}")
    token: str = json.loads(raw)["token"]
    return token
