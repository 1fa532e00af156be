"""Version strings: chronohub's own, and the JupyterHub release whose REST API it implements."""

from importlib import metadata

CHRONOHUB = metadata.version("chronohub")

# Clients (the idle culler, jupyterhub-singleuser) switch features on this version, which
# JupyterHub sends in X-JupyterHub-Version and in GET /hub/api/.
JUPYTERHUB_API = "6.1.1"
