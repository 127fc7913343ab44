"""The service's logs as gunicorn writes them: ECS JSON lines, request ids, and no secret anywhere.

One service runs at DEBUG with Elasticsearch credentials configured (the test node has security off
and ignores them), so every secret the process holds could in principle reach a log line. The test
sends good and bad credentials, a query string secret and a detection, then reads the whole log.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest_service import (
    SERVICE_INDEX_PREFIX,
    HttpResult,
    RunningService,
    ServiceCredentials,
    http_request,
    run_service,
    running_service,
)
from elasticsearch import Elasticsearch
from es_data import create_sample_index

SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}
LOG_WAIT_S = 10.0


class _Secrets:
    """Every secret of the logged service, and wrong ones a caller might send."""

    def __init__(self) -> None:
        self.token = secrets.token_urlsafe(24)
        self.basic_password = secrets.token_urlsafe(18)
        self.es_password = secrets.token_urlsafe(18)
        self.wrong_token = secrets.token_urlsafe(24)
        self.wrong_password = secrets.token_urlsafe(18)
        self.query_secret = secrets.token_urlsafe(12)

    def basic(self, password: str) -> str:
        return base64.b64encode(f"watcher:{password}".encode()).decode()

    def all(self) -> list[str]:
        values = [self.token, self.basic_password, self.es_password, self.wrong_token, self.wrong_password]
        values += [self.query_secret, self.basic(self.basic_password), self.basic(self.wrong_password)]
        return values


@pytest.fixture(scope="module")
def logged_secrets() -> _Secrets:
    return _Secrets()


@pytest.fixture(scope="module")
def events_index(es_client: Elasticsearch) -> Iterator[str]:
    name = f"{SERVICE_INDEX_PREFIX}logs-events-{uuid.uuid4().hex}"
    try:
        create_sample_index(es_client, name, shards=1)
        yield name
    finally:
        es_client.indices.delete(index=name, ignore_unavailable=True)


@contextmanager
def _service(
    es_url: str, workdir: Path, logged: _Secrets, results_index: str, **extra: str
) -> Iterator[RunningService]:
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_ES_USERNAME": "connector",
        "CONNECTOR_ES_PASSWORD": logged.es_password,
        "CONNECTOR_USE_CASES": str(workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_RESULTS_INDEX": results_index,
        "CONNECTOR_LOG_LEVEL": "DEBUG",
        **extra,
    }
    credentials = ServiceCredentials(logged.token, "watcher", logged.basic_password)
    with running_service(workdir, environment, credentials, workers=1) as service:
        yield service


@pytest.fixture(scope="module")
def debug_service(
    es_url: str, es_client: Elasticsearch, service_workdir: Path, logged_secrets: _Secrets
) -> Iterator[RunningService]:
    results_index = f"{SERVICE_INDEX_PREFIX}logs-results-{uuid.uuid4().hex}"
    try:
        with _service(es_url, service_workdir, logged_secrets, results_index) as service:
            yield service
    finally:
        es_client.indices.delete(index=results_index, ignore_unavailable=True)


@pytest.fixture(scope="module")
def exchanges(
    debug_service: RunningService, logged_secrets: _Secrets, events_index: str
) -> dict[str, HttpResult]:
    """One request of each kind, each with its own X-Request-Id; waits until all are in the access log."""
    service, logged = debug_service, logged_secrets
    calls: dict[str, tuple[str, str, dict[str, Any] | None, dict[str, str]]] = {
        "use-cases-basic": ("GET", f"/api/v1/use-cases?api_key={logged.query_secret}", None, service.basic),
        "wrong-token": ("GET", "/api/v1/use-cases", None, {"Authorization": f"Bearer {logged.wrong_token}"}),
        "wrong-password": (
            "GET",
            "/api/v1/use-cases",
            None,
            {"Authorization": "Basic " + logged.basic(logged.wrong_password)},
        ),
        "detect": ("POST", "/api/v1/detect", {"index": events_index, "range": SAMPLE_RANGE}, service.bearer),
        "bad-range": (
            "POST",
            "/api/v1/detect",
            {"index": events_index, "range": {"from": logged.wrong_token, "to": "now"}},
            service.bearer,
        ),
        "no-route": ("GET", "/api/v1/nothing-here", None, service.bearer),
    }
    results = {}
    for request_id, (method, path, body, headers) in calls.items():
        results[request_id] = service.call(
            method, path, json_body=body, headers={**headers, "X-Request-Id": request_id}
        )
    # gunicorn writes each access line after sending the response: wait for the last one (bounded).
    deadline = time.monotonic() + LOG_WAIT_S
    while time.monotonic() < deadline and not _access_line(service, "no-route"):
        time.sleep(0.05)
    return results


def _access_line(service: RunningService, request_id: str) -> dict[str, Any] | None:
    for line in service.log_lines():
        request = line.get("http", {}).get("request", {})
        if line["log"]["logger"] == "gunicorn.access" and request.get("id") == request_id:
            return line
    return None


def test_every_line_is_an_ecs_json_document(debug_service: RunningService, exchanges):
    """Startup, request and access lines alike: one JSON object per line with the ECS base fields."""
    lines = debug_service.log_lines()
    assert len(lines) >= 10
    for line in lines:
        assert line["ecs.version"].startswith("8.")
        assert line["@timestamp"].endswith("Z")
        assert line["log.level"] in {"debug", "info", "warning", "error", "critical"}
        assert line["message"]
        assert line["service"]["name"] == "rare-child-connector"
        assert line["event"]["dataset"] in {"rare_child_connector.service", "rare_child_connector.access"}


def test_each_request_has_an_access_line_with_its_id_status_and_path(
    debug_service: RunningService, exchanges: dict[str, HttpResult]
):
    """The caller's X-Request-Id, echoed in the response, keys the access line; the query string is gone."""
    for request_id, result in exchanges.items():
        assert result.headers["X-Request-Id"] == request_id
        line = _access_line(debug_service, request_id)
        assert line is not None, request_id
        assert line["http"]["response"]["status_code"] == result.status
        assert line["url"]["path"].startswith("/api/v1/")
        assert "?" not in line["message"] and "?" not in line["url"]["path"]
        assert line["event"]["duration"] > 0


def test_the_service_lines_of_a_request_carry_its_id(debug_service: RunningService, exchanges):
    """A detection's own lines and every refusal are tied to the request that caused them."""
    lines = [line for line in debug_service.log_lines() if line["log"]["logger"].startswith("connector.")]
    ids_by_message = [(line.get("http", {}).get("request", {}).get("id"), line["message"]) for line in lines]
    detect_lines = [message for request_id, message in ids_by_message if request_id == "detect"]
    assert any(message.startswith("detect terms_rare_childname over") for message in detect_lines)
    for request_id in ("wrong-token", "wrong-password", "bad-range", "no-route"):
        assert any(rid == request_id and "refused" in message for rid, message in ids_by_message), request_id
    # Lines outside any request (startup) carry no made-up id.
    startup = [line for line in lines if line["message"].startswith("service ready")]
    assert startup and all("http" not in line for line in startup)


def test_no_credential_or_secret_reaches_the_log(
    debug_service: RunningService, exchanges: dict[str, HttpResult], logged_secrets: _Secrets
):
    """Tokens, passwords (right or wrong, plain or base64), the ES password and query strings: none logged."""
    assert exchanges["detect"].status == 200, exchanges["detect"].body
    assert [exchanges[name].status for name in ("wrong-token", "wrong-password")] == [401, 401]
    log_text = debug_service.log_text()
    for secret in logged_secrets.all():
        assert secret not in log_text
    # Responses never show the service's own secrets (an error may quote back what the caller sent).
    configured = (logged_secrets.token, logged_secrets.basic_password, logged_secrets.es_password)
    for result in exchanges.values():
        for secret in configured:
            assert secret.encode() not in result.body


def test_text_format_on_request(
    es_url: str, es_client: Elasticsearch, service_workdir: Path, logged_secrets: _Secrets
):
    """CONNECTOR_LOG_FORMAT=text: plain lines for a terminal, still with the request id; a path with a line
    break or an ANSI escape shows them as escapes in the service's and gunicorn's access lines."""
    results_index = f"{SERVICE_INDEX_PREFIX}logs-results-{uuid.uuid4().hex}"
    with _service(
        es_url, service_workdir, logged_secrets, results_index, CONNECTOR_LOG_FORMAT="text"
    ) as service:
        result = service.call("GET", "/api/v1/use-cases", headers={**service.bearer, "X-Request-Id": "txt-1"})
        assert result.status == 200
        # A path with an encoded line break and an ANSI escape, with and without credentials.
        forged_path = "/api/v1/x%0A2026-12-01%2000:00:00,000%20ERROR%20connector.service.api%20FORGED%1B[2J"
        for headers in (service.bearer, {}):
            assert service.call("GET", forged_path, headers={**headers, "X-Request-Id": "txt-2"}).status in (
                401,
                404,
            )
        deadline = time.monotonic() + LOG_WAIT_S
        while service.log_text().count("request_id=txt-2") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        log_text = service.log_text()
        assert '"GET /api/v1/use-cases" 200' in log_text
        assert "request_id=txt-1" in log_text
        assert not log_text.lstrip().startswith("{")
        forged = [line for line in log_text.splitlines() if "FORGED" in line]
        assert forged, log_text[-3000:]
        for line in forged:
            assert "x\\n2026-12-01 00:00:00,000 ERROR connector.service.api FORGED\\x1b[2J" in line, line
            assert not line.startswith("2026-12-01 00:00:00,000"), line
        assert "\x1b" not in log_text
    es_client.indices.delete(index=results_index, ignore_unavailable=True)


def test_access_lines_go_to_stdout_and_everything_else_to_stderr(
    es_url: str, service_workdir: Path, service_credentials: ServiceCredentials, tmp_path: Path
):
    """`connector serve` (the container's command) with its stdout and stderr read as two separate streams:
    stdout holds exactly the access lines, one per request in order; stderr holds everything else (the
    serve line, gunicorn's own lines, the service's lines) and no access line."""
    stderr_path = tmp_path / "stderr.log"
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(service_workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        **service_credentials.environment(),
    }
    command = [sys.executable, "-m", "connector", "serve", "--workers", "1"]
    with run_service(tmp_path, environment, command=command, stderr_path=stderr_path) as (
        url,
        stdout_path,
        env,
    ):
        bearer = {"Authorization": f"Bearer {service_credentials.token}"}
        calls = [("stream-health", "/healthz", {}), ("stream-ok", "/api/v1/use-cases", bearer)]
        calls.append(("stream-refused", "/api/v1/use-cases", {}))
        statuses = [
            http_request("GET", url + path, headers={**headers, "X-Request-Id": request_id}).status
            for request_id, path, headers in calls
        ]
        assert statuses == [200, 200, 401]
        deadline = time.monotonic() + LOG_WAIT_S  # the access line is written after the response
        while "stream-refused" not in stdout_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    # After the stop, so gunicorn's shutdown lines are there too.
    stdout = [json.loads(line) for line in stdout_path.read_text().splitlines()]
    assert [line["log"]["logger"] for line in stdout] == ["gunicorn.access"] * len(stdout)
    assert {line["event"]["dataset"] for line in stdout} == {"rare_child_connector.access"}
    *probes, health, ok, refused_access = stdout  # first, the /healthz polls that waited for the start
    assert probes and {line["message"] for line in probes} == {"GET /healthz 200"}
    assert [
        (line["http"]["request"].get("id"), line["message"]) for line in (health, ok, refused_access)
    ] == [
        ("stream-health", "GET /healthz 200"),
        ("stream-ok", "GET /api/v1/use-cases 200"),
        ("stream-refused", "GET /api/v1/use-cases 401"),
    ]

    serve_line, *rest = stderr_path.read_text().splitlines()
    assert serve_line == f"starting gunicorn on {env['CONNECTOR_BIND']} with 1 worker(s)"
    stderr = [json.loads(line) for line in rest]
    assert all(line["event"]["dataset"] == "rare_child_connector.service" for line in stderr), stderr
    assert all(line["log"]["logger"] != "gunicorn.access" for line in stderr)
    messages = [line["message"] for line in stderr]
    for expected in ("Listening at: http://", "Booting worker with pid", "service ready", "Shutting down"):
        assert any(message.startswith(expected) for message in messages), (expected, messages)
    refused = [
        line for line in stderr if line.get("http", {}).get("request", {}).get("id") == "stream-refused"
    ]
    assert [line["log"]["logger"].startswith("connector.") for line in refused] == [True], refused
