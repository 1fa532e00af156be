"""What a hostile user tries from their own code: run it as ``attack.py TARGETS.json OUT.json``.

Standard library only: it runs in a user's server, a terminal, a session kernel, wherever that
user's code runs. Each attempt is recorded as ``"refused: <why>"`` or ``"OPEN: <what it got>"``
in OUT.json (and printed), with who it ran as. The tests assert that every attempt is refused.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sys
from collections.abc import Callable
from pathlib import Path


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return f"read {len(handle.read())} bytes of {path}"


def _list(path: str) -> str:
    return f"listed {len(os.listdir(path))} entries of {path}"


def _unix(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect(path)
        return f"connected to {path}"


def _tcp(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=3):
        return f"connected to {host}:{port}"


def _signal(pid: int) -> str:
    os.kill(pid, 0)  # signal 0: the permission check of a real signal, nothing delivered
    return f"may signal {pid}"


def attempt(action: Callable[[], str]) -> str:
    try:
        return "OPEN: " + action()
    except OSError as exc:
        return f"refused: {type(exc).__name__}: {exc.strerror or exc}"


def main() -> None:
    targets = json.loads(Path(sys.argv[1]).read_text())
    results: dict[str, str] = {}
    for path in targets.get("read", []):
        results[f"read {path}"] = attempt(lambda p=path: _read(p))
    for path in targets.get("list", []):
        results[f"list {path}"] = attempt(lambda p=path: _list(p))
    for path in targets.get("unix", []):
        results[f"connect {path}"] = attempt(lambda p=path: _unix(p))
    for host, port in targets.get("tcp", []):
        results[f"connect {host}:{port}"] = attempt(lambda h=host, p=port: _tcp(h, p))
    for pid in targets.get("signal", []):
        results[f"signal {pid}"] = attempt(lambda p=pid: _signal(p))
    report = {
        "account": pwd.getpwuid(os.getuid()).pw_name,
        "uid": os.getuid(),
        "groups": sorted(os.getgroups()),
        "env": sorted(os.environ),
        "results": results,
    }
    Path(sys.argv[2]).write_text(json.dumps(report))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
