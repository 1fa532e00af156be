"""``/hub/api/services``: the services the hub knows, as JupyterHub's service model.

* ``GET /services``: a dict name → model of the services the caller may list
  (``list:services``, restricted by ``!service=`` filters), as JupyterHub's handler answers
  (its spec says a list);
* ``GET /services/{name}``: one service, with any of ``read:services``,
  ``read:services:name`` or ``read:roles:services`` on it.

Fields appear as JupyterHub shows them (``service_model`` in its ``apihandlers/base.py``):
``read:services`` shows kind, name, admin, url, prefix, command, pid, info and display;
``read:services:name`` kind, name and admin; ``read:roles:services`` kind, name, roles and
admin. chronohub adds, with ``read:services``, whether the hub runs the service (``managed``)
and how a managed one is doing (``state``, ``since``, ``restarts``, ``last_exit``,
``last_error``) as the supervisor in this hub process knows it, and how its webhook's
deliveries are doing (``webhook``, hub/audit/webhooks.py). Services come from the
configuration only: there is no runtime ``POST``/``DELETE`` here (yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from events import sql
from hub import errors
from hub import settings as hub_settings
from hub.api import users as users_api
from hub.audit import webhooks
from hub.auth import access, scope_table, scopes
from hub.context import HUB
from hub.services import environment
from hub.services import supervisor as services_supervisor

queries = sql.Queries(__package__ or "hub.api", "services.sql")

STATUS_FIELDS = frozenset(
    {"managed", "state", "since", "restarts", "last_exit", "last_error", "webhook"}
)
FIELDS_BY_SCOPE: dict[str, frozenset[str]] = {
    scope_table.READ_SERVICES: frozenset(
        {"kind", "name", "admin", "url", "prefix", "command", "pid", "info", "display"}
    )
    | STATUS_FIELDS,
    scope_table.READ_SERVICES_NAME: frozenset({"kind", "name", "admin"}),
    scope_table.READ_ROLES_SERVICES: frozenset({"kind", "name", "roles", "admin"}),
}
READ_SERVICE_SCOPES = list(FIELDS_BY_SCOPE)
SERVICE_KINDS: tuple[scopes.Kind, ...] = ("service",)


@dataclass
class ServicesState:
    """The supervisor of this hub's managed services, once it runs (``app._serve`` starts it
    after the application is built, so the application holds this and it is filled in)."""

    supervisor: services_supervisor.Supervisor | None = None


SERVICES = web.AppKey("services_state", ServicesState)


def _entries(config: hub_settings.Settings) -> dict[str, hub_settings.ServiceConfig]:
    return {entry.name: entry for entry in config.services}


def model(
    row: Any,
    entry: hub_settings.ServiceConfig | None,
    live: services_supervisor.Service | None,
    webhook: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole model of one service (before fields are filtered by scope)."""
    url = row["url"] or ""
    managed = bool(entry is not None and entry.command)
    full: dict[str, Any] = {
        "kind": "service",
        "name": row["name"],
        "admin": row["admin"],
        "roles": list(row["roles"]),
        "url": url,
        "prefix": environment.prefix(row["name"]) if url else "",
        "command": list(entry.command) if entry is not None else [],
        "pid": live.pid if live is not None else 0,
        "info": dict(entry.info) if entry is not None else {},
        "display": entry.display if entry is not None else True,
        "managed": managed,
        "state": None,
        "since": None,
        "restarts": None,
        "last_exit": None,
        "last_error": None,
        "webhook": webhook,
    }
    if live is not None:
        full.update(live.status())
    return full


def render(full: dict[str, Any], caller: access.Caller, fields: frozenset[str] | None) -> Any:
    """``full`` with only the fields the caller's scopes grant on it."""
    if fields is None:  # some scope is filtered: decide for this service
        target = scopes.Filter.service(full["name"])
        fields = frozenset().union(
            *(g for s, g in FIELDS_BY_SCOPE.items() if caller.grants.allows(s, target))
        )
    return {key: value for key, value in full.items() if key in fields}


def _live(request: web.Request) -> dict[str, services_supervisor.Service]:
    supervisor = request.app[SERVICES].supervisor if SERVICES in request.app else None
    return supervisor.services if supervisor is not None else {}


async def list_services(request: web.Request) -> web.Response:
    """``GET /services``."""
    hub = request.app[HUB]
    caller = access.require_list(request, scope_table.LIST_SERVICES, kinds=SERVICE_KINDS)
    filters = caller.grants.filters(scope_table.LIST_SERVICES)
    async with hub.store.pool.acquire() as conn:
        rows = await conn.fetch(queries["services_with_roles"])
    entries, live = _entries(hub.settings), _live(request)
    fields = users_api.visible_fields(caller, FIELDS_BY_SCOPE)
    reply = {
        row["name"]: render(
            model(
                row,
                entries.get(row["name"]),
                live.get(row["name"]),
                webhooks.status(request.app, row["name"]),
            ),
            caller,
            fields,
        )
        for row in rows
        if filters.everything or row["name"] in filters.services
    }
    return web.json_response(reply)


async def get_service(request: web.Request) -> web.Response:
    """``GET /services/{name}``."""
    hub = request.app[HUB]
    name = request.match_info["name"]
    async with hub.store.pool.acquire() as conn:
        caller = await access.require(
            request, conn, READ_SERVICE_SCOPES, scopes.Filter.service(name)
        )
        row = await conn.fetchrow(queries["service_by_name"], name)
    if row is None:
        raise errors.NotFound(f"No such service: {name}")
    full = model(
        row,
        _entries(hub.settings).get(name),
        _live(request).get(name),
        webhooks.status(request.app, name),
    )
    return web.json_response(render(full, caller, None))


async def displayed(request: web.Request, caller: access.Caller) -> list[dict[str, Any]]:
    """The services ``caller`` may open in a browser, for the home page: shown (``display``),
    with a url, and ``access:services`` on them. Each: name, prefix, info."""
    hub = request.app[HUB]
    async with hub.store.pool.acquire() as conn:
        rows = await conn.fetch(queries["services_with_roles"])
    entries = _entries(hub.settings)
    shown = []
    for row in rows:
        entry = entries.get(row["name"])
        if not row["url"] or (entry is not None and not entry.display):
            continue
        if not caller.grants.allows(
            scope_table.ACCESS_SERVICES, scopes.Filter.service(row["name"])
        ):
            continue
        shown.append(
            {
                "name": row["name"],
                "prefix": environment.prefix(row["name"]),
                "info": dict(entry.info) if entry is not None else {},
            }
        )
    return shown


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [
        web.get("/hub/api/services", list_services),
        web.get("/hub/api/services/{name}", get_service),
    ]
