"""Every test in this folder needs the test run's PostgreSQL."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


# The running hub app fixture, shared by the API tests.
from tests.integration.api_fixtures import api  # noqa: E402, F401
from tests.integration.projects_fixtures import projects_hub  # noqa: E402, F401
from tests.integration.spawn_fixtures import spawn_hub  # noqa: E402, F401
