"""The login machinery of a hub (cookies, authenticator, throttle limits) and its cookie
middleware; ``hub/app.py`` adds the routes of the pages and APIs that use it."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from hub import context, startup
from hub.auth import authenticators, identity, login_cookies
from hub.auth.authenticators import auth_state, jupyterhub_config
from hub.auth.login_throttle import Limits


def build(hub: context.Hub) -> identity.Auth:
    """The login machinery for ``hub``'s settings (reads or makes the cookie secret)."""
    config = hub.settings
    cookies = login_cookies.Cookies(
        secret=login_cookies.load_secret(config),
        max_age_s=config.cookie_max_age_seconds,
        secure=(config.public_url or "").startswith("https://"),
    )
    try:
        authenticator = authenticators.build(config, cookies, hub.store)
    except (jupyterhub_config.AuthenticatorConfigError, auth_state.CryptKeyError) as exc:
        # told as one line by `chronohub serve`, not as a traceback
        raise startup.StartupError(str(exc)) from exc
    return identity.Auth(
        settings=config,
        cookies=cookies,
        authenticator=authenticator,
        limits=Limits(
            user_failures=config.login_lockout_failures,
            address_failures=config.login_address_max_failures,
            window=timedelta(seconds=config.login_lockout_seconds),
        ),
    )


def install(app: web.Application, hub: context.Hub) -> None:
    """Add the login machinery and the login cookie middleware to ``app``.

    Call after the token middleware is in place: the cookie is only looked at when no
    ``Authorization`` header was sent.
    """
    app[identity.AUTH] = build(hub)
    app.middlewares.append(identity.middleware())
