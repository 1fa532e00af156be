# chronohub's image: built by deploy/compose/compose.yaml (docker compose build), or alone with
#   docker build -t chronohub .
# Three stages: Node builds the browser bundle (frontend/); the second installs chronohub, with
# that bundle, into a virtualenv (pip alone: every dependency ships wheels, so no compiler); the
# third copies only that virtualenv onto a slim Debian 12 Python, with the few programs the hub
# runs at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# The browser bundle (frontend/): built with Node, only its output goes on.
FROM ${NODE_IMAGE} AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY frontend ./
RUN node build.mjs

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/chronohub
WORKDIR /src
# The package's sources only (.dockerignore leaves tests, docs, benchmarks and caches out).
COPY pyproject.toml README.md ./
COPY events ./events
COPY projections ./projections
COPY collab ./collab
COPY hub ./hub
COPY --from=frontend /src/hub/web/static/app ./hub/web/static/app
COPY migrations ./migrations
COPY hubclient ./hubclient
# the publishing service the wheel ships (publish = true runs it)
COPY examples/publish ./examples/publish
RUN /opt/chronohub/bin/pip install /src

FROM ${PYTHON_IMAGE}
# git: projects' clones and pushes are served by the installed git; bubblewrap: the sandbox
# each user's server runs in when the hub is not root (as here); tini: signals and zombies.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends git bubblewrap tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/chronohub \
            --shell /usr/sbin/nologin chronohub
COPY --from=build /opt/chronohub /opt/chronohub
ENV PATH=/opt/chronohub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CHRONOHUB_DATA_DIR=/var/lib/chronohub/data \
    CHRONOHUB_IP=0.0.0.0 \
    CHRONOHUB_PORT=8000
USER chronohub
WORKDIR /var/lib/chronohub
# The data directory (cookie secret, projects' git objects, logs, users' files) is a volume.
RUN mkdir -m 0700 /var/lib/chronohub/data
VOLUME ["/var/lib/chronohub/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/hub/health', timeout=4)"]
ENTRYPOINT ["tini", "--", "chronohub"]
CMD ["serve"]
