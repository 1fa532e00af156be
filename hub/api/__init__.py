"""JupyterHub's REST API under ``/hub/api/``, one module per resource (``root``: the version,
``/info`` and the health check), chronohub's collaboration sessions API, the request and reply
models (``models``) and the OpenAPI document built from them."""
