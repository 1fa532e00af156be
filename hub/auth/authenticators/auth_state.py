"""JupyterHub authenticators' ``auth_state``, encrypted, in the ``auth_states`` table.

An authenticator may return an ``auth_state`` with its login result (upstream access and
refresh tokens, LDAP attributes); JupyterHub keeps it encrypted with the keys of
``JUPYTERHUB_CRYPT_KEY`` and hands it to ``pre_spawn_start`` and ``refresh_user``. chronohub
does the same with cryptography's ``MultiFernet`` (as JupyterHub's ``CryptKeeper`` does; its
own class is a process-wide singleton with a thread pool of its own, hence not used here),
keys from the ``crypt_key`` setting or ``JUPYTERHUB_CRYPT_KEY``, in the same format. The
event log never sees it: a login event says only who logged in, and how.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from events import sql

queries = sql.Queries(__package__ or "hub.auth.authenticators", "auth_state.sql")
KEY_ENV = "JUPYTERHUB_CRYPT_KEY"


class CryptKeyError(ValueError):
    """The keys are missing or malformed; the message says which."""


def parse_keys(text: str) -> list[bytes]:
    """``;``-separated 32-byte keys, each hex (64 characters) or url-safe base64 (44)."""
    keys: list[bytes] = []
    for number, part in enumerate((p.strip() for p in text.split(";")), start=1):
        if not part:
            continue
        raw: bytes | None = None
        try:
            if len(part) == 64:
                raw = binascii.a2b_hex(part)
            elif len(part) == 44:
                raw = base64.urlsafe_b64decode(part)
        except ValueError:
            raw = None
        if raw is None or len(raw) != 32:
            raise CryptKeyError(
                f"crypt key {number} is not 32 bytes written as 64 hex digits or 44 characters"
                " of url-safe base64 (make one with: openssl rand -hex 32)"
            )
        keys.append(raw)
    return keys


class Keeper:
    """Encrypts and decrypts auth_state, and stores it per user."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise CryptKeyError(
                f"the authenticator keeps auth_state (enable_auth_state): set crypt_key or"
                f" {KEY_ENV} (openssl rand -hex 32)"
            )
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(k)) for k in keys])

    @classmethod
    def from_settings(cls, configured: str | None) -> Keeper:
        """The keeper of the ``crypt_key`` setting, else of ``JUPYTERHUB_CRYPT_KEY``."""
        return cls(parse_keys(configured if configured else os.environ.get(KEY_ENV, "")))

    def encrypt(self, state: Any) -> bytes:
        """``state`` as JSON, encrypted with the first key."""
        return self._fernet.encrypt(json.dumps(state).encode())

    def decrypt(self, encrypted: bytes) -> Any:
        """The state, or None if no key decrypts it any more (keys were rotated away)."""
        try:
            return json.loads(self._fernet.decrypt(encrypted))
        except InvalidToken:
            return None

    async def save(self, conn: sql.Connection, user_id: UUID, state: Any) -> None:
        """Keep ``state`` for the user (None: forget it)."""
        if state is None:
            await conn.execute(queries["auth_state_delete"], user_id)
            return
        await conn.execute(
            queries["auth_state_set"], user_id, self.encrypt(state), datetime.now(UTC)
        )

    async def load(self, conn: sql.Connection, user_id: UUID) -> Any:
        """The user's state, or None."""
        encrypted = await conn.fetchval(queries["auth_state_get"], user_id)
        return None if encrypted is None else self.decrypt(bytes(encrypted))
