"""Two hubs on one database, each with its own rooms and sessions (issue 20): a collaboration
session's REST calls made to the hub that does not run it are forwarded to the one that
does, which answers them with the caller's own credentials. A real ipykernel."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from collab import execution
from collab import kernel as kernels
from events import store
from events.catalog.collab_sessions import stream_id
from tests import ports
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
                f"http://127.0.0.1:{ports.free_port()}",
            )
        status, reply = await b.api.call("GET", f"{SESSIONS}/{created['id']}", alice)
        assert status == 404, reply
        assert reply["message"] == f"No such session: {created['id']}"
        assert created["id"] not in await owners(event_store)


def _outputs(doc: Any) -> list[dict[str, Any]]:
    from tests.integration.test_collab_sessions_api import cell

    outputs: list[dict[str, Any]] = cell(doc, "c0").get("outputs", [])
    return outputs


async def orphan(event_store: store.EventStore, row: Any, origin: str, lease_s: float) -> None:
    """Record ``row`` (a stopped hub's session, forgotten at its stop) again as a killed
    process would have left it: owned by ``origin``, its lease running out in ``lease_s``."""
    async with event_store.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO collab_session_owners (session_id, room, origin, incarnation,"
            " lease_until, kernel_name, created_by_kind, created_by, created_by_id, room_owner)"
            " VALUES ($1, $2, $3, 'a dead one', clock_timestamp() + make_interval(secs => $4),"
            " $5, $6, $7, $8, $9)",
            row["session_id"], row["room"], origin, lease_s, row["kernel_name"],
            row["created_by_kind"], row["created_by"], row["created_by_id"], row["room_owner"],
        )  # fmt: skip


async def stopped_hubs_session(
    event_store: store.EventStore, db_url: str, user: str, **body: Any
) -> tuple[dict[str, Any], Any]:
    """A session ``user`` created on a hub that has stopped since, and its owner row then."""
    async with serving(event_store, db_url, collab_session_lease_s=1.5) as a:
        token = await a.token(user)
        status, created = await a.api.call("POST", SESSIONS, token, json=body)
        assert status == 201, created
        async with event_store.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM collab_session_owners WHERE session_id = $1",
                uuid.UUID(created["id"]),
            )
    assert row is not None
    return created, row


@pytest.mark.parametrize("restarted", [False, True], ids=["another-address", "same-address"])
async def test_a_dead_owners_session_answers_503_until_its_lease_expires_then_is_taken_over(
    event_store: store.EventStore, db_url: str, restarted: bool
) -> None:
    """``restarted``: the dead owner was an earlier start of the process asked (the same
    address): it answers 503 too, not 404 for a session it does not run, then takes over."""
    async with serving(event_store, db_url, collab_session_lease_s=1.5) as b:
        alice = await b.token("alice")
        async with serving(event_store, db_url, collab_session_lease_s=1.5) as a:
            status, created = await a.api.call("POST", SESSIONS, alice, json={"notebook": nb("1")})
            assert status == 201, created
            async with event_store.pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT * FROM collab_session_owners WHERE session_id = $1",
                    uuid.UUID(created["id"]),
                )
        # A stopped and forgot its session; a killed process would not have: its row is
        # left as it was, its lease running out, naming an address where nothing answers.
        assert row is not None
        assert row["created_by"] == "alice"
        assert row["kernel_name"] == "python3"
        if restarted:
            dead = str(b.api.client.make_url("")).rstrip("/")
        else:
            dead = f"http://127.0.0.1:{ports.free_port()}"
        await orphan(event_store, row, dead, 1.5)
        one = f"{SESSIONS}/{created['id']}"
        response = await b.api.client.get(
            "/hub/api" + one, headers={"Authorization": f"token {alice}"}
        )
        assert response.status == 503, await response.text()
        assert 1 <= int(response.headers["Retry-After"]) <= 2
        assert "takes it over in" in (await response.json())["message"]

        async def answered() -> bool:
            return (await b.api.call("GET", one, alice))[0] == 200

        await wait_for(answered, timeout_s=60, every_s=0.1)
        assert b.sessions is not None
        assert b.sessions.get(uuid.UUID(created["id"])) is not None  # B runs it now
        assert (await owners(event_store))[created["id"]] == str(b.api.client.make_url("")).rstrip(
            "/"
        )


async def test_a_process_that_lost_its_lease_stops_its_copy_of_the_session(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url, collab_session_lease_s=1.5) as a:
        alice = await a.token("alice")
        status, created = await a.api.call("POST", SESSIONS, alice, json={"notebook": nb("1")})
        assert status == 201, created
        assert a.sessions is not None
        session_id = uuid.UUID(created["id"])
        # Renewed while it runs here…
        async with event_store.pool.acquire() as conn:
            first = await conn.fetchval(
                "SELECT lease_until FROM collab_session_owners WHERE session_id = $1", session_id
            )

        async def renewed() -> bool:
            async with event_store.pool.acquire() as conn:
                now = await conn.fetchval(
                    "SELECT lease_until FROM collab_session_owners WHERE session_id = $1",
                    session_id,
                )
            return bool(now > first)

        await wait_for(renewed, timeout_s=10, every_s=0.05)
        # …until another process took it over (this one stalled past its lease): it stops.
        async with event_store.pool.acquire() as conn:
            await conn.execute(
                "UPDATE collab_session_owners SET origin = 'http://127.0.0.1:9' WHERE"
                " session_id = $1",
                session_id,
            )
        await wait_for(lambda: a.sessions.get(session_id) is None, timeout_s=10)
        assert (await owners(event_store))[created["id"]] == "http://127.0.0.1:9"
        # It stopped its kernel, and recorded nothing of an end: the session runs on there.
        logged = [e.type for e in await event_store.read_stream(stream_id(session_id))]
        assert "collab_session.kernel_started" in logged
        assert "collab_session.kernel_shut_down" not in logged, logged
        assert "collab_session.ended" not in logged, logged


async def test_a_copy_that_lost_its_lease_does_not_forget_the_new_owners_row(
    event_store: store.EventStore, db_url: str
) -> None:
    # A lease long enough that this copy does not notice the takeover before it is deleted.
    async with serving(event_store, db_url, collab_session_lease_s=60) as a:
        alice = await a.token("alice")
        status, created = await a.api.call("POST", SESSIONS, alice, json={"notebook": nb("1")})
        assert status == 201, created
        async with event_store.pool.acquire() as conn:
            await conn.execute(
                "UPDATE collab_session_owners SET origin = 'http://127.0.0.1:9',"
                " incarnation = 'the new owner' WHERE session_id = $1",
                uuid.UUID(created["id"]),
            )
        status, _ = await a.api.call("DELETE", f"{SESSIONS}/{created['id']}", alice)
        assert status == 204
        assert (await owners(event_store))[created["id"]] == "http://127.0.0.1:9"


class Accounts:
    """A kernel account chooser that remembers whose accounts it was asked for (and runs
    every kernel as the hub's own, as the test hubs do)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, creator: execution.Participant) -> kernels.RunAs | None:
        self.asked.append((creator.kind, creator.name))
        return None


@pytest.mark.parametrize("change", ["deleted", "renamed"])
async def test_a_creator_gone_or_no_longer_a_writer_ends_the_session_instead(
    event_store: store.EventStore, db_url: str, change: str
) -> None:
    """``deleted``: the creator is gone. ``renamed``: carol's room is carol's by name (rooms
    keep their owner's name), so the user renamed may no longer write to it."""
    created, row = await stopped_hubs_session(event_store, db_url, "carol", notebook=nb("1"))
    async with serving(event_store, db_url, collab_session_lease_s=1.5) as b:
        assert b.sessions is not None
        accounts = Accounts()
        b.sessions.kernel_account = accounts
        if change == "deleted":
            status, reply = await b.api.call("DELETE", "/users/carol")
            assert status == 204, reply
        else:
            status, reply = await b.api.call("PATCH", "/users/carol", json={"name": "carole"})
            assert status == 200, reply
        await orphan(event_store, row, f"http://127.0.0.1:{ports.free_port()}", 0)

        async def forgotten() -> bool:
            return created["id"] not in await owners(event_store)

        await wait_for(forgotten, timeout_s=30, every_s=0.1)  # b's sweep found it
        assert b.sessions.get(uuid.UUID(created["id"])) is None
        assert accounts.asked == []  # no kernel, no account for anyone
        logged = await event_store.read_stream(stream_id(uuid.UUID(created["id"])))
        ends = [e.data.reason for e in logged if e.type == "collab_session.ended"]
        # the stopped hub's own end, then why nobody took it over
        reason = "creator_gone" if change == "deleted" else "creator_cannot_write"
        assert ends == ["shutdown", reason], ends
        assert sum(e.type == "collab_session.created" for e in logged) == 1


async def test_a_renamed_creators_session_runs_as_their_account_under_the_new_name(
    event_store: store.EventStore, db_url: str
) -> None:
    # editor may write to room "shared" by a role of theirs (by user id), not as its owner
    created, row = await stopped_hubs_session(
        event_store, db_url, "editor", room="shared", notebook=nb("1")
    )
    assert row["created_by"] == "editor"
    async with serving(event_store, db_url, collab_session_lease_s=1.5) as b:
        assert b.sessions is not None
        accounts = Accounts()
        b.sessions.kernel_account = accounts
        status, reply = await b.api.call("PATCH", "/users/editor", json={"name": "redactor"})
        assert status == 200, reply
        status, reply = await b.api.call("POST", "/users/editor")  # someone else, that name
        assert status == 201, reply
        await orphan(event_store, row, f"http://127.0.0.1:{ports.free_port()}", 0)
        session_id = uuid.UUID(created["id"])
        await wait_for(lambda: b.sessions.get(session_id) is not None, timeout_s=60)
        assert accounts.asked == [("user", "redactor")]
        logged = await event_store.read_stream(stream_id(session_id))
        made = [e.data for e in logged if e.type == "collab_session.created"]
        assert [(m.created_by, m.taken_over) for m in made] == [
            ("editor", False),
            ("redactor", True),
        ]
