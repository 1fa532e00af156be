"""Every query in the hub's ``.sql`` files prepares against the migrated schema, and no name is
defined in two of them (each subpackage keeps its queries beside the code that runs them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from events import sql

pytestmark = pytest.mark.integration

HUB = Path(__file__).resolve().parents[2] / "hub"
FILES = sorted(HUB.rglob("*.sql"))


def load(path: Path) -> sql.Queries:
    package = ".".join(path.parent.relative_to(HUB.parent).parts)
    return sql.Queries(package, path.name)


def test_no_query_name_is_in_two_files() -> None:
    seen: dict[str, str] = {}
    for path in FILES:
        for name in load(path).names():
            assert name not in seen, f"{name} in {seen[name]} and {path}"
            seen[name] = str(path)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(HUB.parent)))
async def test_every_query_prepares(pool: asyncpg.Pool[Any], path: Path) -> None:
    queries = load(path)
    async with pool.acquire() as conn:
        for name in queries.names():
            try:
                await conn.prepare(queries[name])
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{queries.source} {name}: {exc}")
