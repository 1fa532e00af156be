"""One kernel shared by every participant of a session (``jupyter_client`` driving ``ipykernel``).

``SharedKernel`` starts a kernel, runs code and yields what the kernel says as nbformat outputs
(``nbformat.v4.output_from_msg`` does the conversion), then a ``Finished`` with the reply's
status and execution count. It interrupts, restarts and shuts the kernel down.

Two reader tasks (IOPub and shell) and one liveness watcher are owned by the kernel object,
named, and cancelled at shutdown. Readers route each message to the request it answers by
its parent message id, so nothing is read by two consumers at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from collab import session_errors as errors
from events import tasks

log = logging.getLogger(__name__)

KernelState = Literal["new", "starting", "ready", "restarting", "dead", "shut_down"]
ReplyStatus = Literal["ok", "error", "aborted"]

# How often the watcher asks whether the kernel process is still alive.
LIVENESS_INTERVAL = 0.5
# How long a kernel-info probe waits before it is sent again while the kernel comes up.
PROBE_INTERVAL = 1.0


@dataclass(frozen=True)
class Output:
    """An nbformat output to add to the cell (stream, display_data, execute_result, error)."""

    output: dict[str, Any]
    display_id: str | None = None


@dataclass(frozen=True)
class DisplayUpdate:
    """``update_display_data``: replace the data of every output shown under ``display_id``."""

    display_id: str
    data: dict[str, Any]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class ClearOutput:
    """``clear_output``: clear the cell's outputs now, or (``wait``) when the next one comes."""

    wait: bool


@dataclass(frozen=True)
class Started:
    """The kernel took the code (``execute_input``) and numbered it."""

    execution_count: int


@dataclass(frozen=True)
class Finished:
    """The last message of an execution: the reply's status and the execution count."""

    status: ReplyStatus
    execution_count: int | None


KernelMessage = Output | DisplayUpdate | ClearOutput | Started | Finished


@dataclass(frozen=True)
class _Idle:
    """The kernel went idle after a request: every IOPub message for it has been sent."""


_IDLE = _Idle()


@dataclass
class _Pending:
    """A request sent to the kernel, waiting for its reply and its idle status."""

    queue: asyncio.Queue[KernelMessage | _Idle | errors.KernelError] = field(
        default_factory=asyncio.Queue
    )


# What the kernel inherits of the hub's environment: enough to run Python and find its
# packages, nothing else. The hub's own variables (database URL, PG* passwords, service
# tokens, CHRONOHUB_*) must not be readable by code that participants run.
INHERITED = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ",
        "TMPDIR", "TEMP", "TMP", "VIRTUAL_ENV", "CONDA_PREFIX", "SYSTEMROOT",
    }
)  # fmt: skip


def kernel_environment(
    environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a kernel starts with: the allowed part of ``environ``, plus ``extra``."""
    env = {k: v for k, v in environ.items() if k in INHERITED or k.startswith("LC_")}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class RunAs:
    """Whose account a kernel runs as, and how (the hub decides: ``hub.servers.isolation``)."""

    account: str
    """The account's name, as the session's events and API say it."""
    home: Path
    env: Mapping[str, str]
    """The account's own variables (HOME, USER, PATH…), over the inherited ones."""
    uid: int | None = None
    """Another account to switch to (None: this process's own)."""
    gid: int | None = None
    groups: tuple[int, ...] = ()
    wrap: Callable[[list[str], Path], list[str]] | None = None
    """Wraps the kernel's command line (in a sandbox), given the directory it must write."""


class _AccountKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs as another account, or wrapped (``RunAs``).

    jupyter_client writes the connection file (with the HMAC key) readable by its writer
    only; a kernel of another account must read it, so it is handed to that account just
    before the kernel starts. Nobody else can: it lies in a directory only that account can
    enter.
    """

    run_as: RunAs | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        command = super().format_kernel_cmd(extra_arguments)
        if self.run_as is not None and self.run_as.wrap is not None:
            return self.run_as.wrap(command, Path(self.connection_file).parent)
        return command

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if self.run_as is not None and self.run_as.uid is not None:
            os.chown(self.connection_file, self.run_as.uid, self.run_as.gid or -1)
        await super()._async_launch_kernel(kernel_cmd, **kw)


class SharedKernel:
    """A kernel for one session: ``async with SharedKernel() as kernel: ...``.

    The kernel runs as ``run_as`` (in its home directory, with only its own variables and
    the locale of the hub's) or, without one, as the hub's user, in ``cwd`` (by default a
    scratch directory removed at shutdown), with ``kernel_environment(os.environ, env)``.
    """

    def __init__(
        self,
        kernel_name: str = "python3",
        *,
        startup_timeout: float = 60.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.startup_timeout = startup_timeout
        self.cwd = cwd
        self.extra_env = dict(env or {})
        self.run_as = run_as
        self.state: KernelState = "new"
        self._runtime: tempfile.TemporaryDirectory[str] | None = None
        self._manager: AsyncKernelManager | None = None
        self._client: AsyncKernelClient | None = None
        self._pending: dict[str, _Pending] = {}
        # the readers of the iopub and shell channels and the liveness watcher
        self._tasks = tasks.TaskOwner("kernel", logger=log, on_death=self._task_died)

    @property
    def account(self) -> str:
        """The system account the kernel runs as."""
        return self.run_as.account if self.run_as else pwd.getpwuid(os.geteuid()).pw_name

    async def __aenter__(self) -> SharedKernel:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the kernel process and wait until it answers; raises ``KernelStartFailed``."""
        if self.state != "new":
            raise errors.KernelStartFailed(f"the kernel was already started (it is {self.state})")
        self.state = "starting"
        # The connection file (with the HMAC key) and the kernel's sockets live in a directory
        # only we can read: IPC sockets there are private to this user, where TCP ports on
        # the loopback are open to every local user (and unencrypted).
        self._runtime = tempfile.TemporaryDirectory(prefix="chronohub-kernel-")
        runtime = Path(self._runtime.name)
        manager = _AccountKernelManager(
            kernel_name=self.kernel_name,
            connection_file=str(runtime / "kernel.json"),
            transport="ipc",
            ip=str(runtime / "kernel"),
        )
        manager.run_as = run_as = self.run_as
        self._manager = manager
        launch: dict[str, Any] = {}
        if run_as is None:
            env = kernel_environment(os.environ, self.extra_env)
            work = self.cwd or runtime / "work"
            work.mkdir(exist_ok=True)
        else:
            env = {k: v for k, v in os.environ.items() if k.startswith("LC_") or k == "LANG"}
            env.update({**run_as.env, **self.extra_env})
            work = self.cwd or run_as.home
            if run_as.uid is not None:
                # The kernel's account makes its sockets in the runtime directory, and nobody
                # else may enter it.
                os.chown(runtime, run_as.uid, run_as.gid or -1)
                launch = {
                    "user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups)
                }  # fmt: skip
        try:
            await manager.start_kernel(env=env, cwd=str(work), **launch)
        except BaseException as exc:
            # Cancelled or failed: leave no process and no directory behind.
            await self._release()
            self.state = "dead"
            if not isinstance(exc, Exception):
                raise
            raise errors.KernelStartFailed(
                f"kernel {self.kernel_name!r} did not start: {exc}"
            ) from exc
        client = manager.client()
        client.start_channels()
        self._client = client
        self._tasks.start(self._read_iopub(client), "kernel-iopub")
        self._tasks.start(self._read_shell(client), "kernel-shell")
        try:
            await self._handshake()
        except BaseException:  # not answering, or cancelled: stop what was started
            await self.shutdown()
            self.state = "dead"
            raise
        self._tasks.start(self._watch(manager), "kernel-liveness")
        self.state = "ready"

    async def interrupt(self) -> None:
        """Interrupt what the kernel is running (the running request ends with ``error``)."""
        manager = self._running_manager()
        await manager.interrupt_kernel()

    async def restart(self) -> None:
        """Restart the kernel: its state is lost, requests in flight end as ``aborted``."""
        manager = self._manager
        if manager is None or self.state in ("new", "shut_down"):
            raise errors.KernelNotRunning(f"the kernel is {self.state}; it cannot restart")
        self.state = "restarting"
        self._abort_pending()
        try:
            await manager.restart_kernel(now=True)
            await self._handshake()
        except Exception as exc:
            self.state = "dead"
            raise errors.KernelStartFailed(f"the kernel did not come back: {exc}") from exc
        self.state = "ready"

    async def shutdown(self) -> None:
        """Stop the kernel process and every task of this object; safe to call twice."""
        if self.state == "shut_down":
            return
        self.state = "shut_down"
        self._abort_pending()
        await self._tasks.close()
        await self._release()

    async def _release(self) -> None:
        client, self._client = self._client, None
        manager, self._manager = self._manager, None
        if client is not None:
            client.stop_channels()
        if manager is not None:
            if manager.has_kernel:
                await manager.shutdown_kernel(now=False)  # also cleans up its files
            else:
                await manager.cleanup_resources()
            manager.context.destroy(linger=0)
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.cleanup()

    # --- running code ----------------------------------------------------------------------

    async def execute(self, code: str) -> AsyncIterator[list[KernelMessage]]:
        """Run ``code``; yield its outputs in batches as they come, ending with one ``Finished``.

        A batch is everything that arrived since the previous one, so a consumer that writes
        each batch in one document transaction sends fewer, larger updates when output is
        fast, and single messages when it is slow. Raises ``KernelNotRunning`` before the
        kernel is ready, ``KernelDied`` if it dies meanwhile.
        """
        client = self._running_client()
        msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        pending = self._pending[msg_id] = _Pending()
        finished: Finished | None = None
        idle = False
        try:
            while finished is None or not idle:
                batch: list[KernelMessage] = []
                arrived = [await pending.queue.get()]
                while not pending.queue.empty():
                    arrived.append(pending.queue.get_nowait())
                for message in arrived:
                    if isinstance(message, errors.KernelError):
                        raise message
                    if isinstance(message, _Idle):
                        idle = True
                    elif isinstance(message, Finished):
                        # The shell reply can overtake the last outputs on IOPub; it is
                        # yielded once the kernel says it is idle, after every output.
                        finished = message
                    else:
                        batch.append(message)
                if finished is not None and idle:
                    batch.append(finished)
                if batch:
                    yield batch
        finally:
            self._pending.pop(msg_id, None)

    # --- internals -----------------------------------------------------------------------

    def _running_client(self) -> AsyncKernelClient:
        if self.state == "dead":
            raise errors.KernelDied("the kernel died; restart it to run code again")
        if self.state != "ready" or self._client is None:
            raise errors.KernelNotRunning(f"the kernel is {self.state}")
        return self._client

    def _running_manager(self) -> AsyncKernelManager:
        self._running_client()
        assert self._manager is not None
        return self._manager

    def _task_died(self, task: asyncio.Task[None], _exc: BaseException) -> None:
        """A reader or the watcher died (its owner logged it): the kernel is of no more use."""
        if self.state == "shut_down":
            return
        self._fail_pending(errors.KernelDied(f"the kernel's {task.get_name()} task failed"))

    def _fail_pending(self, error: errors.KernelError) -> None:
        self.state = "dead"
        for pending in self._pending.values():
            pending.queue.put_nowait(error)
        self._pending.clear()

    def _abort_pending(self) -> None:
        for pending in self._pending.values():
            pending.queue.put_nowait(Finished(status="aborted", execution_count=None))
            pending.queue.put_nowait(_IDLE)
        self._pending.clear()

    async def _handshake(self) -> None:
        """Wait until the kernel answers a kernel-info request on shell *and* IOPub.

        IOPub is a subscription: messages published before it is connected are lost. A reply
        on shell alone does not prove IOPub is live; the ``idle`` status for the same request
        does. (``wait_for_ready`` would read the shell channel beside our own reader.)
        """
        client = self._client
        manager = self._manager
        assert client is not None
        assert manager is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            msg_id = client.kernel_info()
            pending = self._pending[msg_id] = _Pending()
            replied = idle = False
            try:
                async with asyncio.timeout(PROBE_INTERVAL):
                    while not (replied and idle):
                        message = await pending.queue.get()
                        replied = replied or isinstance(message, Finished)
                        idle = idle or isinstance(message, _Idle)
                    return
            except TimeoutError:
                if not await manager.is_alive():
                    raise errors.KernelStartFailed(
                        f"kernel {self.kernel_name!r} exited while starting"
                    ) from None
            finally:
                self._pending.pop(msg_id, None)
        raise errors.KernelStartFailed(
            f"kernel {self.kernel_name!r} did not answer within {self.startup_timeout:g} s"
        )

    async def _read_iopub(self, client: AsyncKernelClient) -> None:
        while True:
            msg = await client.get_iopub_msg()
            pending = self._pending.get(msg["parent_header"].get("msg_id", ""))
            if pending is None:
                continue  # another client's, or a request that was aborted
            translated = _translate_iopub(msg)
            if translated is not None:
                pending.queue.put_nowait(translated)

    async def _read_shell(self, client: AsyncKernelClient) -> None:
        while True:
            msg = await client.get_shell_msg()
            pending = self._pending.get(msg["parent_header"].get("msg_id", ""))
            if pending is None:
                continue
            content = msg["content"]
            status = content.get("status", "ok")
            pending.queue.put_nowait(
                Finished(
                    status=status if status in ("ok", "error", "aborted") else "error",
                    execution_count=content.get("execution_count"),
                )
            )

    async def _watch(self, manager: AsyncKernelManager) -> None:
        """Notice a kernel that died on its own and fail what was waiting on it."""
        while True:
            await asyncio.sleep(LIVENESS_INTERVAL)
            if self.state != "ready" or await manager.is_alive():
                continue
            log.warning("kernel %s died", self.kernel_name)
            self._fail_pending(errors.KernelDied("the kernel died while running"))


def _translate_iopub(msg: dict[str, Any]) -> KernelMessage | _Idle | None:
    """What an IOPub message means for the cell that asked; ``None`` when nothing."""
    msg_type = msg["header"]["msg_type"]
    content = msg["content"]
    if msg_type == "status":
        return _IDLE if content.get("execution_state") == "idle" else None
    if msg_type == "execute_input":
        return Started(execution_count=int(content["execution_count"]))
    if msg_type in ("stream", "display_data", "execute_result", "error"):
        # imported here: nbformat.v4 loads jsonschema's format checkers, seconds of import
        # time that a hub which never runs a cell should not pay at start
        from nbformat.v4 import output_from_msg

        output = dict(output_from_msg(msg))  # type: ignore[no-untyped-call]
        display_id = (content.get("transient") or {}).get("display_id")
        return Output(output=_plain(output), display_id=display_id)
    if msg_type == "update_display_data":
        display_id = (content.get("transient") or {}).get("display_id")
        if not display_id:
            return None
        return DisplayUpdate(
            display_id=display_id, data=dict(content["data"]), metadata=dict(content["metadata"])
        )
    if msg_type == "clear_output":
        return ClearOutput(wait=bool(content.get("wait", False)))
    return None


def _plain(value: Any) -> Any:
    """NotebookNode (a dict subclass) into plain dicts and lists, as the document stores them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
