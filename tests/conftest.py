"""Test setup: one real PostgreSQL per test run, a migrated template database, a clone per test.

Where PostgreSQL comes from, in order:
* ``CHRONOHUB_TEST_DATABASE_URL``: an existing server (the URL's database is used only to
  create and drop the test databases);
* ``CHRONOHUB_TEST_POSTGRES=docker``: testcontainers' PostgreSQL, where a Docker engine runs;
* otherwise the hub's own embedded cluster (``hub.embedded_db``) in a temporary directory,
  with durability off, since a test database is thrown away anyway.

Under pytest-xdist (``-n``, as ``make test`` runs the suite) each worker is a test run of its
own: its own embedded cluster, or its own template database on a shared server, and its own
ports (``tests/ports.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

import events.catalog.users  # noqa: F401 - registers the user events
from events import notify, store
from hub import database, embedded_db
from projections import base, catalog
from tests import ports

# Fixtures of the integration tests with names of their own, shared by every module that asks
# for them (``api``, ``spawn_hub``, ``collab_hub``, ``chp_command``). Fixtures whose names
# other modules also use (``hub``, ``alice``) are imported by name where they are used.
pytest_plugins = [
    "tests.integration.api_fixtures",
    "tests.integration.chp_fixtures",
    "tests.integration.collab_fixtures",
    "tests.integration.projects_fixtures",
    "tests.integration.publish_fixtures",
    "tests.integration.spawn_fixtures",
    "tests.integration.nginx_hubs",
]

# Under pytest-xdist each worker is a test run of its own: its own embedded cluster, or, on a
# shared server (CHRONOHUB_TEST_DATABASE_URL, docker), a template database of its own.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEMPLATE = f"chronohub_template_{WORKER}" if WORKER else "chronohub_template"
_clone_numbers = itertools.count(1)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _embedded_server() -> Iterator[str]:
    # The hub's own embedded cluster: password authentication, a private socket.
    root = Path(tempfile.mkdtemp(prefix="chronohub-test-pg-"))
    server = embedded_db.EmbeddedPostgres(root)
    try:
        yield server.start()
    finally:
        server.remove()
        shutil.rmtree(root, ignore_errors=True)


def _docker_server() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:18", driver=None) as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5432)
        yield (
            f"postgresql://{container.username}:{container.password}@{host}:{port}"
            f"/{container.dbname}"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that uses the test run's PostgreSQL without declaring ``integration``:
    ``-m "not integration"`` must mean "no database", and the marker is declared by each
    module (``pytestmark``), not inferred from where the file lies."""
    undeclared = sorted(
        {
            item.nodeid.split("::")[0]
            for item in items
            if "pg_server" in getattr(item, "fixturenames", ())
            and item.get_closest_marker("integration") is None
        }
    )
    if undeclared:
        raise pytest.UsageError(
            "these tests use PostgreSQL but are not marked integration (add"
            f" `pytestmark = pytest.mark.integration`): {', '.join(undeclared)}"
        )


@pytest.fixture(scope="session", autouse=True)
def _worker_port_range() -> Iterator[None]:
    """Hubs started in this process hand out this worker's ports (``tests.ports``), outside
    the kernel's ephemeral range, where the other worker's picks and connections cannot take
    them; hubs run as processes get them from ``tests.helpers.hub_process_env``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CHRONOHUB_PORT_RANGE", ports.HUB_RANGE)
        yield


@pytest.fixture(scope="session", autouse=True)
def _checkout_reachable_by_users() -> None:
    """As root, let other accounts pass through (``o+x``, not list) the directories above this
    checkout: users' servers and kernels run its ``.venv`` as their own accounts, as they
    run a deployment's environment, and a test run may live in a fresh directory that only
    root may enter (``mktemp -d``). A root hub would refuse to start otherwise, naming it."""
    if os.geteuid() != 0:
        return
    venv = Path(__file__).resolve().parent.parent / ".venv"
    for step in [*reversed(venv.parents), venv]:
        mode = step.stat().st_mode
        if not mode & stat.S_IXOTH:
            print(f"letting users' accounts pass through {step} (chmod o+x)", file=sys.stderr)
            step.chmod(mode | stat.S_IXOTH)


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A temporary directory that other accounts may pass through (not list), as a root
    hub's database account and users' accounts must to reach what lies inside; pytest's own
    ``tmp_path`` lies under a directory only its owner can enter."""
    path = Path(tempfile.mkdtemp(prefix="chronohub-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of the test run's PostgreSQL server (its maintenance database)."""
    if url := os.environ.get("CHRONOHUB_TEST_DATABASE_URL"):
        yield url
    elif os.environ.get("CHRONOHUB_TEST_POSTGRES") == "docker":
        yield from _docker_server()
    else:
        yield from _embedded_server()


async def _admin(pg_server: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(pg_server)
    return conn


@pytest.fixture(scope="session")
async def template_url(pg_server: str) -> AsyncIterator[str]:
    """A database migrated once, that every test database is cloned from."""
    admin = await _admin(pg_server)
    try:
        if not os.environ.get("CHRONOHUB_TEST_DATABASE_URL"):
            # A private throwaway server: trade durability for speed.
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                await admin.execute(f"ALTER SYSTEM SET {setting} = off")
            await admin.execute("SELECT pg_reload_conf()")
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        url = with_database(pg_server, TEMPLATE)
        await database.migrate(url)
        yield url
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    finally:
        await admin.close()


async def create_database(pg_server: str, template: str | None) -> str:
    """A new empty (or cloned) database on the test server; returns its URL."""
    name = f"chronohub_test_{os.getpid()}_{next(_clone_numbers)}"
    admin = await _admin(pg_server)
    try:
        clause = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        await admin.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await admin.close()
    return with_database(pg_server, name)


async def drop_database(pg_server: str, url: str) -> None:
    """Drop a database made by ``create_database``."""
    admin = await _admin(pg_server)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {urlsplit(url).path[1:]} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def db_url(pg_server: str, template_url: str) -> AsyncIterator[str]:
    """A migrated database of the test's own, cloned from the template."""
    url = await create_database(pg_server, TEMPLATE)
    yield url
    await drop_database(pg_server, url)


@pytest.fixture
async def empty_db_url(pg_server: str, template_url: str) -> AsyncIterator[str]:
    """A database with no schema at all, for migration tests."""
    url = await create_database(pg_server, None)
    yield url
    await drop_database(pg_server, url)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A connection pool on the test's database, with the hub's session settings."""
    created = await database.create_pool(db_url, min_size=1, max_size=12)
    yield created
    await created.close()


@pytest.fixture
async def notifier(db_url: str) -> AsyncIterator[notify.Notifier]:
    """A running notifier (NOTIFY sender and LISTEN connection) on the test's database."""
    async with notify.Notifier(db_url) as running:
        await asyncio.wait_for(running.listening.wait(), 10)
        yield running


@pytest.fixture
def event_store(pool: asyncpg.Pool[Any]) -> store.EventStore:
    """The store as the hub builds it: inline projections on, in-process wake-ups."""
    return store.EventStore(pool, inline=base.Inline(catalog.ALL))
