"""grader: a formgrader-style chronohub service for every course of a hub.

A course is a pair of hub groups, ``course-<id>`` (students) and ``graders-<id>``; an
assignment is a hub project shared read-only with the course; a submission is a push to the
student's own project; grades live in this service's SQLite file. It talks to the hub only
through what any service may use: the REST API, git over HTTP and the event stream. Run it
with ``python -m grader`` (``examples/`` on ``PYTHONPATH``); see README.md.
"""
