"""The one error middleware: typed errors of every package answer in JupyterHub's shape, and a
database that cannot serve answers 503, wherever its error was raised."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import asyncpg
import pytest
from aiohttp import test_utils, web

from collab import errors as collab_errors
from collab import session_errors
from events import errors as event_errors
from events import sql
from hub import database_watch, errors
from hub.servers import spawner
from hub.web import html, pagination


def _raising(error: Callable[[], Exception]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        raise error()

    app = web.Application(middlewares=[errors.middleware])
    app.router.add_get("/", handler)
    return app


async def _answer(error: Callable[[], Exception]) -> tuple[int, dict[str, object]]:
    async with test_utils.TestClient(test_utils.TestServer(_raising(error))) as client:
        response = await client.get("/")
        assert response.headers["X-JupyterHub-Version"]
        return response.status, await response.json()


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (lambda: spawner.PolicyError("Named servers are not enabled."), 400, None),
        (lambda: spawner.PolicyError("running; stop it first", status=409), 409, None),
        (lambda: spawner.SystemFailure("it exited"), 500, "Spawn failed: it exited"),
        (lambda: session_errors.RoomBusy("a session runs there"), 409, None),
        (lambda: session_errors.SessionClosed("ended"), 409, None),
        (lambda: session_errors.KernelDied("gone"), 503, None),
        (lambda: session_errors.CellNotFound("c1"), 404, None),
        (lambda: session_errors.Forbidden("bob", "run cells"), 403, None),
        (lambda: session_errors.NotebookInvalid("not nbformat 4"), 400, None),
        (lambda: collab_errors.InvalidRoomName("bad name"), 400, None),
        (lambda: event_errors.ConcurrencyConflict("s", 1, 2), 409, None),
    ],
)
async def test_a_typed_error_answers_with_its_status(
    error: Callable[[], Exception], status: int, message: str | None
) -> None:
    answered, body = await _answer(error)
    assert answered == status
    assert body == {"status": status, "message": message or str(error())}


@pytest.mark.parametrize(
    "error",
    [
        lambda: asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        lambda: asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        lambda: asyncpg.InterfaceError("pool is closed"),
        lambda: event_errors.DatabaseUnavailable("ConnectionRefusedError: refused"),
        lambda: asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        lambda: asyncpg.exceptions.AdminShutdownError("terminating connection"),
        lambda: asyncpg.exceptions.DiskFullError("could not extend file: No space left"),
        lambda: asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"),
    ],
)
async def test_a_database_that_cannot_serve_answers_503_and_is_logged(
    error: Callable[[], Exception], caplog: pytest.LogCaptureFixture
) -> None:
    async with test_utils.TestClient(test_utils.TestServer(_raising(error))) as client:
        response = await client.get("/")
        assert response.status == 503
        assert await response.json() == {"status": 503, "message": errors.DATABASE_UNAVAILABLE}
        # a client is told when to try again
        assert response.headers["Retry-After"] == str(database_watch.RETRY_AFTER_S)
    assert any("the database cannot serve" in r.getMessage() for r in caplog.records)


def _watched(
    error: Callable[[], Exception],
) -> tuple[web.Application, database_watch.DatabaseWatch]:
    app = _raising(error)
    # No probe runs (probing=False): only what requests report is tested here.
    watch = database_watch.DatabaseWatch(cast("Any", None), probing=False)
    app[database_watch.WATCH] = watch
    app[errors.ERROR_PAGE] = html.error_page
    return app, watch


async def test_an_outage_is_logged_once_not_per_request(caplog: pytest.LogCaptureFixture) -> None:
    app, watch = _watched(lambda: event_errors.DatabaseUnavailable("OSError: refused"))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        for _ in range(5):
            assert (await client.get("/")).status == 503
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "the database cannot serve (OSError: refused)" in warnings[0].getMessage()
    assert watch.status() == database_watch.Status(False, "unavailable", "OSError: refused")


async def test_a_browser_gets_the_error_page_and_the_api_json() -> None:
    app, _ = _watched(lambda: event_errors.DatabaseUnavailable("OSError: refused"))

    async def api(request: web.Request) -> web.Response:
        raise event_errors.DatabaseUnavailable("OSError: refused")

    app.router.add_get("/hub/api/user", api)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        page = await client.get("/", headers={"Accept": "text/html,*/*"})
        assert page.status == 503
        assert page.content_type == "text/html"
        assert errors.DATABASE_UNAVAILABLE.replace("'", "&#39;") in await page.text()
        assert page.headers["Retry-After"]
        api_answer = await client.get("/hub/api/user", headers={"Accept": "text/html"})
        assert api_answer.status == 503
        assert await api_answer.json() == {"status": 503, "message": errors.DATABASE_UNAVAILABLE}
        assert api_answer.headers["Retry-After"]


async def test_a_wrong_statement_is_a_bug_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    status, _ = await _answer(lambda: asyncpg.exceptions.UndefinedColumnError("no column x"))
    assert status == 500
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None  # its traceback is in the log


async def test_a_handlers_own_os_error_is_not_called_a_database_outage() -> None:
    status, _ = await _answer(lambda: FileNotFoundError("no such log"))
    assert status == 500


def test_translation_keeps_the_drivers_error_as_the_cause() -> None:
    cause = asyncpg.exceptions.AdminShutdownError("terminating connection")
    with pytest.raises(event_errors.DatabaseUnavailable) as raised, sql.translated():
        raise cause
    assert raised.value.__cause__ is cause
    with pytest.raises(asyncpg.exceptions.UniqueViolationError), sql.translated():
        raise asyncpg.exceptions.UniqueViolationError("duplicate key")


def test_a_bad_request_keeps_what_it_translated_as_its_cause() -> None:
    request = test_utils.make_mocked_request("GET", "/?offset=ten")
    with pytest.raises(errors.BadRequest) as raised:
        pagination.parse(request, default_limit=10, max_limit=10)
    assert isinstance(raised.value.__cause__, ValueError)


async def test_a_busy_hub_says_when_to_try_again() -> None:
    """``errors.Busy`` (a costly replay already under way) answers 503 with Retry-After."""
    async with test_utils.TestClient(
        test_utils.TestServer(_raising(lambda: errors.Busy("replaying; try later", 30)))
    ) as client:
        response = await client.get("/")
        assert response.status == 503
        assert response.headers["Retry-After"] == "30"
        assert await response.json() == {"status": 503, "message": "replaying; try later"}
