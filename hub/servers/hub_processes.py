"""The live hub processes sharing one database, and which of them runs each server's spawn or
stop (issue 20: no process stops or fails another live process's work).

Each ``chronohub serve`` process holds a row in ``hub_processes`` with a lease that it renews
every third of ``process_lease_s`` (the pattern of the collab sessions' leases,
hub/api/collab_lease.py). A process that begins a spawn or a stop claims the server
(``server_claims``, in the transaction that records it). So:

- readoption at start, and the periodic look of hub/servers/watch_others.py, take up only the
  spawns and stops whose claimant is not live (it died, or stopped, or none was recorded): a
  spawn another live process runs right now is left to it, and ends ready;
- a process that dies leaves its half-done spawns claimed until its lease expires; then the
  first process to look claims them in its place and fails or stops them, as readoption does;
- at shutdown a process leaves the registry, and ``cleanup_servers`` stops servers only when
  no other process is live: stopping one process of N must not stop users' servers;
- a process that stalled (stopped, swapped out, cut from the database) past its lease may find
  its spawn or stop taken over when it wakes, and a spawn may be stopped through another
  process: each step a process records is fenced by its claim and the spawn's token
  (``fence``, in the step's transaction), so one that lost it records nothing more, and leaves
  alone a server another process adopted or a newer spawn's (``judge``).

The renewal is one task, named and owned (``events.tasks.TaskOwner``), cancelled on ``leave``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from events import errors, sql, tasks
from hub import errors as hub_errors
from hub import processes
from hub.servers import running

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub.servers", "hub_processes.sql")


Verdict = Literal["ours", "adopted", "ended", "superseded"]


class ClaimLost(hub_errors.HubError):
    """Another hub process took this server's spawn or stop over: this one stalled past its
    lease, or another stopped the server meanwhile. ``verdict`` (``judge``) says what became of
    the spawn this process ran, and ``state`` is the server's state in the log."""

    status = 409

    def __init__(self, live: running.Live, verdict: Verdict, state: str | None) -> None:
        super().__init__(
            f"another hub process took over the spawn or stop of {live.user}/{live.server_name}"
        )
        self.verdict = verdict
        self.state = state


def judge(row: Mapping[str, Any] | None, process_id: uuid.UUID, token_id: str | None) -> Verdict:
    """What became of the spawn that issued ``token_id``, from its server's claim and row
    (``server_fence``): still this process's (``ours``); run by another process that took it
    over (``adopted``: its process is the one this process started, which must be left alone);
    ended by another (``ended``: failed or stopped); or followed by a newer spawn, or the server
    gone (``superseded``: a server process found by name, a JupyterHub spawner's, is the newer
    one's)."""
    if row is None or row["token_id"] != token_id:
        return "superseded"
    if row["process_id"] == process_id:
        return "ours"
    return "adopted" if row["state"] in ("started", "ready") else "ended"


def machine() -> str:
    """This machine, boot and pid namespace: where a recorded pid means this process table's.
    The boot's id is in it because every host's first pid namespace has the same name, and two
    machines may share a host name (cloned images): without it, one would retire the other's
    live processes as gone."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "?"
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
    except OSError:
        boot_id = "?"
    return f"{socket.gethostname()} {boot_id} {namespace}"


class Registry:
    """This process's row among the live hub processes, and its claims on servers."""

    def __init__(self, pool: Any, lease_s: float) -> None:
        self.pool = pool
        self.lease_s = lease_s
        self.process_id = uuid.uuid4()
        self._tasks = tasks.TaskOwner("hub process lease", logger=log)

    async def join(self) -> None:
        """Record this process as live, and renew its lease every third of it from now on.
        Processes of this machine recorded live whose pid is gone (killed, say, and this one
        their restart) leave at once: their work is taken up without waiting for their lease."""
        with sql.translated():
            async with self.pool.acquire() as conn:
                await conn.execute(queries["processes_forget_stale"])
                rows = await conn.fetch(queries["processes_here"], machine())
                for row in rows:
                    if not processes.exists(row["pid"]):
                        log.info("hub process %s (pid %s) is gone", row["process_id"], row["pid"])
                        await conn.execute(queries["process_leave"], row["process_id"])
                # Under the lock that leaving takes: a process leaving at this moment sees this
                # one, and does not stop, as the last, the servers it is about to adopt.
                async with conn.transaction():
                    await conn.execute(queries["process_lock"])
                    await self._renew_on(conn)
        self._tasks.start(self._run(), "hub process lease")

    async def renew(self) -> None:
        """This process is live for one lease more."""
        with sql.translated():
            async with self.pool.acquire() as conn:
                await self._renew_on(conn)

    async def _renew_on(self, conn: sql.Connection) -> None:
        await conn.execute(
            queries["process_renew"], self.process_id, machine(), os.getpid(), self.lease_s
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except errors.DatabaseUnavailable as exc:
                # If this lasts past the lease, other processes take up this one's spawns.
                log.warning("could not renew this hub process's lease: %s", exc)
            except Exception:  # one failed round must not end the renewals (logged)
                log.exception("renewing this hub process's lease failed")

    async def leave(self) -> bool:
        """Stop renewing and leave the registry; true if no other process is live (this one
        was the last); false if the database cannot say."""
        await self._tasks.close()
        try:
            with sql.translated():
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute(queries["process_lock"])
                    await conn.execute(queries["process_leave"], self.process_id)
                    others: int = await conn.fetchval(queries["others_live"], self.process_id)
        except errors.DatabaseUnavailable as exc:
            # Stopping users' servers cannot be undone; leaving them running is undone by the
            # next process's readoption: with no answer, this process is not the last.
            log.warning(
                "could not tell whether other hub processes are live (%s): servers left running",
                exc,
            )
            return False
        if others:
            log.info("%d other hub process(es) live: their users' servers are left running", others)
        return not others

    # --- claims on servers ------------------------------------------------------------------

    async def claim(self, conn: sql.Connection, user_id: uuid.UUID, server_name: str) -> None:
        """This process runs the spawn or stop of this server now (in the caller's
        transaction, the one that records it)."""
        await conn.execute(queries["server_claim"], user_id, server_name, self.process_id)

    async def take_orphaned(self, conn: sql.Connection) -> set[tuple[uuid.UUID, str]]:
        """Claim the servers in a passing state whose claimant is not live; their keys."""
        rows = await conn.fetch(queries["take_orphaned"], self.process_id)
        return {(row["user_id"], row["server_name"]) for row in rows}

    async def fence(self, conn: sql.Connection, live: running.Live) -> None:
        """``ClaimLost`` unless this process still runs the spawn or stop of ``live`` (the spawn
        that issued its token): call it in the transaction that records the next step."""
        row = await conn.fetchrow(queries["server_fence"], live.user_id, live.server_name)
        verdict = judge(row, self.process_id, live.token_id)
        if verdict != "ours":
            raise ClaimLost(live, verdict, None if row is None else row["state"])
