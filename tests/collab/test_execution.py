"""Shared execution on a real ipykernel: requests by call and through the document, in order,
outputs streamed into the notebook, access checks, interrupt, restart and the grace period."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Array, Doc, Map

from collab import execution, notebook
from collab import session_errors as errors
from collab.session import Session
from events.catalog import collab_sessions as ev
from tests.collab.conftest import Recorded, notebook_doc
from tests.helpers import wait_for

pytestmark = pytest.mark.collab

ALICE = execution.Participant("alice")
READER = execution.Participant("reader")


async def may_write(who: execution.Participant) -> bool:
    """Everybody but ``reader`` may run cells."""
    return who.name != "reader"


def make_session(doc: Doc[Any], recorded: Recorded, **options: Any) -> Session:
    return Session(
        uuid.uuid4(),
        doc,
        room="room-1",
        created_by=ALICE,
        may_write=may_write,
        record=recorded,
        **options,
    )


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
async def running(recorded: Recorded) -> AsyncIterator[Session]:
    """A started session on a notebook of four code cells and one markdown cell."""
    doc = notebook_doc(
        "print('hello')\n6 * 7",
        "import time\nfor i in range(3):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.4)",
        "1/0",
        "x = 1",
    )
    session = make_session(doc, recorded)
    session.participant_joined("conn-alice")
    async with session:
        yield session


def cell(session: Session, cell_id: str) -> dict[str, Any]:
    """A cell as nbformat reads it now, with the runtime ``execution_state``."""
    for index, found in enumerate(notebook.read(session.doc)["cells"]):
        if found["id"] == cell_id:
            state = notebook.find_cell(session.doc, cell_id).get("execution_state")
            return {**found, "execution_state": state, "index": index}
    raise AssertionError(f"no cell {cell_id}")


def entry(doc: Doc[Any], request_id: str) -> dict[str, Any] | None:
    """A request entry in the document, as plain data."""
    value = doc.get(notebook.REQUESTS, type=Map).get(request_id)
    return value.to_py() if isinstance(value, Map) else value


def ask_through_document(doc: Doc[Any], request_id: str, cell_id: Any, author: Any) -> None:
    """What a client does: add a request entry, in a change the room applies as ``author``'s."""
    client: Doc[Any] = Doc()
    client.apply_update(doc.get_update())
    client.get(notebook.REQUESTS, type=Map)[request_id] = {"cell_id": cell_id}
    with doc.transaction(origin=author):
        doc.apply_update(client.get_update(doc.get_state()))


# --- running cells -------------------------------------------------------------------------


async def test_a_cell_runs_and_its_outputs_land_in_the_document(
    running: Session, recorded: Recorded
) -> None:
    request = await running.execute("c0", ALICE)
    outcome = await asyncio.wait_for(request.done, 20)

    assert outcome == execution.Outcome("ok", 1)
    ran = cell(running, "c0")
    assert ran["execution_count"] == 1
    assert ran["execution_state"] == "idle"
    assert ran["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "hello\n"},
        {
            "output_type": "execute_result",
            "execution_count": 1,
            "data": {"text/plain": "42"},
            "metadata": {},
        },
    ]
    requested = recorded.of(ev.ExecutionRequested)
    assert [(e.cell_id, e.requester, e.via) for e in requested] == [("c0", "alice", "api")]
    finished = recorded.of(ev.ExecutionFinished)
    assert [(e.request_id, e.status, e.execution_count) for e in finished] == [
        (request.request_id, "ok", 1)
    ]
    logged = json.dumps([event.model_dump(mode="json") for event, _ in recorded.events])
    assert "hello" not in logged  # no outputs…
    assert "print" not in logged  # …and no source in the log


async def test_output_is_streamed_into_the_document_while_the_cell_runs(running: Session) -> None:
    request = await running.execute("c1", ALICE)

    def partial() -> bool:
        now = cell(running, "c1")
        texts = "".join(o.get("text", "") for o in now["outputs"])
        return now["execution_state"] == "running" and texts == "tick 0\n"

    await wait_for(partial, timeout_s=15)
    assert (await asyncio.wait_for(request.done, 20)).status == "ok"
    assert cell(running, "c1")["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "tick 0\ntick 1\ntick 2\n"}
    ]


async def test_an_error_is_shown_in_the_cell(running: Session, recorded: Recorded) -> None:
    request = await running.execute("c2", ALICE)

    assert (await asyncio.wait_for(request.done, 20)).status == "error"
    [shown] = cell(running, "c2")["outputs"]
    assert shown["output_type"] == "error"
    assert shown["ename"] == "ZeroDivisionError"
    assert recorded.of(ev.ExecutionFinished)[0].status == "error"


async def test_requests_run_one_at_a_time_in_arrival_order(running: Session) -> None:
    first = await running.execute("c3", ALICE)
    second = await running.execute("c0", execution.Participant("bob"))
    third = await running.execute("c2", ALICE)

    outcomes = await asyncio.wait_for(asyncio.gather(first.done, second.done, third.done), 30)

    assert [o.execution_count for o in outcomes] == [1, 2, 3]


async def test_the_source_is_taken_when_the_request_is_made(running: Session) -> None:
    request = await running.execute("c3", ALICE)
    with running.doc.transaction():
        source = notebook.find_cell(running.doc, "c3")["source"]
        source.clear()
        source += "raise SystemExit('edited later')"

    assert (await asyncio.wait_for(request.done, 20)).status == "ok"


# --- interrupt and restart -----------------------------------------------------------------


async def test_interrupt_stops_an_endless_loop_and_the_queue_goes_on(
    running: Session, recorded: Recorded
) -> None:
    with running.doc.transaction():
        source = notebook.find_cell(running.doc, "c3")["source"]
        source.clear()
        source += "print('looping', flush=True)\nwhile True: pass"
    endless = await running.execute("c3", ALICE)
    after = await running.execute("c0", ALICE)
    await wait_for(lambda: cell(running, "c3")["outputs"], timeout_s=15)

    with pytest.raises(errors.Forbidden):
        await running.interrupt(READER)
    await running.interrupt(ALICE)

    assert (await asyncio.wait_for(endless.done, 20)).status == "error"
    assert cell(running, "c3")["outputs"][-1]["ename"] == "KeyboardInterrupt"
    assert (await asyncio.wait_for(after.done, 20)).status == "ok"
    assert [e.by for e in recorded.of(ev.KernelInterrupted)] == ["alice"]


async def test_restart_forgets_state_and_aborts_the_running_and_queued_requests(
    running: Session, recorded: Recorded
) -> None:
    assert (await asyncio.wait_for((await running.execute("c3", ALICE)).done, 20)).status == "ok"
    slow = await running.execute("c1", ALICE)
    queued = await running.execute("c0", ALICE)
    await wait_for(lambda: cell(running, "c1")["outputs"], timeout_s=15)

    with pytest.raises(errors.Forbidden):
        await running.restart(READER)
    assert await running.restart(ALICE) == 1

    assert (await asyncio.wait_for(slow.done, 10)).status == "aborted"
    assert (await asyncio.wait_for(queued.done, 10)).status == "aborted"
    assert cell(running, "c1")["execution_state"] == "idle"
    with running.doc.transaction():
        source = notebook.find_cell(running.doc, "c3")["source"]
        source.clear()
        source += "x"
    after = await running.execute("c3", ALICE)
    assert (await asyncio.wait_for(after.done, 20)) == execution.Outcome("error", 1)
    assert cell(running, "c3")["outputs"][0]["ename"] == "NameError"
    [restarted] = recorded.of(ev.KernelRestarted)
    assert (restarted.by, restarted.aborted_requests) == ("alice", 1)


# --- requests through the document ---------------------------------------------------------


async def test_a_request_written_into_the_document_runs_and_is_answered_there(
    running: Session, recorded: Recorded
) -> None:
    ask_through_document(running.doc, "req-1", "c0", ALICE)

    await wait_for(lambda: (entry(running.doc, "req-1") or {}).get("status") == "ok", timeout_s=20)
    assert entry(running.doc, "req-1") == {
        "cell_id": "c0",
        "requester": "alice",
        "status": "ok",
        "execution_count": 1,
    }
    assert cell(running, "c0")["outputs"][0]["text"] == "hello\n"
    [requested] = recorded.of(ev.ExecutionRequested)
    assert (requested.request_id, requested.requester, requested.via) == (
        "req-1",
        "alice",
        "document",
    )


async def test_the_requester_is_the_author_of_the_change_not_a_field_of_the_entry(
    running: Session, recorded: Recorded
) -> None:
    client: Doc[Any] = Doc()
    client.apply_update(running.doc.get_update())
    client.get(notebook.REQUESTS, type=Map)["req-2"] = {"cell_id": "c0", "requester": "alice"}
    with running.doc.transaction(origin=READER):
        running.doc.apply_update(client.get_update(running.doc.get_state()))

    await wait_for(lambda: (entry(running.doc, "req-2") or {}).get("status") == "refused")
    assert entry(running.doc, "req-2") == {
        "cell_id": "c0",
        "requester": "reader",
        "status": "refused",
        "reason": "'reader' may not run cells in this session",
    }
    assert cell(running, "c0")["execution_count"] is None  # nothing ran
    [refused] = recorded.of(ev.ExecutionRefused)
    assert (refused.requester, refused.via) == ("reader", "document")


async def test_a_read_only_participant_is_refused_by_call(
    running: Session, recorded: Recorded
) -> None:
    with pytest.raises(errors.Forbidden, match="reader"):
        await running.execute("c0", READER)

    assert recorded.of(ev.ExecutionRequested) == []
    [refused] = recorded.of(ev.ExecutionRefused)
    assert (refused.requester, refused.cell_id, refused.via) == ("reader", "c0", "api")
    assert cell(running, "c0")["execution_count"] is None


@pytest.mark.parametrize(
    ("request_id", "cell_id", "reason"),
    [
        ("req-3", "nope", "no cell with id 'nope'"),
        ("req-4", "md", "is a markdown cell; only code cells run"),
        ("req-5", None, "needs a 'cell_id' string"),
        ("req-6", 7, "needs a 'cell_id' string"),
    ],
)
async def test_bad_requests_in_the_document_are_refused_with_a_reason(
    running: Session, recorded: Recorded, request_id: str, cell_id: Any, reason: str
) -> None:
    ask_through_document(running.doc, request_id, cell_id, ALICE)

    await wait_for(lambda: (entry(running.doc, request_id) or {}).get("status") == "refused")
    found = entry(running.doc, request_id)
    assert found is not None
    assert reason in found["reason"]
    assert reason in recorded.of(ev.ExecutionRefused)[0].reason


async def test_a_bad_request_id_and_an_unknown_author_are_refused(
    running: Session, recorded: Recorded
) -> None:
    ask_through_document(running.doc, "bad id!", "c0", ALICE)
    ask_through_document(running.doc, "req-7", "c0", object())  # no participant behind it

    await wait_for(lambda: (entry(running.doc, "req-7") or {}).get("status") == "refused")
    await wait_for(lambda: len(recorded.of(ev.ExecutionRefused)) == 2)
    reasons = {e.request_id: e.reason for e in recorded.of(ev.ExecutionRefused)}
    assert "a request id is 1-64 letters" in reasons["bad id!"]
    assert "without being identified" in reasons["req-7"]
    assert "a request id is 1-64 letters" in (entry(running.doc, "bad id!") or {})["reason"]
    assert recorded.of(ev.ExecutionRequested) == []


async def test_bad_calls_are_refused_with_typed_errors(running: Session) -> None:
    with pytest.raises(errors.CellNotFound):
        await running.execute("nope", ALICE)
    with pytest.raises(errors.NotACodeCell):
        await running.execute("md", ALICE)
    with pytest.raises(errors.Invalid, match="request id"):
        await running.execute("c0", ALICE, request_id="x" * 65)


async def test_a_cell_deleted_while_it_runs_does_not_stop_the_session(running: Session) -> None:
    slow = await running.execute("c1", ALICE)
    await wait_for(lambda: cell(running, "c1")["outputs"], timeout_s=15)
    with running.doc.transaction():
        del running.doc.get(notebook.CELLS, type=Array)[1]

    assert (await asyncio.wait_for(slow.done, 20)).status == "ok"
    after = await running.execute("c0", ALICE)
    assert (await asyncio.wait_for(after.done, 20)).status == "ok"


# --- lifecycle -----------------------------------------------------------------------------


async def test_the_session_records_its_life(recorded: Recorded) -> None:
    session = make_session(notebook_doc("1"), recorded)
    async with session:
        await asyncio.wait_for((await session.execute("c0", ALICE)).done, 20)

    assert recorded.types() == [
        "collab_session.created",
        "collab_session.kernel_started",
        "collab_session.execution_requested",
        "collab_session.execution_finished",
        "collab_session.kernel_shut_down",
        "collab_session.ended",
    ]
    assert recorded.events[0][1] == ALICE
    with pytest.raises(errors.SessionClosed):
        await session.execute("c0", ALICE)


async def test_the_last_participant_leaving_ends_the_session_after_the_grace_period(
    recorded: Recorded,
) -> None:
    ended: list[Session] = []
    session = make_session(notebook_doc("1"), recorded, grace_period=0.3, on_ended=ended.append)
    session.participant_joined("a")
    await session.start()
    session.participant_joined("b")
    session.participant_left("a")
    assert not session.ended.is_set()

    session.participant_left("b")
    await asyncio.wait_for(session.ended.wait(), 10)

    assert ended == [session]
    assert session.kernel.state == "shut_down"
    assert recorded.of(ev.SessionEnded)[0].reason == "idle"


async def test_somebody_joining_during_the_grace_period_keeps_the_session(
    recorded: Recorded,
) -> None:
    session = make_session(notebook_doc("1"), recorded, grace_period=0.3)
    session.participant_joined("a")
    async with session:
        session.participant_left("a")
        session.participant_joined("b")

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(session.ended.wait()), 1.0)
        assert (
            await asyncio.wait_for((await session.execute("c0", ALICE)).done, 20)
        ).status == "ok"
    assert recorded.of(ev.SessionEnded)[0].reason == "shutdown"


async def test_a_session_nobody_joins_ends_after_the_grace_period(recorded: Recorded) -> None:
    session = make_session(notebook_doc("1"), recorded, grace_period=0.2)
    await session.start()

    await asyncio.wait_for(session.ended.wait(), 10)
    assert recorded.of(ev.SessionEnded)[0].reason == "idle"


async def test_a_kernel_that_cannot_start_ends_the_session(recorded: Recorded) -> None:
    from collab import kernel

    ended: list[Session] = []
    session = make_session(
        notebook_doc("1"), recorded, kernel=kernel.SharedKernel("nope"), on_ended=ended.append
    )
    with pytest.raises(errors.KernelStartFailed):
        await session.start()

    assert session.ended.is_set()
    assert ended == [session]

    assert recorded.types() == ["collab_session.created", "collab_session.ended"]
    assert recorded.of(ev.SessionEnded)[0].reason == "kernel_failed"
    with pytest.raises(errors.SessionClosed):
        await session.execute("c0", ALICE)


async def test_requests_left_running_by_an_earlier_session_are_marked_aborted(
    recorded: Recorded,
) -> None:
    doc = notebook_doc("1")
    with doc.transaction():
        doc.get(notebook.REQUESTS, type=Map)["old"] = {
            "cell_id": "c0",
            "requester": "alice",
            "status": "running",
        }
        notebook.begin_execution(notebook.find_code_cell(doc, "c0"))  # by a kernel now gone
    async with make_session(doc, recorded):
        assert entry(doc, "old") == {
            "cell_id": "c0",
            "requester": "alice",
            "status": "aborted",
            "reason": "the session was restarted",
        }
        assert notebook.find_code_cell(doc, "c0")["execution_state"] == "idle"


async def test_displays_are_updated_in_place_and_clear_output_waits(recorded: Recorded) -> None:
    shows = (
        "from IPython.display import display, clear_output\nh = display('first', display_id='d')"
    )
    updates = "h.update('second')\nprint('from c1')"
    clears = "print('gone')\nclear_output(wait=True)\nprint('kept')"
    async with make_session(notebook_doc(shows, updates, clears), recorded) as session:
        for cell_id in ("c0", "c1", "c2"):
            request = await session.execute(cell_id, ALICE)
            assert (await asyncio.wait_for(request.done, 20)).status == "ok"

        assert cell(session, "c0")["outputs"] == [
            {"output_type": "display_data", "data": {"text/plain": "'second'"}, "metadata": {}}
        ]
        assert cell(session, "c1")["outputs"] == [
            {"output_type": "stream", "name": "stdout", "text": "from c1\n"}
        ]
        assert cell(session, "c2")["outputs"] == [
            {"output_type": "stream", "name": "stdout", "text": "kept\n"}
        ]


async def test_output_beyond_the_limit_is_dropped_with_one_notice(recorded: Recorded) -> None:
    """A cell printing without end must not grow everybody's document without end."""
    flood = "for i in range(200):\n    print('x' * 50, flush=True)"
    async with make_session(notebook_doc(flood), recorded, max_output_chars=1000) as session:
        request = await session.execute("c0", ALICE)
        assert (await asyncio.wait_for(request.done, 20)).status == "ok"

        outputs = cell(session, "c0")["outputs"]
    shown = "".join(o["text"] for o in outputs if o["name"] == "stdout")
    assert 0 < len(shown) <= 1000
    notices = [o["text"] for o in outputs if o["name"] == "stderr"]
    assert notices == ["[chronohub: output beyond 1,000 characters is not shown]\n"]


async def test_a_full_queue_refuses_more_requests(recorded: Recorded) -> None:
    from collab import execution as executor_module

    doc = notebook_doc("import time; time.sleep(30)", "1")
    session = make_session(doc, recorded)
    async with session:
        session.executor.max_queued = 1
        await session.execute("c0", ALICE)  # running
        await wait_for(lambda: session.executor.current is not None)
        queued = await session.execute("c1", ALICE)  # waiting: the queue is full now
        status = session.status()
        assert (status.state, status.kernel_state, status.running_cell, status.queued) == (
            "running",
            "ready",
            "c0",
            1,
        )

        with pytest.raises(errors.Unavailable, match="1 requests are already waiting"):
            await session.execute("c1", ALICE)
        assert "already waiting" in recorded.of(ev.ExecutionRefused)[0].reason
    assert queued.done.result() == executor_module.Outcome("aborted", None)
