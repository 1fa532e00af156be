"""The shared kernel on a real ipykernel: outputs as nbformat, errors, interrupt, restart, death."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from collab import kernel
from collab import session_errors as errors
from tests.helpers import wait_for

pytestmark = pytest.mark.collab


async def run(
    k: kernel.SharedKernel, code: str, into: list[kernel.KernelMessage] | None = None
) -> list[kernel.KernelMessage]:
    """Every message of one execution, flattened (also appended to ``into`` as they come)."""
    messages = [] if into is None else into
    async for batch in k.execute(code):
        messages.extend(batch)
    return messages


def printed(messages: list[kernel.KernelMessage], text: str) -> bool:
    """Whether the kernel has printed ``text`` among ``messages``."""
    return any(isinstance(m, kernel.Output) and m.output.get("text") == text for m in messages)


async def test_outputs_come_as_nbformat_then_the_reply(shared_kernel: kernel.SharedKernel) -> None:
    messages = await run(
        shared_kernel, "print('out')\nimport sys; print('err', file=sys.stderr)\n6*7"
    )

    assert messages[0] == kernel.Started(execution_count=1)
    outputs = [m.output for m in messages if isinstance(m, kernel.Output)]
    assert {"output_type": "stream", "name": "stdout", "text": "out\n"} in outputs
    assert {"output_type": "stream", "name": "stderr", "text": "err\n"} in outputs
    assert outputs[-1] == {
        "output_type": "execute_result",
        "execution_count": 1,
        "data": {"text/plain": "42"},
        "metadata": {},
    }
    assert messages[-1] == kernel.Finished(status="ok", execution_count=1)


async def test_an_exception_is_an_error_output_and_an_error_reply(
    shared_kernel: kernel.SharedKernel,
) -> None:
    messages = await run(shared_kernel, "1/0")

    errors_shown = [m.output for m in messages if isinstance(m, kernel.Output)]
    assert errors_shown[0]["output_type"] == "error"
    assert errors_shown[0]["ename"] == "ZeroDivisionError"
    assert messages[-1] == kernel.Finished(status="error", execution_count=1)


async def test_displays_updates_and_clears_are_passed_on(
    shared_kernel: kernel.SharedKernel,
) -> None:
    code = (
        "from IPython.display import display, clear_output\n"
        "h = display('a', display_id='d1')\n"
        "h.update('b')\n"
        "clear_output(wait=True)\n"
    )
    messages = await run(shared_kernel, code)

    shown = [m for m in messages if isinstance(m, kernel.Output)]
    assert shown[0].display_id == "d1"
    assert shown[0].output["data"] == {"text/plain": "'a'"}
    assert kernel.DisplayUpdate("d1", {"text/plain": "'b'"}, {}) in messages
    assert kernel.ClearOutput(wait=True) in messages


async def test_output_arrives_while_the_code_still_runs(shared_kernel: kernel.SharedKernel) -> None:
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)\n"
    loop = asyncio.get_running_loop()
    seen: list[tuple[float, kernel.KernelMessage]] = []
    async for batch in shared_kernel.execute(code):
        seen.extend((loop.time(), message) for message in batch)

    first_output = next(t for t, m in seen if isinstance(m, kernel.Output))
    finished = seen[-1][0]
    assert finished - first_output > 0.4  # streamed, not delivered at the end


async def test_interrupt_stops_an_endless_loop(shared_kernel: kernel.SharedKernel) -> None:
    so_far: list[kernel.KernelMessage] = []
    running = asyncio.create_task(
        run(shared_kernel, "print('go', flush=True)\nwhile True: pass", so_far)
    )
    await wait_for(lambda: printed(so_far, "go\n"), timeout_s=10)
    await shared_kernel.interrupt()
    messages = await asyncio.wait_for(running, 20)

    outputs = [m.output for m in messages if isinstance(m, kernel.Output)]
    assert outputs[-1]["ename"] == "KeyboardInterrupt"
    assert isinstance(messages[-1], kernel.Finished)
    assert messages[-1].status == "error"
    assert (await run(shared_kernel, "'alive'"))[-1] == kernel.Finished("ok", 2)


async def test_restart_forgets_state_and_aborts_what_was_running(
    shared_kernel: kernel.SharedKernel,
) -> None:
    await run(shared_kernel, "x = 42")
    so_far: list[kernel.KernelMessage] = []
    sleeping = asyncio.create_task(
        run(shared_kernel, "print('go', flush=True)\nimport time; time.sleep(60)", so_far)
    )
    await wait_for(lambda: printed(so_far, "go\n"), timeout_s=10)

    await shared_kernel.restart()

    assert (await asyncio.wait_for(sleeping, 10))[-1] == kernel.Finished("aborted", None)
    messages = await run(shared_kernel, "x")
    assert [m.output["ename"] for m in messages if isinstance(m, kernel.Output)] == ["NameError"]
    assert messages[-1] == kernel.Finished("error", 1)  # a fresh kernel counts from 1


async def test_a_kernel_that_dies_fails_its_request_and_refuses_more(
    shared_kernel: kernel.SharedKernel,
) -> None:
    with pytest.raises(errors.KernelDied):
        await asyncio.wait_for(run(shared_kernel, "import os; os._exit(1)"), 20)

    assert shared_kernel.state == "dead"
    with pytest.raises(errors.KernelDied, match="restart"):
        await run(shared_kernel, "1")
    await shared_kernel.restart()
    assert (await run(shared_kernel, "1"))[-1] == kernel.Finished("ok", 1)


async def test_a_shut_down_kernel_refuses_code() -> None:
    k = kernel.SharedKernel()
    with pytest.raises(errors.KernelNotRunning, match="new"):
        await run(k, "1")
    await k.start()
    await k.shutdown()
    await k.shutdown()  # twice is fine

    with pytest.raises(errors.KernelNotRunning, match="shut_down"):
        await run(k, "1")
    with pytest.raises(errors.KernelNotRunning):
        await k.restart()


async def test_an_unknown_kernel_fails_to_start_with_its_name() -> None:
    k = kernel.SharedKernel("no-such-kernel")
    with pytest.raises(errors.KernelStartFailed, match="no-such-kernel"):
        await k.start()
    assert k.state == "dead"


async def test_a_start_cancelled_midway_leaves_no_kernel_behind() -> None:
    k = kernel.SharedKernel()
    starting = asyncio.create_task(k.start())

    def process_started() -> bool:
        manager = k._manager
        return manager is not None and manager.has_kernel

    await wait_for(process_started, timeout_s=30)
    assert k._manager is not None
    pid = k._manager.provisioner.pid  # type: ignore[union-attr]
    runtime = Path(k._runtime.name)  # type: ignore[union-attr]
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert k.state == "dead"
    assert not runtime.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_the_kernel_sees_none_of_the_hubs_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOHUB_DATABASE_URL", "postgresql://hub:pw@db/hub")
    monkeypatch.setenv("PGPASSWORD", "pw")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    async with kernel.SharedKernel(env={"SESSION_NAME": "demo"}) as k:
        messages = await run(
            k, "import os, json; print(json.dumps(sorted(os.environ)), os.getcwd(), sep='\\n')"
        )
        runtime = Path(k._runtime.name)  # type: ignore[union-attr]

    printed_text = "".join(
        m.output["text"] for m in messages if isinstance(m, kernel.Output)
    ).splitlines()
    names = set(json.loads(printed_text[0]))
    assert "CHRONOHUB_DATABASE_URL" not in names
    assert "PGPASSWORD" not in names
    assert {"PATH", "LC_ALL", "SESSION_NAME"} <= names
    assert Path(printed_text[1]) == runtime / "work"
