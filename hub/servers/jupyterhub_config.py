"""Which JupyterHub spawner class to run, and its traitlets configuration.

``spawner_class`` names a class as JupyterHub does: a dotted path
(``jupyterhub.spawner.LocalProcessSpawner``, ``kubespawner.KubeSpawner``) or an entry point
name of the ``jupyterhub.spawners`` group (``simple``, ``localprocess``, ``kubespawner``). Its
configuration comes from a ``[spawner_config]`` table of the hub's TOML (each key a trait of
the class: ``c.<ClassName>.<trait>``) and/or a ``jupyterhub_config.py``-style file read by
traitlets' own loader. Every name is checked here, at start-up: an unknown class, a class
that is no JupyterHub ``Spawner``, or a trait the class does not have is an error naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from jupyterhub import spawner as jh_spawner
from traitlets import TraitError
from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, LazyConfigValue, PyFileConfigLoader

from hub import errors

ENTRY_POINTS = "jupyterhub.spawners"


class SpawnerConfigError(errors.HubError):
    """The spawner class or its configuration cannot be used (said at start-up)."""


def load_class(name: str) -> type[jh_spawner.Spawner]:
    """The JupyterHub spawner class ``name`` names (entry point name or dotted path)."""
    found: Any = None
    for entry in metadata.entry_points(group=ENTRY_POINTS):
        if entry.name == name:
            try:
                found = entry.load()
            except Exception as exc:  # an installed package's import may raise anything
                raise SpawnerConfigError(
                    f"spawner_class {name!r}: the entry point {entry.value!r} cannot be"
                    f" loaded: {type(exc).__name__}: {exc}"
                ) from exc
            break
    else:
        module_name, _, attribute = name.rpartition(".")
        if not module_name:
            known = sorted({e.name for e in metadata.entry_points(group=ENTRY_POINTS)})
            raise SpawnerConfigError(
                f"spawner_class {name!r} is neither a spawner entry point ({', '.join(known)})"
                " nor a dotted path module.Class"
            )
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SpawnerConfigError(
                f"spawner_class {name!r}: module {module_name!r} cannot be imported: {exc}"
            ) from exc
        except Exception as exc:  # the module's own code failed as it was imported
            raise SpawnerConfigError(
                f"spawner_class {name!r}: importing module {module_name!r} failed:"
                f" {type(exc).__name__}: {exc}"
            ) from exc
        found = getattr(module, attribute, None)
        if found is None:
            raise SpawnerConfigError(
                f"spawner_class {name!r}: module {module_name!r} has no {attribute!r}"
            )
    if not (isinstance(found, type) and issubclass(found, jh_spawner.Spawner)):
        raise SpawnerConfigError(
            f"spawner_class {name!r} is not a JupyterHub Spawner subclass"
            " (jupyterhub.spawner.Spawner)"
        )
    return found


def load_config(
    cls: type[jh_spawner.Spawner], table: Mapping[str, Any], file: Path | None
) -> Config:
    """The traitlets configuration: ``file`` (a ``jupyterhub_config.py``, run as code) first,
    then ``table`` (``[spawner_config]``), whose keys are traits of ``cls``."""
    config = Config()
    if file is not None:
        loader = PyFileConfigLoader(file.name, path=str(file.parent))
        try:
            config.merge(loader.load_config())
        except ConfigFileNotFound as exc:
            raise SpawnerConfigError(f"spawner_config_file {str(file)!r} does not exist") from exc
        except Exception as exc:  # the file is code: a syntax error, or anything it raises
            raise SpawnerConfigError(
                f"spawner_config_file {str(file)!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
    section = Config()
    for trait, value in table.items():
        section[trait] = value
    if table:
        config.merge(Config({cls.__name__: section}))
    check_traits(cls, config)
    check_values(cls, config)
    return config


def check_traits(cls: type[jh_spawner.Spawner], config: Config) -> None:
    """Refuse a configured trait that ``cls`` (or the base it is configured by) lacks."""
    traits = set(cls.class_trait_names(config=True))
    for base in cls.mro():
        if not isinstance(base, type) or base.__name__ not in config:
            continue
        section = config[base.__name__]
        if not isinstance(section, Config):
            continue
        unknown = sorted(set(section) - traits)
        if unknown:
            raise SpawnerConfigError(
                f"{base.__name__} has no configurable trait {', '.join(map(repr, unknown))}"
                f" (the spawner is {cls.__module__}.{cls.__name__})"
            )


def check_values(cls: type[jh_spawner.Spawner], config: Config) -> None:
    """Refuse a configured value of the wrong type now, at start-up, rather than at the
    first spawn: each value through its trait's own validation, on an instance made without
    ``__init__`` (which, for KubeSpawner or DockerSpawner, would reach for a cluster)."""
    make: Any = cls.__new__  # HasTraits.__new__ sets the instance's traits up
    probe = make(cls)
    # cross-validators (``@validate`` methods) may read what only __init__ sets: skipped
    probe._cross_validation_lock = True
    traits = cls.class_traits(config=True)
    for base in cls.mro():
        if not isinstance(base, type) or not isinstance(config.get(base.__name__), Config):
            continue
        for name, value in config[base.__name__].items():
            if name not in traits or isinstance(value, LazyConfigValue):
                continue  # unknown names are check_traits' to refuse; .append() etc. later
            try:
                traits[name]._validate(probe, value)
            except TraitError as exc:
                raise SpawnerConfigError(
                    f"{base.__name__}.{name} = {value!r} is refused by"
                    f" {cls.__module__}.{cls.__name__}: {exc}"
                ) from exc
