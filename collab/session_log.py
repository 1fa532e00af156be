"""Session events into the hub's event store: the ``Recorder`` the hub hands to sessions."""

from __future__ import annotations

from collab import execution
from events import models, store
from events.catalog import collab_sessions as session_events


class StoreRecorder:
    """Appends each session event to the session's stream, with the participant as actor."""

    def __init__(self, event_store: store.EventStore, *, request_id: str | None = None) -> None:
        self.store = event_store
        self.request_id = request_id

    async def __call__(
        self, event: session_events.SessionEvent, actor: execution.Participant | None
    ) -> None:
        """Append ``event`` to ``collab_session-<session_id>``."""
        metadata = models.Metadata(
            actor=models.Actor(kind=actor.kind, name=actor.name) if actor else models.SYSTEM,
            request_id=self.request_id,
        )
        await self.store.append(
            session_events.stream_id(event.session_id), [event], metadata=metadata
        )
