"""DockerSpawner and KubeSpawner, unchanged, through chronohub's spawner adapter, against
recording fakes of the Docker Engine API and the Kubernetes API served over HTTP on loopback:
the real ``docker`` and ``kubernetes_asyncio`` clients talk to them. What this checks is the
adapter's side of the contract (the spawner gets its user, server name, API token and
environment; what ``start`` returns becomes the server's URL; ``get_state`` round-trips
through ``resume`` after a restart; ``stop`` reaches the engine), not the engines themselves:
no Docker engine or Kubernetes cluster runs here, and the fakes answer only what these
spawners ask. The real thing is tests/integration/test_jupyterhub_spawners.py's
``test_cluster_spawners_when_a_cluster_answers``, skipped where nothing answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp import web
from traitlets.config import Config

from hub.servers import jupyterhub_adapter, spawner

dockerspawner = pytest.importorskip("dockerspawner")
kubespawner = pytest.importorskip("kubespawner")
kubernetes_asyncio = pytest.importorskip("kubernetes_asyncio")

USER_ID = UUID("12345678-1234-5678-1234-567812345678")
TOKEN = "server-token-of-ann"


def spec(**env: str) -> spawner.SpawnSpec:
    return spawner.SpawnSpec(
        user="ann",
        server_name="lab",
        command=(),
        env={
            "JUPYTERHUB_API_TOKEN": TOKEN,
            "JUPYTERHUB_API_URL": "http://hub.internal:8081/hub/api",
            **env,
        },
        workdir=Path("/nonexistent"),
        log_path=Path("/nonexistent"),
        ip="127.0.0.1",
        port=1,
        user_id=USER_ID,
    )


async def serve(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


# --- DockerSpawner ---


class FakeDocker:
    """The Docker Engine API endpoints DockerSpawner uses, recording each request."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.created: dict[str, Any] = {}
        self.running = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.split("/", 2)[-1] if request.path.startswith("/v1.") else request.path
        path = "/" + path.lstrip("/")
        self.calls.append((request.method, path))
        if path == "/version":
            return web.json_response({"ApiVersion": "1.43", "Version": "24.0.0"})
        if path.startswith("/images/"):
            return web.json_response(
                {"Id": "sha256:img", "Config": {"Cmd": ["jupyterhub-singleuser"], "Env": []}}
            )
        if request.method == "POST" and path == "/containers/create":
            self.created = {"name": request.query.get("name"), **(await request.json())}
            return web.json_response({"Id": "c0ffee" * 10}, status=201)
        if request.method == "GET" and path.startswith("/containers/") and path.endswith("/json"):
            if not self.created:
                return web.json_response({"message": "No such container"}, status=404)
            return web.json_response(
                {
                    "Id": "c0ffee" * 10,
                    "Name": "/" + str(self.created["name"]),
                    "Config": {"Env": self.created["Env"]},
                    "State": {
                        "Running": self.running,
                        "ExitCode": 0 if self.running else 137,
                        "Error": "",
                        "FinishedAt": "",
                    },
                    "NetworkSettings": {
                        "Ports": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}
                    },
                }
            )
        if request.method == "POST" and path.endswith("/start"):
            self.running = True
            return web.Response(status=204)
        if request.method == "POST" and path.endswith("/stop"):
            self.running = False
            return web.Response(status=204)
        if request.method == "DELETE" and path.startswith("/containers/"):
            self.created = {}
            return web.Response(status=204)
        return web.json_response({"message": f"not faked: {path}"}, status=500)


@pytest.fixture
async def docker_engine(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDocker]:
    fake = FakeDocker()
    async for url in serve(fake.app()):
        monkeypatch.setenv("DOCKER_HOST", url.replace("http://", "tcp://"))
        monkeypatch.setattr(dockerspawner.DockerSpawner, "_client", None)  # a class-wide cache
        yield fake


async def test_dockerspawner_starts_resumes_and_stops_through_the_adapter(
    docker_engine: FakeDocker,
) -> None:
    config = Config({"DockerSpawner": {"image": "quay.io/jupyterhub/singleuser:5", "remove": True}})
    adapter = jupyterhub_adapter.JupyterHubSpawner(dockerspawner.DockerSpawner, config)

    server = await adapter.start(spec())
    assert isinstance(server, jupyterhub_adapter.AdaptedServer)
    # what start returned (the published port) is where the server is, with its path
    assert server.url == "http://127.0.0.1:49153/user/ann/lab/"
    created = docker_engine.created
    assert created["name"] == "jupyter-ann--lab"  # its name template, from user and server
    assert created["Image"] == "quay.io/jupyterhub/singleuser:5"
    env = dict(line.split("=", 1) for line in created["Env"])
    assert env["JUPYTERHUB_API_TOKEN"] == TOKEN
    assert env["JUPYTERHUB_USER"] == "ann"
    assert env["JUPYTERHUB_SERVER_NAME"] == "lab"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/ann/lab/"
    assert env["JUPYTERHUB_API_URL"] == "http://hub.internal:8081/hub/api"
    assert env["JUPYTERHUB_CLIENT_ID"] == "jupyterhub-user-ann-lab"
    # the class's own ip (0.0.0.0 in the container) is kept, not the hub's 127.0.0.1
    assert server.spawner.ip == "0.0.0.0"
    assert await server.poll() is None

    state = server.state()
    assert state == {"object_id": "c0ffee" * 10, "object_name": "jupyter-ann--lab"}
    # a new hub process finds it again from the recorded state
    again = await adapter.resume(
        user_id=USER_ID, user="ann", server_name="lab", url=server.url, state=state
    )
    assert isinstance(again, jupyterhub_adapter.AdaptedServer)
    assert again.spawner.object_id == "c0ffee" * 10

    await again.stop(5)
    assert ("POST", f"/containers/{'c0ffee' * 10}/stop") in docker_engine.calls
    # DockerSpawner's poll answers a string for a stopped container ("ExitCode=137, …"):
    # the server has exited (code 1), it is not an error of the watcher's
    docker_engine.created = {"name": "jupyter-ann--lab", "Env": []}
    assert await asyncio.wait_for(server.wait(), 5) == 1
    gone = await adapter.resume(
        user_id=USER_ID, user="ann", server_name="lab", url=server.url, state=state
    )
    assert gone is None


# --- KubeSpawner ---


class FakeKubernetes:
    """The Kubernetes API endpoints KubeSpawner uses for a pod (list, watch, create, delete
    pods), recording each request; a created pod runs at once, as a ready pod reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.pods: dict[str, dict[str, Any]] = {}
        self.version = 1
        # None ends the watch streams (close): the server's cleanup waits for every handler,
        # and a watch left to its own timeoutSeconds (10 s) would hold the teardown that long
        self.changes: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def close(self) -> None:
        """End the open watch streams, as an API server going away does."""
        self.changes.put_nowait(None)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _bump(self, pod: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)
        return pod

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.method, request.path))
        parts = request.path.strip("/").split("/")
        if parts[:3] != ["api", "v1", "namespaces"] or len(parts) < 5 or parts[4] != "pods":
            return web.json_response({"kind": "Status", "message": "not faked"}, status=404)
        namespace = parts[3]
        if request.method == "GET" and request.query.get("watch") in ("true", "1", "True"):
            return await self._watch(request)
        if request.method == "GET" and len(parts) == 5:
            return web.json_response(
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": list(self.pods.values()),
                }
            )
        if request.method == "POST":
            pod = await request.json()
            name = pod["metadata"]["name"]
            pod["metadata"].update(uid="uid-" + name, namespace=namespace)
            pod["status"] = {
                "phase": "Running",
                "podIP": "10.0.0.7",
                "containerStatuses": [
                    {
                        "name": "notebook",
                        "ready": True,
                        "state": {"running": {}},
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "sha256:img",
                        "restartCount": 0,
                    }
                ],
            }
            self.pods[name] = self._bump(pod)
            self.changes.put_nowait({"type": "ADDED", "object": pod})
            return web.json_response(pod, status=201)
        if request.method == "DELETE" and len(parts) == 6:
            pod = self.pods.pop(parts[5], None)
            if pod is None:
                return web.json_response({"kind": "Status", "code": 404}, status=404)
            self.changes.put_nowait({"type": "DELETED", "object": self._bump(pod)})
            return web.json_response(pod)
        return web.json_response({"kind": "Status", "message": "not faked"}, status=404)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        timeout = float(request.query.get("timeoutSeconds", "10"))
        try:
            while True:
                change = await asyncio.wait_for(self.changes.get(), timeout)
                if change is None:
                    self.changes.put_nowait(None)  # for any other stream still open
                    break
                await response.write(json.dumps(change).encode() + b"\n")
        except TimeoutError:
            pass
        return response


@pytest.fixture
async def kubernetes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[FakeKubernetes]:
    fake = FakeKubernetes()
    async for url in serve(fake.app()):
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        # read once, as kubernetes_asyncio is imported
        monkeypatch.setattr(
            kubernetes_asyncio.config.kube_config,
            "KUBE_CONFIG_DEFAULT_LOCATION",
            str(kubeconfig),
        )
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        try:
            yield fake
        finally:
            await kubespawner.KubeSpawner._stop_all_reflectors()
            fake.close()


async def test_kubespawner_starts_resumes_and_stops_through_the_adapter(
    kubernetes: FakeKubernetes,
) -> None:
    config = Config(
        {
            "KubeSpawner": {
                "image": "quay.io/jupyterhub/singleuser:5",
                "namespace": "chronohub",
                "events_enabled": False,
                "start_timeout": 30,
                "environment": {"TEAM_OF": "{username}"},
            }
        }
    )
    adapter = jupyterhub_adapter.JupyterHubSpawner(kubespawner.KubeSpawner, config)

    server = await adapter.start(spec())
    assert isinstance(server, jupyterhub_adapter.AdaptedServer)
    # the pod's IP and KubeSpawner's port, with the server's path
    assert server.url == "http://10.0.0.7:8888/user/ann/lab/"
    pod = kubernetes.pods["jupyter-ann--lab"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTERHUB_API_TOKEN"] == TOKEN
    assert env["JUPYTERHUB_USER"] == "ann"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/ann/lab/"
    assert env["JUPYTERHUB_API_URL"] == "http://hub.internal:8081/hub/api"
    assert env["TEAM_OF"] == "ann"  # the class's own template expansion, from user
    assert container["image"] == "quay.io/jupyterhub/singleuser:5"
    assert pod["metadata"]["labels"]["hub.jupyter.org/username"] == "ann"
    assert pod["metadata"]["labels"]["hub.jupyter.org/servername"] == "lab"
    # the pod listens on every address of its own (KubeSpawner's ip default), not on loopback
    assert server.spawner.ip == "0.0.0.0"
    assert ("POST", "/api/v1/namespaces/chronohub/pods") in kubernetes.calls

    state = server.state()
    assert state["pod_name"] == "jupyter-ann--lab"
    assert state["namespace"] == "chronohub"
    again = await adapter.resume(
        user_id=USER_ID, user="ann", server_name="lab", url=server.url, state=state
    )
    assert isinstance(again, jupyterhub_adapter.AdaptedServer)
    await again.stop(5)
    assert ("DELETE", "/api/v1/namespaces/chronohub/pods/jupyter-ann--lab") in kubernetes.calls
    assert kubernetes.pods == {}
