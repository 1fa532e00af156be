"""Inline projections of the REST API's resources: groups, tokens, services and roles.

Their events are few (admin actions), so each is applied with one statement; what matters
is that they are in the append transaction, so a token works, or stops working, the
moment its append returns. Each projection writes only its own tables: when a user, group
or service goes, each projection that refers to it handles that event itself (memberships,
tokens, role grants; an OAuth client's tokens), so each can be rebuilt on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from events import models, sql
from events.catalog import auth as auth_events
from events.catalog import groups as group_events
from events.catalog import roles as role_events
from events.catalog import services as service_events
from events.catalog import tokens as token_events
from events.catalog import users as user_events
from projections import base

queries = sql.Queries(__package__ or "projections", "hub_model.sql")

Handler = base.Handler


# --- groups ---------------------------------------------------------------------------------


async def _group_created(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: group_events.GroupCreated = base.payload(event, group_events.GroupCreated)
    await conn.execute(
        queries["group_create"],
        data.group_id,
        data.name,
        json.dumps(data.properties),
        event.recorded_at,
        event.position,
    )


async def _group_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(
        queries["group_delete"], base.payload(event, group_events.GroupDeleted).group_id
    )


async def _members_added(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: group_events.GroupMembersAdded = base.payload(event, group_events.GroupMembersAdded)
    await conn.execute(queries["group_add_members"], data.group_id, data.user_ids)


async def _members_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: group_events.GroupMembersRemoved = base.payload(event, group_events.GroupMembersRemoved)
    await conn.execute(queries["group_remove_members"], data.group_id, data.user_ids)


async def _properties_set(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: group_events.GroupPropertiesSet = base.payload(event, group_events.GroupPropertiesSet)
    await conn.execute(
        queries["group_set_properties"], data.group_id, json.dumps(data.properties), event.position
    )


async def _group_user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(
        queries["group_forget_user"], base.payload(event, user_events.UserDeleted).user_id
    )


class GroupsProjection(base.ByType):
    """``groups`` and ``group_members``."""

    name = "groups"
    tables = ("groups", "group_members")
    handlers: dict[str, Handler] = {  # noqa: RUF012 - read-only after import
        group_events.GroupCreated.type: _group_created,
        group_events.GroupDeleted.type: _group_deleted,
        group_events.GroupMembersAdded.type: _members_added,
        group_events.GroupMembersRemoved.type: _members_removed,
        group_events.GroupPropertiesSet.type: _properties_set,
        user_events.UserDeleted.type: _group_user_deleted,
    }


# --- tokens ---------------------------------------------------------------------------------


async def _token_issued(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: token_events.TokenIssued = base.payload(event, token_events.TokenIssued)
    await conn.execute(
        queries["token_issue"],
        data.token_id,
        data.user_id,
        data.service,
        data.scopes,
        data.note,
        data.expires_at,
        event.recorded_at,
        event.position,
        data.oauth_client,
    )


async def _tokens_issued(conn: sql.Connection, events: Sequence[models.RecordedEvent]) -> None:
    """A run of ``token.issued`` in one statement; a lone one as ``_token_issued``."""
    if len(events) == 1:
        await _token_issued(conn, events[0])
        return
    issued: list[token_events.TokenIssued] = [
        base.payload(event, token_events.TokenIssued) for event in events
    ]
    await conn.execute(
        queries["tokens_issue_run"],
        [data.token_id for data in issued],
        [data.user_id for data in issued],
        [data.service for data in issued],
        [json.dumps(data.scopes) for data in issued],
        [data.note for data in issued],
        [data.expires_at for data in issued],
        [event.recorded_at for event in events],
        [event.position for event in events],
        [data.oauth_client for data in issued],
    )


async def _token_revoked(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(
        queries["token_revoke"], base.payload(event, token_events.TokenRevoked).token_id
    )


async def _token_user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(
        queries["token_forget_user"], base.payload(event, user_events.UserDeleted).user_id
    )


async def _token_service_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    name = base.payload(event, service_events.ServiceRemoved).name
    await conn.execute(queries["token_forget_service"], name)


async def _token_client_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    client_id = base.payload(event, auth_events.OAuthClientRemoved).client_id
    await conn.execute(queries["token_forget_client"], client_id)


class TokensProjection(base.ByType):
    """``tokens``: metadata of the tokens that exist (revoked ones are gone)."""

    name = "tokens"
    tables = ("tokens",)
    handlers: dict[str, Handler] = {  # noqa: RUF012 - read-only after import
        token_events.TokenRevoked.type: _token_revoked,
        user_events.UserDeleted.type: _token_user_deleted,
        service_events.ServiceRemoved.type: _token_service_removed,
        auth_events.OAuthClientRemoved.type: _token_client_removed,
    }
    run_handlers: dict[str, base.RunHandler] = {  # noqa: RUF012 - read-only after import
        token_events.TokenIssued.type: _tokens_issued,
    }


# --- services -------------------------------------------------------------------------------


async def _service_registered(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: service_events.ServiceRegistered = base.payload(event, service_events.ServiceRegistered)
    await conn.execute(
        queries["service_register"],
        data.name,
        data.admin,
        data.url,
        event.recorded_at,
        event.position,
    )


async def _service_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(
        queries["service_remove"], base.payload(event, service_events.ServiceRemoved).name
    )


async def _service_started(conn: sql.Connection, event: models.RecordedEvent) -> None:
    # A managed service on a port the hub picked listens somewhere new at each start: the
    # routes (``/services/<name>/``) follow its url.
    data = base.payload(event, service_events.ServiceStarted)
    if data.url is not None:
        await conn.execute(queries["service_moved"], data.name, data.url, event.position)


class ServicesProjection(base.ByType):
    """``services``."""

    name = "services"
    tables = ("services",)
    handlers: dict[str, Handler] = {  # noqa: RUF012 - read-only after import
        service_events.ServiceRegistered.type: _service_registered,
        service_events.ServiceRemoved.type: _service_removed,
        service_events.ServiceStarted.type: _service_started,
    }


# --- roles ----------------------------------------------------------------------------------


async def _role_defined(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: role_events.RoleDefined = base.payload(event, role_events.RoleDefined)
    await conn.execute(
        queries["role_define"], data.name, data.description, data.scopes, event.position
    )


async def _role_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(queries["role_remove"], base.payload(event, role_events.RoleRemoved).name)


async def _role_granted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: role_events.RoleGranted = base.payload(event, role_events.RoleGranted)
    await conn.execute(queries["role_grant"], data.role, data.principal_kind, data.principal)


async def _role_revoked(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: role_events.RoleRevoked = base.payload(event, role_events.RoleRevoked)
    await conn.execute(queries["role_revoke"], data.role, data.principal_kind, data.principal)


async def _role_user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    await conn.execute(
        queries["role_forget_user"], base.payload(event, user_events.UserDeleted).user_id
    )


async def _role_group_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    group_id = base.payload(event, group_events.GroupDeleted).group_id
    await conn.execute(queries["role_forget_group"], group_id)


async def _role_service_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    name = base.payload(event, service_events.ServiceRemoved).name
    await conn.execute(queries["role_forget_service"], name)


class RolesProjection(base.ByType):
    """``roles`` and ``role_grants``."""

    name = "roles"
    tables = ("roles", "role_grants")
    handlers: dict[str, Handler] = {  # noqa: RUF012 - read-only after import
        role_events.RoleDefined.type: _role_defined,
        role_events.RoleRemoved.type: _role_removed,
        role_events.RoleGranted.type: _role_granted,
        role_events.RoleRevoked.type: _role_revoked,
        user_events.UserDeleted.type: _role_user_deleted,
        group_events.GroupDeleted.type: _role_group_deleted,
        service_events.ServiceRemoved.type: _role_service_removed,
    }
