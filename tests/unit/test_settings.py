"""Settings from the environment, a TOML file and defaults; how the database is described."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from hub import settings


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No CHRONOHUB_*, DATABASE_URL or PG* variables, and a working directory of our own."""
    for name in list(os.environ):
        if name.upper().startswith(("CHRONOHUB_", "PG")) or name.upper() == "DATABASE_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "elsewhere.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv(settings.CONFIG_ENV, str(path))
    return path


def test_defaults() -> None:
    loaded = settings.load()
    assert loaded.database_url is None
    assert (loaded.ip, loaded.port) == ("127.0.0.1", 8000)  # the public address: the proxy's
    assert (loaded.hub_ip, loaded.hub_port) == ("127.0.0.1", 8081)  # the hub's own
    assert loaded.data_dir == Path(".chronohub")
    assert loaded.max_event_bytes == 64 * 1024


def test_chronohub_database_url_beats_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://generic/db")
    monkeypatch.setenv("CHRONOHUB_DATABASE_URL", "postgresql://ours/db")
    assert settings.load().database_url == "postgresql://ours/db"


def test_database_url_alone_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://generic/db")
    assert settings.load().database_url == "postgresql://generic/db"


def test_an_explicit_argument_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOHUB_PORT", "9001")
    assert settings.load(port=9002).port == 9002


def test_the_toml_file_named_by_chronohub_config_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, 'port = 8123\ndata_dir = "/srv/chronohub"\n')
    loaded = settings.load()
    assert loaded.port == 8123
    assert loaded.data_dir == Path("/srv/chronohub")


def test_chronohub_toml_in_the_working_directory_is_read_by_default(tmp_path: Path) -> None:
    (tmp_path / "chronohub.toml").write_text("port = 8124\n", encoding="utf-8")
    assert settings.load().port == 8124


def test_the_environment_overrides_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        tmp_path,
        monkeypatch,
        'port = 8123\ndata_dir = "/srv/chronohub"\ndatabase_url = "postgresql://file/db"\n',
    )
    monkeypatch.setenv("CHRONOHUB_PORT", "9000")
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    loaded = settings.load()
    assert loaded.port == 9000
    assert loaded.database_url == "postgresql://env/db"
    assert loaded.data_dir == Path("/srv/chronohub")  # not overridden: still from the file


def test_an_unknown_key_in_the_toml_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, monkeypatch, "port = 8123\nprot = 8124\n")
    with pytest.raises(pydantic.ValidationError, match="prot"):
        settings.load()


def test_an_out_of_range_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOHUB_PORT", "70000")
    with pytest.raises(pydantic.ValidationError, match="port"):
        settings.load()


def test_describe_database_hides_the_password() -> None:
    loaded = settings.load(database_url="postgresql://u:secret@h/db")
    description = loaded.describe_database()
    assert "secret" not in description
    assert description == "postgresql://u:***@h/db"


def test_describe_database_hides_a_password_holding_an_at_sign() -> None:
    loaded = settings.load(database_url="postgresql://u:p@ss@h:5433/db")
    assert loaded.describe_database() == "postgresql://u:***@h:5433/db"


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgresql://h/db"])
def test_describe_database_shows_a_url_without_a_password_as_is(url: str) -> None:
    assert settings.load(database_url=url).describe_database() == url


def test_describe_database_hides_a_password_given_as_a_parameter() -> None:
    loaded = settings.load(database_url="postgresql://h/db?user=u&password=secret")
    assert "secret" not in loaded.describe_database()


def test_uses_pg_environment_with_pghost_and_no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.internal")
    loaded = settings.load()
    assert loaded.uses_pg_environment() is True
    assert loaded.describe_database() == "from PG* environment variables"


def test_uses_pg_environment_with_pgdatabase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGDATABASE", "hub")
    assert settings.load().uses_pg_environment() is True


def test_a_url_beats_the_pg_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "db.internal")
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/db")
    assert settings.load().uses_pg_environment() is False


def test_without_url_or_pg_environment_the_database_is_embedded(tmp_path: Path) -> None:
    loaded = settings.load()
    assert loaded.uses_pg_environment() is False
    assert loaded.describe_database() == (
        f"embedded PostgreSQL in {tmp_path.resolve() / '.chronohub' / 'postgres'}"
    )


@pytest.mark.parametrize(
    "field",
    ["cookie_max_age_seconds", "oauth_token_expires_in_seconds", "token_expires_in_max_seconds"],
)
def test_lifetimes_past_a_century_are_refused(field: str) -> None:
    """Past a century an expiry is past the dates Python can represent: refused at startup,
    not a 500 at the first login."""
    with pytest.raises(pydantic.ValidationError, match=field):
        settings.Settings(**{field: 10**12})
    assert getattr(settings.Settings(**{field: settings.MAX_LIFETIME_S}), field) == (
        settings.MAX_LIFETIME_S
    )


def test_the_token_command_refuses_a_lifetime_it_cannot_represent() -> None:
    import argparse

    from hub.cli import main as cli

    assert cli.token_lifetime("3600") == 3600
    for bad in ("0", "-5", str(10**12), "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.token_lifetime(bad)


@pytest.mark.parametrize(
    ("old", "new"), [("bind_ip", "hub_ip"), ("proxy_ip", "ip"), ("proxy_port", "port")]
)
def test_an_old_address_setting_is_refused_naming_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    value = "8001" if old.endswith("port") else '"127.0.0.1"'
    write_config(tmp_path, monkeypatch, f"{old} = {value}\n")
    with pytest.raises(pydantic.ValidationError, match=f"{old} .* was renamed: use {new} "):
        settings.load()
    write_config(tmp_path, monkeypatch, "")
    monkeypatch.setenv(f"CHRONOHUB_{old.upper()}", value.strip('"'))
    with pytest.raises(pydantic.ValidationError, match=f"use {new} \\(CHRONOHUB_{new.upper()}\\)"):
        settings.load()


@pytest.mark.parametrize("field", ["db_acquire_timeout", "db_statement_timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_database_time_limit_must_be_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(f"CHRONOHUB_{field.upper()}", value)
    with pytest.raises(pydantic.ValidationError, match=field):
        settings.load()


def test_database_time_limits_have_bounded_defaults() -> None:
    config = settings.Settings()
    assert 0 < config.db_acquire_timeout < config.db_statement_timeout <= 60


def test_port_range_is_unset_by_default_the_kernels_choice() -> None:
    assert settings.load().port_range is None


def test_port_range_is_read_from_the_environment_and_written_plainly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHRONOHUB_PORT_RANGE", " 20000 - 29999 ")
    assert settings.load().port_range == "20000-29999"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "port_range is empty"),
        ("29999-20000", "reversed: write 20000-29999"),
        ("0-10", "0 is not a port"),
        ("60000-70000", "70000 is not a port"),
        ("20000", "is not LOW-HIGH"),
    ],
)
def test_a_bad_port_range_is_refused_saying_why(value: str, says: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=says):
        settings.load(port_range=value)
