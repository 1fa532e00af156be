"""A managed service's environment: JupyterHub's service contract, and little of the hub's own.

The variables are those JupyterHub 6's ``Service.start`` and ``Spawner.get_env`` give a
managed service, so JupyterHub's ``HubAuth``/``HubOAuth`` and tools written for JupyterHub
(``jupyterhub-idle-culler``) run unchanged. Two things are done better than JupyterHub does:
``JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES`` carries the service's configured scopes (JupyterHub
always passes ``[]``), and ``JUPYTERHUB_API_URL`` is the address the hub really listens on.

Of the hub's own environment only what a program needs to run passes (``KEEP``: the path,
the locale, the time zone, the home directory, the Python environment): the hub's may hold its
database URL, PostgreSQL credentials or other ``CHRONOHUB_*`` settings, which a service must
never see. The configured ``environment`` comes last and overrides everything, as in
JupyterHub.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from hub import settings as hub_settings

# The hub's variables a service inherits (JupyterHub's env_keep, with HOME and TZ added).
KEEP = (
    "PATH",
    "PYTHONPATH",
    "LD_LIBRARY_PATH",
    "VIRTUAL_ENV",
    "HOME",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
)
# Prefixes of kept variables: the locale categories and conda's.
KEEP_PREFIXES = ("LC_", "CONDA_")


@dataclass(frozen=True)
class Addresses:
    """Where a service reaches the hub."""

    api_url: str  # http://127.0.0.1:8081/hub/api
    public_url: str | None = None  # the configured public_url (https://hub.example.org/)


def kept(environ: Mapping[str, str]) -> dict[str, str]:
    """The hub's own variables a service inherits."""
    return {
        key: value
        for key, value in environ.items()
        if key in KEEP or (key.startswith(KEEP_PREFIXES) and not key.startswith("CHRONOHUB_"))
    }


def prefix(name: str) -> str:
    """``/services/<name>/``, where the proxy routes the service."""
    return f"/services/{name}/"


def client_id(entry: hub_settings.ServiceConfig) -> str:
    """The service's OAuth client id (JupyterHub's default ``service-<name>``)."""
    return entry.oauth_client_id or f"service-{entry.name}"


def build(
    entry: hub_settings.ServiceConfig,
    *,
    token: str,
    url: str | None,
    addresses: Addresses,
    environ: Mapping[str, str],
) -> dict[str, str]:
    """The whole environment of one start of ``entry``: ``token`` is its API token, ``url``
    where it is to listen (None: it serves no HTTP)."""
    access = [f"access:services!service={entry.name}"]
    env = kept(environ)
    env.update(
        {
            "JUPYTERHUB_SERVICE_NAME": entry.name,
            "JUPYTERHUB_API_TOKEN": token,
            "JPY_API_TOKEN": token,  # the old name, which old tools still read
            "JUPYTERHUB_CLIENT_ID": client_id(entry),
            "JUPYTERHUB_API_URL": addresses.api_url,
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_USER": "",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(access),
            "JUPYTERHUB_OAUTH_SCOPES": json.dumps(access),  # the old name
            "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": json.dumps(entry.oauth_client_allowed_scopes),
            "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        }
    )
    if url is not None:
        path = prefix(entry.name)
        env["JUPYTERHUB_SERVICE_URL"] = url
        env["JUPYTERHUB_SERVICE_PREFIX"] = path
        env["JUPYTERHUB_OAUTH_CALLBACK_URL"] = entry.oauth_redirect_uri or path + "oauth_callback"
    if addresses.public_url:
        public = addresses.public_url.rstrip("/")
        env["JUPYTERHUB_PUBLIC_URL"] = public + (prefix(entry.name) if url is not None else "/")
        env["JUPYTERHUB_PUBLIC_HUB_URL"] = public + "/hub/"
    env.update(entry.environment)
    return env
