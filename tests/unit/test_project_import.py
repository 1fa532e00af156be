"""What an import may fetch from, and what a sync moves, decided without I/O: URLs, addresses
against the policy, the fast-forward-only plan, and the default branch."""

from __future__ import annotations

import ipaddress

import pytest

from hub.projects import importer, remote

A, B, C = "a" * 40, "b" * 40, "c" * 40
CLOSED = remote.Policy(allow_private=False, allowed_networks=(), max_bytes=1024, timeout_s=1)


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://example.org/course.git", "example.org", 443, "/course.git"),
        ("http://example.org:8080/a/b", "example.org", 8080, "/a/b"),
        ("git://example.org/course", "example.org", 9418, "/course"),
        ("https://[2001:db8::1]/x.git", "2001:db8::1", 443, "/x.git"),
    ],
)
def test_accepted_urls(url: str, host: str, port: int, path: str) -> None:
    source = remote.parse_url(url)
    assert (source.host, source.port, source.path) == (host, port, path)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ssh://git@example.org/x.git",
        "git@example.org:x.git",
        "/srv/x.git",
        "x.git",
        "https://user:token@example.org/x.git",
        "https://token@example.org/x.git",
        "https://example.org/x.git#main",
        "https://example.org/x.git?service=git-upload-pack",
        "https://example.org\\@evil.example/x.git",
        "https://example.org:0/x.git",
        "https://example.org:99999/x.git",
        "http:///x.git",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(remote.BadUrl):
        remote.parse_url(url)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("172.16.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-global"),
        ("240.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("fc00::1", "private"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_addresses_refused_by_default(address: str, kind: str | None) -> None:
    assert remote.refusal(ipaddress.ip_address(address), CLOSED) == kind


def test_the_policy_opens_networks_or_everything() -> None:
    some = remote.Policy(
        allow_private=False,
        allowed_networks=(ipaddress.ip_network("10.1.0.0/16"),),
        max_bytes=1024,
        timeout_s=1,
    )
    assert remote.refusal(ipaddress.ip_address("10.1.2.3"), some) is None
    assert remote.refusal(ipaddress.ip_address("10.2.0.1"), some) == "private"
    assert remote.refusal(ipaddress.ip_address("127.0.0.1"), some) == "loopback"
    everything = remote.Policy(allow_private=True, allowed_networks=(), max_bytes=1, timeout_s=1)
    assert remote.refusal(ipaddress.ip_address("127.0.0.1"), everything) is None


def test_resolving_checks_the_address_before_any_connection() -> None:
    with pytest.raises(remote.AddressRefused, match="loopback"):
        remote.resolve("127.0.0.1", 80, CLOSED)


def _plan(
    current: dict[str, str], upstream: dict[str, str], ancestry: set[tuple[str, str]]
) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    commands, refused = importer.plan(
        current,
        upstream,
        kind_of=lambda sha: "commit",
        fast_forward=lambda old, new: old == new or (old, new) in ancestry,
    )
    return [(c.ref, c.old, c.new) for c in commands], refused


def test_plan_creates_fast_forwards_and_refuses_divergence_ref_by_ref() -> None:
    current = {"refs/heads/main": A, "refs/heads/topic": A, "refs/tags/v1": A}
    upstream = {
        "refs/heads/main": B,  # A -> B fast-forwards
        "refs/heads/topic": C,  # diverged
        "refs/heads/new": C,
        "refs/tags/v1": B,  # a tag that moved
    }
    moves, refused = _plan(current, upstream, {(A, B)})
    zero = "0" * 40
    assert moves == [("refs/heads/main", A, B), ("refs/heads/new", zero, C)]
    assert set(refused) == {"refs/heads/topic", "refs/tags/v1"}
    assert "non-fast-forward" in refused["refs/heads/topic"]


def test_plan_leaves_a_branch_the_project_is_ahead_on() -> None:
    assert _plan({"refs/heads/main": B}, {"refs/heads/main": A}, {(A, B)}) == ([], {})


def test_plan_refuses_names_the_hub_does_not_store() -> None:
    moves, refused = _plan({}, {"refs/heads/bad..name": A, "refs/heads/ok": A}, set())
    assert [m[0] for m in moves] == ["refs/heads/ok"]
    assert "funny refname" in refused["refs/heads/bad..name"]


def test_default_branch_follows_head_then_main_then_master() -> None:
    def fetched(head: str | None, *branches: str) -> remote.Fetched:
        return remote.Fetched({f"refs/heads/{b}": A for b in branches}, head)

    assert importer.choose_default_branch(fetched("dev", "dev", "main"), None) == "dev"
    assert importer.choose_default_branch(fetched(None, "dev", "main"), None) == "main"
    assert importer.choose_default_branch(fetched(None, "dev", "master"), None) == "master"
    assert importer.choose_default_branch(fetched(None, "b", "a"), None) == "a"
    assert importer.choose_default_branch(fetched(None), None) is None
    assert importer.choose_default_branch(fetched("main", "main", "x"), "x") == "x"
    with pytest.raises(importer.MissingBranch):
        importer.choose_default_branch(fetched("main", "main"), "nope")
