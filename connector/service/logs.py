"""Request ids and the service's logs: one ECS JSON object per line.

The request id comes from the caller's ``X-Request-Id`` when it is short and safe (so a Watcher
execution or a proxy's id can be followed through), otherwise it is a new uuid4. It lives on
``flask.g``, is echoed in the ``X-Request-Id`` response header and in error bodies, and a filter adds
it to every log record (``-`` outside a request).

Log lines are Elastic Common Schema documents (``@timestamp``, ``log.level``, ``message``,
``http.request.id``, ...) so Filebeat or Elastic Agent can ship them to the same cluster the
analysts use, and a request can be followed from gunicorn's access line to the service's own lines.
``CONNECTOR_LOG_FORMAT=text`` gives plain lines for a person at a terminal; control characters in
them (a ``%0A`` in a path, an ANSI escape) are written as ``\\n``, ``\\x1b``..., so a caller cannot
forge a line or repaint the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

from connector.settings import LogFormat

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HANDLER_MARK = "_connector_service_handler"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [request_id=%(request_id)s] %(message)s"
ECS_VERSION = "8.11.0"
SERVICE_NAME = "rare-child-connector"
# event.dataset values; data stream naming allows no "-" in a dataset.
DATASET_PREFIX = "rare_child_connector"
ACCESS_LOGGER = "gunicorn.access"
NO_REQUEST_ID = "-"


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


class EcsJsonFormatter(logging.Formatter):
    """A log record as one line of ECS JSON.

    gunicorn's access records are turned into ``http.*``/``url.path`` fields from a fixed list of
    atoms (method, path, status, bytes, duration, client address, response request id): never the
    query string or request headers, which may carry credentials. Everything else is the message,
    the logger, the request id of the request being handled, and the exception if there is one.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "@timestamp": _timestamp(record.created),
            "log.level": record.levelname.lower(),
            "message": "",
            "ecs.version": ECS_VERSION,
            "log": {"logger": record.name},
            "service": {"name": SERVICE_NAME},
            "process": {"pid": record.process or os.getpid()},
        }
        if record.name == ACCESS_LOGGER and isinstance(record.args, Mapping):
            _add_access_fields(document, record.args)
        else:
            document["message"] = record.getMessage()
            document["event"] = {"dataset": f"{DATASET_PREFIX}.service"}
            request_id = getattr(record, "request_id", NO_REQUEST_ID)
            if request_id != NO_REQUEST_ID:
                document["http"] = {"request": {"id": request_id}}
        if record.exc_info and record.exc_info[0] is not None:
            document["error"] = {
                "type": record.exc_info[0].__name__,
                "message": str(record.exc_info[1]),
                "stack_trace": self.formatException(record.exc_info),
            }
        return json.dumps(document, ensure_ascii=False, default=str)


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _add_access_fields(document: dict[str, Any], atoms: Mapping[str, Any]) -> None:
    """gunicorn's access atoms (a case-insensitive dict; ``-`` when missing) as ECS fields."""
    method, path, status = _atom(atoms, "m"), _atom(atoms, "U"), _atom(atoms, "s")
    request: dict[str, Any] = {"method": method}
    request_id = _atom(atoms, "{x-request-id}o")
    if request_id != NO_REQUEST_ID:
        request["id"] = request_id
    response: dict[str, Any] = {"status_code": int(status) if status.isdigit() else status}
    sent = atoms["B"]
    if isinstance(sent, int):
        response["body"] = {"bytes": sent}
    document["message"] = f"{method} {path} {status}"
    document["event"] = {"dataset": f"{DATASET_PREFIX}.access", "duration": int(atoms["D"]) * 1000}
    document["http"] = {"request": request, "response": response}
    document["url"] = {"path": path}
    document["client"] = {"address": _atom(atoms, "h")}


def _atom(atoms: Mapping[str, Any], key: str) -> str:
    # gunicorn escapes '"' in atoms for its quoted text format; JSON does its own escaping.
    return str(atoms[key]).replace('\\"', '"')


#: C0 and C1 controls, DEL, and the Unicode line and paragraph separators (line breaks to some readers).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_CONTROLS = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with every control character as a visible escape (``\\n``, ``\\x1b``, ``\\u2028``)."""

    def visible(match: re.Match[str]) -> str:
        char = match.group()
        if char in _NAMED_CONTROLS:
            return _NAMED_CONTROLS[char]
        return f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}"

    return _CONTROL.sub(visible, text)


class EscapingTextFormatter(logging.Formatter):
    """Plain text, one line per record: the message is escaped whole; a traceback keeps its line
    breaks, each of its lines escaped and indented, so none can pass for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = escape_control(self.formatMessage(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        blocks = [record.exc_text, self.formatStack(record.stack_info) if record.stack_info else ""]
        for block in filter(None, blocks):
            line += "".join("\n  " + escape_control(part) for part in block.splitlines())
        return line


def text_formatter() -> logging.Formatter:
    return EscapingTextFormatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: LogFormat = LogFormat.JSON) -> None:
    """Give the ``connector`` logger one stderr handler with request ids (replacing an earlier one).

    Records still propagate, so a test's root handlers (``caplog``) see them too; under gunicorn the
    root logger has no handler (:func:`gunicorn_logconfig`), so nothing is printed twice.
    """
    logger = logging.getLogger("connector")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(EcsJsonFormatter() if log_format is LogFormat.JSON else text_formatter())
    logger.addHandler(handler)
    logger.setLevel(level)


def gunicorn_logconfig(log_format: LogFormat) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: its error and access logs in the service's format.

    Access lines go to stdout and everything else to stderr, as gunicorn does by default.
    """
    formatter: dict[str, Any] = (
        {"()": EcsJsonFormatter}
        if log_format is LogFormat.JSON
        else {"()": EscapingTextFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            ACCESS_LOGGER: {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stderr"},
            "stdout": {"class": "logging.StreamHandler", "formatter": "service", "stream": "ext://sys.stdout"},
        },
        "formatters": {"service": formatter},
    }
