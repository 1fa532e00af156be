"""examples/grader driven as a course would drive it: a hub behind its proxy, the service
run as a process with JupyterHub's service environment, a grader and two students who sign
in through the hub (HubOAuth, the real jupyterhub helpers) and use the real git command line.

A release is a project shared read-only with the course; submissions are pushes (the hub's
receive time, one of them late); the grader scores one and returns feedback, which the
student pulls. Students are refused the grading pages and each other's submissions; a
hostile notebook never runs in the grader's page; bad input is refused with a message; and
a restarted service neither loses nor double-counts a push.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from events import store
from hub.proxy import builtin as proxy
from hub.proxy import routes, table
from tests import ports
from tests.helpers import wait_for
from tests.integration.api_fixtures import CONFIG
from tests.integration.browser import Browser, Page, set_password
from tests.integration.git_client import Git, with_token
from tests.integration.projects_fixtures import ProjectsHub, open_projects_hub
from tests.integration.serve_process import chronohub_serve

pytestmark = [pytest.mark.integration, pytest.mark.interop]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOKEN = "grader-service-secret-0123456789abcdef"
PREFIX = "/services/grader/"
PASSWORD = "grader test password"
SERVICES = [
    *CONFIG["services"],
    {
        "name": "grader",
        "api_token": TOKEN,
        # the signed-in person's token may manage their own projects (release, submission)
        "oauth_client_allowed_scopes": ["admin:projects!user"],
        "oauth_no_confirm": True,
    },
]
ROLES = [
    *CONFIG["roles"],
    {
        "name": "grader",
        # as the README says: no admin, no user or token management, no project creation
        "scopes": [
            "list:groups",
            "read:groups",
            "read:events:projects",
            "read:projects",
            "write:projects",
        ],
        "services": ["grader"],
    },
    {
        # JupyterHub's way of letting every user open a service: the user role, extended
        "name": "user",
        "scopes": [
            "self",
            "write:collab!user",
            "admin:projects!user",
            "access:services!service=grader",
        ],
    },
]


def notebook(*cells: dict[str, Any]) -> bytes:
    """An nbformat 4 notebook of ``cells``."""
    return json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells)}
    ).encode()


def markdown(source: str, cell_id: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}


def code(source: str, cell_id: str, outputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "cell_type": "code", "id": cell_id, "metadata": {}, "source": source,
        "execution_count": 1, "outputs": outputs or [],
    }  # fmt: skip


ASSIGNMENT = notebook(markdown("# Assignment 1\nCompute 6 * 7.", "q"), code("answer = ...", "a"))
# Each part tries to reach the grader's page (its title) or show a dialog.
HOSTILE = notebook(
    markdown(
        "<script>top.document.title = 'pwned-markdown'; alert('pwned')</script>"
        "<img src=x onerror=\"top.document.title = 'pwned-img'\">",
        "m",
    ),
    code(
        "evil()", "c",
        [{"output_type": "display_data", "metadata": {}, "data": {
            "text/html": "<script>top.document.title = 'pwned-output'</script>",
            "application/javascript": "top.document.title = 'pwned-js'",
        }}],
    ),
)  # fmt: skip


@dataclass
class Course:
    """The hub, its public address, the running service, and each person's browser/git."""

    hub: ProjectsHub
    public: str
    tmp: Path
    env: dict[str, str]
    service: asyncio.subprocess.Process | None = None
    browsers: dict[str, Browser] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def git_base(self) -> str:
        return self.hub.base_url + "/hub/git"

    async def start_service(self) -> None:
        with (self.tmp / "grader.log").open("ab") as log:
            self.service = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "grader", env=self.env, cwd=self.tmp,
                stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        assert self.service.stdout is not None
        line = (await asyncio.wait_for(self.service.stdout.readline(), 60)).decode()
        if not line.startswith("grader serving at "):
            await self.service.wait()
            raise AssertionError(line + self.log())

    def log(self) -> str:
        """What the service has logged so far."""
        return (self.tmp / "grader.log").read_text()

    async def stop_service(self) -> str:
        """Stop the service (SIGTERM); its log."""
        assert self.service is not None
        self.service.terminate()
        await asyncio.wait_for(self.service.communicate(), 30)
        assert self.service.returncode == 0, self.log()
        self.service = None
        return self.log()

    async def sign_in(self, name: str) -> Browser:
        """A browser signed in to the service through the hub's OAuth (HubOAuth's flow)."""
        browser = self.browsers[name] = Browser(self.public)
        start = await browser.get(PREFIX)
        assert start.status == 302
        assert (start.location or "").startswith("/hub/api/oauth2/authorize?")
        form = await browser.follow(start)  # -> the hub's login form
        assert form.status == 200, form.text
        signed_in = await browser.post(
            str(form.response.url),
            data={"_xsrf": form.hidden("_xsrf"), "username": name, "password": PASSWORD},
        )
        assert signed_in.status == 302, signed_in.text
        home = await browser.follow(signed_in)  # authorize -> our callback -> our page
        assert home.status == 200, home.text + self.log()
        assert str(home.response.url).endswith(PREFIX)
        assert f"Signed in as {name}." in home.text
        return browser

    async def form_post(self, name: str, form_page: str, action: str, **data: str) -> Page:
        """Load ``form_page`` as ``name`` and post its form to ``action`` with ``data``."""
        browser = self.browsers[name]
        page = await browser.get(form_page)
        assert page.status == 200, page.text
        return await browser.post(action, data={"_xsrf": page.hidden("_xsrf"), **data})

    async def submissions(self, grader: str, assignment: str) -> dict[str, dict[str, Any]]:
        page = await self.browsers[grader].get(f"{PREFIX}courses/c1/{assignment}/?format=json")
        assert page.status == 200, page.text
        return {row["student"]: row for row in json.loads(page.text)["submissions"]}

    async def git(self, name: str) -> Git:
        if name not in self.tokens:
            self.tokens[name] = await self.hub.user_token(name)
        return Git(self.tmp / "git" / name)

    def url(self, name: str, project: str) -> str:
        """``project``'s clone URL with ``name``'s token."""
        return with_token(f"{self.git_base}/{project}.git", self.tokens[name], name)


@pytest.fixture
async def course(event_store: store.EventStore, tmp_path: Path) -> AsyncIterator[Course]:
    """Course c1: grace grades, sam and tom study; the grader service is running."""
    port = ports.free_port()
    services = [
        s if s["name"] != "grader" else {**s, "url": f"http://127.0.0.1:{port}"} for s in SERVICES
    ]
    async with (
        open_projects_hub(event_store, tmp_path / "data", services=services, roles=ROLES) as hub,
        proxy.Proxy(hub.base_url) as public,
    ):
        host, proxy_port = await public.start("127.0.0.1", 0)

        async def to_proxy(routes_now: list[table.Route]) -> None:
            public.set_routes(routes_now)

        follower = routes.RouteFollower(event_store.pool, [to_proxy], 3600)
        await follower.start()
        for name in ("grace", "sam", "tom", "uma"):
            await set_password(hub, name, PASSWORD)
        await hub.group("course-c1", "sam", "tom")
        await hub.group("graders-c1", "grace")
        env = {
            **os.environ,
            "PYTHONPATH": str(EXAMPLES),
            "GRADER_DATA_DIR": str(tmp_path / "grader"),
            "GRADER_LOG_LEVEL": "DEBUG",
            "JUPYTERHUB_API_TOKEN": TOKEN,
            "JUPYTERHUB_API_URL": hub.base_url + "/hub/api",
            "JUPYTERHUB_HOST": "",
            "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_CLIENT_ID": "service-grader",
            "JUPYTERHUB_SERVICE_NAME": "grader",
            "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
            "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{PREFIX}",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": PREFIX + "oauth_callback",
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=grader"]),
        }
        state = Course(hub=hub, public=f"http://{host}:{proxy_port}", tmp=tmp_path, env=env)
        await state.start_service()
        try:
            yield state
        finally:
            for browser in state.browsers.values():
                await browser.close()
            await follower.stop()
            if state.service is not None:
                state.service.terminate()
                await asyncio.wait_for(state.service.communicate(), 30)


async def release(course: Course, assignment: str, due: datetime, points: str = "10") -> Page:
    return await course.form_post(
        "grace", f"{PREFIX}courses/c1/", f"{PREFIX}courses/c1/release",
        assignment=assignment, due=due.isoformat(), points=points,
    )  # fmt: skip


async def submit(course: Course, student: str, files: dict[str, bytes]) -> Path:
    """``student`` starts a1 on the service's page, clones the release, commits ``files`` and
    pushes to their submission project: their work tree."""
    started = await course.form_post(student, PREFIX, f"{PREFIX}courses/c1/a1/start")
    assert started.status == 302, started.text
    git = await course.git(student)
    work = git.home / "a1"
    await git.ok("clone", "-q", course.url(student, "grace/c1-a1"), str(work))
    await git.ok(
        "remote", "add", "submission", course.url(student, f"{student}/c1-a1-submission"), cwd=work
    )
    await git.commit(work, files, f"{student}'s answers")
    await git.ok("push", "-q", "submission", "HEAD:main", cwd=work)
    return work


async def in_chromium(
    course: Course, browser: Browser, path: str, notebook: str
) -> tuple[str, list[str], str]:
    """Open ``path`` in Chromium with ``browser``'s cookies; once the notebook's frame has
    loaded: the page's title, the dialogs that opened, the frame's text."""
    from playwright.async_api import Dialog, async_playwright

    cookies: list[Any] = [
        {"name": c.key, "value": c.value, "url": course.public + (c["path"] or "/")}
        for c in browser.session.cookie_jar
    ]
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await chromium.new_context()
            await context.add_cookies(cookies)
            page = await context.new_page()
            dialogs: list[str] = []

            async def dialog(opened: Dialog) -> None:
                dialogs.append(opened.message)
                await opened.dismiss()

            page.on("dialog", dialog)
            await page.goto(course.public + path, wait_until="load")
            frame = next(f for f in page.frames if f.url.endswith("nb/" + notebook))
            framed = await frame.locator("body").inner_text()
            return await page.title(), dialogs, framed
        finally:
            await chromium.close()


async def test_release_submit_grade_and_return_feedback(
    course: Course, event_store: store.EventStore
) -> None:
    grace = await course.sign_in("grace")
    home = await grace.get(PREFIX)
    assert f'href="{PREFIX}courses/c1/"' in home.text

    # The grader releases a1, due in a week (a time with its offset), and pushes its notebook.
    plus_one = timezone(timedelta(hours=1))
    released = await release(course, "a1", datetime.now(plus_one) + timedelta(days=7))
    assert released.status == 302, released.text
    git = await course.git("grace")
    source = git.home / "a1"
    await git.new_repo(source, {"a1.ipynb": ASSIGNMENT})
    await git.ok("push", "-q", course.url("grace", "grace/c1-a1"), "main", cwd=source)
    status, members = await course.hub.call(
        "GET", "/projects/grace/c1-a1/members", course.tokens["grace"]
    )
    assert status == 200, members
    assert {(m["name"], m["role"]) for m in members} >= {
        ("course-c1", "read"),
        ("graders-c1", "write"),
    }
    page = await grace.get(f"{PREFIX}courses/c1/")
    assert ">a1</a>" in page.text
    assert "+01:00" in page.text  # the due date keeps its offset (and script shows local time)

    # sam submits on time: the service learns of the push from the event stream.
    await course.sign_in("sam")
    sam_work = await submit(course, "sam", {"a1.ipynb": notebook(code("answer = 42", "a"))})
    assert (sam_work / "a1.ipynb").exists()

    async def seen(student: str, pushes: int) -> bool:
        return (await course.submissions("grace", "a1"))[student]["pushes"] == pushes

    await wait_for(lambda: seen("sam", 1), timeout_s=30)

    # The grader moves the due date to now; tom submits after it: late.
    moved = await release(course, "a1", datetime.now(plus_one))
    assert moved.status == 302, moved.text
    await course.sign_in("tom")
    await submit(
        course, "tom", {"a1.ipynb": notebook(code("answer = 41", "a")), "hostile.ipynb": HOSTILE}
    )
    await wait_for(lambda: seen("tom", 1), timeout_s=30)
    rows = await course.submissions("grace", "a1")
    assert (rows["sam"]["status"], rows["tom"]["status"]) == ("on time", "late")
    assert rows["sam"]["submitted"] < rows["tom"]["submitted"]
    listing = await grace.get(f"{PREFIX}courses/c1/a1/")
    assert '<td class="status late">late</td>' in listing.text
    assert '<td class="status ontime">on time</td>' in listing.text

    # The grader reads sam's notebook and records a score and feedback.
    sam_page = f"{PREFIX}courses/c1/a1/sam/"
    submission = await grace.get(sam_page)
    assert submission.status == 200, submission.text
    assert f'<iframe sandbox title="a1.ipynb" src="{sam_page}nb/a1.ipynb">' in submission.text, (
        submission.text
    )
    rendered = await grace.get(f"{sam_page}nb/a1.ipynb")
    assert rendered.status == 200
    assert ">answer<" in rendered.text
    assert ">42<" in rendered.text
    graded = await course.form_post(
        "grace", sam_page, sam_page + "grade", score="8.5", feedback="Right answer; explain *why*."
    )
    assert graded.status == 302, graded.text

    # ... and returns it: a push by the service, which the hub's log shows.
    returned = await course.form_post("grace", sam_page, sam_page + "return")
    assert returned.status == 302, returned.text
    pushes = await event_store.pool.fetch(
        "SELECT data->>'pusher' AS pusher, data->>'pusher_kind' AS kind FROM events"
        " WHERE event_type = 'project.pushed' ORDER BY global_position"
    )
    assert [(p["pusher"], p["kind"]) for p in pushes] == [
        ("grace", "user"),
        ("sam", "user"),
        ("tom", "user"),
        ("grader", "service"),
    ]
    released_by = await event_store.pool.fetch(
        "SELECT event_type, metadata->'actor'->>'name' AS actor FROM events"
        " WHERE event_type LIKE 'project.%' AND data->>'name' = 'c1-a1'"
        " OR event_type = 'project.member_granted' AND stream_id IN (SELECT stream_id FROM"
        " events WHERE event_type = 'project.created' AND data->>'name' = 'c1-a1')"
    )
    assert {(r["event_type"], r["actor"]) for r in released_by} >= {("project.created", "grace")}
    # the service's own push is not a submission: sam still has one, on time
    rows = await course.submissions("grace", "a1")
    assert (rows["sam"]["pushes"], rows["sam"]["status"], rows["sam"]["score"]) == (
        1,
        "on time",
        8.5,
    )
    assert rows["sam"]["returned"] is True

    # sam pulls the feedback, and sees the score on the service's page too.
    sam_git = await course.git("sam")
    await sam_git.ok("pull", "-q", "submission", "main", cwd=sam_work)
    text = (sam_work / "feedback.md").read_text()
    assert "**Score: 8.5 / 10**" in text
    assert "Right answer; explain *why*." in text
    sam_home = await course.browsers["sam"].get(PREFIX)
    assert "8.5 / 10" in sam_home.text
    assert "submission project sam/c1-a1-submission" in sam_home.text

    # Students may not grade, nor read each other's work.
    refused = await course.browsers["sam"].get(f"{PREFIX}courses/c1/")
    assert refused.status == 403
    assert "Only the graders of course c1 (members of the group graders-c1)" in refused.text
    assert (await course.browsers["sam"].get(f"{sam_page}nb/a1.ipynb")).status == 403
    tom_git = await course.git("tom")
    stolen = await tom_git(
        "clone", "-q", course.url("tom", "sam/c1-a1-submission"), str(tom_git.home / "stolen")
    )
    assert not stolen.ok
    assert "sam/c1-a1-submission" in stolen.err or "not found" in stolen.err.lower()

    # tom's hostile notebook: shown only in a sandboxed frame whose document may run nothing.
    tom_page = f"{PREFIX}courses/c1/a1/tom/"
    page = await grace.get(tom_page)
    assert f'<iframe sandbox title="hostile.ipynb" src="{tom_page}nb/hostile.ipynb">' in page.text
    assert "pwned" not in page.text
    csp = page.response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    hostile = await grace.get(f"{tom_page}nb/hostile.ipynb")
    assert hostile.status == 200
    assert "pwned-markdown" in hostile.text  # the student's markup is there, inert
    csp = hostile.response.headers["Content-Security-Policy"]
    assert csp.startswith("sandbox;")
    assert "allow-scripts" not in csp
    assert "allow-same-origin" not in csp
    assert "default-src 'none'" in csp
    assert hostile.response.headers["X-Content-Type-Options"] == "nosniff"
    # ... and in a real browser, with the grader's cookies, nothing of it runs.
    title, dialogs, framed = await in_chromium(course, grace, tom_page, "hostile.ipynb")
    assert (title, dialogs) == ("grader", [])
    assert "evil()" in framed  # the notebook was shown
    # A notebook's path stays inside the submission: ../ (escaped, as tornado unescapes it)
    # would be resolved in the URL the service asks the hub for, with its token
    escaped = "..%2F..%2F..%2F..%2Ftom%2Fc1-a1-submission%2Fraw%2Fmain%2Fhostile.ipynb"
    climbed = await grace.get(f"{sam_page}nb/{escaped}")
    assert climbed.status == 404, climbed.text
    assert "is not a path inside the submission" in climbed.text

    # The service restarts: it resumes from its cursor; a new push counts once, old ones not again.
    log = await course.stop_service()
    await course.start_service()
    tom_work = tom_git.home / "a1"
    await tom_git.commit(tom_work, {"a1.ipynb": notebook(code("answer = 42", "a"))}, "fixed")
    await tom_git.ok("push", "-q", "submission", "HEAD:main", cwd=tom_work)
    await wait_for(lambda: seen("tom", 2), timeout_s=30)
    rows = await course.submissions("grace", "a1")
    assert (rows["sam"]["pushes"], rows["tom"]["pushes"]) == (1, 2)
    assert "Traceback" not in log


async def test_bad_input_is_refused_with_a_message(course: Course) -> None:
    grace = await course.sign_in("grace")
    plus_one = timezone(timedelta(hours=1))
    assert (await release(course, "a1", datetime.now(plus_one) + timedelta(days=1))).status == 302
    await course.sign_in("sam")
    await submit(course, "sam", {"answer.txt": b"42\n"})

    # a course added while the service runs is there at once (no restart, no new service)
    await course.hub.group("graders-c2", "grace")
    assert f'href="{PREFIX}courses/c2/"' in (await grace.get(PREFIX)).text
    assert (await grace.get(f"{PREFIX}courses/c2/")).status == 200

    # unknown course, assignment, student: 404 naming what is missing
    for path, message in [
        ("courses/nope/", "No such course: nope"),
        ("courses/c1/a9/", "No such assignment in course c1: a9"),
        ("courses/c1/a1/uma/", "uma is not a student of course c1"),
    ]:
        page = await grace.get(PREFIX + path)
        assert page.status == 404, (path, page.text)
        assert message in page.text

    # scores that are not numbers or out of range; a due date without an offset
    sam_page = f"{PREFIX}courses/c1/a1/sam/"
    for score, message in [
        ("abc", "score: 'abc' is not a number"),
        ("nan", "score: 'nan' is not a number"),
        ("11", "score: '11' is out of range: give a number from 0 to 10"),
        ("-1", "is out of range"),
    ]:
        page = await course.form_post(
            "grace", sam_page, sam_page + "grade", score=score, feedback=""
        )
        assert page.status == 400, (score, page.text)
        assert message in html.unescape(page.text)
    naive = await course.form_post(
        "grace", f"{PREFIX}courses/c1/", f"{PREFIX}courses/c1/release",
        assignment="a2", due="2026-12-24T17:00",
    )  # fmt: skip
    assert naive.status == 400
    assert "due: '2026-12-24T17:00' has no UTC offset" in html.unescape(naive.text)
    bad_name = await course.form_post(
        "grace", f"{PREFIX}courses/c1/", f"{PREFIX}courses/c1/release",
        assignment="A 2", due="2026-12-24T17:00Z",
    )  # fmt: skip
    assert bad_name.status == 400
    assert "assignment: 'A 2' is not a valid name" in html.unescape(bad_name.text)

    # returning feedback before a score exists is refused
    early = await course.form_post("grace", sam_page, sam_page + "return")
    assert early.status == 409
    assert "Record a score for sam before returning feedback" in early.text

    # a form without its CSRF token is refused, and records nothing
    forged = await grace.post(sam_page + "grade", data={"score": "5", "feedback": "forged"})
    assert forged.status == 403
    assert "_xsrf" in html.unescape(forged.text)
    assert (await course.submissions("grace", "a1"))["sam"]["score"] is None


async def test_the_grader_runs_as_a_managed_service_from_the_readmes_configuration(
    db_url: str, tmp_path: Path
) -> None:
    """The README's managed form (command, cwd, environment; the hub picks the port):
    ``chronohub serve`` starts the grader, routes /services/grader/ to it, and a visitor is
    sent to log in through the hub; its data goes to its working directory."""
    workdir = tmp_path / "grader"
    workdir.mkdir()
    config = (
        "[[services]]\n"
        'name = "grader"\n'
        f'command = [{json.dumps(sys.executable)}, "-m", "grader"]\n'
        f"cwd = {json.dumps(str(workdir))}\n"
        f"environment = {{ PYTHONPATH = {json.dumps(str(EXAMPLES))} }}\n"
        'url = "http://127.0.0.1:0"\n'
        'oauth_client_allowed_scopes = ["admin:projects!user"]\n'
        "\n"
        "[[roles]]\n"
        'name = "grader"\n'
        'services = ["grader"]\n'
        'scopes = ["list:groups", "read:groups", "read:events:projects", "read:projects",'
        ' "write:projects"]\n'
    )
    answer: dict[str, Any] = {}
    async with (
        chronohub_serve(db_url, tmp_path, config) as public,
        aiohttp.ClientSession() as session,
    ):

        async def routed() -> bool:
            try:
                async with session.get(
                    public + PREFIX.lstrip("/"), allow_redirects=False
                ) as response:
                    answer.update(status=response.status, to=response.headers.get("Location"))
                    return response.status == 302
            except aiohttp.ClientError:
                return False

        await wait_for(routed, timeout_s=60, every_s=0.2)
    # HubOAuth sends the visitor to the hub to log in (the service's OAuth client)
    assert "/hub/api/oauth2/authorize" in (answer["to"] or ""), answer
    assert "client_id=service-grader" in answer["to"], answer
    assert (workdir / "grader.sqlite").exists()
