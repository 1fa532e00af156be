"""The hub survives its database stalling, dying, slowing down and filling up, and its own
process being killed (``db_faults`` has the cases, ``fault_hub`` the harness):
every request answers 2xx or 503 with ``Retry-After`` within the hub's bound, nothing
acknowledged is lost, the audit stream resumes without loss or duplicate, and the hub answers
normally again within 2 s of the database's return (or brings its embedded database back)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration import db_faults, fault_hub

pytestmark = pytest.mark.integration


@pytest.fixture
async def hub(reachable_tmp: Path) -> AsyncIterator[fault_hub.FaultHub]:
    async with fault_hub.fault_hub(reachable_tmp) as running:
        yield running


def _assert_survived(result: dict[str, Any]) -> None:
    assert result["acked_writes"] > 0, json.dumps(result)
    assert result["acked_lost"] == 0, json.dumps(result)
    assert result["projections_verify"], json.dumps(result)
    assert result["bad_answers"] == 0, json.dumps(result)
    assert result["slowest_s"] <= fault_hub.BOUND_S, json.dumps(result)


async def test_a_stalled_database_answers_503_within_the_bound_and_recovers(
    hub: fault_hub.FaultHub,
) -> None:
    result = await db_faults.stall(hub, seconds=8.0)
    _assert_survived(result)
    assert result["answered_503"] > 0, json.dumps(result)
    assert result["recovery_s"] <= 2.0, json.dumps(result)
    assert (result["stream_lost"], result["stream_duplicates"]) == (0, 0), json.dumps(result)
    assert result["webhook_lost"] == 0, json.dumps(result)
    assert "503:unavailable" in result["health_during"], json.dumps(result)
    # the outage is logged once, and its end (once no request has failed for a while)
    await wait_for(lambda: "the database answers again" in hub.log(), timeout_s=15)
    assert hub.log().count("the database cannot serve") == 1, hub.log()


async def test_a_killed_postmaster_is_restarted_and_nothing_acknowledged_is_lost(
    hub: fault_hub.FaultHub,
) -> None:
    result = await db_faults.postmaster_kill(hub)
    _assert_survived(result)
    assert result["answered_503"] > 0, json.dumps(result)
    assert (result["stream_lost"], result["stream_duplicates"]) == (0, 0), json.dumps(result)
    assert result["webhook_lost"] == 0, json.dumps(result)
    assert "503:unavailable" in result["health_during"], json.dumps(result)
    assert "restarted the embedded PostgreSQL" in hub.log()


async def test_a_slow_database_is_bounded_and_reported_degraded(hub: fault_hub.FaultHub) -> None:
    result = await db_faults.slow(hub, seconds=6.0)
    _assert_survived(result)
    assert result["answered_503"] > 0, json.dumps(result)
    assert result["recovery_s"] <= 2.0, json.dumps(result)
    # the pool did not pile up: its size, plus the hub's LISTEN connections
    assert result["peak_connections"] <= fault_hub.POOL_MAX + 3, json.dumps(result)
    assert 503 in result["health_during"], json.dumps(result)
    assert "slow" in result["degraded_as"], json.dumps(result)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the small disk (a tmpfs) needs root")
async def test_a_full_disk_refuses_writes_with_503_and_still_serves_reads(
    hub: fault_hub.FaultHub,
) -> None:
    result = await db_faults.disk_full(hub)
    _assert_survived(result)
    assert result["refused_writes"] > 0, json.dumps(result)
    assert result["served_reads"] > 0, json.dumps(result)
    assert result["disk_full_logged"], json.dumps(result)
    assert result["recovery_s"] <= 2.0, json.dumps(result)


async def test_a_killed_hub_process_loses_no_acknowledged_write(hub: fault_hub.FaultHub) -> None:
    result = await db_faults.hub_kill(hub)
    _assert_survived(result)
    assert result["unanswered"] > 0, json.dumps(result)  # the kill came under load


@pytest.mark.interop
async def test_a_hub_killed_during_git_pushes_keeps_every_reported_push(
    hub: fault_hub.FaultHub,
) -> None:
    result = await db_faults.push_kill(hub)
    assert result["acked_writes"] >= 5, json.dumps(result)
    assert result["acked_lost"] == 0, json.dumps(result)
    assert result["refs_agree_with_events"], json.dumps(result)
    assert result["duplicate_push_events"] == 0, json.dumps(result)
    assert result["projections_verify"], json.dumps(result)


async def test_a_rooms_edits_during_a_stall_are_appended_once_it_is_back(
    hub: fault_hub.FaultHub,
) -> None:
    result = await db_faults.room_stall(hub, seconds=8.0)
    assert result["acked_lost"] == 0, json.dumps(result)
    assert result["closed_during_outage"] is None, json.dumps(result)
    assert result["text_after_restart"] == "before during after", json.dumps(result)
    assert result["recovery_s"] <= 2.0, json.dumps(result)
