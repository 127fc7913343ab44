"""gunicorn settings of the webhook service: ``gunicorn -c <this file> 'connector.service:create_app()'``.

gunicorn executes this file, so reading ``CONNECTOR_BIND`` (default 127.0.0.1:8080) and
``CONNECTOR_WORKERS`` (default 2) here is its purpose; the package never imports it. The access log
goes to stdout and records the path only: no query string (``%(U)s``), no basic-auth user, no
referer, no request headers.
"""

import os

from connector.service.serving import parse_bind, parse_workers

try:
    bind = parse_bind(os.environ.get("CONNECTOR_BIND"))
    workers = parse_workers(os.environ.get("CONNECTOR_WORKERS"))
except ValueError as error:
    raise SystemExit(f"error: CONNECTOR_BIND/CONNECTOR_WORKERS: {error}") from None

worker_class = "sync"
# A detection over a week of events can take a while; a Watcher's read_timeout should allow for it.
timeout = 120
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms request_id=%({x-request-id}o)s'
# This API needs only short request lines and few headers.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
