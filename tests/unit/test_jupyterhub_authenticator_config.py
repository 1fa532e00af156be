"""Loading JupyterHub's authenticator classes and their traitlets configuration: what is
accepted, and the clear errors for what is not (the real classes of the installed
jupyterhub and oauthenticator packages)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hub import settings as hub_settings
from hub.auth import login_cookies
from hub.auth.authenticators import build, jupyterhub_config
from hub.auth.authenticators.auth_state import CryptKeyError, Keeper, parse_keys
from hub.auth.authenticators.jupyterhub_adapter import JupyterHubAuthenticator

HEX_KEY = "ab" * 32


def _cookies() -> login_cookies.Cookies:
    return login_cookies.Cookies(secret=b"s" * 32, max_age_s=3600, secure=False)


def _adapter(tmp_path: Path, **overrides: object) -> JupyterHubAuthenticator:
    config = hub_settings.Settings(data_dir=tmp_path, **overrides)  # type: ignore[arg-type]
    built = build(config, _cookies())
    assert isinstance(built, JupyterHubAuthenticator)
    return built


def test_a_dotted_name_and_a_table_configure_the_class(tmp_path: Path) -> None:
    adapter = _adapter(
        tmp_path,
        authenticator_class="jupyterhub.auth.PAMAuthenticator",
        authenticator_config={
            "PAMAuthenticator": {"service": "other"},
            "Authenticator": {"admin_users": ["root"]},
        },
    )
    assert adapter.authenticator.service == "other"
    assert adapter.authenticator.admin_users == {"root"}
    assert adapter.password_form
    assert adapter.kind == "jupyterhub"


def test_an_entry_point_name_and_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "jupyterhub_config.py"
    path.write_text(
        "c.GenericOAuthenticator.client_id = 'from-file'\n"
        "c.GenericOAuthenticator.authorize_url = 'https://id.example/authorize'\n"
        "c.JupyterHub.bind_url = 'http://:8000'  # another class's: left to others\n"
    )
    adapter = _adapter(
        tmp_path,
        authenticator_class="generic-oauth",
        authenticator_config_file=path,
        authenticator_config={"OAuthenticator": {"client_secret": "from-table"}},
    )
    assert adapter.authenticator.client_id == "from-file"
    assert adapter.authenticator.client_secret == "from-table"
    assert not adapter.password_form


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("no.such.module.Authenticator", "cannot be imported"),
        ("jupyterhub.auth.NoSuchAuthenticator", "cannot be imported"),
        ("no-such-entry-point", "neither a dotted class name nor an entry point"),
        ("jupyterhub.spawner.LocalProcessSpawner", "is not a JupyterHub Authenticator"),
        ("json.dumps", "is not a JupyterHub Authenticator"),
    ],
)
def test_a_class_that_is_not_an_authenticator_is_refused(
    tmp_path: Path, name: str, said: str
) -> None:
    with pytest.raises(jupyterhub_config.AuthenticatorConfigError, match=said):
        _adapter(tmp_path, authenticator_class=name)


def test_a_trait_the_class_does_not_have_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(
        jupyterhub_config.AuthenticatorConfigError,
        match=r"PAMAuthenticator\.no_such_trait is not a configurable trait of PAMAuthenticator",
    ):
        _adapter(
            tmp_path,
            authenticator_class="pam",
            authenticator_config={"PAMAuthenticator": {"no_such_trait": 1}},
        )
    path = tmp_path / "jupyterhub_config.py"
    path.write_text("c.Authenticator.allowed_user = {'typo'}\n")
    with pytest.raises(jupyterhub_config.AuthenticatorConfigError, match="allowed_user is not"):
        _adapter(tmp_path, authenticator_class="pam", authenticator_config_file=path)


def test_a_table_for_a_class_it_does_not_configure_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(jupyterhub_config.AuthenticatorConfigError, match="does not configure"):
        _adapter(
            tmp_path,
            authenticator_class="pam",
            authenticator_config={"GitHubOAuthenticator": {"client_id": "x"}},
        )


def test_a_config_file_that_fails_or_is_missing_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    with pytest.raises(jupyterhub_config.AuthenticatorConfigError, match="does not exist"):
        _adapter(tmp_path, authenticator_class="pam", authenticator_config_file=missing)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no config today')\n")
    with pytest.raises(jupyterhub_config.AuthenticatorConfigError, match="no config today"):
        _adapter(tmp_path, authenticator_class="pam", authenticator_config_file=broken)


def test_a_bad_trait_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(jupyterhub_config.AuthenticatorConfigError, match="refused its config"):
        _adapter(
            tmp_path,
            authenticator_class="pam",
            authenticator_config={"PAMAuthenticator": {"open_sessions": "not a bool"}},
        )


def test_settings_refuse_two_authenticators_or_config_without_a_class(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="set only one of them"):
        hub_settings.Settings(data_dir=tmp_path, authenticator="dummy", authenticator_class="pam")
    with pytest.raises(ValidationError, match="none is set"):
        hub_settings.Settings(
            data_dir=tmp_path, authenticator_config={"PAMAuthenticator": {"service": "x"}}
        )


def test_auth_state_needs_a_key_and_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    table = {"GenericOAuthenticator": {"enable_auth_state": True}}
    with pytest.raises(CryptKeyError, match="set crypt_key or JUPYTERHUB_CRYPT_KEY"):
        _adapter(tmp_path, authenticator_class="generic-oauth", authenticator_config=table)
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", HEX_KEY)
    adapter = _adapter(tmp_path, authenticator_class="generic-oauth", authenticator_config=table)
    assert adapter.keeper is not None
    sealed = adapter.keeper.encrypt({"access_token": "secret-token"})
    assert b"secret-token" not in sealed
    assert adapter.keeper.decrypt(sealed) == {"access_token": "secret-token"}
    # rotation: a new first key encrypts, the old one still decrypts
    rotated = Keeper(parse_keys("cd" * 32 + ";" + HEX_KEY))
    assert rotated.decrypt(sealed) == {"access_token": "secret-token"}
    assert Keeper(parse_keys("cd" * 32)).decrypt(sealed) is None
    with pytest.raises(CryptKeyError, match="key 1 is not 32 bytes"):
        parse_keys("too-short")
