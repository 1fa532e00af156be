"""Two chronohub installs' fan-out side by side, burst by burst, beside the Node server.

``make bench-collab`` measures one server after the other: on a shared machine the load moves
between them, and one run of each compares little. This runs both chronohub installs (each its
own virtual environment, e.g. a checkout of an older commit with its own ``make
.venv/.installed-bench``) and the Node reference server at once, each with its own embedded
PostgreSQL, and alternates the same fan-out burst between them (``bench/collab.py``'s driver
and figures), so each round's figures share the machine's load:

    .venv/bin/python -m bench.collab_paired --other ../old/.venv/bin --rounds 12

Prints a JSON line per burst on stderr and, on stdout, one JSON line: per server the median
deliveries/s and CPU per delivery, and the median over rounds of this install's deliveries/s
over the other's (``this_vs_other``), with how many rounds this one was the faster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import collab

LABELS = ("this", "other", "node")


async def burst(server: collab.Server, clients: int, updates: int) -> dict[str, Any]:
    """One fan-out burst into a new room: its figures, as ``bench.collab`` reports them."""
    room = f"fanout-{clients}-{secrets.token_hex(3)}"
    load = os.getloadavg()[0]
    result = await collab.drive("fanout", server.room_url(room), clients, updates, server=server)
    seconds, delivered = result["seconds"], result["delivered"]
    cpu, database = result.get("cpu_s"), result.get("database_cpu_s")
    return {
        "load_average_1m": round(load, 2),
        "deliveries_per_s": round(result["deliveries_per_s"]),
        "complete": result["complete"],
        "cpu_us_per_delivery": round(1e6 * cpu / delivered, 3) if cpu and delivered else None,
        "server_busy": round(cpu / seconds, 2) if cpu is not None else None,
        "database_busy": round(database / seconds, 2) if database is not None else None,
        "driver_busy": round(result["driver_cpu_s"] / seconds, 2),
    }


def median(values: list[Any]) -> Any:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


async def main(args: argparse.Namespace) -> dict[str, Any]:
    bins = {"this": Path(sys.executable).parent, "other": Path(args.other)}
    if not (bins["other"] / "chronohub").exists():
        raise SystemExit(f"{bins['other']}/chronohub is missing: --other names a venv's bin/")
    servers: dict[str, collab.Server] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="chronohub-bench-paired-") as tmp:
        try:
            for label in LABELS:
                workdir = Path(tmp) / label
                workdir.mkdir()
                if label == "node":
                    servers[label] = collab.start_node(workdir)
                else:
                    own_bin = collab.BIN_DIR
                    collab.BIN_DIR = bins[label]  # the chronohub command start_chronohub runs
                    try:
                        servers[label] = collab.start_chronohub(workdir)
                    finally:
                        collab.BIN_DIR = own_bin
            for server in servers.values():
                await collab.wait_ready(server)
                await collab.drive("rooms", server.room_base, 1, server.query)  # first room in
            for round_ in range(args.rounds):
                # this, other, node; then the other way round, so neither is always first
                order = LABELS if round_ % 2 == 0 else LABELS[::-1]
                for label in order:
                    row = {"round": round_, "server": label}
                    row |= await burst(servers[label], args.clients, args.updates)
                    rows.append(row)
                    collab.log(json.dumps(row))
        finally:
            for server in servers.values():
                collab.stop(server)
    by = {(row["round"], row["server"]): row for row in rows}
    # a round where the other delivered nothing has no ratio (it is in the rows all the same)
    paired = [
        by[(r, "this")]["deliveries_per_s"] / by[(r, "other")]["deliveries_per_s"]
        for r in range(args.rounds)
        if by[(r, "other")]["deliveries_per_s"]
    ]
    return {
        "benchmark": "collab_paired",
        "clients": args.clients,
        "updates": args.updates,
        "rounds": args.rounds,
        "this_vs_other": median(paired),
        "this_faster_rounds": sum(ratio > 1 for ratio in paired),
        "servers": {
            label: {
                figure: median([row[figure] for row in rows if row["server"] == label])
                for figure in (
                    "deliveries_per_s",
                    "cpu_us_per_delivery",
                    "server_busy",
                    "database_busy",
                    "driver_busy",
                )
            }
            for label in LABELS
        },
        "load_average_1m": [
            min(row["load_average_1m"] for row in rows),
            max(row["load_average_1m"] for row in rows),
        ],
        "other": str(bins["other"]),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="the other install's venv bin/ directory")
    parser.add_argument("--rounds", type=int, default=12, help="bursts per server")
    parser.add_argument("--clients", type=int, default=64, help="clients per room (1 writer)")
    parser.add_argument("--updates", type=int, default=2000, help="updates per burst")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args))), flush=True)


if __name__ == "__main__":
    cli()
