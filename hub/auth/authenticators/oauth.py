"""Log in through an upstream OAuth2 / OpenID Connect provider (authorization code + PKCE).

oauthlib's ``WebApplicationClient`` builds the authorize URL and the token request and
parses the token response; aiohttp carries them. The browser leaves with a random ``state``
and a PKCE verifier kept in a signed, short-lived cookie; the callback checks the state,
exchanges the code, reads the user data with the access token and decides whether that
person may log in: anyone (``allow_all``), the ``allowed_users``, the hub's admin users, or
(GitHub preset) members of ``allowed_organizations``.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp import web
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2 import OAuth2Error, WebApplicationClient

from events import sql
from events.catalog import auth as auth_events
from hub import settings as hub_settings
from hub.auth import login_cookies
from hub.auth.authenticators.base import Identity, LoginFailed

log = logging.getLogger(__name__)

STATE_COOKIE = "chronohub-oauth-state"
STATE_MAX_AGE_S = 600
CALLBACK_PATH = "/hub/oauth_callback"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=30)
# GitHub lists a user's organisations 100 a page at most; 10 pages is more than anyone has.
ORGS_PER_PAGE = 100
ORG_PAGES = 10


class UpstreamError(LoginFailed):
    """The provider answered something unusable; the message says what."""

    def __init__(self, message: str) -> None:
        super().__init__("not_allowed", message, status=502)


class OAuthAuthenticator:
    """Generic OAuth2/OIDC login; ``preset = "github"`` fills in GitHub's endpoints."""

    kind: auth_events.Authenticator = "oauth"
    password_form = False

    def __init__(
        self,
        config: hub_settings.UpstreamOAuthConfig,
        *,
        cookies: login_cookies.Cookies,
        admin_users: list[str],
        public_url: str | None,
    ) -> None:
        self.config = config
        self.cookies = cookies
        self.login_service = config.login_service
        self._admins = {name.lower() for name in admin_users}
        self._public_url = public_url

    def callback_url(self, request: web.Request) -> str:
        """Where the provider sends the browser back: configured, or on this hub's origin."""
        if self.config.callback_url:
            return self.config.callback_url
        base = self._public_url or f"{request.scheme}://{request.host}/"
        return urljoin(base, CALLBACK_PATH)

    async def authenticate(self, conn: sql.Connection, username: str, password: str) -> Identity:
        """Passwords are the provider's business, not this hub's."""
        raise LoginFailed("not_allowed", f"Log in with {self.login_service} instead")

    async def redirect(self, request: web.Request, next_url: str) -> web.StreamResponse:
        """302 to the provider's authorize URL, the state and PKCE verifier in a cookie."""
        client = WebApplicationClient(self.config.client_id)
        verifier = client.create_code_verifier(64)
        state = secrets.token_urlsafe(24)
        # oauthlib's prepare_request_uri would refuse http:// even where the settings allow
        # it (it reads an environment variable); the settings check the scheme at startup.
        params = [
            ("response_type", "code"),
            ("client_id", self.config.client_id),
            ("redirect_uri", self.callback_url(request)),
            ("state", state),
            ("code_challenge", client.create_code_challenge(verifier, "S256")),
            ("code_challenge_method", "S256"),
        ]
        if self.config.scope:
            params.append(("scope", " ".join(self.config.scope)))
        url = add_params_to_uri(self.config.authorize_url or "", params)
        response = web.Response(status=302, headers={"Location": url})
        payload = json.dumps({"state": state, "verifier": verifier, "next": next_url})
        self.cookies.set(
            response, STATE_COOKIE, self.cookies.sign("oauth-state", payload), httponly=True
        )
        return response

    async def callback(self, request: web.Request) -> tuple[Identity, str]:
        """Check the state, exchange the code, read who it is, decide if they may log in."""
        signed = request.cookies.get(STATE_COOKIE)
        saved = (
            self.cookies.unsign("oauth-state", signed, max_age_s=STATE_MAX_AGE_S)
            if signed
            else None
        )
        if saved is None:
            raise LoginFailed("not_allowed", "OAuth state cookie missing or expired: log in again")
        expected = json.loads(saved)
        if "error" in request.query:
            said = request.query.get("error_description") or request.query["error"]
            raise LoginFailed("not_allowed", f"{self.login_service} refused: {said}")
        state = request.query.get("state", "")
        if not secrets.compare_digest(state.encode(), str(expected["state"]).encode()):
            raise LoginFailed("not_allowed", "OAuth state does not match: log in again")
        code = request.query.get("code")
        if not code:
            raise LoginFailed("not_allowed", "The provider's callback carries no code")
        token = await self._exchange(code, expected["verifier"], self.callback_url(request))
        user = await self._get_json(self.config.userdata_url or "", token)
        name = self._username(user)
        if not await self._allowed(name, token):
            raise LoginFailed("not_allowed", f"User {name} is not allowed to log in")
        return Identity(name, create=True), str(expected["next"])

    async def _exchange(self, code: str, verifier: str, redirect_uri: str) -> str:
        client = WebApplicationClient(self.config.client_id)
        body = client.prepare_request_body(
            code=code,
            redirect_uri=redirect_uri,
            include_client_id=True,
            client_secret=self.config.client_secret.get_secret_value(),
            code_verifier=verifier,
        )
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
            http.post(self.config.token_url or "", data=body, headers=headers) as response,
        ):
            text = await response.text()
        try:
            token = client.parse_request_body_response(text)
        except OAuth2Error as exc:
            raise UpstreamError(
                f"{self.login_service} refused the code: {exc.description or exc.error}"
            ) from exc
        except ValueError as exc:
            raise UpstreamError(
                f"{self.login_service}'s token endpoint answered {response.status} without a token"
            ) from exc
        access_token = token.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise UpstreamError(f"{self.login_service} sent no access token")
        return access_token

    async def _get_json(self, url: str, token: str) -> Any:
        return (await self._get_page(url, token))[0]

    async def _get_page(self, url: str, token: str) -> tuple[Any, str | None]:
        """The JSON at ``url`` and the next page's URL (``Link: <…>; rel="next"``), if any."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        async with (
            aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
            http.get(url, headers=headers) as response,
        ):
            if response.status != 200:
                raise UpstreamError(f"{url} answered {response.status}")
            try:
                body = await response.json(content_type=None)
            except ValueError as exc:
                raise UpstreamError(f"{url} did not answer JSON") from exc
            following = response.links.get("next")
            return body, str(following["url"]) if following and "url" in following else None

    def _username(self, user: Any) -> str:
        claim = self.config.username_claim or "preferred_username"
        name = user.get(claim) if isinstance(user, dict) else None
        if not isinstance(name, str) or not name:
            raise UpstreamError(f"the user data has no {claim!r}")
        return name.lower()

    async def _allowed(self, name: str, token: str) -> bool:
        if self.config.allow_all or name in self._admins:
            return True
        if name in {n.lower() for n in self.config.allowed_users}:
            return True
        if self.config.allowed_organizations and self.config.preset == "github":
            return await self._in_allowed_organization(token)
        return False

    async def _in_allowed_organization(self, token: str) -> bool:
        """Whether GitHub's ``GET /user/orgs`` (every page of it) names an allowed one."""
        orgs_url = urljoin(self.config.userdata_url or "", "user/orgs")
        url: str | None = add_params_to_uri(orgs_url, [("per_page", str(ORGS_PER_PAGE))])
        for _ in range(ORG_PAGES):
            if url is None:
                break
            orgs, url = await self._get_page(url, token)
            if member_of(orgs, self.config.allowed_organizations):
                return True
        return False


def member_of(orgs: Any, allowed: list[str]) -> bool:
    """Whether GitHub's ``GET /user/orgs`` answer names one of the ``allowed`` organisations
    (compared as GitHub does, ignoring case)."""
    if not isinstance(orgs, list):
        raise UpstreamError("GitHub's organisation list is not a list")
    logins = {str(o.get("login", "")).lower() for o in orgs if isinstance(o, dict)}
    return bool(logins & {name.lower() for name in allowed})
