"""The pure decisions of logging in and of the OAuth provider, without a database:
lockout and rate limits, ``next`` redirects, signed cookies, scope and consent rules, PKCE,
code exchange checks, client naming, and the settings that refuse unsafe setups."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from hub import settings as hub_settings
from hub.auth import login_cookies, login_throttle, scopes
from hub.auth.oauth import clients as oauth_clients
from hub.auth.oauth import provider as oauth_provider
from hub.web import html

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=300)
LIMITS = login_throttle.Limits(user_failures=3, address_failures=5, window=WINDOW)


# --- lockout and rate limits -----------------------------------------------------------------


def test_failures_lock_at_the_threshold_and_not_before() -> None:
    counter = None
    for expected in (1, 2):
        counter = login_throttle.after_failure(counter, NOW, 3, WINDOW)
        assert counter.failures == expected
        assert counter.locked_until is None
    counter = login_throttle.after_failure(counter, NOW, 3, WINDOW)
    assert counter.locked_until == NOW + WINDOW
    refusal = login_throttle.check(counter, None, NOW + timedelta(seconds=10), LIMITS)
    assert refusal == login_throttle.Refusal("locked", 290)
    assert "the account is locked; try again in 290 seconds" in refusal.message
    assert login_throttle.check(counter, None, NOW + WINDOW, LIMITS) is None  # lock over


def test_a_new_window_starts_counting_again() -> None:
    old = login_throttle.Counter(2, NOW - WINDOW)
    assert login_throttle.after_failure(old, NOW, 3, WINDOW) == login_throttle.Counter(1, NOW)


def test_an_address_over_its_limit_is_rate_limited() -> None:
    address = login_throttle.Counter(5, NOW, NOW + timedelta(seconds=60))
    refusal = login_throttle.check(None, address, NOW, LIMITS)
    assert refusal is not None
    assert refusal.reason == "rate_limited"
    assert "from this address" in refusal.message


def test_counter_keys() -> None:
    assert login_throttle.user_key("Alice") == "user:alice"
    assert login_throttle.address_key(None) == "address:unknown"


# --- next redirects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "/hub/home"),
        ("", "/hub/home"),
        (
            "/hub/api/oauth2/authorize?client_id=x&state=y",
            "/hub/api/oauth2/authorize?client_id=x&state=y",
        ),
        ("/user/alice/", "/user/alice/"),
        ("//evil.example/", "/hub/home"),
        ("/\\evil.example/", "/hub/home"),
        ("https://evil.example/hub/", "/hub/home"),
        ("http://hub.example:8000/hub/home?x=1", "/hub/home?x=1"),
        ("http://hub.example:8000//evil.example", "/hub/home"),
        ("javascript:alert(1)", "/hub/home"),
        ("/hub/\nSet-Cookie: x", "/hub/home"),
    ],
)
def test_next_stays_on_this_hub(value: str | None, expected: str) -> None:
    request = make_mocked_request("GET", "/hub/login", headers={"Host": "hub.example:8000"})
    assert html.safe_next(request, value) == expected


@given(st.text())
def test_next_is_always_a_local_path(value: str) -> None:
    request = make_mocked_request("GET", "/hub/login", headers={"Host": "hub.example"})
    result = html.safe_next(request, value)
    assert result.startswith("/")
    assert not result.startswith(("//", "/\\"))


# --- signed cookies ---------------------------------------------------------------------------


def test_a_signed_value_comes_back_and_a_tampered_one_does_not() -> None:
    cookies = login_cookies.Cookies(secret=b"k" * 32, max_age_s=60)
    signed = cookies.sign("login", "the-secret")
    assert cookies.unsign("login", signed) == "the-secret"
    assert cookies.unsign("xsrf", signed) is None  # another purpose: another key
    # (not the last character: its low bits are base64 padding, ignored when decoded)
    flipped = "A" if signed[-5] != "A" else "B"
    assert cookies.unsign("login", signed[:-5] + flipped + signed[-4:]) is None
    assert cookies.unsign("login", signed.replace(".", ".x", 1)) is None
    other = login_cookies.Cookies(secret=b"o" * 32, max_age_s=60)
    assert other.unsign("login", signed) is None
    assert cookies.unsign("login", "garbage") is None


def test_the_cookie_secret_is_generated_once_into_the_data_dir(tmp_path: Any) -> None:
    config = hub_settings.Settings(database_url="postgresql://x", data_dir=tmp_path)
    first = login_cookies.load_secret(config)
    assert len(first) == 64
    assert login_cookies.load_secret(config) == first
    assert (tmp_path / "cookie_secret").stat().st_mode & 0o777 == 0o600
    short = hub_settings.Settings(database_url="postgresql://x", cookie_secret="short")
    with pytest.raises(ValueError, match="at least 32 characters"):
        login_cookies.load_secret(short)


# --- OAuth clients, scopes and consent --------------------------------------------------------


def service(no_confirm: bool = False, allowed: tuple[str, ...] = ()) -> oauth_clients.Client:
    return oauth_clients.Client(
        client_id="service-whoami",
        kind="service",
        owner="whoami",
        server_name="",
        redirect_uri="/services/whoami/oauth_callback",
        token_id=None,
        description="Service whoami",
        no_confirm=no_confirm,
        allowed_scopes=("access:services!service=whoami", *allowed),
    )


def alice_grants(*extra: str) -> scopes.Grants:
    owner = scopes.Owner.for_user("alice")
    return scopes.Grants.of(scopes.expand(["self", *extra], owner=owner))


def test_client_ids_are_jupyterhubs() -> None:
    assert oauth_clients.server_client_id("alice") == "jupyterhub-user-alice"
    assert oauth_clients.server_client_id("a b", "lab") == "jupyterhub-user-a%20b-lab"
    assert oauth_clients.server_prefix("alice", "lab") == "/user/alice/lab/"
    entry = hub_settings.ServiceConfig(name="whoami", url="http://127.0.0.1:10101")
    client = oauth_clients.service_client(entry)
    assert client is not None
    assert client.client_id == "service-whoami"
    assert client.redirect_uri == "/services/whoami/oauth_callback"
    assert oauth_clients.service_client(hub_settings.ServiceConfig(name="culler")) is None


def test_granted_scopes_are_requested_within_the_client_and_held_by_the_user() -> None:
    client = service(allowed=("read:users:name!user", "read:users!user"))
    owner = scopes.Owner.for_user("alice")
    granted = oauth_provider.decide_scopes(
        ["read:users!user"], client, owner, alice_grants("access:services!service=whoami")
    )
    assert granted == ["access:services!service=whoami", "read:users!user"]
    # Held by the client but not by the user: dropped, not refused.
    granted = oauth_provider.decide_scopes(
        ["read:users:name!user=bob"],
        service(allowed=("read:users:name",)),
        owner,
        alice_grants("access:services!service=whoami"),
    )
    assert granted == ["access:services!service=whoami"]


def test_scopes_beyond_the_client_are_refused() -> None:
    with pytest.raises(oauth_errors.InvalidScopeError, match="not allowed for client"):
        oauth_provider.decide_scopes(
            ["admin:users"], service(), scopes.Owner.for_user("alice"), alice_grants()
        )
    with pytest.raises(oauth_errors.InvalidScopeError, match="does not exist"):
        oauth_provider.decide_scopes(
            ["no:such:scope"], service(), scopes.Owner.for_user("alice"), alice_grants()
        )


def test_no_scope_parameter_asks_for_the_clients_allowed_scopes() -> None:
    client = service(allowed=("read:users:name!user",))
    assert oauth_provider.requested_scopes(None, client) == list(client.allowed_scopes)
    assert oauth_provider.requested_scopes("identify", client) == list(client.allowed_scopes)
    assert oauth_provider.requested_scopes("a b", client) == ["a", "b"]


def test_consent_is_skipped_for_own_servers_no_confirm_clients_and_approved_scopes() -> None:
    assert oauth_provider.needs_consent(service(), "alice", ["x"], [])
    assert not oauth_provider.needs_consent(service(no_confirm=True), "alice", ["x"], [])
    assert not oauth_provider.needs_consent(service(), "alice", ["x"], ["x", "y"])
    assert oauth_provider.needs_consent(service(), "alice", ["x", "z"], ["x"])
    server = oauth_clients.Client(
        "jupyterhub-user-alice", "server", "alice", "", "/user/alice/oauth_callback", "t1",
        "Server at /user/alice/", False, ("access:servers!server=alice/",),
    )  # fmt: skip
    assert not oauth_provider.needs_consent(server, "alice", ["x"], [])
    assert oauth_provider.needs_consent(server, "bob", ["x"], [])


# --- PKCE and the code exchange ---------------------------------------------------------------


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


VERIFIER = "v" * 43 + "-._~0123456789"


def code(**changes: Any) -> dict[str, Any]:
    row = {
        "client_id": "service-whoami",
        "expires_at": NOW + timedelta(seconds=60),
        "redirect_uri": "/services/whoami/oauth_callback",
        "code_challenge": challenge_of(VERIFIER),
    }
    return {**row, **changes}


def exchange(**changes: Any) -> oauth_provider.Exchange:
    values = {
        "client_id": "service-whoami",
        "redirect_uri": "/services/whoami/oauth_callback",
        "code_verifier": VERIFIER,
        **changes,
    }
    return oauth_provider.Exchange(**values)


def test_a_right_exchange_passes() -> None:
    oauth_provider.check_exchange(code(), exchange(), NOW)
    oauth_provider.check_exchange(code(), exchange(redirect_uri=None), NOW)
    oauth_provider.check_exchange(code(code_challenge=None), exchange(code_verifier=None), NOW)


@pytest.mark.parametrize(
    ("row", "request_", "error", "message"),
    [
        (code(), exchange(client_id="service-other"), "invalid_grant", "another client"),
        (code(expires_at=NOW), exchange(), "invalid_grant", "has expired"),
        (code(), exchange(redirect_uri="/elsewhere"), "invalid_grant", "redirect_uri"),
        (code(), exchange(code_verifier=None), "invalid_request", "code_verifier is required"),
        (code(), exchange(code_verifier="x" * 43), "invalid_grant", "does not match"),
        (code(), exchange(code_verifier="short"), "invalid_grant", "does not match"),
    ],
)
def test_wrong_exchanges_are_refused(
    row: dict[str, Any], request_: oauth_provider.Exchange, error: str, message: str
) -> None:
    with pytest.raises(oauth_errors.OAuth2Error) as caught:
        oauth_provider.check_exchange(row, request_, NOW)
    assert caught.value.error == error
    assert message in (caught.value.description or "")


def test_pkce_requests_must_be_s256() -> None:
    oauth_provider.check_pkce_request(None, None)
    oauth_provider.check_pkce_request(challenge_of(VERIFIER), "S256")
    for challenge, method, message in [
        (challenge_of(VERIFIER), "plain", "must be S256, not plain"),
        (challenge_of(VERIFIER), None, "must be S256, not plain"),
        (None, "S256", "without a code_challenge"),
        ("too-short", "S256", "base64url SHA-256"),
    ]:
        with pytest.raises(oauth_errors.InvalidRequestError, match=message):
            oauth_provider.check_pkce_request(challenge, method)


# --- settings ---------------------------------------------------------------------------------


def test_the_dummy_authenticator_refuses_to_start_unless_enabled() -> None:
    with pytest.raises(ValueError, match="needs dummy_authenticator_enabled = true"):
        hub_settings.Settings(database_url="postgresql://x", authenticator="dummy")
    enabled = hub_settings.Settings(
        database_url="postgresql://x", authenticator="dummy", dummy_authenticator_enabled=True
    )
    assert enabled.authenticator == "dummy"


def test_oauth_needs_its_provider_and_https() -> None:
    with pytest.raises(ValueError, match=r"needs an \[oauth\] section"):
        hub_settings.Settings(database_url="postgresql://x", authenticator="oauth")
    with pytest.raises(ValueError, match="authorize_url, token_url, userdata_url must be set"):
        hub_settings.Settings(
            database_url="postgresql://x",
            authenticator="oauth",
            oauth={"client_id": "c", "client_secret": "s"},
        )
    insecure = {
        "client_id": "c",
        "client_secret": "s",
        "authorize_url": "http://idp/authorize",
        "token_url": "http://idp/token",
        "userdata_url": "http://idp/user",
    }
    with pytest.raises(ValueError, match="must be an https:// URL"):
        hub_settings.Settings(database_url="postgresql://x", authenticator="oauth", oauth=insecure)
    allowed = {**insecure, "allow_insecure_http": True}
    hub_settings.Settings(database_url="postgresql://x", authenticator="oauth", oauth=allowed)


def test_the_github_preset_fills_in_githubs_endpoints() -> None:
    config = hub_settings.UpstreamOAuthConfig(
        preset="github", client_id="c", client_secret="s", allowed_organizations=["jupyter"]
    ).resolved()
    assert config.authorize_url == "https://github.com/login/oauth/authorize"
    assert config.token_url == "https://github.com/login/oauth/access_token"
    assert config.userdata_url == "https://api.github.com/user"
    assert config.username_claim == "login"
    assert config.scope == ["read:org"]
    assert config.login_service == "GitHub"
    own = hub_settings.UpstreamOAuthConfig(
        preset="github", client_id="c", client_secret="s", login_service="GitHub Enterprise",
        authorize_url="https://ghe.example/login/oauth/authorize",
    ).resolved()  # fmt: skip
    assert own.authorize_url == "https://ghe.example/login/oauth/authorize"
    assert own.login_service == "GitHub Enterprise"


def test_service_oauth_client_ids_must_start_with_service() -> None:
    with pytest.raises(ValueError, match="service-"):
        hub_settings.ServiceConfig(name="x", oauth_client_id="my-client")


# --- property: an OAuth grant never exceeds what was asked, allowed and held -------------------

SCOPE_POOL = [
    "read:users",
    "read:users!user",
    "read:users:name",
    "read:users:name!user=bob",
    "read:users:groups!user",
    "tokens!user",
    "admin:users",
    "read:servers!server=alice/",
    "access:servers!user=alice",
    "list:groups",
]


@given(
    requested=st.lists(st.sampled_from(SCOPE_POOL), max_size=5),
    allowed=st.lists(st.sampled_from(SCOPE_POOL), max_size=6),
    held=st.lists(st.sampled_from(SCOPE_POOL), max_size=6),
)
def test_granted_scopes_never_exceed_the_request_the_client_or_the_user(
    requested: list[str], allowed: list[str], held: list[str]
) -> None:
    owner = scopes.Owner.for_user("alice")
    client = service(allowed=tuple(allowed))
    user = scopes.Grants.of(scopes.expand([*held, "access:services!service=whoami"], owner=owner))
    try:
        granted = oauth_provider.decide_scopes(requested, client, owner, user)
    except oauth_errors.InvalidScopeError:
        return  # asked for more than the client may have: nothing granted at all
    assert set(granted) <= {*requested, client.access_scope}
    client_grants = scopes.Grants.of(scopes.expand(client.allowed_scopes, owner=owner))
    for text in granted:
        for scope in scopes.expand([text], owner=owner):
            assert client_grants.allows(scope.name, scope.filter)
            assert user.allows(scope.name, scope.filter)


def test_github_organisation_membership() -> None:
    from hub.auth.authenticators import oauth

    answer = [{"login": "Jupyter", "id": 1}, {"login": "other"}, "junk"]
    assert oauth.member_of(answer, ["jupyter"])
    assert not oauth.member_of(answer, ["nobody"])
    assert not oauth.member_of([], ["jupyter"])
    with pytest.raises(oauth.UpstreamError, match="not a list"):
        oauth.member_of({"message": "Bad credentials"}, ["jupyter"])
