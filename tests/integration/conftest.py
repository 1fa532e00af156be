"""Fixtures shared by the integration tests (each module declares its own markers)."""

from __future__ import annotations

# The running hub app fixture, shared by the API tests.
from tests.integration.api_fixtures import api  # noqa: F401
from tests.integration.spawn_fixtures import spawn_hub  # noqa: F401
