"""Wiring of login, browser sessions, the OAuth provider and the browser pages into the hub's
application."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from hub import context
from hub.api import auth as auth_api
from hub.auth import authenticators, identity, login_cookies
from hub.auth.login_throttle import Limits
from hub.auth.oauth import provider as oauth_provider
from hub.pages import admin as admin_page
from hub.pages import login as login_pages
from hub.pages import token as token_page
from hub.web import html


def build(hub: context.Hub) -> identity.Auth:
    """The login machinery for ``hub``'s settings (reads or makes the cookie secret)."""
    config = hub.settings
    cookies = login_cookies.Cookies(
        secret=login_cookies.load_secret(config),
        max_age_s=config.cookie_max_age_seconds,
        secure=(config.public_url or "").startswith("https://"),
    )
    return identity.Auth(
        settings=config,
        cookies=cookies,
        authenticator=authenticators.build(config, cookies),
        limits=Limits(
            user_failures=config.login_lockout_failures,
            address_failures=config.login_address_max_failures,
            window=timedelta(seconds=config.login_lockout_seconds),
        ),
    )


def install(app: web.Application, hub: context.Hub) -> None:
    """Add the login cookie middleware and the routes of the pages and APIs that use it (login,
    OAuth provider, password, signups, the token page and the admin pages) to ``app``, and
    the pages' static files (stylesheets, favicon).

    Call after the token middleware is in place: the cookie is only looked at when no
    ``Authorization`` header was sent.
    """
    app[identity.AUTH] = build(hub)
    app.middlewares.append(identity.middleware())
    for module in (login_pages, oauth_provider, auth_api, token_page, admin_page):
        app.add_routes(module.routes())
    html.install(app)
