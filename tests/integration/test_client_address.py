"""The login limits and the audit metadata see the client behind the built-in proxy, not the
proxy: the real hub and proxy, browsers that only talk to the proxy's address.

Everything here runs on loopback, so each browser stands for a load balancer on loopback that
forwards one client: it sends ``X-Forwarded-For: <client>``, the proxy appends the address it
saw, and the hub walks the list back through the proxies it trusts."""

from __future__ import annotations

import json

import pytest

from tests.integration.spawn_fixtures import SpawnHub, StartHub

pytestmark = pytest.mark.integration


async def _failure_addresses(hub: SpawnHub) -> list[str]:
    rows = await hub.store.pool.fetch(
        "SELECT metadata FROM events WHERE event_type = 'user.login_failed'"
        " ORDER BY global_position"
    )
    return [json.loads(r["metadata"])["client_address"] for r in rows]


async def test_each_client_behind_the_proxy_has_its_own_address_limit(spawn_hub: StartHub) -> None:
    hub = await spawn_hub("serve", login_address_max_failures=3)
    await hub.people("carol")
    guesser = hub.browser({"X-Forwarded-For": "203.0.113.5"})
    for i in range(3):  # three names: no user lockout, one address
        assert (await guesser.login(f"guess{i}", "wrong password")).status == 403
    limited = await guesser.login("carol")
    assert limited.status == 429
    assert "Too many failed logins from this address" in limited.text
    # Another client through the same proxy is not locked out with the guesser.
    page = await hub.browser({"X-Forwarded-For": "203.0.113.6"}).login("carol")
    assert page.status == 302, page.text
    assert await _failure_addresses(hub) == ["203.0.113.5"] * 3


async def test_trusting_no_proxy_keys_the_limit_on_the_peer(spawn_hub: StartHub) -> None:
    """With ``trusted_proxies = []`` a claimed address is not believed: every browser is the
    proxy's address, so the guesser locks the other one out too."""
    hub = await spawn_hub("serve", login_address_max_failures=3, trusted_proxies=[])
    await hub.people("carol")
    guesser = hub.browser({"X-Forwarded-For": "203.0.113.5"})
    for i in range(3):
        assert (await guesser.login(f"guess{i}", "wrong password")).status == 403
    page = await hub.browser({"X-Forwarded-For": "203.0.113.6"}).login("carol")
    assert page.status == 429
    assert await _failure_addresses(hub) == ["127.0.0.1"] * 3
