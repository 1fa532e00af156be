"""The projects read model: ``projects``, ``project_members``, ``project_refs``, the names
projects had before a rename, ``project_old_names``, and the shared execution sessions opened
on a project's notebook, ``project_sessions``.

Inline, so a push's refs move in the transaction that appends its ``project.pushed`` event:
the push path compares the refs it read under a row lock with what the client says it
had, and this projection is the only writer of the new values. A user or group deleted
takes its projects with it (and its grants on others), as the groups projection forgets a
deleted user's memberships.
"""

from __future__ import annotations

from events import models, sql
from events.catalog import groups as group_events
from events.catalog import projects as project_events
from events.catalog import users as user_events
from projections import base

queries = sql.Queries(__package__ or "projections", "projects.sql")


async def _created(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectCreated = base.payload(event, project_events.ProjectCreated)
    await conn.execute(
        queries["project_create"],
        data.project_id,
        data.owner_kind,
        data.owner_id,
        data.name,
        data.description,
        data.visibility,
        data.default_branch,
        event.recorded_at,
        event.position,
    )


async def _updated(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectUpdated = base.payload(event, project_events.ProjectUpdated)
    await conn.execute(
        queries["project_update"],
        data.project_id,
        data.description,
        data.visibility,
        data.default_branch,
        event.position,
    )


async def _renamed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectRenamed = base.payload(event, project_events.ProjectRenamed)
    await conn.execute(
        queries["project_rename"],
        data.project_id,
        data.name,
        event.position,
        data.old_name,
        event.recorded_at,
    )


async def _deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectDeleted = base.payload(event, project_events.ProjectDeleted)
    await conn.execute(queries["project_delete"], data.project_id)


async def _granted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectMemberGranted = base.payload(
        event, project_events.ProjectMemberGranted
    )
    await conn.execute(
        queries["member_grant"], data.project_id, data.member_kind, data.member_id, data.role
    )


async def _revoked(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectMemberRevoked = base.payload(
        event, project_events.ProjectMemberRevoked
    )
    await conn.execute(queries["member_revoke"], data.project_id, data.member_kind, data.member_id)


async def _pushed(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectPushed = base.payload(event, project_events.ProjectPushed)
    moved = [r for r in data.refs if r.new != project_events.ZERO_SHA]
    deleted = [r.ref for r in data.refs if r.new == project_events.ZERO_SHA]
    if moved:
        await conn.execute(
            queries["refs_set"], data.project_id, [r.ref for r in moved], [r.new for r in moved]
        )
    if deleted:
        await conn.execute(queries["refs_delete"], data.project_id, deleted)
    await conn.execute(queries["pushed"], data.project_id, event.recorded_at, event.position)


async def _session_opened(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectSessionOpened = base.payload(
        event, project_events.ProjectSessionOpened
    )
    await conn.execute(
        queries["session_opened"],
        data.session_id,
        data.project_id,
        data.room,
        data.path,
        data.ref,
        data.branch,
        data.base_commit,
        event.metadata.actor.label,
        event.recorded_at,
    )


async def _committed_from_session(conn: sql.Connection, event: models.RecordedEvent) -> None:
    data: project_events.ProjectCommittedFromSession = base.payload(
        event, project_events.ProjectCommittedFromSession
    )
    await conn.execute(queries["session_committed"], data.session_id, data.branch, data.commit)


async def _user_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    user_id = base.payload(event, user_events.UserDeleted).user_id
    await conn.execute(queries["owner_deleted"], "user", user_id)


async def _group_deleted(conn: sql.Connection, event: models.RecordedEvent) -> None:
    group_id = base.payload(event, group_events.GroupDeleted).group_id
    await conn.execute(queries["owner_deleted"], "group", group_id)


class ProjectsProjection(base.ByType):
    """``projects``, ``project_members``, ``project_refs``, ``project_old_names`` and
    ``project_sessions``."""

    name = "projects"
    tables = (
        "projects",
        "project_members",
        "project_refs",
        "project_old_names",
        "project_sessions",
    )
    handlers: dict[str, base.Handler] = {  # noqa: RUF012 - read-only after import
        project_events.ProjectCreated.type: _created,
        project_events.ProjectUpdated.type: _updated,
        project_events.ProjectRenamed.type: _renamed,
        project_events.ProjectDeleted.type: _deleted,
        project_events.ProjectMemberGranted.type: _granted,
        project_events.ProjectMemberRevoked.type: _revoked,
        project_events.ProjectPushed.type: _pushed,
        project_events.ProjectSessionOpened.type: _session_opened,
        project_events.ProjectCommittedFromSession.type: _committed_from_session,
        user_events.UserDeleted.type: _user_deleted,
        group_events.GroupDeleted.type: _group_deleted,
    }
