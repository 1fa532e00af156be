"""chronohub-publish: a project's notebooks, markdown and files as static HTML, and its
dashboards run on push, served under ``/services/publish/``.

A service like any other: it uses only the hub's public REST API, git over HTTP and the
event stream (``/hub/api/events/stream``); it imports nothing of the hub's (a test parses
its imports to keep it so).
"""
