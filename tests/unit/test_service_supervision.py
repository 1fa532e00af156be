"""Managed services without a database: the restart policy, the environment contract and the
configuration's checks."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from hub import settings as hub_settings
from hub.services import environment, restarts

POLICY = restarts.Policy(first_s=1, max_s=8, stable_s=30, deaths=5, window_s=100)


def test_the_wait_doubles_up_to_the_most_then_a_crash_loop_gives_up() -> None:
    decide = restarts.Restarts(POLICY)
    delays = []
    for now in range(4):
        decision = decide.died(float(now), up_for=0)
        assert isinstance(decision, restarts.Restart)
        delays.append(decision.delay_s)
    assert delays == [1, 2, 4, 8]
    final = decide.died(4.0, up_for=0)
    assert final == restarts.GiveUp(5, 100)
    assert "5 times within 100 s" in final.reason


def test_the_wait_stops_at_its_most() -> None:
    decide = restarts.Restarts(restarts.Policy(first_s=1, max_s=3, deaths=100, window_s=1))
    delays = [decide.died(float(now * 10), up_for=0) for now in range(5)]
    assert [d.delay_s for d in delays if isinstance(d, restarts.Restart)] == [1, 2, 3, 3, 3]


def test_deaths_outside_the_window_do_not_count() -> None:
    decide = restarts.Restarts(POLICY)
    for now in (0.0, 1.0, 2.0, 3.0):
        decide.died(now, up_for=0)
    # the first four are more than 100 s old: this is the only death in the window
    assert isinstance(decide.died(200.0, up_for=0), restarts.Restart)


def test_a_service_that_stayed_up_starts_again_from_the_first_wait() -> None:
    decide = restarts.Restarts(POLICY)
    for now in (0.0, 1.0, 2.0, 3.0):
        decide.died(now, up_for=0)
    decision = decide.died(40.0, up_for=35)  # healthy for longer than stable_s
    assert decision == restarts.Restart(1)


def _entry(**fields: object) -> hub_settings.ServiceConfig:
    return hub_settings.ServiceConfig.model_validate({"name": "svc", **fields})


def test_the_environment_is_jupyterhubs_contract_and_nothing_of_the_hubs_settings() -> None:
    entry = _entry(
        command=["svc"],
        url="http://127.0.0.1:9000",
        environment={"EXTRA": "1", "LANG": "C.UTF-8"},
        oauth_client_allowed_scopes=["read:users"],
    )
    hub_environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/hub",
        "LANG": "en_US.UTF-8",
        "LC_TIME": "C",
        "TZ": "UTC",
        "CONDA_PREFIX": "/opt/conda",
        "CHRONOHUB_DATABASE_URL": "postgresql://hub:secret@db/hub",
        "CHRONOHUB_COOKIE_SECRET": "cookie",
        "DATABASE_URL": "postgresql://hub:secret@db/hub",
        "PGPASSWORD": "secret",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    env = environment.build(
        entry,
        token="tok",
        url="http://127.0.0.1:9000",
        addresses=environment.Addresses(
            api_url="http://127.0.0.1:8081/hub/api", public_url="https://hub.example.org/"
        ),
        environ=hub_environ,
    )
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/hub",
        "LANG": "C.UTF-8",  # the configured environment comes last
        "LC_TIME": "C",
        "TZ": "UTC",
        "CONDA_PREFIX": "/opt/conda",
        "EXTRA": "1",
        "JUPYTERHUB_SERVICE_NAME": "svc",
        "JUPYTERHUB_API_TOKEN": "tok",
        "JPY_API_TOKEN": "tok",
        "JUPYTERHUB_CLIENT_ID": "service-svc",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_HOST": "",
        "JUPYTERHUB_USER": "",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=svc"]),
        "JUPYTERHUB_OAUTH_SCOPES": json.dumps(["access:services!service=svc"]),
        "JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES": json.dumps(["read:users"]),
        "JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED": "0",
        "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:9000",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/svc/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/svc/oauth_callback",
        "JUPYTERHUB_PUBLIC_URL": "https://hub.example.org/services/svc/",
        "JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/hub/",
    }


def test_a_service_without_url_gets_no_prefix_as_in_jupyterhub() -> None:
    env = environment.build(
        _entry(command=["svc"]),
        token="tok",
        url=None,
        addresses=environment.Addresses(api_url="http://127.0.0.1:8081/hub/api"),
        environ={},
    )
    for name in (
        "JUPYTERHUB_SERVICE_URL",
        "JUPYTERHUB_SERVICE_PREFIX",
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        "JUPYTERHUB_PUBLIC_URL",
    ):
        assert name not in env


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"environment": {"A": "1"}}, "environment only apply to a managed service"),
        ({"cwd": "/tmp"}, "cwd only apply to a managed service"),
        ({"command": [""]}, "the command's program is empty"),
        ({"command": ["x"], "environment": {"A=B": "1"}}, "is not an environment variable"),
        ({"command": ["x"], "url": "127.0.0.1:9000"}, "must be http(s)://host:port"),
        ({"command": ["x"], "timeout": 0}, "greater than 0"),
        ({"command": "python -m x"}, "valid list"),
    ],
)
def test_bad_managed_service_settings_are_refused_naming_the_problem(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _entry(**fields)
