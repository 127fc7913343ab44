# First version: the offline `connector` command. The webhook service (gunicorn) comes with the
# engine-and-service issue; this image will then start it instead.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY examples ./examples
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin connector

USER connector
ENTRYPOINT ["connector"]
CMD ["detect", "--config", "examples/rare_child.ini", "--events", "examples/sample-events.ndjson", "--format", "table"]
