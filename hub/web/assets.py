"""The front-end bundle (``frontend/``, built by the Makefile into ``static/app/``): the hashed
file name of each entry, from the build's ``manifest.json``.

The hashed files change name whenever their content does, so they are served with a year-long,
immutable ``Cache-Control`` (``html.HASHED_BUNDLE``); the manifest and the pages linking them are
not cached.
"""

from __future__ import annotations

import json
from pathlib import Path

from hub.web import html

APP_DIR = html.STATIC_DIR / "app"
APP_PREFIX = html.STATIC_PREFIX + "/app/"
MANIFEST = APP_DIR / "manifest.json"
BUILD_HINT = "the front-end bundle is not built: run `make frontend` (Node.js 20 or newer)"

_cache: dict[str, tuple[float, dict[str, str]]] = {}


def _manifest(path: Path) -> dict[str, str]:
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
    names = {str(k): str(v) for k, v in entries.items()}
    _cache[str(path)] = (mtime, names)
    return names


def url(entry: str, manifest: Path = MANIFEST) -> str | None:
    """The URL of the bundle's ``entry`` (``"notebook.js"``), or None if it is not built."""
    name = _manifest(manifest).get(entry)
    return APP_PREFIX + name if name else None
