"""A shared execution session's events in the real event store: who ran which cell, when,
with the participant as actor, and never a cell's source or outputs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from collab import execution, session_log
from collab import session_errors as errors
from collab.session import Session
from events import store
from events.catalog import collab_sessions as ev
from tests.collab.conftest import notebook_doc

pytestmark = [pytest.mark.integration, pytest.mark.collab]

ALICE = execution.Participant("alice")
BOT = execution.Participant("runner-bot", kind="service")
READER = execution.Participant("reader")


async def may_write(who: execution.Participant) -> bool:
    return who != READER


async def test_a_session_is_recorded_in_the_event_log(
    event_store: store.EventStore, pool: asyncpg.Pool[Any]
) -> None:
    session_id = uuid.uuid4()
    doc = notebook_doc("secret_source_marker = 1\nprint('secret-output-marker')")
    recorder = session_log.StoreRecorder(event_store)
    session = Session(
        session_id, doc, room="room-9", created_by=ALICE, may_write=may_write, record=recorder
    )
    async with session:
        done = await session.execute("c0", BOT)
        assert (await asyncio.wait_for(done.done, 20)).status == "ok"
        with pytest.raises(errors.Forbidden):
            await session.execute("c0", READER)
        await session.restart(ALICE)

    recorded = await event_store.read_stream(ev.stream_id(session_id))
    assert [(e.type, e.metadata.actor.label) for e in recorded] == [
        ("collab_session.created", "user:alice"),
        ("collab_session.kernel_started", "system:chronohub"),
        ("collab_session.execution_requested", "service:runner-bot"),
        ("collab_session.execution_finished", "service:runner-bot"),
        ("collab_session.execution_refused", "user:reader"),
        ("collab_session.kernel_restarted", "user:alice"),
        ("collab_session.kernel_shut_down", "system:chronohub"),
        ("collab_session.ended", "system:chronohub"),
    ]
    requested = recorded[2].data
    assert isinstance(requested, ev.ExecutionRequested)
    assert (requested.cell_id, requested.requester, requested.via) == ("c0", "runner-bot", "api")
    finished = recorded[3].data
    assert isinstance(finished, ev.ExecutionFinished)
    assert (finished.status, finished.execution_count) == ("ok", 1)

    async with pool.acquire() as conn:
        raw = await conn.fetchval("SELECT string_agg(data::text || metadata::text, '') FROM events")
    assert "secret_source_marker" not in raw
    assert "secret-output-marker" not in raw
