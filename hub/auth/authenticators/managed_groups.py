"""Group memberships from a JupyterHub authenticator that manages groups (``manage_groups =
true``): at each login the user's groups become exactly the ``groups`` of the result, as under
JupyterHub; groups not there yet are created. All of it as ordinary group events, in the
login's transaction."""

from __future__ import annotations

from uuid import UUID, uuid4

from events import models, sql, store
from events.catalog import groups as group_events
from hub.reads import groups as groups_read

queries = sql.Queries(__package__ or "hub.auth.authenticators", "managed_groups.sql")


async def sync(
    session: store.Session,
    user_id: UUID,
    name: str,
    wanted: list[str],
    metadata: models.Metadata,
) -> None:
    """Make ``wanted`` the groups of user ``name``."""
    current = {
        r["name"]: r["group_id"]
        for r in await session.conn.fetch(queries["groups_of_user"], user_id)
    }
    existing = {r["name"]: r["group_id"] for r in await groups_read.named(session.conn, wanted)}
    for group in sorted(set(wanted) - current.keys()):
        group_id = existing.get(group)
        events: list[models.Event] = []
        expected = store.ANY
        if group_id is None:
            group_id = uuid4()
            events.append(group_events.GroupCreated(group_id=group_id, name=group))
            expected = store.NO_STREAM
        events.append(
            group_events.GroupMembersAdded(group_id=group_id, user_ids=[user_id], users=[name])
        )
        await session.append(
            group_events.stream_id(group_id), events, expected=expected, metadata=metadata
        )
    for group in sorted(current.keys() - set(wanted)):
        await session.append(
            group_events.stream_id(current[group]),
            [
                group_events.GroupMembersRemoved(
                    group_id=current[group], user_ids=[user_id], users=[name]
                )
            ],
            metadata=metadata,
        )
