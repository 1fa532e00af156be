"""The migration files shipped in the ``migrations`` package, read without a database."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from migrations import runner


def test_versions_run_from_1_without_gaps() -> None:
    found = runner.available()
    assert found, "no migration files found"
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert runner.latest_version() == len(found)


def test_every_migration_has_a_name_sql_and_a_sha256_checksum() -> None:
    for migration in runner.available():
        assert re.fullmatch(r"[a-z0-9_]+", migration.name), migration
        assert migration.sql.strip(), migration.name
        assert re.fullmatch(r"[0-9a-f]{64}", migration.checksum), migration.name
        assert migration.checksum == hashlib.sha256(migration.sql.encode()).hexdigest()


def test_each_migration_is_the_text_of_its_file() -> None:
    files = resources.files("migrations")
    for migration in runner.available():
        file_name = f"{migration.version:04d}_{migration.name}.sql"
        assert files.joinpath(file_name).read_text(encoding="utf-8") == migration.sql


def test_checksums_differ_between_files() -> None:
    checksums = [m.checksum for m in runner.available()]
    assert len(set(checksums)) == len(checksums)


def test_the_checksum_changes_when_the_text_does() -> None:
    one = runner.Migration(1, "x", "CREATE TABLE a ();")
    other = runner.Migration(1, "x", "CREATE TABLE a (); ")
    assert one.checksum != other.checksum


@pytest.mark.parametrize("name", ["0001_event_log.sql", "0042_add_index_2.sql"])
def test_the_file_name_pattern_accepts_numbered_files(name: str) -> None:
    assert runner.FILE_NAME.match(name)


@pytest.mark.parametrize(
    "name",
    [
        "1_x.sql",
        "0001-x.sql",
        "01_x.sql",
        "00001_x.sql",
        "0001_X.sql",
        "0001_x.SQL",
        "0001_x.sql.bak",
        "0001_.sql",
        "0001_x y.sql",
        "runner.py",
    ],
)
def test_the_file_name_pattern_rejects_other_names(name: str) -> None:
    assert runner.FILE_NAME.match(name) is None
