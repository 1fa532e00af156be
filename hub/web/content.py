"""Users' content as HTML that cannot run script in the hub's origin: notebooks (nbconvert,
outputs included) and markdown, both sanitized.

What a pushed file carries is hostile until proven otherwise: a notebook's HTML output can
hold ``<script>``, ``<img onerror=…>``, ``javascript:`` links or an SVG with script, and its
``application/javascript`` outputs are script by definition. Three layers keep it out:

1. Before rendering, outputs that are script (JavaScript, widget views) are dropped and SVG
   outputs become ``<img src="data:image/svg+xml…">`` (an SVG shown as an image never runs
   its script).
2. nbconvert renders (its own ``sanitize_html`` stays off: it escapes rather than removes,
   so a notebook's tables and images would show as markup).
3. The whole result (and every rendered markdown file) goes through one allow-list
   sanitizer (bleach): known tags and attributes only, no event handlers, no ``style``,
   URLs only ``http``/``https``/``mailto``/relative, and ``data:`` only for raster or SVG
   images in ``<img>``. ``<script>`` and ``<style>`` are removed with their content.

The pages that show the result also send a Content-Security-Policy without any script
source (``hub/pages/projects.py``), so a mistake in one layer is not enough.
"""

from __future__ import annotations

import base64
import copy
import re
import threading
from typing import Any

import bleach
import mistune

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd",
        "del", "details", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
        "samp", "small", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
    }
)  # fmt: skip
PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
# Removed with everything inside them (bleach alone would keep their text).
_DROP_WITH_CONTENT = re.compile(
    r"<(script|style|template|noscript|iframe|object|embed|svg|math)\b.*?</\1\s*>",
    re.IGNORECASE | re.DOTALL,
)
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp|svg\+xml);base64,[A-Za-z0-9+/=\s]*$")
# Output types that are script, or drive script (widgets): never rendered.
SCRIPT_OUTPUTS = (
    "application/javascript",
    "text/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/vnd.jupyter.widget-view+json",
    "application/vnd.jupyter.widget-state+json",
)


def _safe_url(value: str, *, image: bool) -> bool:
    stripped = value.strip()
    if stripped.lower().startswith("data:"):
        return image and bool(_DATA_IMAGE.match(stripped))
    return True  # bleach checks the protocol of every other URL against PROTOCOLS


def _attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "title"):
        return True
    if tag == "a":
        return name == "href" and _safe_url(value, image=False)
    if tag == "img":
        if name == "src":
            return _safe_url(value, image=True)
        return name in ("alt", "width", "height")
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan", "align")
    if tag == "ol":
        return name == "start"
    if tag in ("col", "colgroup"):
        return name == "span"
    return False


_CLEANER = bleach.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=_attribute,
    protocols=PROTOCOLS,
    strip=True,
    strip_comments=True,
)


def sanitize(html: str) -> str:
    """``html`` with everything that is not on the allow-list removed (see the module's doc)."""
    without = _DROP_WITH_CONTENT.sub("", html)
    cleaned: str = _CLEANER.clean(without)
    return cleaned


def markdown(text: str) -> str:
    """Markdown as sanitized HTML."""
    rendered = mistune.html(text)
    assert isinstance(rendered, str)
    return sanitize(rendered)


def _defuse(notebook: Any) -> None:
    """Drop script outputs and turn SVG outputs into images, in place."""
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data")
            if not isinstance(data, dict):
                continue
            for kind in SCRIPT_OUTPUTS:
                data.pop(kind, None)
            svg = data.pop("image/svg+xml", None)
            if svg is not None:
                text = "".join(svg) if isinstance(svg, list) else str(svg)
                encoded = base64.b64encode(text.encode()).decode()
                data.setdefault("text/html", f'<img src="data:image/svg+xml;base64,{encoded}">')
            if not data:
                data["text/plain"] = "(output not shown: it is script)"
        cell.get("metadata", {}).pop("attachments", None)


_EXPORTERS = threading.local()


class NotANotebook(ValueError):
    """The file is not a notebook nbformat can read."""


def notebook(data: bytes) -> str:
    """A notebook (JSON bytes) as sanitized HTML, outputs included; ``NotANotebook`` if it
    is not one. Blocking (nbconvert takes tens of milliseconds): run it in a thread."""
    # imported here: nbformat and nbconvert load jsonschema's format checkers, seconds of
    # import time that every hub start (and every ``chronohub`` command) would pay otherwise
    import nbformat
    from nbconvert.exporters import HTMLExporter

    try:
        node = nbformat.reads(data.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    except (ValueError, UnicodeDecodeError, nbformat.reader.NotJSONError) as exc:
        raise NotANotebook(str(exc)) from exc
    node = copy.deepcopy(node)
    _defuse(node)
    exporter = getattr(_EXPORTERS, "exporter", None)
    if exporter is None:  # one per thread: building one loads its templates (~0.5 s)
        exporter = _EXPORTERS.exporter = HTMLExporter(template_name="basic")  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(node)
    return sanitize(body)
