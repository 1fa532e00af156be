"""JupyterHub's configuration for the REST API benchmark (``bench/rest_api.py``).

``common.start_jupyterhub`` runs ``jupyterhub -f bench/jupyterhub_config.py`` in a temporary
directory and passes everything that changes between runs through ``BENCH_*`` environment
variables.
Stock settings otherwise: sqlite in the working directory, the hub starts its own
configurable-http-proxy (from ``bench/node_modules``), the dummy authenticator (no external
system; users are created through the API), the simple spawner (nothing is spawned).
"""

import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - provided by traitlets when loaded

env = os.environ

c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "jupyterhub_cookie_secret"

# Everything on loopback, on the free ports the benchmark chose.
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(env["BENCH_PROXY_PORT"])
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env["BENCH_HUB_PORT"])
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['BENCH_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = [env["BENCH_CHP_COMMAND"]]

c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"

# The benchmark's client: a service with a token from this file and the scopes it needs.
c.JupyterHub.services = [{"name": "bench", "api_token": env["BENCH_SERVICE_TOKEN"]}]
c.JupyterHub.load_roles = [
    {
        "name": "bench-role",
        "scopes": [
            "admin:users",
            "tokens",
            "list:users",
            "read:users",
            "admin:servers",
            "read:hub",
        ],
        "services": ["bench"],
    }
]

# False (JupyterHub's default): the token above is hashed like a password, 16384 rounds of
# salted SHA-512 on every request it authenticates. True: one round, like tokens the hub
# generates. The benchmark measures both (see rest_api.py).
c.JupyterHub.trust_user_provided_tokens = env.get("BENCH_TRUST_TOKENS") == "1"

# The spawn benchmark (spawn_proxy.py) spawns its single-user stand-in with the simple spawner.
if "BENCH_SPAWNER_CMD" in env:
    import json

    c.Spawner.cmd = json.loads(env["BENCH_SPAWNER_CMD"])
    c.Spawner.default_url = ""
