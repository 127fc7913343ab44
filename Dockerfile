# The webhook service under gunicorn (docs/service.md and docs/containers.md).
# Configuration comes from CONNECTOR_* environment variables at run time; none is a secret here.
# Mount your use-case files and point CONNECTOR_USE_CASES at them (the seed use case is the default).
#
# Two stages: the first builds the package into a virtualenv with the dependency versions the tests ran
# with (constraints.txt, build tools included); the second gets only that virtualenv, without pip,
# setuptools, the sources or any build cache.

# The same exact tag in both stages: the virtualenv's interpreter path and ABI must match.
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CONSTRAINT=/src/constraints.txt

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY connector ./connector
# Shipped inside the package as connector.assets (pyproject.toml): `connector setup` needs them.
COPY kibana_saved_objects ./kibana_saved_objects
# PIP_CONSTRAINT pins the isolated build's setuptools/wheel too; -c pins the runtime dependencies.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir -c constraints.txt . \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools


FROM python:3.11.11-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONNECTOR_BIND=0.0.0.0:8080 \
    CONNECTOR_USE_CASES=/etc/rare-child-connector/rare_child.ini \
    GUNICORN_CMD_ARGS="--worker-tmp-dir /dev/shm"
# GUNICORN_CMD_ARGS: the workers' heartbeat files go to memory, not to the container's overlay
# filesystem (which can stall them) nor to a read-only root filesystem.

RUN groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin connector

COPY --from=build /opt/venv /opt/venv
COPY examples/rare_child.ini /etc/rare-child-connector/rare_child.ini

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# gunicorn stops gracefully on SIGTERM (graceful_timeout 30 s: give `docker stop` -t 35 or more).
STOPSIGNAL SIGTERM
# Liveness only (/healthz needs neither credentials nor Elasticsearch), on the port of CONNECTOR_BIND.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CONNECTOR_BIND', '0.0.0.0:8080').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
# `connector serve` checks the settings and use cases (exit 2 with a message), then execs gunicorn.
ENTRYPOINT ["connector"]
CMD ["serve"]
