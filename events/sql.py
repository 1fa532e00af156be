"""Named SQL queries loaded from ``.sql`` files, the connection type the store works with, and
the one translation of the driver's errors.

A file holds queries under ``-- name: <name>`` headers; each package loads its file once at
import. Every statement is fixed text with ``$n`` parameters: no SQL is built from strings.

What the driver raises when the database cannot serve (a refused or reset connection, the
server shutting down or out of connections) becomes one ``errors.DatabaseUnavailable`` here,
with the driver's error as its cause, so that no other module names asyncpg's exceptions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from events import errors

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What the store's methods accept: a plain connection or one borrowed from a pool.
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:
    Connection = Any  # asyncpg's classes are generic only in its stubs

# What the driver raises when the database cannot serve, whatever the statement: the
# connection refused, reset or closed, the server out of resources or shutting down, the login
# refused or the database gone, a read-only standby after a failover. Inside a block of database
# work an OSError (refused, reset, timed out) is the connection's too. Errors that say the
# statement itself is wrong (a constraint, a syntax or type error) are the caller's: they pass
# through untranslated, so that a bug is not mistaken for an outage.
_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.PostgresSystemError,
    asyncpg.exceptions.InternalServerError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    # The client's protocol state broken by a connection lost in the middle of a statement
    # ("cannot switch to state ...; another operation is in progress"), met when the server
    # is killed under load.
    asyncpg.InternalClientError,
)


def unavailable(exc: BaseException, *, os_errors: bool = True) -> errors.DatabaseUnavailable | None:
    """``exc`` as a ``DatabaseUnavailable`` (its cause set) if it says the database cannot
    serve, else None.

    ``os_errors=False`` where an ``OSError`` may be something else's (a file, another server):
    at the HTTP edge, for handlers that borrow a raw connection.
    """
    if isinstance(exc, errors.DatabaseUnavailable):
        return exc
    if isinstance(exc, _UNAVAILABLE) or (os_errors and isinstance(exc, OSError)):
        translated = errors.DatabaseUnavailable(f"{type(exc).__name__}: {exc}")
        translated.__cause__ = exc
        return translated
    return None


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Run a block of database work: an error saying the database cannot serve leaves it as
    ``DatabaseUnavailable``."""
    try:
        yield
    except Exception as exc:
        if (translated_ := unavailable(exc)) is None or translated_ is exc:
            raise
        raise translated_ from exc


_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


class Queries:
    """The queries of one ``.sql`` file, looked up by name: ``queries["append"]``."""

    def __init__(self, package: str, filename: str) -> None:
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        parts = _HEADER.split(text)
        self._by_name: dict[str, str] = {}
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in self._by_name:
                raise ValueError(f"{package}/{filename}: query {name!r} is defined twice")
            self._by_name[name] = body.strip().rstrip(";")
        self.source = f"{package}/{filename}"

    def __getitem__(self, name: str) -> str:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.source} has no query {name!r}") from None

    def names(self) -> list[str]:
        """Every query name in the file."""
        return list(self._by_name)
