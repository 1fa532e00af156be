"""Named SQL queries loaded from ``.sql`` files, and the connection type the store works with.

A file holds queries under ``-- name: <name>`` headers; each package loads its file once at
import. Every statement is fixed text with ``$n`` parameters: no SQL is built from strings.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    # What the store's methods accept: a plain connection or one borrowed from a pool.
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]
else:
    Connection = Any  # asyncpg's classes are generic only in its stubs

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
