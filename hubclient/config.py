"""Where the hub is and which token to use, and the token ``chronohub login`` saves.

Precedence, first found wins: ``--hub``/``--token`` given on the command line (asked for
explicitly, so they beat the environment); ``JUPYTERHUB_API_URL``/``JUPYTERHUB_API_TOKEN``
(set in every server the hub spawns); ``CHRONOHUB_HUB``/``CHRONOHUB_TOKEN``; the credentials
file written by ``chronohub login`` (``$XDG_CONFIG_HOME/chronohub/credentials.json``, mode
0600). The hub and its token are found separately, but a token is only taken from the same
source as the hub, or from the credentials file saved for that very hub.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hubclient import errors

API_SUFFIX = "/hub/api"


@dataclass(frozen=True)
class Hub:
    """A hub's base URL (``http://host:port``, no trailing slash) and the token to use."""

    url: str
    token: str | None
    source: str  # where they were found, for messages

    @property
    def api(self) -> str:
        """The REST API's base URL."""
        return self.url + API_SUFFIX

    def git_url(self, owner: str, name: str) -> str:
        """The plain git URL of project ``owner/name`` (what a checkout's origin holds)."""
        return f"{self.url}/hub/git/{owner}/{name}.git"


@dataclass(frozen=True)
class Saved:
    """What ``chronohub login`` stored."""

    hub: str
    user: str
    token: str


def normalize(url: str) -> str:
    """A hub URL as given (base, ``…/hub``, ``…/hub/api``) as its base; ``errors.Usage`` if
    it is no http(s) URL."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.Usage(f"not a hub URL (http:// or https://): {url!r}")
    for suffix in (API_SUFFIX, "/hub"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
            break
    return url


def config_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/chronohub`` (``~/.config/chronohub`` by default)."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "chronohub"


def credentials_path(environ: Mapping[str, str]) -> Path:
    """Where ``chronohub login`` keeps its token."""
    return config_dir(environ) / "credentials.json"


def load_saved(environ: Mapping[str, str]) -> Saved | None:
    """The saved login, or None; ``errors.Usage`` naming the file if it is unreadable."""
    path = credentials_path(environ)
    try:
        data = json.loads(path.read_text())
        return Saved(hub=str(data["hub"]), user=str(data["user"]), token=str(data["token"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise errors.Usage(f"{path}: not a credentials file ({exc}); run chronohub login") from exc


def save(environ: Mapping[str, str], saved: Saved) -> Path:
    """Write the credentials file, readable by its owner only (created 0600, never wider)."""
    path = credentials_path(environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    # Created with mode 0600 from the start: a chmod after writing would leave a moment in
    # which the token is readable by others.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"hub": saved.hub, "user": saved.user, "token": saved.token}, out, indent=2)
    os.chmod(temporary, 0o600)  # an older file of that name may have had wider bits
    os.replace(temporary, path)
    return path


def discover(
    hub: str | None, token: str | None, environ: Mapping[str, str], *, need_token: bool = True
) -> Hub:
    """The hub and token to use (see the module's docstring); ``errors.Usage`` when no hub is
    known, ``errors.Access`` when no token is (unless ``need_token`` is false)."""
    saved = load_saved(environ)
    found: Hub | None = None
    if hub is not None:
        url = normalize(hub)
        secret = token
        paired = environ.get("CHRONOHUB_HUB")  # CHRONOHUB_TOKEN is that hub's, if it names one
        if secret is None and (not paired or normalize(paired) == url):
            secret = environ.get("CHRONOHUB_TOKEN")
        inside = environ.get("JUPYTERHUB_API_URL")
        if secret is None and inside and normalize(inside) == url:
            secret = environ.get("JUPYTERHUB_API_TOKEN")
        if secret is None and saved is not None and normalize(saved.hub) == url:
            secret = saved.token
        found = Hub(url, secret, "--hub")
    elif environ.get("JUPYTERHUB_API_URL"):
        found = Hub(
            normalize(environ["JUPYTERHUB_API_URL"]),
            token or environ.get("JUPYTERHUB_API_TOKEN"),
            "JUPYTERHUB_API_URL",
        )
    elif environ.get("CHRONOHUB_HUB"):
        found = Hub(
            normalize(environ["CHRONOHUB_HUB"]),
            token or environ.get("CHRONOHUB_TOKEN"),
            "CHRONOHUB_HUB",
        )
    elif saved is not None:
        found = Hub(normalize(saved.hub), token or saved.token, str(credentials_path(environ)))
    if found is None:
        raise errors.Usage(
            "no hub: run chronohub login URL, or give --hub URL --token TOKEN"
            " (inside a server the hub started, JUPYTERHUB_API_URL says where it is)"
        )
    if need_token and not found.token:
        raise errors.Access(
            f"no token for {found.url}: run chronohub login {found.url}, or give --token"
        )
    return found


def for_url(hub: Hub, url: str, environ: Mapping[str, str]) -> Hub | None:
    """The hub (and token) to use for git URL ``url``: ``hub`` if the URL is on it, the saved
    login's hub if it is on that one; None for any other URL (no token goes elsewhere)."""
    if url.startswith(hub.url + "/hub/git/"):
        return hub
    saved = load_saved(environ)
    if saved is not None and url.startswith(normalize(saved.hub) + "/hub/git/"):
        return Hub(normalize(saved.hub), saved.token, str(credentials_path(environ)))
    return None


def project_of(url: str) -> tuple[str, str, str] | None:
    """(hub base URL, owner, name) of a hub project's git URL; None for another URL."""
    marker = "/hub/git/"
    if marker not in url or not url.startswith(("http://", "https://")):
        return None
    base, _, rest = url.partition(marker)
    parts = rest.rstrip("/").removesuffix(".git").split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return base, parts[0], parts[1]
