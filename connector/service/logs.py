"""Request ids and the service's log setup.

The request id comes from the caller's ``X-Request-Id`` when it is short and safe (so a Watcher
execution or a proxy's id can be followed through), otherwise it is a new uuid4. It lives on
``flask.g``, is echoed in the ``X-Request-Id`` response header and in error bodies, and a filter adds
it to every log record (``-`` outside a request).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid

from flask import g, has_request_context

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HANDLER_MARK = "_connector_service_handler"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"


def request_id_from(header_value: str | None) -> str:
    """The caller's id if it is 1-64 characters of ``A-Za-z0-9._:-``, else a fresh uuid4."""
    if header_value is not None and _SAFE_REQUEST_ID.fullmatch(header_value):
        return header_value
    return str(uuid.uuid4())


def current_request_id() -> str:
    """The id of the current request; outside a request (or before it was assigned) ``-``."""
    if has_request_context():
        return str(g.get("request_id", "-"))
    return "-"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (gunicorn and test runners replace it)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` so formats can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


def configure_logging(level: str) -> None:
    """Give the ``connector`` logger one stderr handler with request ids (replacing an earlier one).

    Records still propagate, so gunicorn's or a test's root handlers see them too.
    """
    logger = logging.getLogger("connector")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
