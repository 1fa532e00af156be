"""What ``chronohub serve`` says as it starts: the banner's one URL whatever the proxy, and
one line for an address it cannot listen on."""

from __future__ import annotations

import errno
import socket
from typing import Any

import pytest

from hub import settings, startup


def banner(public: str | None, **values: Any) -> list[str]:
    config = settings.Settings(database_url="postgresql://unused", **values)
    return startup.banner(
        config, public=public, hub_address=("127.0.0.1", 8081), database="postgresql://unused"
    )


def test_the_builtin_proxy_s_address_is_the_one_to_open() -> None:
    lines = banner("http://127.0.0.1:8000/")
    assert lines == [
        "chronohub serving at http://127.0.0.1:8000/hub/",
        "hub: 127.0.0.1:8081 (internal), behind the built-in proxy",
        "database: postgresql://unused",
    ]


def test_public_url_is_the_one_to_open_when_set() -> None:
    lines = banner("http://127.0.0.1:8000/", public_url="https://hub.example.org")
    assert lines[0] == "chronohub serving at https://hub.example.org/hub/"


def test_without_a_proxy_the_hub_s_own_address_is_the_public_one() -> None:
    lines = banner(None, proxy="none")
    assert lines[0] == "chronohub serving at http://127.0.0.1:8081/hub/"
    assert "no proxy (proxy = none)" in lines[1]
    assert "the hub's own address is the public one" in lines[1]


def test_an_external_chp_serves_the_configured_public_address() -> None:
    lines = banner("http://10.0.0.5:8000/", proxy="chp", chp_api_url="http://10.0.0.5:8001")
    assert lines[0] == "chronohub serving at http://10.0.0.5:8000/hub/"
    assert "external configurable-http-proxy" in lines[1]
    assert "must serve the public address" in lines[1]
    assert sum(line.count("http://") for line in lines) == 1  # one URL: the one to open


def test_an_ipv6_host_is_bracketed() -> None:
    assert startup.url("::1", 8000, "/hub/") == "http://[::1]:8000/hub/"


@pytest.mark.parametrize(
    ("role", "names"),
    [
        ("public", ["port = 8010", "CHRONOHUB_PORT=8010", '--port 8010"']),
        ("hub", ["hub_port = 8091", "CHRONOHUB_HUB_PORT=8091", '--hub-port 8091"']),
    ],
)
def test_a_busy_port_says_which_and_how_to_choose_another(role: Any, names: list[str]) -> None:
    line = startup.cannot_listen("127.0.0.1", 8000, role, OSError(errno.EADDRINUSE, "in use"))
    assert line.startswith("port 8000 (")
    assert "already in use" in line
    for name in names:
        assert name in line
    assert "\n" not in line


def test_an_address_not_of_this_machine_names_the_ip_setting() -> None:
    error = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    line = startup.cannot_listen("192.0.2.1", 8081, "hub", error)
    assert "Cannot assign requested address" in line
    assert "hub_ip" in line
    assert "--hub-ip" in line


def test_bind_refuses_a_busy_port_with_a_startup_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(startup.StartupError, match=f"port {port} \\(the public address"):
            startup.bind("127.0.0.1", port, "public")
        with pytest.raises(startup.StartupError, match="hub_port = 8091"):
            startup.check_free("127.0.0.1", port, "hub")
