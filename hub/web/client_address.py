"""The address of the client behind a request, seen through the proxies the hub trusts.

Browsers reach the hub through its proxy (the built-in one or configurable-http-proxy, both
on loopback by default), so the peer of every proxied request is the proxy itself: a
per-address login limit keyed on the peer would lock everyone out together. The proxies
append the address they saw to ``X-Forwarded-For``; walking that list from the right,
skipping addresses of trusted proxies (``trusted_proxies``), gives the client's address.
A peer that is not trusted is the client, whatever header it sends.

Written here rather than taken from aiohttp-remotes: its ``XForwardedFiltered`` believes the
header from any peer, its ``XForwardedStrict`` refuses requests that do not come through
exactly the configured chain (a direct request to the hub's port), and both rewrite the
request's host and scheme as well, which the hub's same-origin and redirect checks read. Only
the address is needed, for the login limits and the audit metadata.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from hub.context import HUB

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str | None:
    """The client's address: ``peer`` unless it is a trusted proxy; then the rightmost
    address of ``forwarded_for`` (its ``X-Forwarded-For`` headers, in order) that is not
    one, or the leftmost when all are. A malformed entry ends the walk at the last proxy:
    a trusted proxy writes a valid address, so what is left of it is the client's say."""
    if peer is None or not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    address = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address
        address = hop
        if not _trusted(hop, trusted):
            return address
    return address


def of(request: web.Request) -> str | None:
    """The client address of ``request`` under the hub's ``trusted_proxies`` setting."""
    return client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        request.app[HUB].settings.trusted_proxies,
    )
