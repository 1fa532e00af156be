"""Named queries loaded from ``.sql`` files: the real files, and the parser on made-up ones."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from events import sql


def test_the_event_store_queries_are_found_by_name() -> None:
    queries = sql.Queries("events", "queries.sql")
    assert {"append", "read_all", "read_stream", "head"} <= set(queries.names())
    assert queries.source == "events/queries.sql"
    assert queries["append"].startswith("-- $1 stream_id")
    assert "INSERT INTO events" in queries["append"]
    assert queries["head"].startswith("-- The last event")
    assert queries["head"].endswith("LIMIT 1")  # the trailing ';' is dropped
    assert "json_agg" in queries["read_all"]
    assert "-- name:" not in queries["read_all"]  # one query's text stops at the next header


def test_each_real_query_is_one_statement_without_a_trailing_semicolon() -> None:
    queries = sql.Queries("events", "queries.sql")
    for name in queries.names():
        assert queries[name], name
        assert not queries[name].endswith(";"), name
        assert queries[name] == queries[name].strip(), name


def test_an_unknown_query_name_raises_key_error_naming_the_file() -> None:
    queries = sql.Queries("events", "queries.sql")
    with pytest.raises(KeyError, match=r"events/queries\.sql has no query 'nope'"):
        queries["nope"]


def test_the_users_projection_queries_load() -> None:
    queries = sql.Queries("projections", "users.sql")
    assert queries.source == "projections/users.sql"
    assert {"load", "delete", "upsert"} <= set(queries.names())


@pytest.fixture
def sql_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], str]]:
    """Write ``text`` as ``q.sql`` of a throwaway package on sys.path; return the package name."""
    name = "unittest_sql_package"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(text: str) -> str:
        (package / "q.sql").write_text(text, encoding="utf-8")
        return name

    yield write
    sys.modules.pop(name, None)


def test_the_parser_splits_on_name_headers(sql_package: Callable[[str], str]) -> None:
    package = sql_package(
        "-- A preamble that belongs to no query.\n"
        "\n"
        "-- name: first\n"
        "SELECT 1;\n"
        "\n"
        "--name:second_one  \n"
        "-- what it does\n"
        "SELECT $1::int\n"
        "  + 2;\n"
    )
    queries = sql.Queries(package, "q.sql")
    assert queries.names() == ["first", "second_one"]
    assert queries["first"] == "SELECT 1"
    assert queries["second_one"] == "-- what it does\nSELECT $1::int\n  + 2"
    assert queries.source == f"{package}/q.sql"


def test_a_file_without_headers_has_no_queries(sql_package: Callable[[str], str]) -> None:
    queries = sql.Queries(sql_package("SELECT 1;\n"), "q.sql")
    assert queries.names() == []
    with pytest.raises(KeyError, match=r"q\.sql has no query"):
        queries["anything"]


def test_a_name_defined_twice_is_refused(sql_package: Callable[[str], str]) -> None:
    package = sql_package(
        "-- name: x\nSELECT 1;\n\n-- name: y\nSELECT 2;\n\n-- name: x\nSELECT 3;\n"
    )
    with pytest.raises(ValueError, match=r"q\.sql: query 'x' is defined twice"):
        sql.Queries(package, "q.sql")


def test_a_missing_file_is_an_error(sql_package: Callable[[str], str]) -> None:
    package = sql_package("-- name: x\nSELECT 1;\n")
    with pytest.raises(FileNotFoundError):
        sql.Queries(package, "missing.sql")
