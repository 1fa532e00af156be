"""The pages' helpers without a hub: times as ``<time>`` with their age, server badges, and
the layout's navigation bar rendered from its context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hub.web import html

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=1), "1 min ago"),
        (timedelta(minutes=3, seconds=40), "3 min ago"),
        (timedelta(minutes=59), "59 min ago"),
        (timedelta(hours=1), "1 h ago"),
        (timedelta(hours=23, minutes=59), "23 h ago"),
        (timedelta(days=1), "1 day ago"),
        (timedelta(days=2, hours=5), "2 days ago"),
        (timedelta(days=45), "1 month ago"),
        (timedelta(days=100), "3 months ago"),
        (timedelta(days=365), "1 year ago"),
        (timedelta(days=800), "2 years ago"),
        (-timedelta(seconds=30), "just now"),
        (-timedelta(minutes=5), "in 5 min"),
        (-timedelta(days=7), "in 7 days"),
        (-timedelta(days=1), "in 1 day"),
    ],
)
def test_age_in_words(delta: timedelta, expected: str) -> None:
    assert html.age(NOW - delta, NOW) == expected


def test_when_is_a_time_element_with_the_exact_time_on_hover() -> None:
    then = datetime(2026, 11, 25, 11, 57, 12, 345678, tzinfo=UTC)
    markup = str(html.when(then, NOW))
    assert markup == (
        '<time datetime="2026-11-25T11:57:12Z" title="2026-11-25T11:57:12Z">'
        '2026-11-25 11:57 UTC <span class="age">(2 min ago)</span></time>'
    )


def test_when_shows_other_zones_in_utc() -> None:
    then = datetime(2026, 11, 25, 13, 0, tzinfo=UTC).astimezone(
        datetime.now(UTC).astimezone().tzinfo
    )
    markup = str(html.when(then, NOW))
    assert 'datetime="2026-11-25T13:00:00Z"' in markup
    assert "2026-11-25 13:00 UTC" in markup
    assert "(in 1 h)" in markup


def test_when_reads_iso_strings_and_naive_values_as_utc() -> None:
    assert 'datetime="2026-11-24T12:00:00Z"' in html.when("2026-11-24T12:00:00Z", NOW)
    assert "(1 day ago)" in html.when("2026-11-24T12:00:00+00:00", NOW)
    naive = datetime(2026, 11, 25, 11, 0)  # noqa: DTZ001 - what the filter must cope with
    assert "(1 h ago)" in html.when(naive, NOW)


def test_when_says_never_for_nothing() -> None:
    assert html.when(None, NOW) == "never"
    assert html.when("", NOW) == "never"
    assert html.when(None, NOW, missing="not yet") == "not yet"


def test_the_filter_escapes_what_it_shows() -> None:
    assert html.when(None, NOW, missing="<b>") == "&lt;b&gt;"


def test_the_template_filter_renders_a_time_element() -> None:
    template = html.environment().from_string("{{ value | when }}")
    markup = template.render(value=datetime.now(UTC) - timedelta(minutes=3))
    assert markup.startswith("<time datetime=")
    assert "(3 min ago)" in markup or "(2 min ago)" in markup


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("ready", "running"),
        ("spawning", "pending"),
        ("started", "pending"),
        ("stopping", "pending"),
        ("failed", "failed"),
        ("stopped", "stopped"),
        ("defined", "stopped"),
        (None, "stopped"),
    ],
)
def test_badges_of_server_states(state: str | None, expected: str) -> None:
    assert html.badge(state) == expected


def _page(nav: html.Nav) -> str:
    return html.render("error.html", code=404, reason="Not Found", nav=nav).text or ""


def test_the_nav_bar_of_a_user() -> None:
    text = _page(html.Nav(user="ann", xsrf="tok", here="/hub/token"))
    assert '<a href="/hub/home">Home</a>' in text
    assert '<a href="/hub/token" aria-current="page">Token</a>' in text
    assert "/hub/admin" not in text
    assert 'id="user">ann<' in text
    assert '<form class="signout" method="post" action="/hub/logout">' in text
    assert '<input type="hidden" name="_xsrf" value="tok">' in text


def test_the_nav_bar_of_an_admin_with_services_and_projects() -> None:
    nav = html.Nav(
        user="ada",
        admin=True,
        xsrf="tok",
        services=[html.Link("stats", "/services/stats/")],
        projects=[html.Link("thesis", "/hub/projects/thesis")],
    )
    text = _page(nav)
    assert '<a href="/hub/admin">Admin</a>' in text
    assert '<li class="service"><a href="/services/stats/">stats</a></li>' in text
    assert '<li class="project"><a href="/hub/projects/thesis">thesis</a></li>' in text


def test_without_a_token_sign_out_is_a_link_to_its_page() -> None:
    text = _page(html.Nav(user="ann"))
    assert '<a href="/hub/logout">Sign out</a>' in text
    assert "<form" not in text


def test_nobody_signed_in_gets_a_sign_in_link_and_no_form() -> None:
    text = _page(html.Nav(here="/hub/home"))
    assert '<a href="/hub/login">Sign in</a>' in text
    assert "<form" not in text
    assert 'id="user"' not in text
    assert '<a href="/hub/login">' not in _page(html.Nav(here="/hub/login"))


def test_pages_link_the_stylesheets_and_icon_with_the_version() -> None:
    text = _page(html.Nav())
    for name in ("vendor/pico-2.1.1.min.css", "chronohub.css", "favicon.svg"):
        assert f"/hub/static/{name}?v=" in text
        assert (html.STATIC_DIR / name).is_file()
