"""hub/backup without a database: libpq arguments never carry the password, and a manifest
naming files outside its backup is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.backup import archive, errors, pgtools


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://postgres:s3cret@/postgres?host=%2Ftmp%2Frun&port=5432",
            "postgresql://postgres@/postgres?host=%2Ftmp%2Frun&port=5432",
        ),
        ("postgresql://hub@db:5432/hub?password=s3cret&sslmode=require",
         "postgresql://hub@db:5432/hub?sslmode=require"),
    ],
)  # fmt: skip
def test_the_password_goes_in_the_environment_never_on_the_command_line(
    dsn: str, expected: str
) -> None:
    args, env = pgtools.connection(dsn)
    assert args == ["--dbname", expected]
    assert env["PGPASSWORD"] == "s3cret"
    assert "s3cret" not in " ".join(args)


def _manifest(tmp_path: Path, files: dict[str, str]) -> Path:
    manifest = archive.Manifest(
        format=archive.FORMAT,
        chronohub_version="0",
        schema_version=1,
        created_at=datetime.now(UTC),
        database="test",
        events=archive.LogSummary(count=0, last_id=None, last_event_id=None),
        files=files,
        not_included=[],
    )
    (tmp_path / archive.MANIFEST).write_text(manifest.model_dump_json())
    return tmp_path


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "elsewhere/file"])
def test_a_manifest_naming_files_outside_the_backup_is_refused(tmp_path: Path, name: str) -> None:
    source = _manifest(tmp_path, {archive.DUMP: "0" * 64, name: "0" * 64})
    with pytest.raises(errors.BackupError, match="outside the backup"):
        archive.read_manifest(source)


def test_a_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / archive.MANIFEST).write_text("{not json")
    with pytest.raises(errors.BackupError, match="not a chronohub backup manifest"):
        archive.read_manifest(tmp_path)
    (tmp_path / archive.MANIFEST).write_text(json.dumps({"format": 1}))
    with pytest.raises(errors.BackupError, match="not a chronohub backup manifest"):
        archive.read_manifest(tmp_path)


def test_packs_still_being_received_are_not_backed_up(tmp_path: Path) -> None:
    objects = tmp_path / "p.git" / "objects"
    kept = [objects / "pack" / "pack-1.pack", objects / "pack" / "pack-1.idx", objects / "ab" / "c"]
    # a push's quarantine (hub/projects/packs.py), whole, and dulwich's unfinished pack file
    left = [objects / "incoming-x1" / "pack" / "pack-2.pack", objects / "tmp_pack_y"]
    for path in [*kept, *left]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(archive.repository_files(tmp_path)) == sorted(kept)
