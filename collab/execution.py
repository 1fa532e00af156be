"""The executor: runs the cells participants ask for, in order, in the session's one kernel.

Two ways to ask, both checked by the same write-access callback:

* **Through the document.** A participant adds an entry to the top-level map
  ``execution_requests``, keyed by a request id it chooses (1-64 letters, digits, ``-``, ``_``)::

      ydoc.getMap("execution_requests").set(requestId, {cell_id: "<cell id>"})

  Who asked is the author of the update (the transaction's origin, which the room server
  sets to the connection that sent it; ``identify`` maps it to a participant), never a
  field of the entry. The executor answers in the same entry, replacing it with
  ``{cell_id, requester, status, reason?, execution_count?}`` where ``status`` goes
  ``queued`` → ``running`` → ``ok`` | ``error`` | ``aborted``, or is ``refused`` with a
  ``reason``. Finished entries beyond the last ``keep_finished`` are deleted. Requests
  written in one update run in the order of their ids.
* **By a call** (``Executor.submit``; the REST endpoint
  ``POST /hub/api/collab/sessions/{id}/execute`` calls it), which returns the request; its
  ``done`` future resolves to the ``Outcome``.

Requests run one at a time in arrival order (at most ``max_queued`` wait). Outputs, the
execution count and the cell's ``execution_state`` are written into the document as the
kernel sends them, each batch of kernel messages in one transaction (one CRDT update for
every participant). Beyond ``max_output_chars`` a request's further output is dropped with
one notice, so a runaway loop cannot grow everybody's document without end. Every request
and its end are reported as events (``events.catalog.collab_sessions``): who ran which cell,
never its source or outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from pycrdt import Doc, Map, MapEvent

from collab import kernel as kernels
from collab import notebook
from collab import session_errors as errors
from events import tasks
from events.catalog import collab_sessions as session_events

log = logging.getLogger(__name__)

ORIGIN = "chronohub:executor"
"""The origin of the executor's own transactions on the document."""

REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
Via = Literal["document", "api"]


@dataclass(frozen=True)
class Participant:
    """Somebody in the session, as the hub authenticated them."""

    name: str
    kind: Literal["user", "service"] = "user"


MayWrite = Callable[[Participant], Awaitable[bool]]
"""Whether a participant may run cells (and interrupt or restart the kernel)."""

Identify = Callable[[Any], Participant | None]
"""Who wrote a document update, from its transaction origin; ``None`` when nobody known."""


class Recorder(Protocol):
    """Where session events go (the hub appends them to its event store)."""

    async def __call__(self, event: session_events.SessionEvent, actor: Participant | None) -> None:
        """Record ``event`` caused by ``actor`` (``None``: the hub itself)."""
        ...


def identify_by_name(origin: Any) -> Participant | None:
    """The default ``Identify``: a transaction whose origin is a participant or a user name."""
    if isinstance(origin, Participant):
        return origin
    if isinstance(origin, str) and origin and origin != ORIGIN:
        return Participant(origin)
    return None


@dataclass(frozen=True)
class Outcome:
    """How a request ended."""

    status: Literal["ok", "error", "aborted"]
    execution_count: int | None


@dataclass
class ExecutionRequest:
    """One request to run a cell: queued, then run, then done."""

    request_id: str
    cell_id: str
    requester: Participant
    via: Via
    code: str
    done: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _DocAsk:
    """A request found in the document, before its requester's access is checked."""

    request_id: str
    cell_id: Any
    origin: Any


class Executor:
    """Runs requested cells of ``doc`` in ``kernel``: ``async with Executor(...)`` or start/stop."""

    def __init__(
        self,
        session_id: UUID,
        doc: Doc[Any],
        kernel: kernels.SharedKernel,
        *,
        may_write: MayWrite,
        record: Recorder,
        identify: Identify = identify_by_name,
        keep_finished: int = 50,
        max_output_chars: int = 2_000_000,
        max_queued: int = 100,
    ) -> None:
        self.session_id = session_id
        self.doc = doc
        self.kernel = kernel
        self.may_write = may_write
        self.record = record
        self.identify = identify
        self.keep_finished = keep_finished
        self.max_output_chars = max_output_chars
        self.max_queued = max_queued
        self.current: ExecutionRequest | None = None
        self._queue: asyncio.Queue[ExecutionRequest] = asyncio.Queue()
        self._asks: asyncio.Queue[_DocAsk] = asyncio.Queue()
        self._finished_order: list[str] = []
        self._displays: dict[str, list[tuple[str, int]]] = {}
        self._requests = doc.get(notebook.REQUESTS, type=Map)
        self._subscription: Any = None
        self._tasks = tasks.TaskOwner("executor", logger=log)
        self._closed = False
        self._abandoned = False  # stopped without a word: the session runs on elsewhere

    async def __aenter__(self) -> Executor:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        """Watch the document for requests and start running the queue."""
        self._abort_stale_entries()
        self._subscription = self._requests.observe(self._on_requests_changed)
        # Entries written before we watched (e.g. while the session was starting).
        for key in sorted(self._requests.keys()):
            self._consider(key, self._requests.get(key), origin=None, initial=True)
        self._tasks.start(self._intake(), f"executor-intake-{self.session_id}")
        self._tasks.start(self._run(), f"executor-run-{self.session_id}")

    async def stop(self) -> None:
        """Stop taking requests; the running one and every queued one end as ``aborted``."""
        if self._closed:
            return
        self._closed = True
        if self._subscription is not None:
            self._requests.unobserve(self._subscription)
            self._subscription = None
        await self._tasks.close()
        for request in self.drain():
            await self._finish(request, "aborted", None, started=None, reason="session ended")

    async def abandon(self) -> None:
        """Stop taking and running requests, and write nothing of it, neither to the log nor
        to the document: another hub process runs the session now (it took it over) and says
        itself what became of the requests. Their callers here see them ``aborted``."""
        self._abandoned = True
        await self.stop()

    # --- asking ------------------------------------------------------------------------

    async def submit(
        self, cell_id: str, requester: Participant, *, request_id: str | None = None
    ) -> ExecutionRequest:
        """Queue ``cell_id`` to run for ``requester`` (a direct call: the REST endpoint).

        Raises ``Forbidden``, ``CellNotFound``, ``NotACodeCell``, ``Invalid``, ``Unavailable``
        (the queue is full) or ``SessionClosed``; a refusal is recorded as an event as well.
        """
        request_id = request_id or uuid.uuid4().hex
        return await self._admit(request_id, cell_id, requester, "api")

    @property
    def queued(self) -> int:
        """How many requests wait behind the running one."""
        return self._queue.qsize()

    def drain(self) -> list[ExecutionRequest]:
        """Take every queued request off the queue (they will not run)."""
        drained: list[ExecutionRequest] = []
        while not self._queue.empty():
            drained.append(self._queue.get_nowait())
        return drained

    async def abort_queued(self, reason: str) -> int:
        """End every queued request as ``aborted`` (a restart); returns how many."""
        drained = self.drain()
        for request in drained:
            await self._finish(request, "aborted", None, started=None, reason=reason)
        return len(drained)

    async def _admit(
        self, request_id: str, cell_id: Any, requester: Participant, via: Via
    ) -> ExecutionRequest:
        try:
            if self._closed:
                raise errors.SessionClosed("the session has ended")
            if not REQUEST_ID.fullmatch(request_id):
                raise errors.Invalid(
                    f"a request id is 1-64 letters, digits, '-' or '_', got {request_id[:80]!r}"
                )
            if not isinstance(cell_id, str) or not cell_id:
                raise errors.Invalid("an execution request needs a 'cell_id' string")
            if not await self.may_write(requester):
                raise errors.Forbidden(requester.name, "run cells")
            code = notebook.source_of(notebook.find_code_cell(self.doc, cell_id))
            if self._queue.qsize() >= self.max_queued:
                raise errors.Unavailable(
                    f"{self.max_queued} requests are already waiting; try again later"
                )
        except errors.SessionError as exc:
            await self._refuse(request_id, cell_id, requester, via, exc)
            raise
        request = ExecutionRequest(request_id, cell_id, requester, via, code)
        # Recorded before it is queued: a request the log cannot hold does not run.
        await self.record(
            session_events.ExecutionRequested(
                session_id=self.session_id,
                request_id=request_id,
                cell_id=cell_id,
                requester=requester.name,
                via=via,
            ),
            requester,
        )
        if self._closed:  # stopped while the request was being recorded
            await self._finish(request, "aborted", None, started=None, reason="session ended")
            return request
        self._write_entry(request, "queued")
        self._queue.put_nowait(request)
        return request

    async def _refuse(
        self, request_id: str, cell_id: Any, requester: Participant, via: Via, exc: Exception
    ) -> None:
        reason = str(exc)[:500]
        if via == "document":  # answered under the key the participant chose
            with self.doc.transaction(origin=ORIGIN):
                self._requests[request_id] = {
                    "cell_id": str(cell_id)[:255],
                    "requester": requester.name,
                    "status": "refused",
                    "reason": reason,
                }
            self._remember_finished(request_id)
        await self.record(
            session_events.ExecutionRefused(
                session_id=self.session_id,
                request_id=request_id[:64] or "-",
                cell_id=str(cell_id)[:255],
                requester=requester.name[:255],
                via=via,
                reason=reason,
            ),
            requester,
        )

    # --- requests through the document ---------------------------------------------------

    def _on_requests_changed(self, event: MapEvent) -> None:
        # Called inside the transaction that changed the map: the document cannot be written
        # here, so the ask is handed to the intake task.
        origin = event.transaction.origin
        if origin == ORIGIN:
            return
        changes: dict[str, dict[str, Any]] = getattr(event, "keys", {})
        # A map's changes come in hash order: requests that arrive in one update run in the
        # order of their ids, so a client writing several at once can order them.
        for key, change in sorted(changes.items()):
            if change.get("action") in ("add", "update"):
                self._consider(key, change.get("newValue"), origin=origin, initial=False)

    def _consider(self, key: str, value: Any, *, origin: Any, initial: bool) -> None:
        entry = value.to_py() if isinstance(value, Map) else value
        if not isinstance(entry, dict):
            entry = {}
        status = entry.get("status", "pending")
        if status != "pending":
            return  # the executor's own answer, or an entry already handled
        if initial:
            origin = None  # nobody can be named as its author any more
        self._asks.put_nowait(_DocAsk(key, entry.get("cell_id"), origin))

    async def _intake(self) -> None:
        while True:
            ask = await self._asks.get()
            requester = self.identify(ask.origin)
            if requester is None:
                await self._refuse(
                    ask.request_id,
                    ask.cell_id,
                    Participant("unknown"),
                    "document",
                    errors.Forbidden("unknown", "run cells without being identified"),
                )
                continue
            try:
                await self._admit(ask.request_id, ask.cell_id, requester, "document")
            except errors.SessionError:
                pass  # refused: answered in the entry and recorded
            except Exception:
                # The request could not be recorded (the log is unreachable): it does not
                # run, the participant is told, and the next request is still taken.
                log.exception("execution request %s could not be admitted", ask.request_id)
                with self.doc.transaction(origin=ORIGIN):
                    self._requests[ask.request_id] = {
                        "cell_id": str(ask.cell_id)[:255],
                        "requester": requester.name,
                        "status": "refused",
                        "reason": "the hub could not record the request; try again",
                    }

    def _abort_stale_entries(self) -> None:
        """Entries left queued or running by an earlier session of this document."""
        stale = {
            key: value
            for key in list(self._requests.keys())
            if isinstance(value := _plain(self._requests.get(key)), dict)
            and value.get("status") in ("queued", "running")
        }
        if stale:
            with self.doc.transaction(origin=ORIGIN):
                for key, value in stale.items():
                    self._requests[key] = {
                        **value,
                        "status": "aborted",
                        "reason": "the session was restarted",
                    }
                    if value.get("status") == "running":
                        # Its cell was left running by a kernel that is gone (its hub
                        # process died): idle now, so that nobody's page shows it busy.
                        with contextlib.suppress(errors.SessionError):
                            cell = notebook.find_code_cell(self.doc, str(value.get("cell_id")))
                            if cell.get("execution_state") == "running":
                                notebook.end_execution(cell, None)

    # --- running -----------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            request = await self._queue.get()
            self.current = request
            try:
                await self._execute(request)
            except Exception:
                # A bug here must not leave the queue stuck behind a dead task.
                log.exception("request %s failed in the executor", request.request_id)
                await self._finish(request, "aborted", None, started=None, reason="internal error")
            finally:
                self.current = None

    async def _execute(self, request: ExecutionRequest) -> None:
        started = time.monotonic()
        try:
            with self.doc.transaction(origin=ORIGIN):
                cell = notebook.find_code_cell(self.doc, request.cell_id)
                notebook.begin_execution(cell)
                self._write_entry(request, "running")
        except errors.SessionError as exc:
            await self._finish(request, "aborted", None, started=started, reason=str(exc))
            return
        status: Literal["ok", "error", "aborted"] = "aborted"
        count: int | None = None
        progress = _Progress(budget=self.max_output_chars)
        try:
            async for batch in self.kernel.execute(request.code):
                for message in batch:
                    if isinstance(message, kernels.Finished):
                        status, count = message.status, message.execution_count
                with self.doc.transaction(origin=ORIGIN):
                    try:
                        cell = notebook.find_code_cell(self.doc, request.cell_id)
                    except errors.SessionError:
                        continue  # deleted while running: the outputs have nowhere to go
                    for message in batch:
                        self._apply(request, cell, message, progress)
        except asyncio.CancelledError:
            await self._finish(request, "aborted", None, started=started, reason="stopped")
            raise
        except errors.KernelError as exc:
            await self._finish(request, "aborted", None, started=started, reason=str(exc))
            return
        await self._finish(request, status, count, started=started)

    def _apply(
        self,
        request: ExecutionRequest,
        cell: Map[Any],
        message: kernels.KernelMessage,
        progress: _Progress,
    ) -> None:
        """Write one kernel message into the cell."""
        if isinstance(message, kernels.Started):
            notebook.set_execution_count(cell, message.execution_count)
        elif isinstance(message, kernels.ClearOutput):
            if message.wait:
                progress.clear_pending = True
            else:
                self._clear(request, cell, progress)
        elif isinstance(message, kernels.Output):
            if progress.clear_pending:
                self._clear(request, cell, progress)
            size = len(json.dumps(message.output))
            if size > progress.budget:
                if not progress.truncated:
                    progress.truncated = True
                    notebook.append_output(cell, _truncated_notice(self.max_output_chars))
                return
            progress.budget -= size
            index = notebook.append_output(cell, message.output)
            if message.display_id:
                self._displays.setdefault(message.display_id, []).append((request.cell_id, index))
        elif isinstance(message, kernels.DisplayUpdate):
            self._update_display(message)

    def _clear(self, request: ExecutionRequest, cell: Map[Any], progress: _Progress) -> None:
        notebook.clear_outputs(cell)
        self._forget_displays(request.cell_id)
        progress.clear_pending = False
        progress.budget = self.max_output_chars
        progress.truncated = False

    def _update_display(self, update: kernels.DisplayUpdate) -> None:
        # A display can be updated from any later cell: follow it wherever it is shown.
        for cell_id, index in self._displays.get(update.display_id, []):
            with contextlib.suppress(errors.SessionError):
                cell = notebook.find_cell(self.doc, cell_id)
                notebook.update_output_data(cell, index, update.data, update.metadata)

    def _forget_displays(self, cell_id: str) -> None:
        for places in self._displays.values():
            places[:] = [place for place in places if place[0] != cell_id]

    async def _finish(
        self,
        request: ExecutionRequest,
        status: Literal["ok", "error", "aborted"],
        count: int | None,
        *,
        started: float | None,
        reason: str | None = None,
    ) -> None:
        if self._abandoned:
            if not request.done.done():
                request.done.set_result(Outcome("aborted", None))
            return
        if started is not None:
            with self.doc.transaction(origin=ORIGIN), contextlib.suppress(errors.SessionError):
                notebook.end_execution(notebook.find_code_cell(self.doc, request.cell_id), count)
        self._write_entry(request, status, execution_count=count, reason=reason)
        self._remember_finished(request.request_id)
        elapsed = 0 if started is None else round((time.monotonic() - started) * 1000)
        if not request.done.done():
            request.done.set_result(Outcome(status, count))
        try:
            await self.record(
                session_events.ExecutionFinished(
                    session_id=self.session_id,
                    request_id=request.request_id,
                    cell_id=request.cell_id,
                    status=status,
                    execution_count=count,
                    duration_ms=elapsed,
                ),
                request.requester,
            )
        except Exception:
            # The cell ran; failing to log its end must not stop the next one. Loud, not lost.
            log.exception("could not record the end of request %s", request.request_id)

    # --- the request entries -------------------------------------------------------------

    def _write_entry(
        self,
        request: ExecutionRequest,
        status: str,
        *,
        execution_count: int | None = None,
        reason: str | None = None,
    ) -> None:
        if request.via != "document":
            return
        entry: dict[str, Any] = {
            "cell_id": request.cell_id,
            "requester": request.requester.name,
            "status": status,
        }
        if execution_count is not None:
            entry["execution_count"] = execution_count
        if reason is not None:
            entry["reason"] = reason
        with self.doc.transaction(origin=ORIGIN):
            self._requests[request.request_id] = entry

    def _remember_finished(self, request_id: str) -> None:
        self._finished_order.append(request_id)
        excess = len(self._finished_order) - self.keep_finished
        if excess > 0:
            old, self._finished_order = (
                self._finished_order[:excess],
                self._finished_order[excess:],
            )
            with self.doc.transaction(origin=ORIGIN):
                for key in old:
                    if key in self._requests:
                        del self._requests[key]


@dataclass
class _Progress:
    """What one running request has written so far."""

    budget: int
    clear_pending: bool = False
    truncated: bool = False


def _truncated_notice(limit: int) -> dict[str, Any]:
    return {
        "output_type": "stream",
        "name": "stderr",
        "text": f"[chronohub: output beyond {limit:,} characters is not shown]\n",
    }


def _plain(value: Any) -> Any:
    return value.to_py() if isinstance(value, Map) else value
