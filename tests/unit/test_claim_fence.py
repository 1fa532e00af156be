"""What a hub process concludes when a step of its spawn or stop meets the fence
(hub/servers/hub_processes.py ``judge``): only its own claim on the same spawn lets it record;
a server another process adopted, or a newer spawn's, is never taken for its own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hub.servers import hub_processes

ME, OTHER = uuid.uuid4(), uuid.uuid4()


def row(process_id: uuid.UUID, token_id: str, state: str) -> dict[str, Any]:
    return {"process_id": process_id, "token_id": token_id, "state": state, "pid": 123}


@pytest.mark.parametrize("state", ["spawning", "started", "ready", "stopping"])
def test_its_own_claim_on_its_own_spawn_lets_it_record(state: str) -> None:
    assert hub_processes.judge(row(ME, "t1", state), ME, "t1") == "ours"


@pytest.mark.parametrize("state", ["started", "ready"])
def test_its_spawn_run_by_another_process_is_adopted(state: str) -> None:
    assert hub_processes.judge(row(OTHER, "t1", state), ME, "t1") == "adopted"


@pytest.mark.parametrize("state", ["failed", "stopped", "stopping", "spawning"])
def test_its_spawn_ended_or_ending_elsewhere_is_ended(state: str) -> None:
    assert hub_processes.judge(row(OTHER, "t1", state), ME, "t1") == "ended"


@pytest.mark.parametrize("claimant", [ME, OTHER])
def test_a_newer_spawn_supersedes_it_even_under_its_own_claim(claimant: uuid.UUID) -> None:
    # A spawn started again (by this process or another) has a token of its own: the old
    # spawn's steps must not be recorded against it, nor its server taken for the old one's.
    assert hub_processes.judge(row(claimant, "t2", "ready"), ME, "t1") == "superseded"


def test_a_server_gone_from_the_log_supersedes_it() -> None:
    assert hub_processes.judge(None, ME, "t1") == "superseded"
