"""The one error of backups and restores: what went wrong, said so an administrator can act."""

from __future__ import annotations


class BackupError(Exception):
    """A backup could not be taken, or a restore was refused or failed; the message says why."""
