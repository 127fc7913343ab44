"""The log formats: ECS JSON (base fields, request ids, gunicorn access lines, exceptions), text lines with
control characters escaped, and the settings."""

from __future__ import annotations

import json
import logging
import sys
from datetime import timedelta
from typing import Any

import pytest
from gunicorn.glogging import Logger as GunicornLogger
from gunicorn.glogging import SafeAtoms

from connector.errors import ConfigError
from connector.service.logs import EcsJsonFormatter, EscapingTextFormatter, gunicorn_logconfig, text_formatter
from connector.settings import LogFormat, parse_log_format


def _record(message: str, *args: Any, name: str = "connector.service.api", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args or None, None)
    record.__dict__.update(extra)
    return record


def _format(record: logging.LogRecord) -> dict[str, Any]:
    line = EcsJsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_a_service_line_has_the_ecs_base_fields_and_its_request_id():
    document = _format(_record("detect %s over %s", "terms_a", "osquery-*", request_id="watch-1"))
    assert document["message"] == "detect terms_a over osquery-*"
    assert document["log.level"] == "info"
    assert document["ecs.version"] == "8.11.0"
    assert document["@timestamp"].endswith("Z") and len(document["@timestamp"]) == 24
    assert document["log"]["logger"] == "connector.service.api"
    assert document["http"]["request"]["id"] == "watch-1"
    assert document["event"]["dataset"] == "rare_child_connector.service"


def test_a_line_outside_a_request_has_no_request_id():
    assert "http" not in _format(_record("service ready", request_id="-"))
    assert "http" not in _format(_record("Booting worker", name="gunicorn.error"))


def test_newlines_and_quotes_in_a_message_stay_on_one_json_line():
    """A value from a request cannot forge a second log line."""
    forged = 'x"\n{"log.level": "error", "message": "forged"}'
    document = _format(_record("unknown use case %s", forged, request_id="r1"))
    assert document["message"] == f"unknown use case {forged}"


def test_an_exception_becomes_error_fields():
    try:
        raise KeyError("missing")
    except KeyError:
        record = logging.LogRecord("connector.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    document = _format(record)
    assert document["error"]["type"] == "KeyError"
    assert "Traceback" in document["error"]["stack_trace"]
    assert document["log.level"] == "error"


ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s'


class _Response:
    status = "401 UNAUTHORIZED"
    sent = 196
    headers = (("Content-Type", "application/json"), ("X-Request-Id", "rid-9"))


def _gunicorn_access_record() -> logging.LogRecord:
    """The record gunicorn's own Logger.access emits for a request carrying credentials."""
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/api/v1/use-cases?api_key=query-secret",
        "PATH_INFO": "/api/v1/use-cases",
        "QUERY_STRING": "api_key=query-secret",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_AUTHORIZATION": "Basic d2F0Y2hlcjpwYXNzd29yZC1zZWNyZXQ=",
    }
    request_headers = [("AUTHORIZATION", "Basic d2F0Y2hlcjpwYXNzd29yZC1zZWNyZXQ=")]
    logger = GunicornLogger.__new__(GunicornLogger)
    atoms = SafeAtoms(logger.atoms(_Response(), request_headers, environ, timedelta(milliseconds=12)))
    return logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, ACCESS_LOG_FORMAT,
                             (atoms,), None)  # fmt: skip


def test_a_gunicorn_access_line_has_http_fields_and_no_query_string_or_headers():
    line = EcsJsonFormatter().format(_gunicorn_access_record())
    document = json.loads(line)
    assert document["message"] == "GET /api/v1/use-cases 401"
    assert document["http"]["request"] == {"method": "GET", "id": "rid-9"}
    assert document["http"]["response"] == {"status_code": 401, "body": {"bytes": 196}}
    assert document["url"] == {"path": "/api/v1/use-cases"}
    assert document["event"] == {"dataset": "rare_child_connector.access", "duration": 12_000_000}
    for secret in ("query-secret", "d2F0Y2hlcjpwYXNzd29yZC1zZWNyZXQ=", "api_key"):
        assert secret not in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, LogFormat.JSON), ("", LogFormat.JSON), (" JSON ", LogFormat.JSON), ("text", LogFormat.TEXT)],
)
def test_log_format_setting(value: str | None, expected: LogFormat):
    assert parse_log_format(value) is expected


def test_an_unknown_log_format_names_the_variable_and_the_choices():
    with pytest.raises(ConfigError, match=r"CONNECTOR_LOG_FORMAT: 'ecs' is not one of json, text"):
        parse_log_format("ecs")


def test_gunicorn_logconfig_routes_access_to_stdout_and_the_rest_to_stderr():
    """Both gunicorn loggers use the service format and nothing reaches the (handler-less) root twice."""
    config = gunicorn_logconfig(LogFormat.JSON)
    loggers = config["loggers"]
    assert config["handlers"][loggers["gunicorn.access"]["handlers"][0]]["stream"] == "ext://sys.stdout"
    assert config["handlers"][loggers["gunicorn.error"]["handlers"][0]]["stream"] == "ext://sys.stderr"
    assert config["root"]["handlers"] == []
    assert not any(logger["propagate"] for logger in loggers.values())
    assert config["formatters"]["service"] == {"()": EcsJsonFormatter}
    assert gunicorn_logconfig(LogFormat.TEXT)["formatters"]["service"]["()"] is EscapingTextFormatter


# -- text format: control characters -----------------------------------------------------------------


FORGED = "/api/v1/x\n2026-12-01 00:00:00,000 ERROR connector.service.api forged\r\x1b[2J\u2028\x85"


def test_a_text_line_shows_control_characters_as_escapes_and_stays_one_line():
    """A caller's newline, carriage return, ANSI escape or Unicode line separator cannot start a line."""
    line = text_formatter().format(_record("GET %s refused", FORGED, request_id="r-1"))
    assert line.count("\n") == 0 and "\r" not in line and "\x1b" not in line
    assert "\u2028" not in line and "\x85" not in line
    assert line.endswith(
        "GET /api/v1/x\\n2026-12-01 00:00:00,000 ERROR connector.service.api forged"
        "\\r\\x1b[2J\\u2028\\x85 refused"
    )


def test_a_traceback_keeps_its_lines_indented_and_escaped():
    """Every line after the record's first is indented: none passes for a record (those start with a time)."""
    try:
        raise ValueError("bad\x1b[2J\nERROR forged")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info(), request_id="r-1")
    lines = text_formatter().format(record).splitlines()
    assert lines[0].endswith("failed")
    assert all(line.startswith("  ") for line in lines[1:])
    assert lines[-2:] == ["  ValueError: bad\\x1b[2J", "  ERROR forged"]


def test_gunicorn_text_access_and_error_lines_are_escaped_too():
    formatter_config = gunicorn_logconfig(LogFormat.TEXT)["formatters"]["service"]
    formatter = formatter_config["()"](fmt=formatter_config["fmt"])
    record = _record('127.0.0.1 "GET %s" 404', FORGED, name="gunicorn.access")
    assert "\n" not in formatter.format(record)
