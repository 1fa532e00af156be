"""The service's pages (tornado, with JupyterHub's own ``HubOAuthenticated``): graders see
courses → assignments → submissions → one submission (its notebooks, a score and feedback,
"return feedback"); students see their assignments, start a submission and read their
scores. Everyone signs in through the hub (OAuth); the groups decide who sees what.

Forms are protected against cross-site requests by HubOAuth's XSRF token (tornado's
``xsrf_cookies``): a POST without the page's ``_xsrf`` is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from . import feedback, gradebook, hubapi, render, rules

log = logging.getLogger("grader")


class Refused(Exception):
    """A request answered with ``status`` and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Service:
    """What the handlers share: the hub's API (with the service's token) and the gradebook."""

    hub: hubapi.Hub
    book: gradebook.Gradebook
    prefix: str
    public_git: str
    """Where people reach the hub's git (its public URL), for the commands the pages show."""


@dataclass(frozen=True)
class Row:
    """One student's line on an assignment's page."""

    student: str
    submitted: datetime | None
    pushes: int
    status: str
    grade: gradebook.Grade | None


class Page(HubOAuthenticated, web.RequestHandler):  # type: ignore[misc]
    """A signed-in page of the service."""

    @property
    def service(self) -> Service:
        service: Service = self.settings["grader"]
        return service

    @property
    def user(self) -> str:
        return str(self.current_user["name"])

    def set_default_headers(self) -> None:
        for name, value in render.PAGE_HEADERS.items():
            self.set_header(name, value)

    def url(self, *parts: str) -> str:
        """A URL of this service from path parts (each quoted)."""
        return self.service.prefix + "".join(quote(p, safe="") + "/" for p in parts)

    async def courses(self) -> dict[str, rules.Course]:
        """The hub's courses, read from its groups now (a course added is there at once)."""
        return rules.courses(await self.service.hub.groups())

    async def course(self, course_id: str) -> rules.Course:
        """A course: 404 if there is no such course."""
        course = (await self.courses()).get(course_id)
        if course is None:
            raise Refused(404, f"No such course: {course_id} (no group graders-{course_id})")
        return course

    async def grading(self, course_id: str) -> rules.Course:
        """A course whose graders include the signed-in user: 404 or 403 otherwise."""
        course = await self.course(course_id)
        if self.user not in course.graders:
            raise Refused(
                403,
                f"Only the graders of course {course_id} (members of the group"
                f" graders-{course_id}) may open its grading pages; {self.user} is not one.",
            )
        return course

    def assignment(self, course_id: str, name: str) -> gradebook.Assignment:
        """A released assignment: 404 otherwise."""
        found = self.service.book.assignment(course_id, name)
        if found is None:
            raise Refused(404, f"No such assignment in course {course_id}: {name}")
        return found

    def person_token(self) -> str:
        """The signed-in person's OAuth token (limited to their own projects)."""
        token = self.hub_auth.get_token(self)
        if not token:
            raise Refused(401, "Sign in through the hub first")
        return str(token)

    def row(self, course: str, assignment: gradebook.Assignment, student: str) -> Row:
        """A student's submission state for an assignment."""
        book = self.service.book
        pushes = book.submission_pushes(course, assignment.name, student)
        submitted = pushes[-1] if pushes else None
        return Row(
            student=student,
            submitted=submitted,
            pushes=len(pushes),
            status=rules.status(submitted, assignment.due),
            grade=book.grade(course, assignment.name, student),
        )

    def show(self, template: str, **values: Any) -> None:
        self.render(template, prefix=self.service.prefix, url=self.url, user=self.user, **values)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, Refused):
            message = exc.message
        elif isinstance(exc, rules.Invalid):
            message = str(exc)
        elif isinstance(exc, hubapi.HubError):
            message = f"The hub refused: {exc.message}"
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        self.render("error.html", prefix=self.service.prefix, status=status_code, message=message)

    def _handle_request_exception(self, e: BaseException) -> None:
        # Our refusals and bad input are answers, not server errors: give them their status.
        if isinstance(e, Refused):
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
        elif isinstance(e, rules.Invalid):
            self.send_error(400, exc_info=(type(e), e, e.__traceback__))
        elif isinstance(e, hubapi.HubError):
            # the hub's own refusal (a name taken, a scope missing): say so, as a bad gateway
            log.warning("the hub refused a call: %s", e)
            self.send_error(502, exc_info=(type(e), e, e.__traceback__))
        else:
            super()._handle_request_exception(e)


class Home(Page):
    """The courses the signed-in user grades, and their own assignments as a student."""

    @web.authenticated
    async def get(self) -> None:
        courses = await self.courses()
        grading = sorted(c for c, course in courses.items() if self.user in course.graders)
        studying = []
        book = self.service.book
        for cid in sorted(c for c, course in courses.items() if self.user in course.students):
            for assignment in book.assignments(cid):
                started = book.has_project(
                    self.user, rules.submission_project(cid, assignment.name)
                )
                studying.append((assignment, self.row(cid, assignment, self.user), started))
        self.show("home.html", grading=grading, studying=studying, rules=rules,
                  git_base=self.service.public_git)  # fmt: skip


class CoursePage(Page):
    """A course's assignments, and the release form."""

    @web.authenticated
    async def get(self, course_id: str) -> None:
        course = await self.grading(course_id)
        assignments = [
            (a, sum(self.row(course_id, a, s).pushes > 0 for s in course.students))
            for a in self.service.book.assignments(course_id)
        ]
        self.show("course.html", course=course, assignments=assignments)


class Release(Page):
    """Release an assignment (or change its due date and points)."""

    @web.authenticated
    async def post(self, course_id: str) -> None:
        await self.grading(course_id)
        name = rules.name("assignment", self.get_body_argument("assignment", ""))
        due = rules.due(self.get_body_argument("due", ""))
        points = rules.points(self.get_body_argument("points", ""))
        book, hub = self.service.book, self.service.hub
        existing = book.assignment(course_id, name)
        owner = existing.release_owner if existing else self.user
        if existing is None:
            # As the grader (their OAuth token): the release is their project, and the hub's
            # log says who released it.
            token = self.person_token()
            project = await hub.create_project(
                token,
                rules.release_project(course_id, name),
                f"{course_id}: assignment {name} (due {due.isoformat()})",
            )
            owner = project["owner"]
            await hub.share(
                token, owner, project["name"], rules.STUDENTS_PREFIX + course_id, "read"
            )
            await hub.share(
                token, owner, project["name"], rules.GRADERS_PREFIX + course_id, "write"
            )
        book.save_assignment(
            gradebook.Assignment(
                course=course_id, name=name, release_owner=owner, due=due, points=points,
                released_by=existing.released_by if existing else self.user,
                released_at=existing.released_at if existing else datetime.now(UTC),
            )
        )  # fmt: skip
        self.redirect(self.url("courses", course_id))


class AssignmentPage(Page):
    """An assignment's submissions: student, time, late or on time, score."""

    @web.authenticated
    async def get(self, course_id: str, name: str) -> None:
        course = await self.grading(course_id)
        assignment = self.assignment(course_id, name)
        rows = [self.row(course_id, assignment, s) for s in sorted(course.students)]
        if self.get_query_argument("format", "") == "json":
            self.write({"submissions": [_row_json(r) for r in rows]})
            return
        self.show("assignment.html", course=course, assignment=assignment, rows=rows,
                  git_base=self.service.public_git)  # fmt: skip


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "student": row.student,
        "submitted": row.submitted.isoformat() if row.submitted else None,
        "pushes": row.pushes,
        "status": row.status,
        "score": row.grade.score if row.grade else None,
        "returned": bool(row.grade and row.grade.returned_at),
    }


class SubmissionPage(Page):
    """One submission: its notebooks (sandboxed), the grade form, "return feedback"."""

    async def load(self, course_id: str, name: str, student: str) -> tuple[Any, Any]:
        course = await self.grading(course_id)
        assignment = self.assignment(course_id, name)
        if student not in course.students:
            raise Refused(404, f"{student} is not a student of course {course_id}")
        return course, assignment

    @web.authenticated
    async def get(self, course_id: str, name: str, student: str) -> None:
        course, assignment = await self.load(course_id, name, student)
        project = rules.submission_project(course_id, name)
        files = []
        if self.service.book.has_project(student, project):
            hub = self.service.hub
            branch = (await hub.project(student, project))["default_branch"]
            files = [f["path"] for f in await hub.files(student, project, branch)]
        self.show("submission.html", course=course, assignment=assignment,
                  row=self.row(course_id, assignment, student), files=files,
                  project=f"{student}/{project}")  # fmt: skip


class GradeForm(SubmissionPage):
    """Record a score and feedback."""

    @web.authenticated
    async def post(self, course_id: str, name: str, student: str) -> None:
        _, assignment = await self.load(course_id, name, student)
        score = rules.score(self.get_body_argument("score", ""), assignment.points)
        text = rules.feedback(self.get_body_argument("feedback", ""))
        self.service.book.save_grade(
            course_id, name, student, score, text, self.user, datetime.now(UTC)
        )
        self.redirect(self.url("courses", course_id, name, student))


class ReturnFeedback(SubmissionPage):
    """Push ``feedback.md`` into the student's submission project."""

    @web.authenticated
    async def post(self, course_id: str, name: str, student: str) -> None:
        _, assignment = await self.load(course_id, name, student)
        book, hub = self.service.book, self.service.hub
        grade = book.grade(course_id, name, student)
        if grade is None:
            raise Refused(409, f"Record a score for {student} before returning feedback")
        project_name = rules.submission_project(course_id, name)
        if not book.submission_pushes(course_id, name, student):
            raise Refused(409, f"{student} has not submitted {name}: nothing to return it to")
        project = await hub.project(student, project_name)
        now = datetime.now(UTC)
        content = feedback.text(course_id, name, grade.score, assignment.points,
                                grade.feedback, grade.graded_by, now)  # fmt: skip
        sha = await feedback.push(
            f"{hub.git_base}/{student}/{project_name}.git", hub.token,
            project["default_branch"], content, f"Feedback on {name} from {self.user}",
        )  # fmt: skip
        book.grade_returned(course_id, name, student, now, sha)
        self.redirect(self.url("courses", course_id, name, student))


class Notebook(SubmissionPage):
    """A submitted notebook as HTML, under a CSP sandbox (see ``render``)."""

    def set_default_headers(self) -> None:
        for name, value in render.NOTEBOOK_HEADERS.items():
            self.set_header(name, value)

    @web.authenticated
    async def get(self, course_id: str, name: str, student: str, path: str) -> None:
        await self.load(course_id, name, student)
        if not path.endswith(".ipynb"):
            raise Refused(404, f"{path} is not a notebook")
        if any(part in ("", ".", "..") for part in path.split("/")):
            # a path in the submission, never out of it: ../ would be resolved in the URL the
            # service asks the hub for, with its token that reads every submission
            raise Refused(404, f"{path} is not a path inside the submission")
        project = rules.submission_project(course_id, name)
        hub = self.service.hub
        try:
            branch = (await hub.project(student, project))["default_branch"]
            raw = await hub.raw(student, project, branch, path)
        except hubapi.HubError as exc:
            raise Refused(404, f"No such file in {student}/{project}: {path}") from exc
        try:
            self.write(render.notebook_html(raw))
        except render.NotANotebook as exc:
            raise Refused(422, f"{path} is not a readable notebook: {exc}") from exc


class Start(Page):
    """A student starts an assignment: their submission project, readable by the graders."""

    @web.authenticated
    async def post(self, course_id: str, name: str) -> None:
        course = await self.course(course_id)
        if self.user not in course.students:
            raise Refused(403, f"{self.user} is not a student of course {course_id}")
        self.assignment(course_id, name)
        token = self.person_token()
        hub = self.service.hub
        project = await hub.create_project(
            token, rules.submission_project(course_id, name),
            f"{self.user}'s submission of {course_id}/{name}",
        )  # fmt: skip
        await hub.share(
            token, project["owner"], project["name"], rules.GRADERS_PREFIX + course_id, "read"
        )
        self.redirect(self.service.prefix)


def handlers(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """The routes under ``prefix`` (which ends with /)."""
    part = r"([^/]+)"
    course = prefix + r"courses/" + part + "/"
    assignment = course + part + "/"
    submission = assignment + part + "/"
    return [
        (prefix, Home),
        (course, CoursePage),
        (course + "release", Release),
        (assignment, AssignmentPage),
        (assignment + "start", Start),
        (submission, SubmissionPage),
        (submission + "grade", GradeForm),
        (submission + "return", ReturnFeedback),
        (submission + r"nb/(.+)", Notebook),
    ]
