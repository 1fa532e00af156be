"""``GET /hub/api/openapi.json``: chronohub's own OpenAPI document, from its pydantic models.

Request bodies are the models the handlers validate with, and replies are the models of
``hub/api/models.py``, which a test checks real replies against, so the document cannot
drift from what the API does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web
from pydantic.json_schema import models_json_schema

import events.catalog  # noqa: F401 - registers the hub's events, documented below
from events import models
from hub import version
from hub.api import auth as auth_api
from hub.api import collab as collab_api
from hub.api import groups as groups_api
from hub.api import models as api_models
from hub.api import project_content, service_reports
from hub.api import project_sessions as project_sessions_api
from hub.api import projects as projects_api
from hub.api import proxy as proxy_api
from hub.api import servers as servers_api
from hub.api import services as services_api
from hub.api import share_codes as share_codes_api
from hub.api import shares as shares_api
from hub.api import tokens as tokens_api
from hub.api import users as users_api
from hub.auth import scope_table
from hub.auth.oauth import provider as oauth_provider
from hub.web import idempotency

Model = type[pydantic.BaseModel]


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it needs, takes and answers."""

    method: str
    path: str
    summary: str
    scope: str | None = None
    request: Model | None = None
    status: int = 200
    reply: Model | None = None
    reply_list: bool = False  # a bare list of ``reply``
    page: Model | None = None  # the paginated form, with the pagination media type

    def __post_init__(self) -> None:
        if self.scope is not None:
            scope_table.known(self.scope)  # a misspelt scope fails at import


OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/", "The JupyterHub API version", reply=api_models.Version),
    Operation("get", "/info", "Versions and components", "read:hub", reply=api_models.Info),
    Operation("get", "/user", "Who the token belongs to, and its scopes", reply=api_models.Whoami),
    Operation(
        "get", "/users", "List users", "list:users", reply=api_models.User, reply_list=True,
        page=api_models.UserPage,
    ),
    Operation(
        "post", "/users", "Create users", "admin:users", users_api.CreateUsers, 201,
        api_models.User, reply_list=True,
    ),
    Operation("get", "/users/{name}", "A user", "read:users", reply=api_models.User),
    Operation(
        "post", "/users/{name}", "Create a user", "admin:users", users_api.CreateUser, 201,
        api_models.User,
    ),
    Operation(
        "patch", "/users/{name}", "Rename a user or change admin", "admin:users",
        users_api.ModifyUser, reply=api_models.User,
    ),
    Operation("delete", "/users/{name}", "Delete a user", "delete:users", status=204),
    Operation(
        "post", "/users/{name}/activity", "Report activity", "users:activity", users_api.Activity
    ),
    Operation(
        "get", "/users/{name}/tokens", "A user's tokens", "read:tokens", reply=api_models.Tokens
    ),
    Operation(
        "post", "/users/{name}/tokens", "Issue a token", "tokens", tokens_api.IssueToken, 201,
        api_models.NewToken,
    ),
    Operation(
        "get", "/users/{name}/tokens/{token_id}", "A token", "read:tokens", reply=api_models.Token
    ),
    Operation(
        "delete", "/users/{name}/tokens/{token_id}", "Revoke a token", "tokens", status=204
    ),
    Operation(
        "get", "/groups", "List groups", "list:groups", reply=api_models.Group, reply_list=True,
        page=api_models.GroupPage,
    ),
    Operation(
        "post", "/groups", "Create groups", "admin:groups", groups_api.CreateGroups, 201,
        api_models.Group, reply_list=True,
    ),
    Operation("get", "/groups/{name}", "A group", "read:groups", reply=api_models.Group),
    Operation(
        "post", "/groups/{name}", "Create a group", "admin:groups", groups_api.CreateGroup, 201,
        api_models.Group,
    ),
    Operation("delete", "/groups/{name}", "Delete a group", "delete:groups", status=204),
    Operation(
        "post", "/groups/{name}/users", "Add members", "groups", groups_api.Members,
        reply=api_models.Group,
    ),
    Operation(
        "delete", "/groups/{name}/users", "Remove members", "groups", groups_api.Members,
        reply=api_models.Group,
    ),
    Operation(
        "put", "/groups/{name}/properties", "Replace properties (any JSON object)", "groups",
        reply=api_models.Group,
    ),
    Operation(
        "get", "/events", "The event log, filtered (type, type_prefix, stream, actor, user,"
        " group, since, until, from_position, to_position, order, after/before, limit)",
        "read:events", reply=api_models.Event, reply_list=True, page=api_models.EventPage,
    ),
    Operation(
        "get", "/events/stream", "The event log as server-sent events (text/event-stream),"
        " from Last-Event-ID or ?after=, then live; same filters. A stream more than 10,000"
        " events behind is closed: reconnect with Last-Event-ID", "read:events",
    ),
    # login and OAuth (issue 4)
    Operation(
        "put", "/users/{name}/password", "Set a user's password (admin) or change your own",
        "admin:users", auth_api.SetPassword, 204,
    ),
    Operation(
        "get", "/signups", "Signup requests waiting for an admin", "admin:users",
        reply=auth_api.Signup, reply_list=True,
    ),
    Operation(
        "post", "/signups/{name}", "Approve a signup: the user is created", "admin:users",
        status=201, reply=api_models.User,
    ),
    Operation("delete", "/signups/{name}", "Reject a signup", "admin:users", status=204),
    Operation(
        "get", "/oauth2/authorize",
        "Start OAuth (browser, login cookie): consent page, or 302 to redirect_uri with a code",
        status=302,
    ),
    Operation(
        "post", "/oauth2/token",
        "Exchange a code (form-encoded; client_secret = the client's API token; PKCE"
        " code_verifier) for an access token",
        reply=oauth_provider.TokenReply,
    ),
    # Servers (hub/api/servers.py): 201 ready, 202 pending, text/plain bodies.
    Operation(
        "post", "/users/{name}/server", "Start the default server", "start:servers",
        servers_api.SpawnBody, 201,
    ),
    Operation("get", "/users/{name}/server", "The default server", "read:servers",
              reply=api_models.Server),
    Operation("delete", "/users/{name}/server", "Stop the default server", "delete:servers",
              status=204),
    Operation(
        "get", "/users/{name}/server/progress", "A spawn's progress (text/event-stream)",
        "read:servers",
    ),
    Operation(
        "post", "/users/{name}/servers/{server_name}", "Start a named server", "start:servers",
        servers_api.SpawnBody, 201,
    ),
    Operation("get", "/users/{name}/servers/{server_name}", "A named server", "read:servers",
              reply=api_models.Server),
    Operation(
        "put", "/users/{name}/servers/{server_name}", "Create a named server, stopped",
        "start:servers", servers_api.DefineBody, 201, api_models.Server,
    ),
    Operation(
        "patch", "/users/{name}/servers/{server_name}", "Change a stopped server",
        "start:servers", servers_api.ModifyBody, reply=api_models.Server,
    ),
    Operation(
        "delete", "/users/{name}/servers/{server_name}", "Stop (remove: delete) a named server",
        "delete:servers", servers_api.StopBody, 204,
    ),
    Operation(
        "get", "/users/{name}/servers/{server_name}/progress",
        "A spawn's progress (text/event-stream)", "read:servers",
    ),
    # The proxy (hub/api/proxy.py)
    Operation(
        "get", "/proxy", "The proxy's routing table (offset, limit; paginated on request)",
        "proxy", reply=api_models.ProxyTable,
    ),
    Operation("post", "/proxy", "Re-sync the proxy with the routes read model now", "proxy"),
    Operation(
        "patch", "/proxy", "Point the hub at another configurable-http-proxy (400 when the"
        " proxy is the built-in one)", "proxy", proxy_api.PatchBody,
    ),
    # Sharing servers (hub/api/shares.py), JupyterHub 5's: always paginated
    Operation(
        "get", "/shares/{owner}", "Shares of any of the owner's servers", "read:shares",
        reply=shares_api.SharePage,
    ),
    Operation(
        "get", "/shares/{owner}/{server_name}", "Shares of one server ('' for the default)",
        "read:shares", reply=shares_api.SharePage,
    ),
    Operation(
        "post", "/shares/{owner}/{server_name}", "Give a user or group scopes on the server"
        " (default access:servers!server=owner/name; also needs read:users:name or"
        " read:groups:name on the recipient)", "shares", shares_api.Grant,
        reply=shares_api.Share,
    ),
    Operation(
        "patch", "/shares/{owner}/{server_name}", "Take scopes back (all if none): the share"
        " left, or {}", "shares", shares_api.Revoke, reply=shares_api.Share,
    ),
    Operation("delete", "/shares/{owner}/{server_name}", "End every share of the server",
              "shares", status=204),
    Operation(
        "get", "/share-codes/{owner}", "Live share codes of the owner's servers", "read:shares",
        reply=share_codes_api.ShareCodePage,
    ),
    Operation(
        "get", "/share-codes/{owner}/{server_name}", "Live share codes of one server",
        "read:shares", reply=share_codes_api.ShareCodePage,
    ),
    Operation(
        "post", "/share-codes/{owner}/{server_name}", "Issue a share code (returned once;"
        " accepted at /hub/accept-share?code=)", "shares", share_codes_api.NewCode,
        reply=share_codes_api.NewShareCode,
    ),
    Operation(
        "delete", "/share-codes/{owner}/{server_name}", "Revoke a code (?code= or ?id=), or"
        " every code of the server", "shares", status=204,
    ),
    Operation(
        "get", "/users/{name}/shared", "Shares given to the user, directly or through groups",
        "read:users:shares", reply=shares_api.SharePage,
    ),
    Operation(
        "get", "/users/{name}/shared/{owner}/{server_name}", "The user's share of a server",
        "read:users:shares", reply=shares_api.Share,
    ),
    Operation(
        "delete", "/users/{name}/shared/{owner}/{server_name}", "The user leaves a shared"
        " server", "users:shares", status=204,
    ),
    Operation(
        "get", "/groups/{name}/shared", "Shares given to the group", "read:groups:shares",
        reply=shares_api.SharePage,
    ),
    Operation(
        "get", "/groups/{name}/shared/{owner}/{server_name}", "The group's share of a server",
        "read:groups:shares", reply=shares_api.Share,
    ),
    Operation(
        "delete", "/groups/{name}/shared/{owner}/{server_name}", "End a group's share of a"
        " server", "groups:shares", status=204,
    ),
    # Shared execution sessions (hub/api/collab.py): chronohub's own, on a room's scopes.
    Operation(
        "post", "/collab/sessions", "Start a shared execution session: a room holding the"
        " notebook, and one kernel", "write:collab", collab_api.CreateSession, 201,
        collab_api.CollabSession,
    ),
    Operation(
        "get", "/collab/sessions", "The running sessions whose rooms the caller may read",
        "read:collab", reply=collab_api.CollabSessions,
    ),
    Operation(
        "get", "/collab/sessions/{session_id}", "A session's state", "read:collab",
        reply=collab_api.CollabSession,
    ),
    Operation(
        "delete", "/collab/sessions/{session_id}", "End a session (the room and its notebook"
        " stay)", "write:collab", status=204,
    ),
    Operation(
        "post", "/collab/sessions/{session_id}/execute", "Run a code cell in the shared kernel;"
        " outputs go into the room's document", "write:collab", collab_api.ExecuteCell, 202,
        collab_api.ExecutionAccepted,
    ),
    Operation(
        "post", "/collab/sessions/{session_id}/interrupt", "Interrupt the running cell",
        "write:collab", reply=collab_api.CollabSession,
    ),
    Operation(
        "post", "/collab/sessions/{session_id}/restart", "Restart the kernel (queued requests"
        " are aborted)", "write:collab", reply=collab_api.KernelRestarted,
    ),
    Operation(
        "post", "/collab/sessions/{session_id}/commit", "Commit the room's notebook to its"
        " project (a session opened on one): 201 on the session's branch, 409 on"
        " collab/<session> when that branch moved since; authored by the caller, every other"
        " editor a Co-authored-by", "write:collab", project_sessions_api.CommitSession, 201,
        project_sessions_api.SessionCommit,
    ),
    # Sessions on a project's notebook (hub/api/project_sessions.py): the project's roles.
    Operation(
        "post", "/projects/{owner}/{name}/sessions", "Open a shared execution session on a"
        " notebook of the project at a ref (the write role on it); its write members edit and"
        " run, its readers watch", "write:collab", project_sessions_api.OpenSession, 201,
        project_sessions_api.ProjectSession,
    ),
    Operation(
        "get", "/projects/{owner}/{name}/sessions", "The project's running sessions",
        "read:projects", reply=project_sessions_api.ProjectSessions,
    ),
    # Browsing a project without a clone (hub/api/project_content.py): the read role on it.
    Operation(
        "get", "/projects/{owner}/{name}/refs", "A project's branches and tags",
        "read:projects", reply=project_content.ProjectRef, reply_list=True,
    ),
    Operation(
        "get", "/projects/{owner}/{name}/commits", "A ref's history, newest first (?ref="
        " branch, tag or sha, default: the default branch; ?path= only commits changing it;"
        " offset, limit)", "read:projects", reply=project_content.ProjectCommit,
        reply_list=True, page=project_content.ProjectCommitPage,
    ),
    Operation(
        "get", "/projects/{owner}/{name}/tree/{ref}/{path}", "A directory's entries at a ref"
        " (…/tree/{ref}/ for the root; ?recursive=true for everything below)",
        "read:projects", reply=project_content.ProjectTree,
    ),
    Operation(
        "get", "/projects/{owner}/{name}/raw/{ref}/{path}", "A file's bytes, with a type"
        " guessed from its name (HTML, SVG and XML as attachments; nosniff, sandboxing CSP)",
        "read:projects",
    ),
    Operation(
        "get", "/projects/{owner}/{name}/compare/{base}...{head}", "The files changed from the"
        " merge base of base and head to head: a patch per text file, notebooks by cell",
        "read:projects", reply=project_content.Comparison,
    ),
    # Services (hub/api/services.py): JupyterHub's model, with chronohub's state of the
    # managed ones.
    Operation(
        "get", "/services", "The services the caller may list, by name", "list:services",
        reply=api_models.ServiceMap,
    ),
    Operation(
        "get", "/services/{name}", "A service (command and pid with read:services only)",
        services_api.READ_SERVICE_SCOPES[0], reply=api_models.Service,
    ),
    Operation(
        "post", "/services/{name}/events", "The service reports what it did, into the log"
        " (service.reported on its stream; only the service itself, with its own token)",
        None, service_reports.Report, 201, service_reports.Reported,
    ),
    # Git projects (hub/api/projects.py): roles given on a project count as these scopes on it.
    Operation(
        "get", "/projects", "The projects the caller can read (?owner=, ?shared_with_me=true)",
        "read:projects", reply=api_models.Project, reply_list=True, page=api_models.ProjectPage,
    ),
    Operation(
        "post", "/projects", "Create a project (empty: objects arrive with the first push)",
        "admin:projects", projects_api.CreateProject, 201, api_models.Project,
    ),
    Operation(
        "get", "/projects/{owner}/{name}", "A project (an old name answers 404 naming the new"
        " one)", "read:projects", reply=api_models.Project,
    ),
    Operation(
        "patch", "/projects/{owner}/{name}", "Change a project's settings, or rename it"
        " (name): the repository is kept, the old name answers with the new one",
        "admin:projects", projects_api.UpdateProject, reply=api_models.Project,
    ),
    Operation(
        "delete", "/projects/{owner}/{name}", "Delete a project and its repository",
        "admin:projects", status=204,
    ),
    Operation(
        "get", "/projects/{owner}/{name}/members", "Who holds which role: users, then groups",
        "read:projects", reply=api_models.ProjectMember, reply_list=True,
    ),
    Operation(
        "put", "/projects/{owner}/{name}/members/users/{member}", "Give a user a role",
        "admin:projects", projects_api.Membership, reply=api_models.ProjectMember,
    ),
    Operation(
        "delete", "/projects/{owner}/{name}/members/users/{member}", "Take a user's role back",
        "admin:projects", status=204,
    ),
    Operation(
        "put", "/projects/{owner}/{name}/members/groups/{member}", "Give a group (its members)"
        " a role", "admin:projects", projects_api.Membership, reply=api_models.ProjectMember,
    ),
    Operation(
        "delete", "/projects/{owner}/{name}/members/groups/{member}", "Take a group's role"
        " back", "admin:projects", status=204,
    ),
    Operation(
        "get", "/projects/{owner}/{name}/access", "Who could read, write or manage the project"
        " at ?at=<event position or ISO time> (default now), and through what, from the log;"
        " for its admins, or auditors with read:events:projects on it", "admin:projects",
        reply=api_models.ProjectAccess,
    ),
    Operation(
        "post", "/projects/{owner}/{name}/sync", "Fetch an imported project's source again:"
        " fast-forwarding refs move, diverged ones are listed under refused with the reason",
        "write:projects",
    ),
)  # fmt: skip


def _ref(model: Model) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


# hub/web/idempotency.py: a write retried with the same key gets the first answer again.
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "Send the request again with the same key to get the first answer (marked"
    " Idempotent-Replayed: true) and write nothing twice; 422 if the key was used with another"
    " request, 409 while its first request is under way",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        "pattern": "^[ -~]+$",
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API built so far."""
    documented: set[Model] = {api_models.Error}
    for op in OPERATIONS:
        documented |= {m for m in (op.request, op.reply, op.page) if m is not None}
    _, definitions = models_json_schema(
        [(m, "serialization") for m in sorted(documented, key=lambda m: m.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        success: dict[str, Any] = {"description": op.summary}
        if op.reply is not None:
            schema = {"type": "array", "items": _ref(op.reply)} if op.reply_list else _ref(op.reply)
            success["content"] = _json(schema)
            if op.page is not None:
                success["content"]["application/jupyterhub-pagination+json"] = {
                    "schema": _ref(op.page)
                }
        operation: dict[str, Any] = {
            "summary": op.summary,
            "responses": {
                str(op.status): success,
                "default": {"description": "An error", "content": _json(_ref(api_models.Error))},
            },
        }
        if op.scope:
            operation["security"] = [{"token": [op.scope]}]
        params = re.findall(r"\{(\w+)\}", op.path)
        parameters: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
        if op.method in ("post", "patch", "put", "delete"):
            parameters.append({"$ref": "#/components/parameters/IdempotencyKey"})
        if parameters:
            operation["parameters"] = parameters
        if op.request is not None:
            operation["requestBody"] = {"required": True, "content": _json(_ref(op.request))}
        paths.setdefault(op.path, {})[op.method] = operation
    schemas = definitions.get("$defs", {})
    for type_name in sorted(models.registry.types()):
        schemas[f"event.{type_name}"] = models.registry.model(type_name).model_json_schema()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chronohub REST API",
            "version": version.CHRONOHUB,
            "description": f"JupyterHub's REST API (version {version.JUPYTERHUB_API}) as far as"
            " chronohub implements it.",
        },
        "servers": [{"url": "/hub/api"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {"IdempotencyKey": IDEMPOTENCY_KEY},
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    """Serve the document."""
    return web.json_response(document())


def routes() -> list[web.RouteDef]:
    """The routes of this module."""
    return [web.get("/hub/api/openapi.json", openapi)]
