"""Typed errors of shared execution sessions: the notebook, the kernel, the executor.

Each carries the fields a caller needs to answer (the hub's error middleware maps ``Forbidden``
to 403, ``NotFound`` to 404, ``Invalid`` to 400, ``Unavailable`` to 409/503). They are
``CollabError``s: collab has one root exception.
"""

from __future__ import annotations

from collab import errors


class SessionError(errors.CollabError):
    """Base of every error a shared execution session raises."""


# --- bad input -----------------------------------------------------------------------------


class Invalid(SessionError):
    """The input is malformed; the message names what is wrong."""


class NotebookInvalid(Invalid):
    """A notebook given to build a session does not follow nbformat 4."""


class NotFound(SessionError):
    """A named thing does not exist."""


class CellNotFound(NotFound):
    """The document holds no cell with this id."""

    def __init__(self, cell_id: str) -> None:
        super().__init__(f"the notebook has no cell with id {cell_id!r}")
        self.cell_id = cell_id


class NotACodeCell(Invalid):
    """Only code cells can run."""

    def __init__(self, cell_id: str, cell_type: str) -> None:
        super().__init__(f"cell {cell_id!r} is a {cell_type} cell; only code cells run")
        self.cell_id = cell_id
        self.cell_type = cell_type


class Forbidden(SessionError):
    """The requester may not do this (read-only participant, or no participant at all)."""

    def __init__(self, requester: str, action: str) -> None:
        super().__init__(f"{requester!r} may not {action} in this session")
        self.requester = requester
        self.action = action


# --- state ---------------------------------------------------------------------------------


class Unavailable(SessionError):
    """The session or its kernel cannot take this request now."""


class SessionClosed(Unavailable):
    """The session has ended; it takes no more requests."""


class KernelError(SessionError):
    """Something went wrong with the kernel process."""


class KernelRefused(SessionError):
    """The creator's code may not run on this hub, so no kernel starts for them (a policy of
    the hub's, whose message says why)."""


class KernelStartFailed(KernelError):
    """The kernel did not start, or did not answer in time."""


class KernelDied(KernelError, Unavailable):
    """The kernel process is gone; restart the session's kernel to go on."""


class KernelNotRunning(KernelError, Unavailable):
    """The kernel is not started yet, or was shut down."""


# --- sessions bound to rooms (collab.sessions) ---------------------------------------------


class UnknownKernel(Invalid):
    """No kernel spec of this name is installed."""

    def __init__(self, kernel_name: str, available: list[str]) -> None:
        super().__init__(
            f"no kernel named {kernel_name[:80]!r} is installed; available: {', '.join(available)}"
        )
        self.kernel_name = kernel_name


class RoomBusy(SessionError):
    """The room cannot take a new session (one runs there, or it holds another document)."""
