"""The webhook service over real HTTP: real gunicorn on loopback, real Elasticsearch node.

Pins probes, authentication, error envelopes and headers as gunicorn actually serves them, a dry-run
detection whose response matches detect-response.schema.json, and the behaviour with Elasticsearch
stopped (readyz 503, detect 503 with Retry-After). The logs are pinned in test_service_logs.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_service import (
    ROOT,
    SERVICE_INDEX_PREFIX,
    RunningService,
    ServiceCredentials,
    http_request,
    run_service,
)
from elasticsearch import Elasticsearch
from es_data import create_sample_index
from jsonschema import Draft202012Validator

SCHEMA_DIR = ROOT / "connector/service/schemas"
SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}


def _schema(name: str) -> Draft202012Validator:
    document = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid(name: str, instance: Any) -> None:
    errors = sorted(_schema(name).iter_errors(instance), key=lambda error: error.json_path)
    assert errors == [], [f"{error.json_path}: {error.message}" for error in errors]


def assert_error(result, status: int, code: str) -> dict[str, Any]:
    assert result.status == status, result.body
    assert result.headers.get_content_type() == "application/json"
    body = result.json()
    assert_valid("error", body)
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == result.headers["X-Request-Id"]
    return body["error"]


@pytest.fixture(scope="module")
def sample_index(es_client: Elasticsearch) -> Iterator[str]:
    """The bundled sample events in an index the service may read, mapped like osquery (text + .raw)."""
    name = f"{SERVICE_INDEX_PREFIX}events-{uuid.uuid4().hex}"
    try:
        create_sample_index(es_client, name, shards=1)
        yield name
    finally:
        es_client.indices.delete(index=name, ignore_unavailable=True)


def test_healthz_needs_no_credentials(gunicorn_service: RunningService):
    """GET /healthz is 200 {"status": "ok"} without credentials, with a request id header."""
    result = gunicorn_service.call("GET", "/healthz")
    assert result.status == 200
    assert result.json() == {"status": "ok"}
    assert len(result.headers["X-Request-Id"]) == 36


def test_readyz_is_ready_with_elasticsearch_up(gunicorn_service: RunningService):
    """With the node up, /readyz is 200 ready: Elasticsearch ok, the three use cases of the test file loaded
    (the seed and the two that Elasticsearch refuses at detection time)."""
    result = gunicorn_service.call("GET", "/readyz", headers=gunicorn_service.bearer)
    assert result.status == 200, result.body
    assert result.json() == {"status": "ready", "checks": {"elasticsearch": "ok", "use_cases": 3}}
    assert_valid("readiness-response", result.json())


@pytest.mark.parametrize("scheme", ["bearer", "basic"], ids=["bearer", "basic"])
def test_use_cases_with_credentials(gunicorn_service: RunningService, scheme: str):
    """A configured bearer token or basic user/password lists the loaded use case."""
    headers = gunicorn_service.bearer if scheme == "bearer" else gunicorn_service.basic
    result = gunicorn_service.call("GET", "/api/v1/use-cases", headers=headers)
    assert result.status == 200, result.body
    assert_valid("use-cases-response", result.json())
    assert [item["name"] for item in result.json()["use_cases"]] == [
        "terms_rare_childname",
        "terms_broken_query",
        "terms_unknown_field",
    ]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-the-token-000000"}, {"Authorization": "Basic d2F0Y2hlcjp3cm9uZw=="}],
    ids=["none", "wrong-token", "wrong-basic"],
)
def test_use_cases_without_valid_credentials_is_401(gunicorn_service: RunningService, headers):
    """No or wrong credentials: 401 envelope with a WWW-Authenticate challenge for both schemes."""
    result = gunicorn_service.call("GET", "/api/v1/use-cases", headers=headers)
    assert_error(result, 401, "unauthorized")
    assert result.headers["WWW-Authenticate"] == 'Bearer realm="connector", Basic realm="connector"'


def test_errors_keep_the_envelope_through_gunicorn(gunicorn_service: RunningService):
    """404, 405, 415, 400 (every violation) and 413 arrive as the JSON envelope over real HTTP."""
    service = gunicorn_service
    assert_error(service.call("GET", "/nope", headers=service.bearer), 404, "not_found")
    assert_error(service.call("GET", "/api/v1/detect", headers=service.bearer), 405, "method_not_allowed")
    not_json = service.call(
        "POST", "/api/v1/detect", data=b"range=now", headers={**service.bearer, "Content-Type": "text/plain"}
    )
    assert_error(not_json, 415, "unsupported_media_type")
    invalid = service.call(
        "POST", "/api/v1/detect", json_body={"range": {"from": 1}, "x": 2}, headers=service.bearer
    )
    details = assert_error(invalid, 400, "invalid_request")["details"]
    assert [detail["path"] for detail in details] == ["$.range.from", "$.range.to", "$.x"]
    big = service.call(
        "POST",
        "/api/v1/detect",
        data=json.dumps({"use_case": "x" * 70_000}).encode(),
        headers={**service.bearer, "Content-Type": "application/json"},
    )
    assert_error(big, 413, "request_too_large")


def test_detect_dry_run_over_http_matches_the_response_schema(
    gunicorn_service: RunningService, sample_index, es_client: Elasticsearch, service_results_index: str
):
    """A dry run over the indexed sample answers 200 with a schema-valid body and writes nothing: no results
    document for the sample in the results index, no annotation on the sample's events."""
    body = {"range": SAMPLE_RANGE, "index": sample_index, "dry_run": True, "max_outliers": 3}
    result = gunicorn_service.call(
        "POST", "/api/v1/detect", json_body=body, headers={**gunicorn_service.bearer, "X-Request-Id": "dry-1"}
    )
    assert result.status == 200, result.body
    response = result.json()
    assert_valid("detect-response", response)
    assert response["request_id"] == "dry-1"
    assert response["use_case"] == "terms_rare_childname"
    assert response["index"] == sample_index
    assert response["range"] == {"from": "2024-03-04T00:00:00.000Z", "to": "2024-03-07T00:00:00.000Z"}
    assert response["baseline"] is None
    assert response["events_analyzed"] == 5280
    # The sample's 5 planted rare children; max_outliers caps the list, not the total.
    assert response["outliers_total"] == 5
    assert len(response["outliers"]) == 3
    assert response["annotation"]["dry_run"] is True
    assert response["annotation"]["written"] == 0
    assert response["annotation"]["outcome"] == "skipped"
    # What Elasticsearch holds: the results index (if another test created it) has nothing from this
    # sample, and the sample's events carry no outlier annotation.
    es_client.indices.refresh(index=[service_results_index, sample_index], ignore_unavailable=True)
    from_sample = {"term": {"outliers.source_index": sample_index}}
    stored = es_client.count(index=service_results_index, query=from_sample, ignore_unavailable=True)
    assert stored["count"] == 0
    annotated = {"bool": {"should": [{"exists": {"field": "outliers"}}, {"term": {"tags": "outlier"}}]}}
    assert es_client.count(index=sample_index, query=annotated)["count"] == 0
    assert es_client.count(index=sample_index)["count"] == 5280


def test_readyz_is_503_when_elasticsearch_is_unreachable(gunicorn_service_es_down: RunningService):
    """Elasticsearch on a closed port: /readyz is 503 not_ready, elasticsearch unreachable."""
    result = gunicorn_service_es_down.call("GET", "/readyz", headers=gunicorn_service_es_down.bearer)
    assert result.status == 503
    assert result.json() == {
        "status": "not_ready",
        "checks": {"elasticsearch": "unreachable", "use_cases": 3},
    }
    assert_valid("readiness-response", result.json())


def test_detect_is_503_with_retry_after_when_elasticsearch_is_unreachable(
    gunicorn_service_es_down: RunningService,
):
    """Elasticsearch on a closed port: detect is 503 elasticsearch_unavailable with Retry-After: 30."""
    service = gunicorn_service_es_down
    body = {"range": {"from": "now-1h", "to": "now"}, "dry_run": True}
    result = service.call("POST", "/api/v1/detect", json_body=body, headers=service.bearer)
    assert_error(result, 503, "elasticsearch_unavailable")
    assert result.headers["Retry-After"] == "30"


def test_connector_serve_starts_gunicorn(
    service_workdir: Path, service_credentials: ServiceCredentials, service_results_index: str
):
    """`connector serve --workers 1` (with CONNECTOR_BIND from the environment) serves /healthz."""
    environment = {
        "CONNECTOR_ES_URL": "http://127.0.0.1:9",
        "CONNECTOR_USE_CASES": str(service_workdir / "rare_child.ini"),
        **service_credentials.environment(),
    }
    command = [sys.executable, "-m", "connector", "serve", "--workers", "1"]
    with run_service(service_workdir, environment, command=command) as (url, log_path, _):
        assert http_request("GET", url + "/healthz").status == 200
        unauthorized = http_request("GET", url + "/api/v1/use-cases")
        assert unauthorized.status == 401
    assert "starting gunicorn on 127.0.0.1:" in log_path.read_text()


def test_importing_the_service_opens_no_socket_and_reads_no_environment():
    """Importing connector.service (what gunicorn does before calling create_app) has no side effects."""
    probe = (
        "import os, socket\n"
        "def refuse(*args, **kwargs):\n"
        "    raise AssertionError('socket opened at import')\n"
        "socket.socket.connect = refuse\n"
        "class Spy(dict):\n"
        "    def __getitem__(self, key):\n"
        "        if key.startswith('CONNECTOR_'):\n"
        "            raise AssertionError(f'{key} read at import')\n"
        "        return super().__getitem__(key)\n"
        "    def get(self, key, default=None):\n"
        "        if key.startswith('CONNECTOR_'):\n"
        "            raise AssertionError(f'{key} read at import')\n"
        "        return super().get(key, default)\n"
        "os.environ = Spy(os.environ)\n"
        "import connector.service, connector.service.app, connector.settings, connector.timerange\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "CONNECTOR_ES_URL": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
