"""Bring the hub's state in line with its configuration, as events, at startup.

Configuration names admin users, services with preset tokens, and custom roles with the
users, groups and services that hold them. At each start the differences between that and
the read models are appended as events, in one transaction; restarting with the same
configuration appends nothing. Configuration is authoritative for what it defines: a role
or service dropped from it is removed, members dropped from a role lose it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import uuid4

from pydantic import SecretStr

from events import models, sql, store
from events.catalog import groups as group_events
from events.catalog import roles as role_events
from events.catalog import services as service_events
from events.catalog import tokens as token_events
from events.catalog import users as user_events
from hub import settings as hub_settings
from hub.auth import roles, scopes, tokens
from hub.auth.oauth import clients as oauth_clients
from hub.reads import groups as groups_read
from hub.reads import users as users_read

log = logging.getLogger(__name__)
queries = sql.Queries(__package__ or "hub", "bootstrap.sql")

STARTUP = models.Metadata(actor=models.SYSTEM, request_id="startup")


class ConfigurationError(Exception):
    """The configuration cannot be applied; the message names the entry at fault."""


def desired_roles(config: hub_settings.Settings) -> dict[str, roles.Role]:
    """The default roles, overridden or extended by the configured ones (validated)."""
    wanted = dict(roles.DEFAULT_ROLES)
    for entry in config.roles:
        try:
            wanted[entry.name] = roles.define_role(entry.name, entry.scopes, entry.description)
        except scopes.ScopeError as exc:
            raise ConfigurationError(f"roles: {exc}") from exc
    if config.publish:
        # every user may sign in to the publishing service; what they see there is decided by
        # each project's visibility and members, as on the hub
        user = wanted["user"]
        wanted["user"] = roles.define_role(
            "user", [*user.scopes, hub_settings.PUBLISH_ACCESS], user.description
        )
    services = {s.name for s in config.services}
    for entry in config.roles:
        unknown = [name for name in entry.services if name not in services]
        if unknown:
            raise ConfigurationError(
                f"roles: role {entry.name!r} names services that are not configured: {unknown}"
            )
    return wanted


async def reconcile(event_store: store.EventStore, config: hub_settings.Settings) -> int:
    """Append what it takes for the state to match ``config``; return how many events."""
    wanted_roles = desired_roles(config)
    async with event_store.session() as session:
        counter = _Counter(session)
        await _roles(counter, wanted_roles)
        users = await _users(counter, config)
        groups = await _groups(counter, config)
        await _services(counter, config)
        counter.count += await _oauth_clients(counter.session, config)
        await _grants(counter, config, users, groups)
    if counter.count:
        log.info("applied configuration: %d events", counter.count)
    return counter.count


class _Counter:
    """A session that counts the events it appends, all as the system at startup."""

    def __init__(self, session: store.Session) -> None:
        self.session = session
        self.conn = session.conn
        self.count = 0

    async def append(
        self, stream_id: str, events: list[models.Event], expected: int = store.ANY
    ) -> None:
        await self.session.append(stream_id, events, expected=expected, metadata=STARTUP)
        self.count += len(events)


async def _roles(counter: _Counter, wanted: dict[str, roles.Role]) -> None:
    current = {row["name"]: row for row in await counter.conn.fetch(queries["roles_all"])}
    for name, role in wanted.items():
        row = current.get(name)
        if (
            row is None
            or row["description"] != role.description
            or list(row["scopes"]) != list(role.scopes)
        ):
            await counter.append(
                role_events.stream_id(name),
                [
                    role_events.RoleDefined(
                        name=name, description=role.description, scopes=list(role.scopes)
                    )
                ],
            )
    for name in current.keys() - wanted.keys():
        await counter.append(role_events.stream_id(name), [role_events.RoleRemoved(name=name)])


async def _users(counter: _Counter, config: hub_settings.Settings) -> dict[str, str]:
    """Create the users configuration names; make admin_users admins. Returns name -> id."""
    named = {n.lower() for n in config.admin_users}
    for entry in config.roles:
        named |= {n.lower() for n in entry.users}
    existing = {row["name"]: row for row in await users_read.named(counter.conn, sorted(named))}
    admins = {n.lower() for n in config.admin_users}
    ids: dict[str, str] = {}
    for name in sorted(named):
        row = existing.get(name)
        if row is None:
            user_id = uuid4()
            await counter.append(
                user_events.stream_id(user_id),
                [user_events.UserCreated(user_id=user_id, name=name, admin=name in admins)],
                expected=store.NO_STREAM,
            )
            ids[name] = str(user_id)
            continue
        ids[name] = str(row["user_id"])
        if name in admins and not row["admin"]:
            await counter.append(
                user_events.stream_id(row["user_id"]),
                [user_events.UserAdminChanged(user_id=row["user_id"], admin=True)],
            )
    return ids


async def _groups(counter: _Counter, config: hub_settings.Settings) -> dict[str, str]:
    """Create the groups configuration names. Returns name -> id."""
    named = sorted({g for entry in config.roles for g in entry.groups})
    existing = {r["name"]: r for r in await groups_read.named(counter.conn, named)}
    ids: dict[str, str] = {}
    for name in named:
        row = existing.get(name)
        if row is not None:
            ids[name] = str(row["group_id"])
            continue
        group_id = uuid4()
        await counter.append(
            group_events.stream_id(group_id),
            [group_events.GroupCreated(group_id=group_id, name=name)],
            expected=store.NO_STREAM,
        )
        ids[name] = str(group_id)
    return ids


async def _services(counter: _Counter, config: hub_settings.Settings) -> None:
    current = {row["name"]: row for row in await counter.conn.fetch(queries["services_all"])}
    wanted = {s.name: s for s in config.services}
    for name, entry in wanted.items():
        row = current.get(name)
        url = entry.url
        if entry.command and url is not None and urlsplit(url).port == 0:
            # The hub picks its port at each start (service.started moves the url): keep the
            # last one rather than register port 0 again at every hub start.
            url = row["url"] if row is not None else None
        if row is None or row["admin"] != entry.admin or row["url"] != url:
            await counter.append(
                service_events.stream_id(name),
                [service_events.ServiceRegistered(name=name, admin=entry.admin, url=url)],
            )
        await _service_token(counter, name, entry.api_token)
    for name in current.keys() - wanted.keys():
        await counter.append(
            service_events.stream_id(name), [service_events.ServiceRemoved(name=name)]
        )


async def _service_token(counter: _Counter, service: str, api_token: SecretStr | None) -> None:
    """Keep exactly the configured token for ``service`` (none if none is configured)."""
    existing = [r["token_id"] for r in await counter.conn.fetch(queries["service_tokens"], service)]
    keep = None
    if api_token is not None:
        secret = api_token.get_secret_value()
        if len(secret) < 8:
            raise ConfigurationError(f"services: the api_token of {service!r} is too short")
        found = await counter.conn.fetchval(queries["token_secret_by_hash"], tokens.digest(secret))
        if found is not None and found not in existing:
            raise ConfigurationError(
                f"services: the api_token of {service!r} is already another token's"
            )
        keep = found
        if keep is None:
            issued = await tokens.issue(
                counter.session,
                owner_name=service,
                service=service,
                scopes=[scopes.INHERIT],
                note="from configuration",
                expires_in=None,
                now=datetime.now(UTC),
                metadata=STARTUP,
                secret=secret,
            )
            counter.count += 1
            keep = issued.token_id
    for token_id in existing:
        if token_id != keep:
            await counter.append(
                token_events.stream_id(token_id),
                [token_events.TokenRevoked(token_id=token_id, reason="replaced")],
            )


async def _grants(
    counter: _Counter,
    config: hub_settings.Settings,
    users: dict[str, str],
    groups: dict[str, str],
) -> None:
    """Configuration is authoritative for the holders of the roles it defines."""
    wanted: set[tuple[str, str, str, str]] = set()
    for entry in config.roles:
        wanted |= {(entry.name, "user", users[n.lower()], n.lower()) for n in entry.users}
        wanted |= {(entry.name, "group", groups[n], n) for n in entry.groups}
        wanted |= {(entry.name, "service", n, n) for n in entry.services}
    configured = {entry.name for entry in config.roles}
    current = {
        (r["role"], r["principal_kind"], r["principal"])
        for r in await counter.conn.fetch(queries["role_grants_all"])
        if r["role"] in configured
    }
    for role, kind, principal, name in sorted(wanted):
        if (role, kind, principal) not in current:
            await counter.append(
                role_events.stream_id(role),
                [
                    role_events.RoleGranted(
                        role=role, principal_kind=kind, principal=principal, principal_name=name
                    )
                ],
            )
    keys = {(role, kind, principal) for role, kind, principal, _ in wanted}
    for role, kind, principal in sorted(current - keys):
        await counter.append(
            role_events.stream_id(role),
            [
                role_events.RoleRevoked(
                    role=role, principal_kind=kind, principal=principal, principal_name=principal
                )
            ],
        )


async def _oauth_clients(session: store.Session, config: hub_settings.Settings) -> int:
    """The OAuth clients of the configured services (``hub/auth/oauth/clients.py``)."""
    try:
        return await oauth_clients.reconcile(session, config, STARTUP)
    except oauth_clients.ClientConfigError as exc:
        raise ConfigurationError(str(exc)) from exc
