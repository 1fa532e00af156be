"""JupyterHub's REST API under ``/hub/api/``, one module per resource (``root``: the version,
``/info`` and the health check), chronohub's own (collaboration sessions, projects and their
content), the reply models (``models``; each handler module has its request models) and the
OpenAPI document built from both."""
