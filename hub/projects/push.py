"""The push transaction: compare-and-swap every ref and append ``project.pushed``, in one.

The objects are stored before this runs (they are content-addressed and harmless on their
own: a crash between the two leaves unreferenced objects, never a ref to a missing one).
Then one transaction locks the project's row, so pushes to one project take turns; compares
each ref with the ``old`` value the pusher saw; and appends the event, whose inline
projection moves the refs. A pusher who lost a race is refused whole (``StaleRefs``): no
ref moves and no event is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from events import models, sql, store
from events.catalog import projects as project_events
from hub import metrics
from hub.projects import refs as push_refs

queries = sql.Queries(__package__ or "hub.projects", "projects.sql")


class PushError(Exception):
    """A push the hub did not record; ``reasons`` maps each ref to what git should show."""

    def __init__(self, message: str, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        super().__init__(message)


class StaleRefs(PushError):
    """Refs moved since the pusher read them: nothing was recorded."""

    def __init__(self, stale: Sequence[str], refs: Sequence[str]) -> None:
        first = push_refs.stale_reason(stale[0])
        super().__init__(
            first,
            {r: push_refs.stale_reason(r) if r in stale else push_refs.ATOMIC_FAILED for r in refs},
        )


class ProjectGone(PushError):
    """The project was deleted while the push was on its way."""

    def __init__(self, refs: Sequence[str]) -> None:
        reason = "the project was deleted during the push"
        super().__init__(reason, dict.fromkeys(refs, reason))


async def current_refs(conn: sql.Connection, project_id: UUID) -> dict[str, str]:
    """Where each of the project's refs points now."""
    return {row["ref"]: row["sha"] for row in await conn.fetch(queries["refs"], project_id)}


async def record(
    event_store: store.EventStore,
    project_id: UUID,
    commands: Sequence[push_refs.Command],
    *,
    pusher: models.Actor,
    commits: int,
    via: project_events.Via,
    metadata: models.Metadata,
    along: Sequence[models.Event] = (),
) -> store.AppendResult:
    """Move the refs and append ``project.pushed``, or raise ``StaleRefs``/``ProjectGone``.

    ``along``: events of the project's stream appended after it in the same transaction
    (a commit from a session says so with ``project.committed_from_session``)."""
    names = [c.ref for c in commands]
    async with event_store.session() as session:
        conn = session.conn
        default_branch = await conn.fetchval(queries["lock_project"], project_id)
        if default_branch is None:
            raise ProjectGone(names)
        if stale := push_refs.stale(commands, await current_refs(conn, project_id)):
            raise StaleRefs(stale, names)
        # The default branch may have changed since the rules were checked: its deletion is
        # the one rule that depends on it alone.
        default = f"refs/heads/{default_branch}"
        if any(c.ref == default and c.deletes for c in commands):
            reason = f"deleting the default branch {default} is not allowed by the hub"
            raise PushError(
                reason, {r: reason if r == default else "atomic push failed" for r in names}
            )
        event = project_events.ProjectPushed(
            project_id=project_id,
            refs=[project_events.RefUpdate(ref=c.ref, old=c.old, new=c.new) for c in commands],
            pusher=pusher.name,
            pusher_kind="service" if pusher.kind == "service" else "user",
            commits=commits,
            via=via,
        )
        result = await session.append(
            project_events.stream_id(project_id), [event, *along], metadata=metadata
        )
    metrics.GIT_PUSHES.labels(via).inc()  # committed: the session's block has ended
    return result
