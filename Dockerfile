# The webhook service under gunicorn (see README, "The webhook service"). Configuration comes from
# CONNECTOR_* environment variables; mount use-case files and point CONNECTOR_USE_CASES at them.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CONNECTOR_BIND=0.0.0.0:8080 \
    CONNECTOR_USE_CASES=/app/examples/rare_child.ini

WORKDIR /app
COPY pyproject.toml README.md ./
COPY connector ./connector
COPY examples/rare_child.ini ./examples/rare_child.ini
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin connector

USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["connector"]
CMD ["serve"]
