"""The configuration reference, ``docs/configuration.md``, written from ``hub/settings.py``.

    python docs/tools/config_reference.py           # write the page (make docs does)
    python docs/tools/config_reference.py --check   # exit 1 when the checked-in page is stale

Every setting's name, environment variable, type, default and description come from the
pydantic model, so they are written once, in the code. The page is checked in rather than
generated only at build time so that it can be read where the code is (and from README's
link) without building the site; the site's build (``docs/tools/hooks.py``) and a unit test
refuse a page that no longer matches the settings.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from hub import settings

PAGE = Path(__file__).resolve().parent.parent / "configuration.md"
FRESHEN = "python docs/tools/config_reference.py (or make docs)"

# Where a section of the reference begins (the settings are listed in the order hub/settings.py
# defines them), its title, and the page that says how those settings are used.
SECTIONS: dict[str, tuple[str, str]] = {
    "database_url": ("The hub: database, addresses, API", "operations.md"),
    "authenticator": ("Login, browser sessions and OAuth", "login.md"),
    "project_max_push_bytes": ("Git projects", "projects.md"),
    "spawner_cmd": ("Servers and the proxy", "servers.md"),
    "collab_max_message_bytes": ("Collaboration", "collaboration.md"),
    "single_user_mode": ("Whose account users' code runs as; the embedded database", "security.md"),
}

# The settings whose values are tables of their own in the TOML file.
TABLES: dict[str, tuple[str, type[BaseModel], str]] = {
    "oauth": ("[oauth]", settings.UpstreamOAuthConfig, "login.md"),
    "services": ("[[services]]", settings.ServiceConfig, "services.md"),
    "roles": ("[[roles]]", settings.RoleConfig, "api.md#configuration"),
}

INTRO = f"""\
# Configuration reference

<!-- Generated from hub/settings.py by docs/tools/config_reference.py: do not edit by hand.
     Change a setting's description in hub/settings.py, then run: {FRESHEN} -->

One settings object (`hub/settings.py`, pydantic-settings) holds every setting of a chronohub
process. It is read from, in order of precedence:

1. command-line options: `chronohub serve --ip IP --port PORT --hub-ip IP --hub-port PORT`;
2. environment variables: `CHRONOHUB_` and the setting's name in capitals (for a list, a
   dictionary or a table, its value as JSON: `CHRONOHUB_ADMIN_USERS='["ada"]'`);
3. the TOML file named by `{settings.CONFIG_ENV}` (default `./{settings.DEFAULT_CONFIG}`), where
   a setting's name is its key: `port = 8010`;
4. the defaults below.

An unknown key in the file is refused at start-up. The file may hold secrets (tokens, client
secrets): keep it mode 0600. The database is, in order: `database_url` (or `DATABASE_URL`),
the standard `PG*` variables (when `PGHOST` or `PGDATABASE` is set), else an embedded
PostgreSQL in `data_dir` (see [Operations](operations.md)).

```toml
# chronohub.toml
port = 8010
admin_users = ["ada", "ben"]

[[roles]]
name = "idle-culler"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["idle-culler"]
```
"""


def render() -> str:
    """The whole page, as Markdown."""
    return "\n".join(_page()).rstrip("\n") + "\n"


def _page() -> Iterator[str]:
    fields = settings.Settings.model_fields
    missing = sorted(SECTIONS.keys() - fields.keys()) + sorted(TABLES.keys() - fields.keys())
    if missing:
        raise SystemExit(f"docs/tools/config_reference.py names settings that are gone: {missing}")
    yield INTRO
    for name, field in fields.items():
        if name in SECTIONS:
            title, page = SECTIONS[name]
            yield f"## {title}\n"
            yield f"How these are used: [{_title_of(page)}]({page}).\n"
        yield from _setting(name, field)
    for name, (toml, model, page) in TABLES.items():
        yield f"## The `{toml}` table{'s' if toml.startswith('[[') else ''}\n"
        yield (
            f"The fields of each entry of `{name}`, in the TOML file under `{toml}` (in the"
            f" environment, `CHRONOHUB_{name.upper()}` holds the whole value as JSON). How"
            f" they are used: [{_title_of(page)}]({page}).\n"
        )
        for key, field in model.model_fields.items():
            yield from _setting(f"{name}.{key}", field, environment=False)
    yield "## Renamed settings\n"
    yield (
        "These names are refused at start-up with a message naming the setting that replaced"
        " them:\n"
    )
    for old, (new, why) in settings.RENAMED.items():
        yield f"- `{old}` (`CHRONOHUB_{old.upper()}`): now [`{new}`](#{new}): {why}."
    yield ""


def _title_of(page: str) -> str:
    """The first heading of a docs page, without its '# '."""
    path = PAGE.parent / page.partition("#")[0]
    return path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ")


def _setting(name: str, field: FieldInfo, *, environment: bool = True) -> Iterator[str]:
    """One setting: a heading (its anchor is its name), what it is, then its description."""
    if not field.description:
        raise SystemExit(f"hub/settings.py: {name} has no description")
    yield f"### `{name}`\n"
    facts = [f"**{_type(field.annotation)}**{_constraints(field)}", f"default {_default(field)}"]
    if environment:
        json = " (JSON)" if get_origin(field.annotation) in (list, dict) or _is_table(field) else ""
        facts.append(", ".join(f"`{variable}`" for variable in _variables(name, field)) + json)
    yield " · ".join(facts) + "\n"
    description = field.description.strip()
    yield description + ("" if description.endswith(".") else ".") + "\n"


def _is_table(field: FieldInfo) -> bool:
    """Whether a setting's value is a table (a model), alone or with None."""
    kinds = get_args(field.annotation) or (field.annotation,)
    return any(isinstance(kind, type) and issubclass(kind, BaseModel) for kind in kinds)


def _variables(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a setting is read from."""
    choices = getattr(field.validation_alias, "choices", None)
    if choices:
        return [choice for choice in choices if isinstance(choice, str) and choice.isupper()]
    return [f"CHRONOHUB_{name.upper()}"]


def _type(annotation: Any) -> str:
    """A type in words a TOML file's author knows."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        kinds = [_type(arg) for arg in args if arg is not type(None)]
        return " or ".join(kinds) + (", or unset" if type(None) in args else "")
    if origin is Literal:
        return " or ".join(f'"{arg}"' for arg in args)
    if origin is list:
        return f"list of {_plural(_type(args[0]))}"
    if origin is dict:
        # any values: a free-form table (a service's info)
        return "table" if args[1] is Any else f"table of {_plural(_type(args[1]))}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        SecretStr: "secret string",
    }
    if annotation in names:
        return names[annotation]
    if "IPvAnyNetwork" in repr(annotation):
        return "network (address/prefix)"
    raise SystemExit(f"docs/tools/config_reference.py: no words for the type {annotation!r}")


def _plural(kind: str) -> str:
    return {"string": "strings", "table": "tables", "network (address/prefix)": "networks"}.get(
        kind, kind
    )


def _constraints(field: FieldInfo) -> str:
    """The limits pydantic checks, in words: ', from 0 to 65535', ', matching `^…$`'."""
    ge = gt = le = pattern = None
    words = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            ge = item.ge
        elif isinstance(item, annotated_types.Gt):
            gt = item.gt
        elif isinstance(item, annotated_types.Le):
            le = item.le
        elif isinstance(item, annotated_types.MinLen):
            words.append(f"at least {item.min_length} long")
        elif isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} long")
        elif getattr(item, "pattern", None):
            pattern = item.pattern
    if ge is not None and le is not None:
        words.insert(0, f"from {ge} to {le}")
    else:
        bounds = [f"at least {ge}"] if ge is not None else []
        bounds += [f"above {gt}"] if gt is not None else []
        bounds += [f"at most {le}"] if le is not None else []
        words[:0] = bounds
    if pattern:
        words.append(f"matching `{pattern}`")
    return f", {', '.join(words)}" if words else ""


def _default(field: FieldInfo) -> str:
    """The default as it would be written in the TOML file."""
    if field.is_required():
        return "none (required)"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path | enum.Enum):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    raise SystemExit(f"docs/tools/config_reference.py: no TOML for the default {value!r}")


def stale() -> bool:
    """Whether the checked-in page differs from what the settings say."""
    return not PAGE.exists() or PAGE.read_text(encoding="utf-8") != render()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    if args.check:
        if stale():
            print(f"{PAGE} is stale: run {FRESHEN}", file=sys.stderr)
            return 1
        return 0
    if stale():
        PAGE.write_text(render(), encoding="utf-8")
        print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
