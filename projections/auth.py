"""Inline projections of the OAuth provider and of signups: ``oauth_clients``, ``oauth_grants``
(what each user approved for each client) and ``signup_requests`` (waiting for an admin).

Secrets are not here: client secrets are API tokens (``token_secrets``), codes and sessions
are kept hashed beside their events (migration 0005).
"""

from __future__ import annotations

from events import models, sql
from events.catalog import auth as auth_events
from events.catalog import services as service_events
from events.catalog import users as user_events
from projections import base

queries = sql.Queries(__package__ or "projections", "auth.sql")


async def _client_registered(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: auth_events.OAuthClientRegistered = base.payload(event, auth_events.OAuthClientRegistered)
    await conn.execute(
        queries["client_register"],
        data.client_id,
        data.kind,
        data.owner,
        data.server_name,
        data.redirect_uri,
        data.token_id,
        data.description,
        data.no_confirm,
        data.allowed_scopes,
        event.position,
    )


async def _client_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = base.payload(event, auth_events.OAuthClientRemoved)
    await conn.execute(queries["client_remove"], data.client_id)


async def _code_exchanged(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: auth_events.OAuthCodeExchanged = base.payload(event, auth_events.OAuthCodeExchanged)
    await conn.execute(queries["grant_add"], data.user_id, data.client_id, sorted(data.scopes))


async def _service_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    name = base.payload(event, service_events.ServiceRemoved).name
    await conn.execute(queries["client_forget_service"], name)


async def _user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = base.payload(event, user_events.UserDeleted)
    await conn.execute(queries["client_forget_user"], data.user_id, data.name)


class OAuthClientsProjection(base.ByType):
    """``oauth_clients`` and ``oauth_grants``."""

    name = "oauth_clients"
    tables = ("oauth_clients", "oauth_grants")
    handlers: dict[str, base.Handler] = {  # noqa: RUF012 - read-only after import
        auth_events.OAuthClientRegistered.type: _client_registered,
        auth_events.OAuthClientRemoved.type: _client_removed,
        auth_events.OAuthCodeExchanged.type: _code_exchanged,
        service_events.ServiceRemoved.type: _service_removed,
        user_events.UserDeleted.type: _user_deleted,
    }


async def _signup_requested(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = base.payload(event, auth_events.SignupRequested)
    await conn.execute(
        queries["signup_request"], data.name, data.request_id, event.recorded_at, event.position
    )


async def _signup_closed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data = event.data
    if not isinstance(data, auth_events.SignupApproved | auth_events.SignupRejected):
        raise base.ProjectionError(f"{event.type} at {event.position} is not a signup")
    await conn.execute(queries["signup_close"], data.name, data.request_id)


class SignupsProjection(base.ByType):
    """``signup_requests``: the requests no admin has answered yet."""

    name = "signups"
    tables = ("signup_requests",)
    handlers: dict[str, base.Handler] = {  # noqa: RUF012 - read-only after import
        auth_events.SignupRequested.type: _signup_requested,
        auth_events.SignupApproved.type: _signup_closed,
        auth_events.SignupRejected.type: _signup_closed,
    }
