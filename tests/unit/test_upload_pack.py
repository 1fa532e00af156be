"""The ref advertisement the hub writes for git's upload-pack, without git or a database (the
integration tests compare it with git's own, byte for byte)."""

from __future__ import annotations

from hub.projects import upload_pack

A, B, C, T = "a" * 40, "b" * 40, "c" * 40, "d" * 40
CAPS = ("multi_ack", "thin-pack", "no-done", "object-format=sha1", "agent=git/2.39.5")


def lines(advertised: bytes) -> list[bytes]:
    """The pkt-lines of ``advertised``, flush-pkts as ``b""``."""
    out = []
    while advertised:
        length = int(advertised[:4], 16)
        out.append(advertised[4:length] if length else b"")
        advertised = advertised[max(length, 4) :]
    return out


def test_pkt_lines() -> None:
    assert upload_pack.pkt_line(None) == b"0000"
    assert upload_pack.pkt_line(b"a\n") == b"0006a\n"


def test_head_first_with_the_capabilities_and_its_symref_refs_sorted_tags_peeled() -> None:
    refs = {"refs/tags/v1": T, "refs/heads/main": A, "refs/heads/Topic": B}
    advertised = upload_pack.advertisement(refs, {T: C}, "main", CAPS)
    assert lines(advertised) == [
        A.encode() + b" HEAD\0multi_ack thin-pack no-done symref=HEAD:refs/heads/main"
        b" object-format=sha1 agent=git/2.39.5\n",
        B.encode() + b" refs/heads/Topic\n",  # byte order: upper case first
        A.encode() + b" refs/heads/main\n",
        T.encode() + b" refs/tags/v1\n",
        C.encode() + b" refs/tags/v1^{}\n",
        b"",
    ]
    assert upload_pack.capabilities_of(advertised) == CAPS


def test_without_the_default_branch_the_first_ref_carries_the_capabilities() -> None:
    advertised = upload_pack.advertisement({"refs/heads/topic": B}, {}, "main", CAPS)
    assert lines(advertised) == [
        B.encode() + b" refs/heads/topic\0" + " ".join(CAPS).encode() + b"\n",
        b"",
    ]


def test_no_refs_is_a_flush_alone() -> None:
    advertised = upload_pack.advertisement({}, {}, "main", CAPS)
    assert advertised == b"0000"
    assert upload_pack.capabilities_of(advertised) is None
