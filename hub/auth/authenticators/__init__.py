"""How people prove who they are: one small interface (``base``) and its implementations,
chosen by ``settings.authenticator``: ``native`` passwords, upstream ``oauth`` (OAuth2/OIDC,
with a GitHub preset) and ``dummy`` (development only); or
``settings.authenticator_class``: one of JupyterHub's, unchanged (``jupyterhub_adapter``)."""

from __future__ import annotations

from events import store
from hub import settings as hub_settings
from hub.auth import login_cookies
from hub.auth.authenticators import base, dummy, jupyterhub_adapter, native, oauth


def build(
    config: hub_settings.Settings,
    cookies: login_cookies.Cookies,
    event_store: store.EventStore | None = None,
) -> base.Authenticator:
    """The authenticator the settings choose (already validated by ``Settings``); a
    JupyterHub class that cannot be used raises ``AuthenticatorConfigError``. ``event_store``:
    what a JupyterHub class's refreshes, spawns and existing-user checks read and write."""
    if config.authenticator_class:
        return jupyterhub_adapter.JupyterHubAuthenticator(
            config, cookies=cookies, event_store=event_store
        )
    if config.authenticator == "dummy":
        return dummy.DummyAuthenticator(config)
    if config.authenticator == "oauth":
        if config.oauth is None:  # pragma: no cover - refused by the settings' validator
            raise ValueError("authenticator = 'oauth' needs an [oauth] section")
        return oauth.OAuthAuthenticator(
            config.oauth.resolved(),
            cookies=cookies,
            admin_users=config.admin_users,
            public_url=config.public_url,
        )
    return native.NativeAuthenticator()
