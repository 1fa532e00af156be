"""Find a JupyterHub authenticator class and its traitlets configuration.

The class is named as JupyterHub names it: a dotted import path
(``oauthenticator.generic.GenericOAuthenticator``) or an entry point name of the
``jupyterhub.authenticators`` group (``generic-oauth``, ``pam``). Its configuration comes
from ``[authenticator_config.<ClassName>]`` tables of the settings and/or a
``jupyterhub_config.py``-style file, read with traitlets' own ``PyFileConfigLoader``; such a
file is Python code run at startup, with the hub's rights. A trait the class does not have
is an error here (traitlets would only warn, and the setting would silently do nothing).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader
from traitlets.utils.importstring import import_item

ENTRY_POINT_GROUP = "jupyterhub.authenticators"


class AuthenticatorConfigError(ValueError):
    """The authenticator class or its configuration is unusable; the message says why."""


def base() -> type[Any]:
    from jupyterhub.auth import Authenticator  # the package is a dependency of the hub

    return Authenticator  # type: ignore[no-any-return]


def resolve(name: str) -> type[Any]:
    """The authenticator class ``name`` names (dotted path or entry point name)."""
    found: Any = None
    if "." in name:
        try:
            found = import_item(name)
        except (ImportError, AttributeError) as exc:
            raise AuthenticatorConfigError(
                f"authenticator_class {name!r} cannot be imported: {exc}"
            ) from exc
    else:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not points:
            known = sorted(p.name for p in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            raise AuthenticatorConfigError(
                f"authenticator_class {name!r} is neither a dotted class name nor an entry point"
                f" of {ENTRY_POINT_GROUP} (installed: {', '.join(known) or 'none'})"
            )
        try:
            found = next(iter(points)).load()
        except (ImportError, AttributeError) as exc:
            raise AuthenticatorConfigError(
                f"authenticator_class {name!r} cannot be loaded: {exc}"
            ) from exc
    if not (isinstance(found, type) and issubclass(found, base())):
        raise AuthenticatorConfigError(
            f"authenticator_class {name!r} is not a JupyterHub Authenticator"
            " (a subclass of jupyterhub.auth.Authenticator)"
        )
    return found


def load(cls: type[Any], tables: dict[str, dict[str, Any]], path: Path | None) -> Config:
    """The traitlets ``Config`` for ``cls``: the file's, then the tables' over it.

    Every section that names ``cls`` or one of its bases (``Authenticator``,
    ``OAuthenticator``…) is checked trait by trait. A file may configure other classes too
    (``c.JupyterHub``, ``c.Spawner``: the spawner adapter reads those); the tables may not.
    """
    config = Config()
    if path is not None:
        loader = PyFileConfigLoader(path.name, path=str(path.parent))
        try:
            config.merge(loader.load_config())
        except ConfigFileNotFound as exc:
            raise AuthenticatorConfigError(
                f"authenticator_config_file {str(path)!r} does not exist"
            ) from exc
        except Exception as exc:  # the file is code: any error it raises
            raise AuthenticatorConfigError(
                f"authenticator_config_file {str(path)!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    names = {base.__name__: base for base in cls.mro() if hasattr(base, "class_traits")}
    for section in tables:
        if section not in names:
            raise AuthenticatorConfigError(
                f"[authenticator_config.{section}] does not configure {cls.__name__}"
                f" (its configurable classes: {', '.join(sorted(names))})"
            )
    config.merge(Config({section: dict(values) for section, values in tables.items()}))
    for section in names.keys() & set(config.keys()):
        known = names[section].class_traits(config=True)
        for trait in config[section]:
            if trait not in known:
                raise AuthenticatorConfigError(
                    f"{section}.{trait} is not a configurable trait of {cls.__name__}"
                    f" (see {cls.__module__}.{cls.__name__}'s documentation)"
                )
    return config
