"""A failed server's own error, found in the end of its log (what a spawn failure shows).

A server that exits before it answers usually says why in its log: a traceback, or a
Jupyter ``[C …]``/``[E …]`` line, often followed by lines that explain nothing. The failure
message shows that line, not merely the last one.
"""

from __future__ import annotations

import re
from pathlib import Path

# How much of a failed server's log is read for its own error.
LOG_TAIL_BYTES = 64 * 1024
# A line that reports an error: Jupyter's "[E ..." and "[C ...", or logging's level names.
_ERROR_LINE = re.compile(r"^\[[EC] |\b(ERROR|CRITICAL|FATAL)\b")


def server_error(text: str) -> str:
    """The server's own error in the end of its log: the exception line of the last
    traceback or the last ERROR/CRITICAL line, whichever came last; else the last line."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    found: tuple[int, str] | None = None
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            # The exception is the first line after the frames that is not indented.
            for later in range(index + 1, len(lines)):
                if not lines[later][:1].isspace():
                    found = (later, lines[later])
                    break
        elif _ERROR_LINE.search(line) and (found is None or index > found[0]):
            found = (index, line)
    if found is not None:
        return found[1].strip()
    return lines[-1].strip() if lines else ""


def error_of(path: Path) -> str:
    """``server_error`` of the end of a server's log, for failure messages."""
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            file.seek(max(0, file.tell() - LOG_TAIL_BYTES))
            text = file.read().decode(errors="replace")
    except OSError:
        return ""
    return server_error(text)
