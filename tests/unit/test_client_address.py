"""Finding the client behind the hub's proxies: believe X-Forwarded-For only from trusted
peers, and only up to the first address that is not a trusted proxy."""

from __future__ import annotations

import ipaddress

from hub.web.client_address import client_address

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
WITH_BALANCER = [*LOOPBACK, ipaddress.ip_network("10.0.0.0/8")]


def test_a_direct_client_is_its_peer() -> None:
    assert client_address("198.51.100.7", [], LOOPBACK) == "198.51.100.7"


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    assert client_address("198.51.100.7", ["203.0.113.9"], LOOPBACK) == "198.51.100.7"


def test_behind_the_hubs_proxy_the_client_is_what_the_proxy_saw() -> None:
    assert client_address("127.0.0.1", ["203.0.113.9"], LOOPBACK) == "203.0.113.9"


def test_what_the_client_itself_wrote_left_of_the_proxy_is_not_believed() -> None:
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended the address it saw.
    assert client_address("127.0.0.1", ["1.2.3.4, 203.0.113.9"], LOOPBACK) == "203.0.113.9"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    hops = ["203.0.113.9, 10.1.2.3"]
    assert client_address("127.0.0.1", hops, WITH_BALANCER) == "203.0.113.9"
    assert client_address("127.0.0.1", hops, LOOPBACK) == "10.1.2.3"
    # Several headers count as one list, in order.
    assert client_address("::1", ["203.0.113.9", "10.1.2.3"], WITH_BALANCER) == "203.0.113.9"


def test_only_trusted_hops_leave_the_leftmost() -> None:
    assert client_address("127.0.0.1", ["127.0.0.2"], LOOPBACK) == "127.0.0.2"
    assert client_address("127.0.0.1", [], LOOPBACK) == "127.0.0.1"


def test_a_malformed_hop_ends_the_walk_at_the_last_proxy() -> None:
    assert client_address("127.0.0.1", ["not an address"], LOOPBACK) == "127.0.0.1"
    assert client_address("127.0.0.1", ["garbage, 203.0.113.9"], LOOPBACK) == "203.0.113.9"
    assert client_address("127.0.0.1", ["203.0.113.9, ,"], LOOPBACK) == "127.0.0.1"


def test_trusting_no_one_ignores_the_header() -> None:
    assert client_address("127.0.0.1", ["203.0.113.9"], []) == "127.0.0.1"
    assert client_address(None, ["203.0.113.9"], LOOPBACK) is None
