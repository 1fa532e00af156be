"""The real configurable-http-proxy that the CHP tests run (``tests/node/chp``, from npm)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHP = Path(__file__).resolve().parent.parent / "node" / "chp" / "node_modules" / ".bin"
CHP_COMMAND = CHP / "configurable-http-proxy"


@pytest.fixture
def chp_command() -> list[str]:
    """The command that starts configurable-http-proxy; the test fails if it is missing."""
    if not CHP_COMMAND.exists():
        pytest.fail(f"{CHP_COMMAND} is missing: `make test` installs it (npm, tests/node/chp)")
    return [str(CHP_COMMAND)]
