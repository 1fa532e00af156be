"""The pure rules of sharing (hub/api/shares.py): which scopes a share may carry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import errors
from hub.api import shares
from hub.auth import scope_table

NAMES = sorted(scope_table.BUILTIN.names() - scope_table.METASCOPES)


def test_no_scopes_means_using_the_server() -> None:
    assert shares.share_scopes(None, "alice", "") == ["access:servers!server=alice/"]
    assert shares.share_scopes([], "alice", "nb") == ["access:servers!server=alice/nb"]


def test_scopes_on_the_server_are_kept_sorted_once() -> None:
    asked = ["servers!server=alice/nb", "access:servers!server=alice/nb", "servers!server=alice/nb"]
    assert shares.share_scopes(asked, "alice", "nb") == [
        "access:servers!server=alice/nb",
        "servers!server=alice/nb",
    ]


@pytest.mark.parametrize(
    "scope",
    [
        "access:servers",
        "access:servers!user=alice",
        "access:servers!server=alice/other",
        "access:servers!server=bob/",
        "access:servers!group=team",
        "self",
        "inherit",
        "nope!server=alice/",
        "access:servers!server=alice",
    ],
)
def test_a_scope_not_on_the_server_is_refused_naming_the_field(scope: str) -> None:
    with pytest.raises(errors.BadRequest, match=r"^scopes: "):
        shares.share_scopes([scope], "alice", "")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(NAMES),
            st.sampled_from(["", "!server=alice/", "!server=alice/x", "!user=alice", "!group=g"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_share_never_carries_a_scope_beyond_its_server(asked: list[tuple[str, str]]) -> None:
    texts = [name + suffix for name, suffix in asked]
    try:
        kept = shares.share_scopes(texts, "alice", "")
    except errors.BadRequest:
        assert any(suffix != "!server=alice/" for _, suffix in asked)
        return
    assert kept
    assert all(scope.endswith("!server=alice/") for scope in kept)


def test_exactly_one_recipient() -> None:
    assert shares.one_recipient(shares.Grant(user="Bob")) == ("user", "bob")
    assert shares.one_recipient(shares.Grant(group="Team")) == ("group", "Team")
    for command in (shares.Grant(), shares.Grant(user="bob", group="team")):
        with pytest.raises(errors.BadRequest, match=r"^user, group: "):
            shares.one_recipient(command)
