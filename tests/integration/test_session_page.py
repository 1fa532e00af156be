"""The notebook page's server side, without a browser: who may open ``/hub/sessions/{id}``
(sign-in first; writers and readers; a 404 page for anyone else and any bad id), what it tells
the script, its Content-Security-Policy, and the bundle's caching (hashed files immutable, the
manifest not cached, the files sent compressed)."""

from __future__ import annotations

import html
import json
import re
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from events import store
from hub.web import assets
from tests.integration import browser
from tests.integration.collab_fixtures import COLLAB_CONFIG, serving

pytestmark = pytest.mark.integration

ROLES = [
    *COLLAB_CONFIG["roles"],
    {"name": "alice-readers", "scopes": ["read:collab!user=alice"], "users": ["carol"]},
]
CONFIG = re.compile(r'<script type="application/json" id="session-config">(.*?)</script>', re.S)


def config_of(page: browser.Page) -> dict[str, object]:
    found = CONFIG.search(page.text)
    assert found, page.text[:2000]
    data: dict[str, object] = json.loads(html.unescape(found[1]))
    return data


async def test_writers_and_readers_open_the_page_and_nobody_else_learns_it_exists(
    event_store: store.EventStore, db_url: str
) -> None:
    async with serving(event_store, db_url, roles=ROLES) as hub:
        for name in ("alice", "carol", "dave"):
            await browser.set_password(hub.api, name)
        status, created = await hub.api.call("POST", "/collab/sessions", await hub.token("alice"))
        assert status == 201, created
        base = hub.url.replace("ws://", "http://")
        path = f"/hub/sessions/{created['id']}"
        people = {name: browser.Browser(base) for name in ("alice", "carol", "dave")}
        anonymous = browser.Browser(base)
        try:
            # signed out: to the login page, and back here after it
            first = await anonymous.get(path)
            assert first.status == 302
            assert unquote(first.location or "") == "/hub/login?next=" + path
            for name, person in people.items():
                assert (await person.login(name)).status == 302

            page = await people["alice"].get(path)
            assert page.status == 200, page.text
            csp = page.response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp
            assert "connect-src 'self'" in csp
            assert "'unsafe-eval'" not in csp
            assert page.response.headers["Cache-Control"] == "no-store"
            config = config_of(page)
            assert config == {
                "session_id": created["id"],
                "room": created["room"],
                "user": "alice",
                "can_write": True,
                "api": f"/hub/api/collab/sessions/{created['id']}",
                "ws_path": "/hub/collab",
                "xsrf": people["alice"].xsrf(),
            }
            assert 'id="run-all"' in page.text
            script = re.search(r'<script type="module" src="(/hub/static/app/[^"]+)">', page.text)
            assert script, "the page links the bundle (run `make frontend`)"
            assert "token" not in script[1]

            # the bundle: the hashed file kept for good, the manifest revalidated
            bundle = await people["alice"].get(script[1])
            assert bundle.status == 200
            assert bundle.response.headers["Cache-Control"] == (
                "public, max-age=31536000, immutable"
            )
            # compressed on the wire: the build's .br/.gz twin of the file
            assert bundle.response.headers.get("Content-Encoding") in ("br", "gzip")
            manifest = await people["alice"].get("/hub/static/app/manifest.json")
            assert manifest.response.headers["Cache-Control"] == "no-cache"
            # the editors' chunk (and what it shares with the entry) preloaded, kept for good
            chunks = re.findall(
                r'<link rel="modulepreload" href="(/hub/static/app/[^"]+)">', page.text
            )
            assert chunks, "the page preloads the bundle's chunks"
            for chunk in chunks:
                answer = await people["alice"].get(chunk)
                assert answer.status == 200
                assert "immutable" in answer.response.headers["Cache-Control"]

            # a reader: the page, read-only, without run controls
            watched = await people["carol"].get(path)
            assert watched.status == 200, watched.text
            assert config_of(watched)["can_write"] is False
            assert 'id="read-only"' in watched.text
            assert 'id="run-all"' not in watched.text

            # anyone else, an unknown session, a malformed id: the same 404 page
            for other in (path, f"/hub/sessions/{uuid.uuid4()}", "/hub/sessions/not-a-uuid"):
                refused = await people["dave"].get(other)
                assert refused.status == 404, refused.text
                assert "No such session" in refused.text
                assert "session-config" not in refused.text
        finally:
            for person in (*people.values(), anonymous):
                await person.close()


def test_an_unbuilt_bundle_has_no_url_and_a_built_one_its_hashed_name(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    assert assets.url("notebook.js", manifest) is None
    assert assets.preloads("notebook.js", manifest) == []
    manifest.write_text(
        '{"notebook.js": {"file": "notebook-ABCD1234.js", "preload": ["chunk-EF56.js"]}}'
    )
    assert assets.url("notebook.js", manifest) == "/hub/static/app/notebook-ABCD1234.js"
    assert assets.preloads("notebook.js", manifest) == ["/hub/static/app/chunk-EF56.js"]
    assert assets.url("other.js", manifest) is None
    assert assets.preloads("other.js", manifest) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[]", "not a JSON object"),
        ('{"notebook.js": "notebook-ABCD1234.js"}', "entry 'notebook.js' has no file name"),
        ('{"notebook.js": {"file": "n.js", "preload": "c.js"}}', "not a list of names"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(content)
    with pytest.raises(ValueError, match=problem):
        assets.url("notebook.js", manifest)
