"""What can go wrong in ``chronohub project``, each with the exit status scripts rely on.

0 done; 1 a conflict that needs a pick, or a push that needs a pull first; 2 usage (bad
arguments, not a checkout); 3 authentication or access (no token, a revoked one, read-only
access, a project that is gone); 4 the hub or the remote cannot be reached; 5 anything else
(git failed in a way we did not foresee).
"""

from __future__ import annotations

OK = 0
CONFLICT = 1
USAGE = 2
ACCESS = 3
UNREACHABLE = 4
FAILED = 5


class ClientError(Exception):
    """Base of the client's errors: a message for the person and an exit status."""

    code = FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Usage(ClientError):
    """The command was asked something it cannot do (arguments, folder, state)."""

    code = USAGE


class Access(ClientError):
    """No credentials, refused credentials, or not enough access."""

    code = ACCESS


class Gone(Access):
    """The project the checkout points at no longer exists on the hub."""


class Unreachable(ClientError):
    """The hub (or a git remote) did not answer."""

    code = UNREACHABLE


class NeedsPull(ClientError):
    """The hub has commits the checkout lacks: pull first."""

    code = CONFLICT


class LocalConflict(ClientError):
    """The update would overwrite a local file git does not track (an ignored one)."""

    code = CONFLICT


class Failed(ClientError):
    """Something failed that the person cannot fix by changing the command."""

    code = FAILED
