"""Whose account users' code runs as: the pure decisions of ``hub.servers.isolation``."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.servers import isolation

VALID_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]*$")


@pytest.mark.parametrize(
    ("euid", "single_user_mode", "can_sandbox", "mode"),
    [
        (0, False, False, "system_users"),
        (0, False, True, "system_users"),
        (0, True, True, "single_user"),
        (1000, True, True, "single_user"),
        (1000, False, True, "sandbox"),
        (1000, False, False, "none"),
    ],
)
def test_the_mode_follows_root_the_sandbox_and_the_setting(
    euid: int, single_user_mode: bool, can_sandbox: bool, mode: isolation.Mode
) -> None:
    assert isolation.decide_mode(euid, single_user_mode, can_sandbox=can_sandbox) == mode


def test_each_mode_is_described_for_the_admin() -> None:
    assert "jupyter-<name>" in isolation.describe("system_users", "jupyter-")
    assert "hub's own account" in isolation.describe("single_user", "jupyter-")
    assert "not root" in isolation.describe("none", "jupyter-")
    assert "sandbox" in isolation.describe("sandbox", "jupyter-")


@pytest.mark.parametrize(
    ("user", "account"),
    [("ada", "jupyter-ada"), ("a_b-c9", "jupyter-a_b-c9"), ("x" * 24, "jupyter-" + "x" * 24)],
)
def test_plain_names_keep_the_prefix_convention(user: str, account: str) -> None:
    assert isolation.account_name(user, "jupyter-") == account


@pytest.mark.parametrize("user", ["Ada", "ada@example.org", "ada.lovelace", "x" * 25, "éva"])
def test_other_names_become_valid_accounts_with_a_hash(user: str) -> None:
    account = isolation.account_name(user, "jupyter-")
    assert VALID_ACCOUNT.match(account), account
    assert len(account) <= isolation.MAX_ACCOUNT_LENGTH
    assert account.startswith("jupyter-")


def test_names_that_clean_to_the_same_text_get_different_accounts() -> None:
    assert isolation.account_name("Ada", "jupyter-") != isolation.account_name("ada.", "jupyter-")
    assert isolation.account_name("Ada", "jupyter-") != isolation.account_name("ada", "jupyter-")


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=255))
def test_every_name_maps_to_a_valid_account(user: str) -> None:
    account = isolation.account_name(user, "jupyter-")
    assert VALID_ACCOUNT.match(account), account
    assert len(account) <= isolation.MAX_ACCOUNT_LENGTH


def test_an_account_records_whose_it_is() -> None:
    mark = isolation.owner_mark("ada:lovelace")
    assert mark.startswith("chronohub ")
    assert ":" not in mark
    assert "\n" not in mark
    assert isolation.owner_mark("ada") != isolation.owner_mark("Ada")


def test_the_map_names_existing_accounts() -> None:
    assert isolation.account_name("ada", "jupyter-", {"ada": "alovelace"}) == "alovelace"


def test_a_hub_that_cannot_switch_accounts_runs_nobodys_code() -> None:
    code = isolation.Isolation("none")
    for admin in (False, True):
        with pytest.raises(isolation.CodeRefused, match="not root"):
            code.check("ada", admin=admin)


def test_single_user_mode_runs_only_admins_code_unless_told_otherwise() -> None:
    code = isolation.Isolation("single_user")
    code.check("root-ada", admin=True)
    with pytest.raises(isolation.CodeRefused, match="only admins"):
        code.check("bob", admin=False)
    isolation.Isolation("single_user", all_users=True).check("bob", admin=False)


async def test_single_user_mode_runs_code_as_the_hub() -> None:
    assert await isolation.Isolation("single_user").identity("ada", admin=True) is None


def test_an_identity_has_a_clean_environment() -> None:
    identity = isolation.Identity(
        "jupyter-ada", 1001, 1001, (1001,), isolation.Path("/h"), "/bin/sh"
    )
    env = identity.environment("/venv/bin")
    assert env == {
        "HOME": "/h",
        "USER": "jupyter-ada",
        "LOGNAME": "jupyter-ada",
        "SHELL": "/bin/sh",
        "PATH": f"/venv/bin:{isolation.SYSTEM_PATH}",
    }
