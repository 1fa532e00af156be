"""The front-end bundle (``frontend/``, built by the Makefile into ``static/app/``): the hashed
file name of each entry, and of the chunks it loads, from the build's ``manifest.json``.

The hashed files change name whenever their content does, so they are served with a year-long,
immutable ``Cache-Control`` (``html.HASHED_BUNDLE``); the manifest and the pages linking them are
not cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hub.web import html

APP_DIR = html.STATIC_DIR / "app"
APP_PREFIX = html.STATIC_PREFIX + "/app/"
MANIFEST = APP_DIR / "manifest.json"
BUILD_HINT = "the front-end bundle is not built: run `make frontend` (Node.js 20 or newer)"


@dataclass(frozen=True)
class Entry:
    """One entry of the bundle: its file and the chunks it loads (to preload)."""

    file: str
    preload: tuple[str, ...]


_cache: dict[str, tuple[float, dict[str, Entry]]] = {}


def _entry(path: Path, name: str, raw: object) -> Entry:
    if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
        raise ValueError(f"{path}: entry {name!r} has no file name")
    preload = raw.get("preload", [])
    if not isinstance(preload, list) or not all(isinstance(p, str) for p in preload):
        raise ValueError(f"{path}: entry {name!r} has a preload that is not a list of names")
    return Entry(raw["file"], tuple(preload))


def _manifest(path: Path) -> dict[str, Entry]:
    """The manifest, read again only when the build rewrote it."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    cached = _cache.get(str(path))
    if cached is not None and cached[0] == mtime:
        return cached[1]
    entries = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(entries, dict):
        raise ValueError(f"{path} is not a JSON object")
    names = {str(k): _entry(path, str(k), v) for k, v in entries.items()}
    _cache[str(path)] = (mtime, names)
    return names


def url(entry: str, manifest: Path = MANIFEST) -> str | None:
    """The URL of the bundle's ``entry`` (``"notebook.js"``), or None if it is not built."""
    found = _manifest(manifest).get(entry)
    return APP_PREFIX + found.file if found else None


def preloads(entry: str, manifest: Path = MANIFEST) -> list[str]:
    """The URLs of the chunks ``entry`` loads, for ``<link rel="modulepreload">``."""
    found = _manifest(manifest).get(entry)
    return [APP_PREFIX + name for name in found.preload] if found else []
