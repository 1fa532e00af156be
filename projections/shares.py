"""The shares read model: ``shares`` (who may use whose server, with which scopes) and
``share_codes`` (codes that give such scopes to whoever accepts them).

Inline, so a grant or a revocation holds from the next request on: the scopes a caller has
are computed, at every request, from this table and the caller's groups, so a group's share
follows its membership at once. Scopes are stored as bare names; the server filter is added
when they are read (see ``migrations/0011_shares.sql``). A user deleted takes their servers'
shares and codes along, and what was shared with them; a group deleted, its shares; a named
server removed, its shares and codes; a server renamed keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable

from events import models, sql
from events.catalog import groups as group_events
from events.catalog import server_records
from events.catalog import servers as server_events
from events.catalog import shares as share_events
from events.catalog import users as user_events
from projections import base

queries = sql.Queries(__package__ or "projections", "shares.sql")


def scope_names(scopes: Iterable[str]) -> list[str]:
    """The scope names of ``scopes`` without their filters (each is this share's server's)."""
    return sorted({scope.partition("!")[0] for scope in scopes})


async def _granted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: share_events.ShareGranted = base.payload(event, share_events.ShareGranted)
    await conn.execute(
        queries["share_grant"],
        data.owner_id,
        data.server_name,
        data.recipient_kind,
        data.recipient_id,
        scope_names(data.scopes),
        event.recorded_at,
        event.position,
    )


async def _revoked(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: share_events.ShareRevoked = base.payload(event, share_events.ShareRevoked)
    key = (data.owner_id, data.server_name, data.recipient_kind, data.recipient_id)
    if data.scopes:
        await conn.execute(
            queries["share_revoke_scopes"], *key, scope_names(data.scopes), event.position
        )
    await conn.execute(queries["share_delete"], *key, not data.scopes)


async def _code_created(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: share_events.ShareCodeCreated = base.payload(event, share_events.ShareCodeCreated)
    await conn.execute(
        queries["code_create"],
        data.code_id,
        int(data.code_id.removeprefix("sc_")),
        data.owner_id,
        data.server_name,
        scope_names(data.scopes),
        event.recorded_at,
        data.expires_at,
        event.position,
    )


async def _code_accepted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: share_events.ShareCodeAccepted = base.payload(event, share_events.ShareCodeAccepted)
    await conn.execute(queries["code_accepted"], data.code_id, event.recorded_at, event.position)


async def _codes_revoked(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: share_events.ShareCodesRevoked = base.payload(event, share_events.ShareCodesRevoked)
    await conn.execute(queries["codes_delete"], data.code_ids)


async def _user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    user_id = base.payload(event, user_events.UserDeleted).user_id
    await conn.execute(queries["user_deleted"], user_id)


async def _group_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    group_id = base.payload(event, group_events.GroupDeleted).group_id
    await conn.execute(queries["group_deleted"], group_id)


async def _server_removed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_events.ServerRemoved = base.payload(event, server_events.ServerRemoved)
    await conn.execute(queries["server_removed"], data.user_id, data.server_name)


async def _server_renamed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: server_records.ServerRenamed = base.payload(event, server_records.ServerRenamed)
    await conn.execute(queries["server_renamed"], data.user_id, data.server_name, data.new_name)


class SharesProjection(base.ByType):
    """``shares`` and ``share_codes``."""

    name = "shares"
    tables = ("shares", "share_codes")
    handlers: dict[str, base.Handler] = {  # noqa: RUF012 - read-only after import
        share_events.ShareGranted.type: _granted,
        share_events.ShareRevoked.type: _revoked,
        share_events.ShareCodeCreated.type: _code_created,
        share_events.ShareCodeAccepted.type: _code_accepted,
        share_events.ShareCodesRevoked.type: _codes_revoked,
        user_events.UserDeleted.type: _user_deleted,
        group_events.GroupDeleted.type: _group_deleted,
        server_events.ServerRemoved.type: _server_removed,
        server_records.ServerRenamed.type: _server_renamed,
    }
