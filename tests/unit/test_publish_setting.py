"""``publish = true``: the one line that adds the publishing service and its role."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from hub import bootstrap
from hub import settings as hub_settings


def test_publish_adds_the_service_and_the_role_its_token_needs() -> None:
    config = hub_settings.Settings(database_url="postgresql://unused", publish=True)
    [service] = config.services
    assert (service.name, service.command, service.url) == (
        "publish", ["python3", "-m", "chronohub_publish"], "http://127.0.0.1:0",
    )  # fmt: skip
    [role] = config.roles
    assert role.services == ["publish"]
    assert set(role.scopes) == {"read:projects", "read:events:projects", "read:users:groups"}
    assert "publish-service" in bootstrap.desired_roles(config)  # its scopes are known ones
    # dashboards sandboxed (the service's default), hiding the hub's data directory and the
    # directory of its configuration (where deployments keep its secrets)
    hide = [config.data_dir.resolve(), hub_settings.config_path().parent]
    assert service.environment == {"PUBLISH_HIDE": os.pathsep.join(str(p) for p in hide)}
    off = hub_settings.Settings(database_url="postgresql://unused")
    assert (off.services, off.roles) == ([], [])


def test_publish_sandbox_false_tells_the_service_to_run_dashboards_unsandboxed() -> None:
    config = hub_settings.Settings(
        database_url="postgresql://unused", publish=True, publish_sandbox=False
    )
    [service] = config.services
    assert service.environment["PUBLISH_SANDBOX"] == "false"


@pytest.mark.parametrize(
    "taken",
    [{"services": [{"name": "publish"}]}, {"roles": [{"name": "publish-service"}]}],
)
def test_publish_refuses_a_service_or_role_of_the_same_name(taken: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        hub_settings.Settings(database_url="postgresql://unused", publish=True, **taken)
    assert "publish = true adds the service 'publish'" in str(caught.value)


def test_publish_lets_every_user_sign_in_to_the_service_keeping_the_user_roles_scopes() -> None:
    """The user role gains access to the service (the pages then follow each project's own
    visibility and members), whether the user role is the default one or configured."""
    default = bootstrap.desired_roles(hub_settings.Settings(database_url="postgresql://unused"))
    config = hub_settings.Settings(database_url="postgresql://unused", publish=True)
    user = bootstrap.desired_roles(config)["user"]
    assert set(user.scopes) == {*default["user"].scopes, hub_settings.PUBLISH_ACCESS}
    configured = hub_settings.Settings(
        database_url="postgresql://unused",
        publish=True,
        roles=[{"name": "user", "scopes": ["self", "access:services!service=grader"]}],
    )
    user = bootstrap.desired_roles(configured)["user"]
    assert set(user.scopes) == {
        "self", "access:services!service=grader", hub_settings.PUBLISH_ACCESS,
    }  # fmt: skip
