"""A backup directory on disk: its manifest, the files it lists and their checksums.

Layout of ``DIR``::

    manifest.json          written last: a directory without one is an unfinished backup
    database.dump          pg_dump's custom format
    projects/<id>.git/...  each project's bare repository (objects; its refs are in the dump)

Every file is listed in the manifest with its SHA-256, checked before anything is restored.
Blocking file work: the callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath

import pydantic

from hub.backup import errors

MANIFEST = "manifest.json"
DUMP = "database.dump"
PROJECTS = "projects"
FORMAT = 1
_CHUNK = 1 << 20

Tick = Callable[[int], None]
"""Called with the number of files done so far."""


class LogSummary(pydantic.BaseModel):
    """The event log as the dump holds it: how many events, and the last one."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    count: int
    last_id: str | None = pydantic.Field(description="the last event's checkpoint, TX:POS")
    last_event_id: str | None = pydantic.Field(description="the last event's uuid")


class Manifest(pydantic.BaseModel):
    """What a backup holds and how to check it."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    format: int
    chronohub_version: str
    schema_version: int
    created_at: datetime
    database: str
    events: LogSummary
    files: dict[str, str] = pydantic.Field(description="path in the backup -> SHA-256")
    not_included: list[str]


def prepare_target(target: Path) -> None:
    """Make ``target`` (mode 0700: it will hold every hash); refuse one that is not empty."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise errors.BackupError(f"{target} is not an empty directory: back up into a new one")
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.chmod(0o700)


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def repository_files(projects: Path) -> Iterator[Path]:
    """Every file of every project's repository under ``projects`` (``<id>.git``), skipping
    the hub's scratch directories (``.serving``, ``.new-*``, ``.deleted-*``) and packs still
    being received (``tmp_*``, ``incoming_*``, the quarantines ``objects/incoming-*``), which
    no ref in the dump can need."""
    if not projects.is_dir():
        return
    for repo in sorted(projects.iterdir()):
        if repo.name.startswith(".") or not repo.name.endswith(".git") or not repo.is_dir():
            continue
        for folder, subdirs, names in os.walk(repo):
            subdirs[:] = sorted(name for name in subdirs if not name.startswith("incoming-"))
            for name in sorted(names):
                if not name.startswith(("tmp_", "incoming_")):
                    yield Path(folder, name)


def copy_tree(
    files: list[Path], source_root: Path, target_root: Path, tick: Tick
) -> dict[str, str]:
    """Copy ``files`` (under ``source_root``) to the same places under ``target_root``, private
    to the owner; their checksums by path relative to ``target_root``'s parent."""
    sums: dict[str, str] = {}
    for done, path in enumerate(files, 1):
        relative = path.relative_to(source_root)
        target = target_root / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A file removed since it was listed (``chronohub projects gc``) is skipped: only
        # objects no ref reaches are removed, so the dump cannot need it.
        with contextlib.suppress(FileNotFoundError):
            sums[str(PurePosixPath(target_root.name, *relative.parts))] = _copy(path, target)
        tick(done)
    return sums


def _copy(source: Path, target: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as src, target.open("xb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    shutil.copystat(source, target)
    target.chmod(0o600)
    return digest.hexdigest()


def write_manifest(target: Path, manifest: Manifest) -> None:
    """Write ``manifest.json``, last: its presence says the backup is complete."""
    scratch = target / f".{MANIFEST}.new"
    scratch.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    scratch.chmod(0o600)
    scratch.rename(target / MANIFEST)


def read_manifest(source: Path) -> Manifest:
    """The backup's manifest; ``BackupError`` if there is none or it is not one."""
    path = source / MANIFEST
    if not source.is_dir():
        raise errors.BackupError(f"{source} is not a directory")
    if not path.is_file():
        raise errors.BackupError(
            f"{source} has no {MANIFEST}: not a chronohub backup, or one that did not finish"
        )
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, pydantic.ValidationError) as exc:
        raise errors.BackupError(f"{path} is not a chronohub backup manifest: {exc}") from exc
    if manifest.format != FORMAT:
        raise errors.BackupError(
            f"{path} is in backup format {manifest.format}; this chronohub reads format {FORMAT}"
        )
    if DUMP not in manifest.files:
        raise errors.BackupError(f"{path} lists no {DUMP}")
    for name in manifest.files:
        parts = PurePosixPath(name).parts
        if PurePosixPath(name).is_absolute() or ".." in parts or parts[0] not in (DUMP, PROJECTS):
            raise errors.BackupError(f"{path} lists a file outside the backup: {name!r}")
    return manifest


def verify(source: Path, manifest: Manifest, tick: Tick) -> None:
    """Check every listed file's checksum; ``BackupError`` naming the first that differs."""
    for done, (name, expected) in enumerate(sorted(manifest.files.items()), 1):
        path = source / name
        if not path.is_file():
            raise errors.BackupError(
                f"the backup in {source} lacks {name}, which its manifest lists"
            )
        if sha256(path) != expected:
            raise errors.BackupError(
                f"{name} in {source} does not match its checksum in {MANIFEST}: the backup was"
                " altered or damaged; restore another one"
            )
        tick(done)


def restore_projects(source: Path, manifest: Manifest, projects: Path, tick: Tick) -> None:
    """Copy the backup's repositories into ``projects`` (mode 0700, as the hub makes it)."""
    names = sorted(name for name in manifest.files if name.startswith(f"{PROJECTS}/"))
    projects.mkdir(mode=0o700, parents=True, exist_ok=True)
    for done, name in enumerate(names, 1):
        relative = PurePosixPath(name).relative_to(PROJECTS)
        target = projects.joinpath(*relative.parts)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _copy(source / name, target)
        tick(done)
