"""Two hubs on one database, each with its own rooms and sessions (issue 20): a collaboration
session's REST calls made to the hub that does not run it are forwarded to the one that
does, which answers them with the caller's own credentials. A real ipykernel."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from events import store
from hub import startup
from tests.helpers import wait_for
from tests.integration.collab_fixtures import serving
from tests.integration.test_collab_sessions_api import SESSIONS, nb, stream_text

pytestmark = [pytest.mark.integration, pytest.mark.collab]


async def owners(event_store: store.EventStore) -> dict[str, str]:
    async with event_store.pool.acquire() as conn:
        rows = await conn.fetch("SELECT session_id, origin FROM collab_session_owners")
    return {str(row["session_id"]): row["origin"] for row in rows}


async def test_session_calls_on_the_other_hub_reach_the_session(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url) as a, serving(event_store, db_url) as b:
        alice = await a.token("alice")
        mallory = await a.token("mallory")
        status, created = await a.api.call(
            "POST",
            SESSIONS,
            alice,
            json={"notebook": nb("import time; print('asleep', flush=True); time.sleep(60)")},
        )
        assert status == 201, created
        one = f"{SESSIONS}/{created['id']}"
        assert (await owners(event_store))[created["id"]] == a.api.client.make_url(
            ""
        ).human_repr().rstrip("/")
        assert b.sessions is not None
        assert b.sessions.get(uuid.UUID(created["id"])) is None  # B does not run it

        status, shown = await b.api.call("GET", one, alice)
        assert status == 200, shown
        assert shown["id"] == created["id"]
        # The owner authenticates the caller: someone without access is refused there.
        status, refused = await b.api.call("GET", one, mallory)
        assert status == 404, refused
        status, _ = await b.api.call("GET", f"{SESSIONS}/{uuid.uuid4()}", alice)
        assert status == 404  # no such session anywhere

        status, asked = await b.api.call("POST", f"{one}/execute", alice, json={"cell_id": "c0"})
        assert status == 202, asked
        assert a.sessions is not None
        bound = a.sessions.get(uuid.UUID(created["id"]))
        assert bound is not None
        await wait_for(lambda: "asleep" in stream_text(bound.session.doc, "c0"), timeout_s=30)
        status, interrupted = await b.api.call("POST", f"{one}/interrupt", alice)
        assert status == 200, interrupted
        await wait_for(
            lambda: any(o.get("ename") == "KeyboardInterrupt" for o in _outputs(bound.session.doc)),
            timeout_s=30,
        )
        status, restarted = await b.api.call("POST", f"{one}/restart", alice)
        assert status == 200, restarted
        assert restarted == {"aborted_requests": 0}
        status, bad = await b.api.call("POST", f"{one}/execute", alice, json={"cell_id": "nope"})
        assert status == 404, bad  # the owner's own refusal, relayed
        assert "nope" in bad["message"]

        status, _ = await b.api.call("DELETE", one, alice)
        assert status == 204
        assert a.sessions.get(uuid.UUID(created["id"])) is None
        assert created["id"] not in await owners(event_store)
        assert (await b.api.call("GET", one, alice))[0] == 404
        assert (await a.api.call("GET", one, alice))[0] == 404


async def test_a_session_whose_hub_is_gone_is_not_found(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url) as b:
        alice = await b.token("alice")
        async with serving(event_store, db_url) as a:
            status, created = await a.api.call("POST", SESSIONS, alice, json={"notebook": nb("1")})
            assert status == 201, created
        # A stopped and forgot its session; a killed process would not have: its row is
        # left, naming an address where nothing answers now.
        assert created["id"] not in await owners(event_store)
        async with event_store.pool.acquire() as conn:
            await conn.execute(
                "INSERT INTO collab_session_owners (session_id, room, origin) VALUES ($1, $2, $3)",
                uuid.UUID(created["id"]),
                created["room"],
                f"http://127.0.0.1:{startup.free_port('127.0.0.1')}",
            )
        status, reply = await b.api.call("GET", f"{SESSIONS}/{created['id']}", alice)
        assert status == 404, reply
        assert reply["message"] == f"No such session: {created['id']}"
        assert created["id"] not in await owners(event_store)


def _outputs(doc: Any) -> list[dict[str, Any]]:
    from tests.integration.test_collab_sessions_api import cell

    outputs: list[dict[str, Any]] = cell(doc, "c0").get("outputs", [])
    return outputs
