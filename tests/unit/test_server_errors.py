"""A failed server's own error, found in its log (what the spawn failure shows)."""

from __future__ import annotations

from hub.servers import server_log

CRITICAL = "[C 2026-12-07 01:00:00.003 ServerApp] Running as root is not recommended."
JUPYTER_AS_ROOT = f"""\
[I 2026-12-07 01:00:00.001 ServerApp] jupyter_lsp | extension was successfully linked.
{CRITICAL}
[I 2026-12-07 01:00:00.004 ServerApp] Skipped non-installed server(s): bash-language-server
"""

TRACEBACK = """\
starting
Traceback (most recent call last):
  File "/venv/bin/jupyterhub-singleuser", line 8, in <module>
    sys.exit(main())
  File "/venv/lib/app.py", line 3, in main
    raise ValueError("JUPYTERHUB_API_URL is not set")
ValueError: JUPYTERHUB_API_URL is not set
"""


def test_jupyters_critical_line_beats_the_lines_printed_after_it() -> None:
    assert server_log.server_error(JUPYTER_AS_ROOT) == CRITICAL


def test_a_traceback_gives_its_exception_line() -> None:
    assert (
        server_log.server_error(TRACEBACK + "\n\n") == "ValueError: JUPYTERHUB_API_URL is not set"
    )


def test_the_latest_error_wins() -> None:
    later = TRACEBACK + "2026-12-07 ERROR hub: the port is taken\nbye\n"
    assert server_log.server_error(later) == "2026-12-07 ERROR hub: the port is taken"
    assert server_log.server_error(JUPYTER_AS_ROOT + TRACEBACK).startswith("ValueError")


def test_without_an_error_the_last_line_and_without_lines_nothing() -> None:
    assert server_log.server_error("one\ntwo\n\n") == "two"
    assert server_log.server_error("") == ""
