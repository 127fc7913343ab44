"""gunicorn settings of the webhook service: ``gunicorn -c <this file> 'connector.service:create_app()'``.

gunicorn executes this file, so reading ``CONNECTOR_BIND`` (default 127.0.0.1:8080),
``CONNECTOR_WORKERS`` (default 2), ``CONNECTOR_LOG_FORMAT`` and ``CONNECTOR_DETECT_TIMEOUT_SECONDS``
here is its purpose; the package never imports it. gunicorn's own lines use the service's log
format (ECS JSON by default). The access log goes to stdout and records the path only: no query
string, no basic-auth user, no referer, no request headers.
"""

import os

from connector.errors import ConfigError
from connector.service.logs import gunicorn_logconfig
from connector.service.serving import parse_bind, parse_workers
from connector.settings import parse_detect_timeout, parse_log_format, worker_timeout_seconds

try:
    bind = parse_bind(os.environ.get("CONNECTOR_BIND"))
    workers = parse_workers(os.environ.get("CONNECTOR_WORKERS"))
except ValueError as error:
    raise SystemExit(f"error: CONNECTOR_BIND/CONNECTOR_WORKERS: {error}") from None
try:
    logconfig_dict = gunicorn_logconfig(parse_log_format(os.environ.get("CONNECTOR_LOG_FORMAT")))
    # A worker is stopped only after the detection deadline (CONNECTOR_DETECT_TIMEOUT_SECONDS) has
    # passed with a margin: a slow detection ends in a 504, never in a dropped connection.
    timeout = worker_timeout_seconds(parse_detect_timeout(os.environ.get("CONNECTOR_DETECT_TIMEOUT_SECONDS")))
except ConfigError as error:
    raise SystemExit(f"error: {error}") from None

# gevent: each connection is a greenlet, so a detection waiting on Elasticsearch, a slow client or an idle
# connection holds no worker; probes are answered by the same workers meanwhile. README, "Workers, slow
# clients and the reverse proxy", has the measurements and why not sync or gthread.
worker_class = "gevent"
# Open connections per worker, slow and idle ones included; beyond it a worker stops accepting.
worker_connections = 1000
graceful_timeout = 30
# Seconds for a request's head (request line and headers) to arrive, the first on a connection included
# (the gevent worker bounds each read of a head by it), and for an idle keep-alive connection: a client
# sending its headers a byte at a time is disconnected after this.
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"
# Used as is by the text format; the JSON format picks its fields from the same atoms.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'
# This API needs only short request lines and few headers.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190


def on_starting(server):  # type: ignore[no-untyped-def]
    """Check the settings and use-case files once, in the master, before any worker is forked.

    A mistake then stops gunicorn with one line naming the file, section and option, and exit code 2,
    instead of a traceback from every worker and gunicorn's "Worker failed to boot".
    """
    from connector.service.catalog import load_catalog
    from connector.settings import Settings

    try:
        settings = Settings.from_env()
        load_catalog(settings.use_case_paths, settings.global_config_path)
    except ConfigError as error:
        server.log.error("error: %s", error.message)
        raise SystemExit(2) from None
