"""OAuth clients of the hub's provider, named as JupyterHub names them.

* services with a ``url`` (or an ``oauth_redirect_uri``): ``service-<name>`` (or their
  ``oauth_client_id``), redirect ``/services/<name>/oauth_callback``; the secret is the
  service's ``api_token``. Registered at startup from the configuration (``reconcile``).
* single-user servers: ``jupyterhub-user-<name>[-<server>]``, redirect
  ``/user/<name>/[<server>/]oauth_callback``; the secret is the API token the spawner gives
  the server. The server manager registers it at spawn and removes it once the server has
  stopped or failed, through ``ServerClients`` (the spawner's ``OAuthClients`` seam).

Every registration and removal is an event (``oauth_client.registered``/``.removed``); the
``oauth_clients`` projection is the read model. A registration equal to the current one
appends nothing, so all of these are idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from events import models, sql, store
from events.catalog import auth as auth_events
from hub import settings as hub_settings
from hub.auth import scopes

queries = sql.Queries(__package__ or "hub.auth.oauth", "oauth.sql")

SERVICE_PREFIX = "service-"
SERVER_PREFIX = "jupyterhub-user-"
SPAWNER_METADATA = models.Metadata(actor=models.Actor(kind="system", name="spawner"))


class ClientConfigError(Exception):
    """A service's OAuth settings cannot be used; the message names the service."""


@dataclass(frozen=True)
class Client:
    """A registered OAuth client."""

    client_id: str
    kind: Literal["service", "server"]
    owner: str
    server_name: str
    redirect_uri: str
    token_id: str | None
    description: str
    no_confirm: bool
    allowed_scopes: tuple[str, ...]

    @classmethod
    def of(cls, row: Any) -> Client:
        """From an ``oauth_clients`` row."""
        return cls(
            client_id=row["client_id"],
            kind=row["kind"],
            owner=row["owner"],
            server_name=row["server_name"],
            redirect_uri=row["redirect_uri"],
            token_id=row["token_id"],
            description=row["description"],
            no_confirm=row["no_confirm"],
            allowed_scopes=tuple(row["allowed_scopes"]),
        )

    @property
    def access_scope(self) -> str:
        """The scope a user needs to use this client's server or service."""
        if self.kind == "service":
            return f"access:services!service={self.owner}"
        return f"access:servers!server={self.owner}/{self.server_name}"

    def event(self) -> auth_events.OAuthClientRegistered:
        """The registration event of this client."""
        return auth_events.OAuthClientRegistered(
            client_id=self.client_id,
            kind=self.kind,
            owner=self.owner,
            server_name=self.server_name,
            redirect_uri=self.redirect_uri,
            token_id=self.token_id,
            description=self.description,
            no_confirm=self.no_confirm,
            allowed_scopes=list(self.allowed_scopes),
        )


def server_client_id(user: str, server_name: str = "") -> str:
    """JupyterHub's client id of a user's server: ``jupyterhub-user-<name>[-<server>]``."""
    client_id = SERVER_PREFIX + quote(user, safe="")
    return client_id + "-" + quote(server_name, safe="") if server_name else client_id


def server_prefix(user: str, server_name: str = "") -> str:
    """``/user/<name>/[<server>/]``."""
    prefix = f"/user/{quote(user, safe='')}/"
    return prefix + f"{quote(server_name, safe='')}/" if server_name else prefix


async def get(conn: sql.Connection, client_id: str) -> Client | None:
    """The client registered as ``client_id``, if any."""
    row = await conn.fetchrow(queries["client_get"], client_id)
    return Client.of(row) if row else None


async def _put(session: store.Session, client: Client, metadata: models.Metadata) -> bool:
    """Register ``client`` unless exactly that is registered already; True if it appended."""
    if await get(session.conn, client.client_id) == client:
        return False
    await session.append(
        auth_events.client_stream(client.client_id), [client.event()], metadata=metadata
    )
    return True


async def _remove(session: store.Session, client_id: str, metadata: models.Metadata) -> bool:
    if await get(session.conn, client_id) is None:
        return False
    await session.append(
        auth_events.client_stream(client_id),
        [auth_events.OAuthClientRemoved(client_id=client_id)],
        metadata=metadata,
    )
    return True


@contextlib.asynccontextmanager
async def _session(target: store.EventStore | store.Session) -> AsyncIterator[store.Session]:
    if isinstance(target, store.Session):
        yield target
    else:
        async with target.session() as session:
            yield session


async def register_server_client(
    target: store.EventStore | store.Session,
    *,
    user: str,
    server_name: str,
    redirect_uri: str | None,
    token_id: str,
    allowed_scopes: list[str] | None = None,
    metadata: models.Metadata | None = None,
) -> str:
    """Register (or update) the OAuth client of ``user``'s server ``server_name``.

    For the spawner, at spawn, after it issued the server's API token ``token_id``: that
    token is the client secret (``JUPYTERHUB_API_TOKEN``), and the returned client id is
    ``JUPYTERHUB_CLIENT_ID``. ``redirect_uri`` defaults to ``/user/<name>/[<server>/]
    oauth_callback`` (``JUPYTERHUB_OAUTH_CALLBACK_URL``); ``allowed_scopes`` are
    ``JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES`` (access to the server itself is always
    allowed). Pass a ``store.Session`` to register in the spawn's own transaction.
    Idempotent: the same registration appends nothing.
    """
    prefix = server_prefix(user, server_name)
    client = Client(
        client_id=server_client_id(user, server_name),
        kind="server",
        owner=user,
        server_name=server_name,
        redirect_uri=redirect_uri or prefix + "oauth_callback",
        token_id=token_id,
        description=f"Server at {prefix}",
        no_confirm=False,
        allowed_scopes=tuple(
            dict.fromkeys([f"access:servers!server={user}/{server_name}", *(allowed_scopes or [])])
        ),
    )
    scopes.check_scope_names(
        [scopes.parse_scope(s, unvalued=True).name for s in client.allowed_scopes]
    )
    async with _session(target) as session:
        await _put(session, client, metadata or models.Metadata())
    return client.client_id


async def remove_server_client(
    target: store.EventStore | store.Session,
    *,
    user: str,
    server_name: str,
    metadata: models.Metadata | None = None,
) -> bool:
    """Remove the OAuth client of ``user``'s server (when the spawner removes the server).

    Its tokens are the server owner's and stay until they expire or are revoked. Returns
    whether there was one.
    """
    async with _session(target) as session:
        return await _remove(
            session, server_client_id(user, server_name), metadata or models.Metadata()
        )


def service_client(entry: hub_settings.ServiceConfig) -> Client | None:
    """The client a configured service has, if it has one (a url or a redirect URI)."""
    if entry.url is None and entry.oauth_redirect_uri is None:
        return None
    access = f"access:services!service={entry.name}"
    wanted = [access, *entry.oauth_client_allowed_scopes]
    for text in wanted:
        try:
            scopes.check_scope_names([scopes.parse_scope(text, unvalued=True).name])
        except scopes.ScopeError as exc:
            raise ClientConfigError(
                f"services: oauth_client_allowed_scopes of {entry.name!r}: {exc}"
            ) from exc
    return Client(
        client_id=entry.oauth_client_id or SERVICE_PREFIX + entry.name,
        kind="service",
        owner=entry.name,
        server_name="",
        redirect_uri=entry.oauth_redirect_uri or f"/services/{entry.name}/oauth_callback",
        token_id=None,
        description=f"Service {entry.name}",
        no_confirm=entry.oauth_no_confirm,
        allowed_scopes=tuple(dict.fromkeys(wanted)),
    )


async def reconcile(
    session: store.Session, config: hub_settings.Settings, metadata: models.Metadata
) -> int:
    """Register the configured services' clients; remove service clients no longer configured.

    Returns how many events it appended (none when nothing changed).
    """
    wanted = {c.client_id: c for e in config.services if (c := service_client(e)) is not None}
    count = 0
    for client in wanted.values():
        count += await _put(session, client, metadata)
    for row in await session.conn.fetch(queries["clients_all"]):
        if row["kind"] == "service" and row["client_id"] not in wanted:
            count += await _remove(session, row["client_id"], metadata)
    return count


class ServerClients:
    """The spawner's OAuth seam (``hub.servers.spawner.OAuthClients``) on this hub's provider: each
    server's client is registered at spawn and removed once the server stopped or failed."""

    def __init__(self, event_store: store.EventStore) -> None:
        self.store = event_store

    async def register(
        self, *, user: str, server_name: str, redirect_uri: str, token_id: str
    ) -> str:
        """``register_server_client`` as the spawner."""
        return await register_server_client(
            self.store,
            user=user,
            server_name=server_name,
            redirect_uri=redirect_uri,
            token_id=token_id,
            metadata=SPAWNER_METADATA,
        )

    async def unregister(self, *, user: str, server_name: str) -> None:
        """``remove_server_client`` as the spawner."""
        await remove_server_client(
            self.store, user=user, server_name=server_name, metadata=SPAWNER_METADATA
        )
