"""``GET /hub/api/openapi.json``: chronohub's own OpenAPI document, from its pydantic models.

Request bodies are the models the handlers validate with, so the document cannot drift
from what the API accepts.
"""

from __future__ import annotations

from typing import Any

import pydantic
from aiohttp import web

from hub import groups_api, tokens_api, users_api, version

ERROR = {
    "type": "object",
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
    "required": ["status", "message"],
}

# (method, path, summary, scope, request model)
OPERATIONS: list[tuple[str, str, str, str | None, type[pydantic.BaseModel] | None]] = [
    ("get", "/", "The JupyterHub API version", None, None),
    ("get", "/info", "Versions and components of the hub", "read:hub", None),
    ("get", "/user", "Who the token belongs to, and its scopes", None, None),
    ("get", "/users", "List users (paginated)", "list:users", None),
    ("post", "/users", "Create users", "admin:users", users_api.CreateUsers),
    ("get", "/users/{name}", "A user", "read:users", None),
    ("post", "/users/{name}", "Create a user", "admin:users", users_api.CreateUser),
    (
        "patch",
        "/users/{name}",
        "Rename a user or change admin",
        "admin:users",
        users_api.ModifyUser,
    ),
    ("delete", "/users/{name}", "Delete a user", "delete:users", None),
    ("post", "/users/{name}/activity", "Report activity", "users:activity", users_api.Activity),
    ("get", "/users/{name}/tokens", "A user's tokens", "read:tokens", None),
    ("post", "/users/{name}/tokens", "Issue a token", "tokens", tokens_api.IssueToken),
    ("get", "/users/{name}/tokens/{token_id}", "A token", "read:tokens", None),
    ("delete", "/users/{name}/tokens/{token_id}", "Revoke a token", "tokens", None),
    ("get", "/groups", "List groups (paginated)", "list:groups", None),
    ("post", "/groups", "Create groups", "admin:groups", groups_api.CreateGroups),
    ("get", "/groups/{name}", "A group", "read:groups", None),
    ("post", "/groups/{name}", "Create a group", "admin:groups", groups_api.CreateGroup),
    ("delete", "/groups/{name}", "Delete a group", "delete:groups", None),
    ("post", "/groups/{name}/users", "Add members", "groups", groups_api.Members),
    ("delete", "/groups/{name}/users", "Remove members", "groups", groups_api.Members),
    ("put", "/groups/{name}/properties", "Replace properties", "groups", None),
]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API built so far."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": ERROR}
    for method, path, summary, scope, model in OPERATIONS:
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "default": {
                    "description": "An error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
                "200": {"description": "Success"},
            },
        }
        if scope:
            operation["security"] = [{"token": [scope]}]
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if model is not None:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas[name] = definition
            schemas[model.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
        paths.setdefault(path, {})[method] = operation
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
