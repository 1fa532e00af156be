"""Scopes and roles: the vocabulary, parsing, expansion, checks, token scopes and roles."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.auth import roles, scopes
from hub.auth.scopes import Filter, Owner, Scope

ALICE = Owner.for_user("alice")
MEMBERS = {"alice": {"team"}, "bob": {"team", "staff"}, "carol": set()}


def strings(expanded: Collection[Scope]) -> set[str]:
    return {str(scope) for scope in expanded}


def grants(*raw: str, owner: Owner | None = None) -> scopes.Grants:
    return scopes.Grants.of(scopes.expand(raw, owner=owner))


# --- the vocabulary ------------------------------------------------------------------------------

# fmt: off
JUPYTERHUB_SCOPES = [
    "self", "inherit", "admin-ui",
    "admin:users", "users", "list:users", "read:users", "read:users:name", "read:users:groups",
    "read:users:activity", "users:activity", "admin:auth_state", "delete:users",
    "read:roles", "read:roles:users", "read:roles:services", "read:roles:groups",
    "admin:servers", "admin:server_state", "servers", "read:servers", "start:servers",
    "delete:servers", "tokens", "read:tokens",
    "admin:groups", "groups", "read:groups", "list:groups", "read:groups:name", "delete:groups",
    "admin:services", "list:services", "read:services", "read:services:name",
    "read:hub", "proxy", "shutdown", "access:servers", "access:services", "read:metrics",
    "shares", "read:shares", "users:shares", "groups:shares", "read:users:shares",
    "read:groups:shares",
]
# fmt: on


def test_the_vocabulary_is_jupyterhubs_plus_the_event_log_collab_and_projects() -> None:
    kinds = {
        f"read:events:{k}"
        for k in ("users", "groups", "tokens", "roles", "services", "servers", "projects", "shares")
    }
    collab = {"read:collab", "write:collab"}
    projects = {"read:projects", "write:projects", "admin:projects"}
    collab_kinds = {"read:events:collab", "read:events:collab_sessions"}
    assert scopes.BUILTIN.names() == {
        *JUPYTERHUB_SCOPES,
        "read:events",
        *kinds,
        *collab_kinds,
        *collab,
        *projects,
    }
    assert scopes.BUILTIN["read:events"].description == "Read the hub's event log"
    assert set(scopes.BUILTIN["read:events"].implies) == {*kinds, "read:events:collab"}
    assert set(scopes.BUILTIN["read:events:collab"].implies) == {"read:events:collab_sessions"}
    assert set(scopes.EVENT_SCOPES) == {*kinds, *collab_kinds}
    for name in scopes.BUILTIN.names():
        description = scopes.BUILTIN[name].description
        assert description
        assert "\n" not in description


@pytest.mark.parametrize(
    ("scope", "closure"),
    [
        ("users", {"users", "read:users", "list:users", "users:activity", "read:users:name",
                   "read:users:groups", "read:users:activity"}),
        ("servers", {"servers", "read:servers", "start:servers", "delete:servers",
                     "read:users:name"}),
        ("admin:groups", {"admin:groups", "groups", "read:groups", "list:groups",
                          "read:groups:name", "read:roles:groups", "delete:groups"}),
        ("shares", {"shares", "access:servers", "read:shares", "users:shares",
                    "read:users:shares", "groups:shares", "read:groups:shares"}),
        ("admin:services", {"admin:services", "list:services", "read:services",
                            "read:services:name", "read:roles:services"}),
        ("read:roles", {"read:roles", "read:roles:users", "read:roles:services",
                        "read:roles:groups"}),
        ("tokens", {"tokens", "read:tokens"}),
        ("proxy", {"proxy"}),
    ],
)  # fmt: skip
def test_closure(scope: str, closure: set[str]) -> None:
    assert scopes.BUILTIN.implied(scope) == closure


def test_admin_users_implies_reading_names() -> None:
    implied = scopes.BUILTIN.implied("admin:users")
    assert {"read:users:name", "admin:auth_state", "delete:users", "read:roles:users"} <= implied
    assert "read:servers" not in implied


def test_an_unknown_implied_scope_fails_when_the_table_is_built() -> None:
    table = (scopes.Definition("a", "A", ("read:userz",)),)
    with pytest.raises(scopes.ScopeError, match="read:userz") as caught:
        scopes.Vocabulary(table)
    assert caught.value.scope == "read:userz"


def test_a_cycle_fails_when_the_table_is_built() -> None:
    table = (
        scopes.Definition("a", "A", ("b",)),
        scopes.Definition("b", "B", ("c",)),
        scopes.Definition("c", "C", ("a",)),
    )
    with pytest.raises(scopes.ScopeError, match="cycle: a -> b -> c -> a"):
        scopes.Vocabulary(table)


def test_a_scope_may_not_imply_a_metascope() -> None:
    table = (scopes.Definition("self", "S"), scopes.Definition("a", "A", ("self",)))
    with pytest.raises(scopes.ScopeError, match="metascope"):
        scopes.Vocabulary(table)


def test_custom_scopes_once_declared() -> None:
    vocabulary = scopes.BUILTIN.with_custom(
        [
            scopes.Definition("custom:grader:read", "Read grades"),
            scopes.Definition("custom:grader:*", "Everything", ("custom:grader:read",)),
        ]
    )
    with pytest.raises(scopes.ScopeError, match="must be declared"):
        scopes.parse_scope("custom:grader:read")
    scope = scopes.parse_scope("custom:grader:*!group=tas", vocabulary=vocabulary)
    assert strings(scopes.expand([scope], vocabulary=vocabulary)) == {
        "custom:grader:*!group=tas",
        "custom:grader:read!group=tas",
    }
    role = roles.define_role("grader", ["custom:grader:*"], vocabulary=vocabulary)
    assert role.scopes == ("custom:grader:*",)


@pytest.mark.parametrize(
    ("definition", "named"),
    [
        (scopes.Definition("custom:Bad", "x"), "custom:Bad"),
        (scopes.Definition("custom:x-", "x"), "custom:x-"),
        (scopes.Definition("grader:read", "x"), "grader:read"),
        (scopes.Definition("custom:abc", "x", ("read:users",)), "read:users"),
        (scopes.Definition("custom:abc", "x", ("custom:bcd",)), "custom:bcd"),
        (scopes.Definition("custom:abc", " "), "custom:abc"),
    ],
)
def test_malformed_custom_scopes_are_refused(definition: scopes.Definition, named: str) -> None:
    with pytest.raises(scopes.ScopeError, match=named.replace("*", r"\*")) as caught:
        scopes.BUILTIN.with_custom([definition])
    assert caught.value.scope == named


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "read:users",
        "read:users!user=alice",
        "servers!server=alice/",
        "servers!server=alice/lab",
        "read:groups!group=team",
        "access:services!service=grader",
        "self",
        "inherit",
    ],
)
def test_parse_round_trips(text: str) -> None:
    assert str(scopes.parse_scope(text)) == text


def test_parsed_filters() -> None:
    assert scopes.parse_scope("servers!server=alice/lab") == Scope(
        "servers", Filter.server("alice", "lab")
    )
    assert Filter.server("alice", "lab").server_parts == ("alice", "lab")
    assert scopes.parse_scope("read:users") == Scope("read:users")


def test_unvalued_filters_only_in_role_definitions() -> None:
    with pytest.raises(scopes.ScopeError, match="role definitions"):
        scopes.parse_scope("users:activity!user")
    assert scopes.parse_scope("users:activity!user", unvalued=True) == Scope(
        "users:activity", Filter("user")
    )
    assert str(scopes.parse_scope("access:servers!server", unvalued=True)) == (
        "access:servers!server"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("read:userz", "does not exist"),
        ("all", "'inherit'"),
        ("read:users!", "unknown filter"),
        ("read:users!owner=alice", "unknown filter"),
        ("read:users!user=", "needs a value"),
        ("read:users!group", "needs a value"),
        ("servers!server=alice", "<user>/<server>"),
        ("servers!server=/lab", "<user>/<server>"),
        ("self!user=alice", "no filter"),
        ("inherit!user=alice", "no filter"),
    ],
)
def test_bad_scopes_are_refused_by_name(text: str, why: str) -> None:
    with pytest.raises(scopes.ScopeError) as caught:
        scopes.parse_scope(text, unvalued=True)
    assert caught.value.scope == text
    assert text in str(caught.value)
    assert why in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- expansion -----------------------------------------------------------------------------------

ALICE_SELF = {
    f"{name}!user=alice"
    for name in (
        "read:users",
        "read:users:name",
        "read:users:groups",
        "read:users:activity",
        "users:shares",
        "read:users:shares",
        "read:shares",
        "users:activity",
        "servers",
        "read:servers",
        "start:servers",
        "delete:servers",
        "tokens",
        "read:tokens",
        "access:servers",
    )
}


def test_self_for_a_user() -> None:
    assert strings(scopes.expand(["self"], owner=ALICE)) == ALICE_SELF


def test_self_means_nothing_for_a_service_or_no_owner() -> None:
    assert scopes.expand(["self"], owner=Owner.for_service("grader")) == frozenset()
    assert scopes.expand(["self"]) == frozenset()


def test_filters_are_carried_down() -> None:
    assert strings(scopes.expand(["users!group=team"])) == {
        "users!group=team",
        "read:users!group=team",
        "list:users!group=team",
        "users:activity!group=team",
        "read:users:name!group=team",
        "read:users:groups!group=team",
        "read:users:activity!group=team",
    }


def test_the_server_role_for_a_server() -> None:
    role = roles.DEFAULT_ROLES["server"]
    expanded = scopes.expand(role.scopes, owner=Owner.for_server("alice", "lab"))
    assert strings(expanded) == {
        "users:activity!user=alice",
        "read:users:activity!user=alice",
        "access:servers!server=alice/lab",
    }


def test_unresolvable_unvalued_filters_are_dropped() -> None:
    role = roles.DEFAULT_ROLES["server"]
    assert strings(scopes.expand(role.scopes, owner=ALICE)) == {
        "users:activity!user=alice",
        "read:users:activity!user=alice",
    }
    assert scopes.expand(role.scopes, owner=Owner.for_service("grader")) == frozenset()
    assert strings(scopes.expand(["read:services!service"], owner=Owner.for_service("g"))) == {
        "read:services!service=g",
        "read:services:name!service=g",
    }


def test_user_reading_scopes_are_dropped_under_a_server_filter() -> None:
    assert strings(scopes.expand(["servers!server=alice/lab"])) == {
        "servers!server=alice/lab",
        "read:servers!server=alice/lab",
        "start:servers!server=alice/lab",
        "delete:servers!server=alice/lab",
    }
    assert scopes.expand(["read:users!server=alice/"]) == frozenset()
    assert strings(scopes.expand(["users:activity!server=alice/"])) == {
        "users:activity!server=alice/"
    }


def test_an_unfiltered_scope_absorbs_its_filtered_forms() -> None:
    expanded = scopes.expand(["self", "read:users"], owner=ALICE)
    assert "read:users" in strings(expanded)
    assert "read:users:name" in strings(expanded)
    assert "read:users!user=alice" not in strings(expanded)
    assert "read:users:name!user=alice" not in strings(expanded)
    assert "servers!user=alice" in strings(expanded)


def test_whoami_of_a_service_lists_27_scopes() -> None:
    # compat §4.3: a service with this role sees 27 expanded scopes in whoami.
    role = roles.define_role(
        "bench-role",
        ["admin:users", "admin:servers", "list:users", "read:hub", "admin:groups", "tokens"],
    )
    owner = Owner.for_service("bench")
    owned = roles.expand_roles([role], owner=owner)
    token = scopes.effective_token_scopes(["inherit"], owned, owner=owner)
    assert len(scopes.render(token)) == 27


def test_render_is_sorted_strings() -> None:
    expanded = scopes.expand(roles.DEFAULT_ROLES["server"].scopes, owner=Owner.for_server("a"))
    assert scopes.render(expanded) == [
        "access:servers!server=a/",
        "read:users:activity!user=a",
        "users:activity!user=a",
    ]


# --- checks --------------------------------------------------------------------------------------


def test_an_unfiltered_scope_covers_everything() -> None:
    held = grants("read:users")
    assert held.allows("read:users")
    assert held.allows("read:users", Filter.user("anyone"))
    assert held.allows("read:users:name", Filter.server("anyone", "x"))
    assert not held.allows("read:servers", Filter.user("anyone"))


def test_a_user_filter_covers_the_user_and_their_servers() -> None:
    held = grants("self", owner=ALICE)
    assert held.allows("read:servers", Filter.user("alice"))
    assert held.allows("delete:servers", Filter.server("alice", ""))
    assert held.allows("access:servers", Filter.server("alice", "lab"))
    assert not held.allows("access:servers", Filter.server("bob", ""))
    assert not held.allows("read:users", Filter.user("bob"))
    assert not held.allows("read:users")  # an unfiltered check needs an unfiltered grant
    assert held.holds("read:users")


def test_a_server_filter_covers_just_that_server() -> None:
    held = grants("access:servers!server=alice/lab")
    assert held.allows("access:servers", Filter.server("alice", "lab"))
    assert not held.allows("access:servers", Filter.server("alice", ""))
    assert not held.allows("access:servers", Filter.user("alice"))


def test_a_group_filter_covers_members_and_their_servers() -> None:
    held = grants("servers!group=team")
    assert held.allows("read:servers", Filter.user("bob"), groups_of=MEMBERS)
    assert held.allows("delete:servers", Filter.server("bob", "lab"), groups_of=MEMBERS)
    assert held.allows("servers", Filter.group("team"))
    assert not held.allows("servers", Filter.user("carol"), groups_of=MEMBERS)
    assert not held.allows("servers", Filter.user("dave"), groups_of=MEMBERS)
    assert not held.allows("servers", Filter.user("bob"))  # membership unknown: no access
    assert held.allows("servers", Filter.user("bob"), groups_of=lambda user: MEMBERS[user])


def test_membership_is_asked_only_when_a_group_filter_could_decide() -> None:
    asked: list[str] = []

    def groups_of(user: str) -> Collection[str]:
        asked.append(user)
        return MEMBERS.get(user, set())

    held = grants("read:users!user=alice", "read:groups!group=team")
    assert held.allows("read:users", Filter.user("alice"), groups_of=groups_of)
    assert not held.allows("read:users", Filter.user("bob"), groups_of=groups_of)
    assert held.allows("read:groups", Filter.group("team"), groups_of=groups_of)
    assert asked == []


def test_a_service_filter() -> None:
    held = grants("read:services!service=grader")
    assert held.allows("read:services:name", Filter.service("grader"))
    assert not held.allows("read:services", Filter.service("other"))
    assert held.filters("list:services") == scopes.NOTHING


def test_missing_scope_is_403_naming_the_scopes() -> None:
    held = grants("self", owner=ALICE)
    decision = held.authorize(["list:services"])
    assert decision == scopes.Decision(
        403, "Action is not authorized with current scopes; requires any of [list:services]"
    )
    assert not decision.allowed
    decision = held.authorize(["read:hub", "proxy"], Filter.user("bob"))
    assert decision.status == 403
    assert decision.message.endswith("requires any of [read:hub, proxy]")


def test_held_but_not_on_this_resource_is_404() -> None:
    held = grants("self", owner=ALICE)
    decision = held.authorize(["read:servers"], Filter.server("bob", ""))
    assert decision == scopes.Decision(404, "No access to resources or resources not found")
    assert held.authorize(["read:servers"], Filter.server("alice", "")) == scopes.ALLOWED
    # any one of the scopes suffices
    any_of = ["read:users", "read:users:name", "read:servers"]
    assert held.authorize(any_of, Filter.user("alice")).allowed
    assert held.authorize(any_of, Filter.user("bob")).status == 404


def test_group_membership_decides_between_allowed_and_404() -> None:
    held = grants("read:users!group=team")
    assert held.authorize(["read:users"], Filter.user("bob"), groups_of=MEMBERS).allowed
    assert held.authorize(["read:users"], Filter.user("carol"), groups_of=MEMBERS).status == 404


def test_list_endpoints_post_filter() -> None:
    held = grants("list:users!group=team", "list:users!user=carol")
    assert not held.authorize(["list:users"]).allowed
    assert held.authorize(["list:users"], post_filter=True).allowed
    assert held.authorize_list("list:users", kinds=("user", "group")).allowed
    rows = held.filters("list:users")
    assert not rows.everything
    assert rows.users == {"carol"}
    assert rows.groups == {"team"}
    assert rows.kinds == {"user", "group"}
    assert grants("users").filters("list:users").everything


def test_a_list_filter_of_another_kind_is_403() -> None:
    held = grants("list:users!server=alice/")
    assert held.authorize_list("list:users", kinds=("user", "group")) == scopes.Decision(
        403, "Forbidden"
    )
    denied = grants().authorize_list("list:users", kinds={"user"})
    assert denied.message.endswith("requires any of [list:users]")


def test_authorize_refuses_misspelled_scopes() -> None:
    with pytest.raises(scopes.ScopeError, match="read:userz"):
        grants("read:users").authorize(["read:userz"])
    assert scopes.check_scope_names(["custom:x:y", "read:hub"]) == ("custom:x:y", "read:hub")


# --- tokens --------------------------------------------------------------------------------------


def test_an_unfiltered_token_scope_takes_the_owners_filter() -> None:
    owned = scopes.expand(["read:users!user=a"])
    effective = scopes.effective_token_scopes(["read:users"], owned, owner=Owner.for_user("a"))
    assert strings(effective) == {
        "read:users!user=a",
        "read:users:name!user=a",
        "read:users:groups!user=a",
        "read:users:activity!user=a",
    }


@pytest.mark.parametrize(("member", "kept"), [(True, True), (False, False)])
def test_a_user_filter_against_a_group_filter_needs_membership(member: bool, kept: bool) -> None:
    owned = scopes.expand(["read:users!group=g"])
    membership = {"a": {"g"} if member else set()}
    effective = scopes.effective_token_scopes(
        ["read:users!user=a"], owned, owner=Owner.for_service("svc"), groups_of=membership
    )
    assert ("read:users!user=a" in strings(effective)) is kept
    assert ("read:users:name!user=a" in strings(effective)) is kept
    assert all("!group" not in s for s in strings(effective))


def test_a_server_token_is_what_the_singleuser_server_expects() -> None:
    owned = scopes.expand(["self"], owner=ALICE)
    effective = scopes.effective_token_scopes(
        roles.DEFAULT_ROLES["server"].scopes, owned, owner=Owner.for_server("alice", "")
    )
    assert scopes.render(effective) == [
        "access:servers!server=alice/",
        "read:users:activity!user=alice",
        "read:users:groups!user=alice",
        "read:users:name!user=alice",
        "users:activity!user=alice",
    ]


def test_inherit_is_the_owners_scopes() -> None:
    owned = scopes.expand(["self"], owner=ALICE)
    assert scopes.effective_token_scopes(["inherit"], owned, owner=ALICE) == owned
    with_more = scopes.effective_token_scopes(["inherit", "shutdown"], owned, owner=ALICE)
    assert with_more == owned


def test_identify_scopes_are_always_asked_for() -> None:
    owned = scopes.expand(["self"], owner=ALICE)
    effective = scopes.effective_token_scopes(["read:hub"], owned, owner=ALICE)
    assert strings(effective) == {"read:users:name!user=alice", "read:users:groups!user=alice"}
    assert scopes.identify_scopes(Owner.for_service("svc")) == {
        Scope("read:services:name", Filter.service("svc"))
    }


def test_token_scopes_beyond_the_owners_are_refused() -> None:
    owned = scopes.expand(["self"], owner=ALICE)
    scopes.check_token_scopes(["inherit"], owned, owner=ALICE)
    scopes.check_token_scopes(
        ["read:users!user", "access:servers!server=alice/x"], owned, owner=ALICE
    )
    with pytest.raises(scopes.ScopesNotHeld) as caught:
        scopes.check_token_scopes(["read:users:name", "tokens!user"], owned, owner=ALICE)
    assert caught.value.excess == ("read:users:name",)
    assert caught.value.scope == "read:users:name"
    assert (
        str(caught.value) == "Not assigning requested scopes read:users:name not held by User alice"
    )
    with pytest.raises(scopes.ScopeError, match="read:userz"):
        scopes.check_token_scopes(["read:userz"], owned, owner=ALICE)


def test_a_group_token_scope_needs_the_same_group() -> None:
    owned = scopes.expand(["read:users!user=a"])
    with pytest.raises(scopes.ScopesNotHeld, match="read:users!group=g"):
        scopes.check_token_scopes(
            ["read:users!group=g"], owned, owner=Owner.for_user("a"), groups_of={"a": {"g"}}
        )


def test_access_scopes_for_oauth_clients() -> None:
    assert str(scopes.access_scope(Filter.server("a", "lab"))) == "access:servers!server=a/lab"
    assert str(scopes.access_scope(Filter.service("s"))) == "access:services!service=s"
    with pytest.raises(ValueError, match="not a server or service"):
        scopes.access_scope(Filter.user("a"))


# --- roles ---------------------------------------------------------------------------------------


def test_default_roles() -> None:
    defaults = roles.DEFAULT_ROLES
    assert defaults["user"].scopes == ("self", "write:collab!user", "admin:projects!user")
    assert defaults["token"].scopes == ("inherit",)
    assert defaults["server"].scopes == ("users:activity!user", "access:servers!server")
    assert set(defaults["admin"].scopes) == {
        "admin-ui", "admin:users", "admin:servers", "admin:services", "tokens",
        "admin:groups", "list:services", "read:services", "read:hub", "proxy", "shutdown",
        "access:services", "access:servers", "read:roles", "read:metrics", "shares",
        "read:events", "write:collab", "admin:projects",
    }  # fmt: skip
    for role in defaults.values():
        assert roles.define_role(role.name, role.scopes) == role


def test_the_admin_role_has_what_the_idle_culler_needs() -> None:
    admin = scopes.Grants.of(roles.expand_roles([roles.DEFAULT_ROLES["admin"]], owner=ALICE))
    for needed in ("list:users", "read:users:activity", "read:servers", "delete:servers"):
        assert admin.allows(needed)
    assert admin.allows("read:events")
    assert admin.allows("admin:server_state", Filter.server("bob", "lab"))


@pytest.mark.parametrize(
    ("name", "scope_list", "named_scope", "why"),
    [
        ("Teacher", ["read:users"], None, "invalid role name"),
        ("ab", ["read:users"], None, "invalid role name"),
        ("teacher-", ["read:users"], None, "invalid role name"),
        ("teacher", ["read:users", "read:userz"], "read:userz", "does not exist"),
        ("teacher", ["read:users!owner=x"], "read:users!owner=x", "unknown filter"),
        ("teacher", ["servers!server=bob"], "servers!server=bob", "<user>/<server>"),
        ("teacher", ["read:users!group"], "read:users!group", "needs a value"),
        ("admin", ["read:users"], None, "cannot be changed"),
    ],
)
def test_bad_roles_are_refused_naming_role_and_scope(
    name: str, scope_list: list[str], named_scope: str | None, why: str
) -> None:
    with pytest.raises(scopes.ScopeError) as caught:
        roles.define_role(name, scope_list)
    assert caught.value.role == name
    assert caught.value.scope == named_scope
    message = str(caught.value)
    assert message.startswith(f"Role {name!r}: ")
    assert why in message
    if named_scope is not None:
        assert named_scope in message


def test_a_custom_role_and_an_extended_user_role() -> None:
    role = roles.define_role(
        "ta.grader_1", ["read:users!group=cs101", "servers!group=cs101", "read:users!group=cs101"]
    )
    assert role.scopes == ("read:users!group=cs101", "servers!group=cs101")
    assert role.description == ""
    user = roles.define_role("user", ["self", "shares!user"])
    assert user.description == roles.DEFAULT_ROLES["user"].description
    held = scopes.Grants.of(roles.expand_roles([user], owner=ALICE))
    assert held.allows("shares", Filter.server("alice", ""))
    assert not held.allows("shares", Filter.server("bob", ""))


# --- properties ----------------------------------------------------------------------------------

USERS = ("alice", "bob", "carol")
GROUPS = ("team", "staff")
SERVERS = (("alice", ""), ("alice", "lab"), ("bob", ""))
SERVICES = ("grader", "culler")
NAMES = sorted(scopes.BUILTIN.names())
RESOURCES: list[Filter | None] = [
    None,
    *(Filter.user(u) for u in (*USERS, "dave")),
    *(Filter.group(g) for g in (*GROUPS, "other")),
    *(Filter.server(u, s) for u, s in (*SERVERS, ("carol", "x"))),
    *(Filter.service(s) for s in (*SERVICES, "other")),
]
UNVALUED: tuple[scopes.Kind, ...] = ("user", "server", "service")
OWNERS = (
    Owner.for_user("alice"),
    Owner.for_user("bob"),
    Owner.for_server("alice", "lab"),
    Owner.for_service("grader"),
)

filters = st.one_of(
    st.none(),
    st.sampled_from(USERS).map(Filter.user),
    st.sampled_from(GROUPS).map(Filter.group),
    st.sampled_from(SERVERS).map(lambda us: Filter.server(*us)),
    st.sampled_from(SERVICES).map(Filter.service),
    st.sampled_from(UNVALUED).map(lambda kind: Filter(kind)),
)


@st.composite
def raw_scopes(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(NAMES))
    scope_filter = None if name in scopes.METASCOPES else draw(filters)
    return str(Scope(name, scope_filter))


memberships = st.fixed_dictionaries(
    {user: st.frozensets(st.sampled_from(GROUPS)) for user in (*USERS, "dave")}
)


def granted(held: scopes.Grants, membership: dict[str, frozenset[str]]) -> set[tuple[str, str]]:
    """Every (scope, resource) pair ``held`` allows, over the test universe."""
    return {
        (name, str(resource))
        for name in NAMES
        for resource in RESOURCES
        if held.allows(name, resource, groups_of=membership)
    }


@given(
    token=st.lists(raw_scopes(), max_size=6),
    owned=st.lists(raw_scopes(), max_size=8),
    owner=st.sampled_from(OWNERS),
    membership=memberships,
)
def test_a_token_never_grants_more_than_its_owner(
    token: list[str], owned: list[str], owner: Owner, membership: dict[str, frozenset[str]]
) -> None:
    owner_scopes = scopes.expand(owned, owner=owner)
    effective = scopes.effective_token_scopes(
        token, owner_scopes, owner=owner, groups_of=membership
    )
    via_token = granted(scopes.Grants.of(effective), membership)
    assert via_token <= granted(scopes.Grants.of(owner_scopes), membership)
    if "inherit" not in token:
        asked = scopes.expand(token, owner=owner) | scopes.identify_scopes(owner)
        assert via_token <= granted(scopes.Grants.of(asked), membership)


@given(
    token=st.lists(raw_scopes(), max_size=6),
    owned=st.lists(raw_scopes(), max_size=8),
    owner=st.sampled_from(OWNERS),
    membership=memberships,
)
def test_an_accepted_token_keeps_everything_it_asked_for(
    token: list[str], owned: list[str], owner: Owner, membership: dict[str, frozenset[str]]
) -> None:
    owner_scopes = scopes.expand(owned, owner=owner)
    try:
        scopes.check_token_scopes(token, owner_scopes, owner=owner, groups_of=membership)
    except scopes.ScopesNotHeld:
        return
    effective = scopes.effective_token_scopes(
        token, owner_scopes, owner=owner, groups_of=membership
    )
    asked = scopes.expand([t for t in token if t != "inherit"], owner=owner)
    assert granted(scopes.Grants.of(asked), membership) <= granted(
        scopes.Grants.of(effective), membership
    )


@given(raw=st.lists(raw_scopes(), max_size=8), owner=st.sampled_from((None, *OWNERS)))
def test_expand_is_idempotent(raw: list[str], owner: Owner | None) -> None:
    once = scopes.expand(raw, owner=owner)
    assert scopes.expand(once, owner=owner) == once
    assert scopes.expand(scopes.render(once), owner=owner) == once
    assert scopes.Grants.of(once).scopes() == once


@given(
    smaller=st.lists(raw_scopes(), max_size=6),
    extra=st.lists(raw_scopes(), max_size=6),
    owner=st.sampled_from((None, *OWNERS)),
)
def test_expand_is_monotone(smaller: list[str], extra: list[str], owner: Owner | None) -> None:
    small = scopes.expand(smaller, owner=owner)
    large = scopes.Grants.of(scopes.expand(smaller + extra, owner=owner))
    for scope in small:
        assert large.allows(scope.name, scope.filter)


@given(text=raw_scopes())
def test_parse_and_str_round_trip(text: str) -> None:
    assert str(scopes.parse_scope(text, unvalued=True)) == text
