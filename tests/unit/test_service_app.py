"""The Flask service without Elasticsearch: factory, auth, request checks, error envelopes, OpenAPI, logs.

Elasticsearch points at a closed loopback port; every request here fails (or succeeds) before the
engine would contact it.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.test import TestResponse

from connector.cli import main
from connector.config import load_use_cases
from connector.errors import ConfigError, IndexNotAllowedError
from connector.service import create_app
from connector.service.access import choose_index, index_allowed
from connector.service.auth import FAILURE_MESSAGE
from connector.service.state import ServiceState
from connector.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_USE_CASES = ROOT / "examples/rare_child.ini"
SCHEMA_DIR = ROOT / "connector/service/schemas"
TOKEN = "unit-token-0123456789abcdef"
SECOND_TOKEN = "unit-token-second-9876543210"
BASIC_USER = "watcher"
BASIC_PASSWORD = "basic-Pa55word-for-unit-tests"
VALID_BODY = {"range": {"from": "now-1d", "to": "now"}}

SECOND_USE_CASE = """
[terms_office_children]
es_query_filter=tags:endpoint
aggregator=OsqueryFilter.parentname
target=OsqueryFilter.name
target_count_method=within_aggregator
trigger_on=low
trigger_method=float
trigger_sensitivity=2
es_index=osquery-office-*
"""


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _no_connector_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's CONNECTOR_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("CONNECTOR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (the port was just free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def use_case_file(tmp_path: Path) -> Path:
    path = tmp_path / "rare_child.ini"
    shutil.copyfile(EXAMPLE_USE_CASES, path)
    return path


@pytest.fixture
def env(closed_port_url: str, use_case_file: Path) -> dict[str, str]:
    return {
        "CONNECTOR_ES_URL": closed_port_url,
        "CONNECTOR_USE_CASES": str(use_case_file),
        "CONNECTOR_API_TOKENS": f"{TOKEN},{SECOND_TOKEN}",
        "CONNECTOR_BASIC_USER": BASIC_USER,
        "CONNECTOR_BASIC_PASSWORD": BASIC_PASSWORD,
    }


@pytest.fixture
def make_app(env: dict[str, str]) -> Callable[..., Flask]:
    def build(**overrides: str | None) -> Flask:
        merged = {**env, **overrides}
        return create_app(Settings.from_env({k: v for k, v in merged.items() if v is not None}))

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="module")
def schema_files() -> dict[str, Any]:
    return {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text())
        for path in sorted(SCHEMA_DIR.glob("*.schema.json"))
    }


def _validate(schema: dict[str, Any], instance: Any) -> None:
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda error: error.json_path)
    assert errors == [], [f"{error.json_path}: {error.message}" for error in errors]


def assert_error(response: TestResponse, status: int, code: str, schema_files: dict[str, Any]) -> dict:
    """The response is the one error envelope, valid against error.schema.json, with the echoed request id."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    _validate(schema_files["error"], body)
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    return body["error"]


def _post_detect(client: FlaskClient, body: Any, headers: dict[str, str] | None = None) -> TestResponse:
    return client.post("/api/v1/detect", json=body, headers=headers if headers is not None else BEARER)


# -- factory ---------------------------------------------------------------------------------------


def test_factory_keeps_one_typed_state_object(app: Flask, use_case_file: Path):
    """create_app keeps settings, use cases, client, validators and OpenAPI in app.extensions['connector']."""
    state = app.extensions["connector"]
    assert isinstance(state, ServiceState)
    assert [use_case.section for use_case in state.catalog.use_cases] == ["terms_rare_childname"]
    assert state.settings.use_case_paths == (str(use_case_file),)
    assert sorted(state.schemas.validators) == [
        "checkpoints-response",
        "detect-request",
        "detect-response",
        "error",
        "health-response",
        "readiness-response",
        "use-cases-response",
    ]
    assert app.config["MAX_CONTENT_LENGTH"] == 65536


def test_factory_without_settings_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """create_app() (as gunicorn calls it) builds Settings from CONNECTOR_* variables."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CONNECTOR_RESULTS_INDEX", "from-env-results")
    app = create_app()
    assert app.extensions["connector"].settings.results_index == "from-env-results"


def test_factory_refuses_a_missing_use_case_file(env: dict[str, str], tmp_path: Path):
    """A use-case path that does not exist stops the factory with a ConfigError naming the file."""
    missing = tmp_path / "missing.ini"
    with pytest.raises(ConfigError) as caught:
        create_app(Settings.from_env({**env, "CONNECTOR_USE_CASES": str(missing)}))
    assert caught.value.message.startswith(f"{missing}: file not found")


def test_factory_refuses_an_invalid_use_case(env: dict[str, str], tmp_path: Path):
    """A use case with a bad option stops the factory naming file, section and option."""
    bad = tmp_path / "bad.ini"
    bad.write_text(EXAMPLE_USE_CASES.read_text().replace("trigger_on=low", "trigger_on=sideways"))
    with pytest.raises(ConfigError) as caught:
        create_app(Settings.from_env({**env, "CONNECTOR_USE_CASES": str(bad)}))
    assert caught.value.message.startswith(f"{bad} [terms_rare_childname] trigger_on: unknown value")


def test_factory_refuses_a_file_without_use_cases_and_duplicates(env: dict[str, str], tmp_path: Path):
    """A file with no [terms_*] section, or the same section in two files, is a startup error."""
    empty = tmp_path / "empty.ini"
    empty.write_text("[whitelist_literals]\n")
    with pytest.raises(ConfigError, match=r"no \[terms_\*\] or \[rarechild_\*\] use case in this file"):
        create_app(Settings.from_env({**env, "CONNECTOR_USE_CASES": str(empty)}))
    copy = tmp_path / "copy.ini"
    shutil.copyfile(EXAMPLE_USE_CASES, copy)
    with pytest.raises(ConfigError, match=r"use case \[terms_rare_childname\] is also defined in"):
        create_app(Settings.from_env({**env, "CONNECTOR_USE_CASES": f"{env['CONNECTOR_USE_CASES']},{copy}"}))


def test_anonymous_mode_warns_loudly_and_accepts_requests(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """CONNECTOR_ALLOW_ANONYMOUS=true without credentials: a WARNING at startup, no 401s."""
    with caplog.at_level(logging.WARNING, logger="connector"):
        app = make_app(
            CONNECTOR_API_TOKENS=None,
            CONNECTOR_BASIC_USER=None,
            CONNECTOR_BASIC_PASSWORD=None,
            CONNECTOR_ALLOW_ANONYMOUS="true",
        )
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("AUTHENTICATION IS OFF" in message for message in warnings)
    assert app.test_client().get("/api/v1/use-cases").status_code == 200


# -- public endpoints and request ids --------------------------------------------------------------


def test_healthz_needs_no_auth(client: FlaskClient, schema_files: dict[str, Any]):
    """GET /healthz answers 200 {"status": "ok"} without credentials."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    _validate(schema_files["health-response"], response.get_json())


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("watch-42_run.7:a", True), ("x" * 65, False), ("bad id", False), ("a\u00e9b", False), ("", False)],
    ids=["safe", "too-long", "space", "non-ascii", "empty"],
)
def test_request_id_is_echoed_only_when_short_and_safe(client: FlaskClient, sent: str, echoed: bool):
    """A safe X-Request-Id comes back as is; anything else is replaced by a uuid4."""
    response = client.get("/healthz", headers={"X-Request-Id": sent})
    returned = response.headers["X-Request-Id"]
    if echoed:
        assert returned == sent
    else:
        assert returned != sent
        assert len(returned) == 36 and returned.count("-") == 4


def test_request_id_appears_in_error_bodies(client: FlaskClient, schema_files: dict[str, Any]):
    """The id sent by the caller is the one in the error body."""
    response = client.get("/api/v1/use-cases", headers={"X-Request-Id": "trace-123"})
    assert assert_error(response, 401, "unauthorized", schema_files)["request_id"] == "trace-123"


# -- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": "Bearer"},
        {"Authorization": _basic(BASIC_USER, "wrong-password")},
        {"Authorization": _basic("someone", BASIC_PASSWORD)},
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=[
        "none",
        "wrong-token",
        "token-with-suffix",
        "bearer-empty",
        "basic-wrong-password",
        "basic-wrong-user",
        "basic-not-base64",
        "basic-no-colon",
        "basic-not-utf8",
        "unknown-scheme",
        "no-scheme",
    ],
)
def test_every_auth_failure_gets_the_same_401(client: FlaskClient, headers, schema_files):
    """Whatever is wrong, the 401 says the same thing and challenges with both configured schemes."""
    response = client.get("/api/v1/use-cases", headers=headers)
    error = assert_error(response, 401, "unauthorized", schema_files)
    assert error["message"] == FAILURE_MESSAGE
    assert error["details"] == []
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="connector", Basic realm="connector"'


def test_detect_checks_auth_before_reading_the_body(client: FlaskClient, schema_files: dict[str, Any]):
    """An unauthenticated detect with a broken body gets 401, not a parse error."""
    response = client.post("/api/v1/detect", data="{", content_type="text/plain")
    assert_error(response, 401, "unauthorized", schema_files)


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}", f"bearer {SECOND_TOKEN}", _basic(BASIC_USER, BASIC_PASSWORD)],
    ids=["first-token", "second-token-lowercase-scheme", "basic"],
)
def test_valid_credentials_list_use_cases(client, authorization, schema_files):
    """Any configured token, or the basic user and password, opens /api/v1/use-cases."""
    response = client.get("/api/v1/use-cases", headers={"Authorization": authorization})
    assert response.status_code == 200
    _validate(schema_files["use-cases-response"], response.get_json())
    assert response.get_json() == {
        "use_cases": [
            {
                "name": "terms_rare_childname",
                "model_name": "rare_childname",
                "default": True,
                "aggregator": ["OsqueryFilter.parentname"],
                "target": ["OsqueryFilter.name"],
                "target_count_method": "within_aggregator",
                "trigger_method": "pct_of_avg_value",
                "trigger_on": "low",
                "trigger_sensitivity": 1.0,
                "es_index": None,
                "profile": None,  # detected from the data at each detection
            }
        ]
    }


def test_challenge_names_only_the_configured_scheme(make_app: Callable[..., Flask]):
    """With tokens only, the 401 challenge offers Bearer alone."""
    app = make_app(CONNECTOR_BASIC_USER=None, CONNECTOR_BASIC_PASSWORD=None)
    response = app.test_client().get("/api/v1/use-cases")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="connector"'
    basic = app.test_client().get(
        "/api/v1/use-cases", headers={"Authorization": _basic(BASIC_USER, BASIC_PASSWORD)}
    )
    assert basic.status_code == 401


# -- request body ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", None],
    ids=["text-plain", "form", "missing"],
)
def test_non_json_content_type_is_415(client: FlaskClient, content_type, schema_files):
    """Only application/json bodies are read; anything else is 415 naming the header to send."""
    headers = dict(BEARER)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.post("/api/v1/detect", data=json.dumps(VALID_BODY), headers=headers)
    error = assert_error(response, 415, "unsupported_media_type", schema_files)
    assert "Content-Type: application/json" in error["message"]


def test_json_with_charset_parameter_is_accepted(client: FlaskClient, schema_files: dict[str, Any]):
    """application/json; charset=utf-8 counts as JSON (the schema check is reached)."""
    response = client.post(
        "/api/v1/detect",
        data=json.dumps({"range": {}}),
        headers={**BEARER, "Content-Type": "application/json; charset=utf-8"},
    )
    assert_error(response, 400, "invalid_request", schema_files)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{\n  "range": \n}', "request body is not valid JSON: Expecting value at line 3, column 1"),
        (b"", "request body is not valid JSON: Expecting value at line 1, column 1"),
        (b'{"range" "now"}', "request body is not valid JSON: Expecting ':' delimiter at line 1, column 10"),
        (b'{"max_outliers": NaN}', "request body is not accepted: NaN is not a JSON number"),
        (
            b'{"dry_run": true, "dry_run": false}',
            "request body is not accepted: duplicate key 'dry_run' in an object",
        ),
        (b'{"use_case": "\xff"}', "request body is not UTF-8 text (invalid byte at offset 14)"),
        (b"[" * 5000 + b"]" * 5000, "request body is nested too deeply"),
        (
            b'{"max_outliers": ' + b"9" * 5000 + b"}",
            "request body is not accepted: an integer has 5000 digits; at most 100 are read",
        ),
        (
            b'{"max_outliers": -1e400}',
            "request body is not accepted: the number '-1e400' is too large for a double",
        ),
    ],
    ids=[
        "line-column",
        "empty",
        "missing-colon",
        "nan",
        "duplicate-key",
        "not-utf8",
        "deep-nesting",
        "integer-too-long",
        "float-overflow",
    ],
)
def test_malformed_json_is_400_saying_where(client: FlaskClient, raw: bytes, message: str, schema_files):
    """A body that is not strict JSON is 400 malformed_json with line and column of the problem."""
    response = client.post("/api/v1/detect", data=raw, headers={**BEARER, "Content-Type": "application/json"})
    error = assert_error(response, 400, "malformed_json", schema_files)
    assert error["message"] == message
    assert error["details"] == [{"path": "$", "message": message}]


def test_every_schema_violation_is_listed_sorted_by_path(client: FlaskClient, schema_files):
    """All violations come back at once, sorted by JSON path, unknown fields at their own path."""
    body = {
        "range": {"from": 7, "until": "now"},
        "max_outliers": "many",
        "annotate": "everywhere",
        "surprise": True,
        "dry_run": "yes",
    }
    error = assert_error(_post_detect(client, body), 400, "invalid_request", schema_files)
    assert error["details"] == [
        {"path": "$.annotate", "message": "'everywhere' is not one of ['results_index', 'in_place', 'none']"},
        {"path": "$.dry_run", "message": "'yes' is not of type 'boolean'"},
        {"path": "$.max_outliers", "message": "'many' is not of type 'integer'"},
        {"path": "$.range.from", "message": "7 is not of type 'string'"},
        {"path": "$.range.to", "message": "required field is missing"},
        {"path": "$.range.until", "message": "unknown field 'until'; allowed here: from, to"},
        {
            "path": "$.surprise",
            "message": "unknown field 'surprise'; allowed here: annotate, baseline, dry_run, index, "
            "max_outliers, range, since_checkpoint, use_case",
        },
    ]
    assert error["message"].startswith(
        "the request body does not match the detect-request schema (7 problems"
    )


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({}, "$.range", "required field is missing"),
        ([], "$", "[] is not of type 'object'"),
        (
            {**VALID_BODY, "max_outliers": 10001},
            "$.max_outliers",
            "10001 is greater than the maximum of 10000",
        ),
        ({**VALID_BODY, "max_outliers": -1}, "$.max_outliers", "-1 is less than the minimum of 0"),
        ({**VALID_BODY, "max_outliers": True}, "$.max_outliers", "True is not of type 'integer'"),
        ({**VALID_BODY, "baseline": {}}, "$.baseline.from", "required field is missing"),
        ({**VALID_BODY, "index": ""}, "$.index", "'' should be non-empty"),
    ],
    ids=[
        "missing-range",
        "array",
        "max-too-big",
        "max-negative",
        "max-bool",
        "baseline-empty",
        "index-empty",
    ],
)
def test_single_schema_violations(client: FlaskClient, body, path, message, schema_files):
    """Each of these bodies breaks exactly one rule, reported at its path."""
    error = assert_error(_post_detect(client, body), 400, "invalid_request", schema_files)
    assert error["details"] == [{"path": path, "message": message}]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"range": {"from": "yesterday", "to": "now"}}, "$.range.from"),
        ({"range": {"from": "now-1d", "to": "now-2d"}}, "$.range.to"),
        ({"range": {"from": "now-401d", "to": "now"}}, "$.range"),
        ({"range": {"from": "now-1d", "to": "now"}, "baseline": {"from": "now"}}, "$.baseline.from"),
        ({"range": {"from": "now-1d", "to": "now"}, "baseline": {"from": "last year"}}, "$.baseline.from"),
    ],
    ids=["bad-from", "reversed", "too-long", "baseline-after-start", "baseline-syntax"],
)
def test_bad_ranges_are_400_invalid_range_with_path(client: FlaskClient, body, path, schema_files):
    """Schema-valid bounds that do not resolve to a sensible range are 400 invalid_range at their path."""
    error = assert_error(_post_detect(client, body), 400, "invalid_range", schema_files)
    assert [detail["path"] for detail in error["details"]] == [path]


@pytest.mark.parametrize(
    "index",
    [
        "*",
        "osquery-*,secret-*",
        "-osquery-x",
        "remote:osquery-*",
        "secret-*",
        "osquery*",
        "OSQUERY-x",
        "osquery-x ",
        "<osquery-{now/d}>",
        "_all",
    ],
    ids=[
        "star",
        "list",
        "exclusion",
        "remote",
        "other",
        "wider-pattern",
        "uppercase",
        "trailing-space",
        "date-math-name",
        "all",
    ],
)
def test_index_outside_allowed_patterns_is_403(client: FlaskClient, index: str, schema_files):
    """Anything not provably inside osquery-* is 403 index_not_allowed at $.index, before any query."""
    error = assert_error(
        _post_detect(client, {**VALID_BODY, "index": index}), 403, "index_not_allowed", schema_files
    )
    assert error["details"][0]["path"] == "$.index"
    assert "allowed patterns (osquery-*)" in error["message"]


@pytest.mark.parametrize(
    ("index", "allowed"),
    [
        ("osquery-2024.05.01", True),
        ("osquery-*", True),
        ("osquery-2024*", True),
        ("osquery-*-x", True),
        ("osquery*", False),
        ("*", False),
        ("osquery-a,osquery-b", False),
        ("cluster:osquery-a", False),
    ],
    ids=["name", "same-pattern", "narrower", "narrower-suffix", "wider", "everything", "list", "remote"],
)
def test_index_allowed(index: str, allowed: bool):
    """A requested pattern is allowed only when every index it can expand to is covered."""
    assert index_allowed(index, ("osquery-*", "winlogbeat-2024")) is allowed


def test_default_index_is_the_use_case_index_if_allowed_else_the_first_pattern(tmp_path: Path):
    """Without $.index: the use case's es_index when allowed, otherwise the first allowed pattern."""
    path = tmp_path / "two.ini"
    path.write_text(EXAMPLE_USE_CASES.read_text() + SECOND_USE_CASE)
    plain, office = load_use_cases(path).use_cases
    assert choose_index(None, office, ("osquery-*",)) == "osquery-office-*"
    assert choose_index(None, office, ("logs-*", "osquery-x")) == "logs-*"
    assert choose_index(None, plain, ("osquery-*",)) == "osquery-*"
    with pytest.raises(IndexNotAllowedError):
        choose_index("logs-1", plain, ("osquery-*",))


def test_unknown_use_case_is_404(client: FlaskClient, schema_files: dict[str, Any]):
    """A use case that is not loaded is 404 unknown_use_case naming the known ones."""
    error = assert_error(
        _post_detect(client, {**VALID_BODY, "use_case": "nope"}), 404, "unknown_use_case", schema_files
    )
    assert error["message"] == (
        "unknown use case 'nope'; this service knows: terms_rare_childname (GET /api/v1/use-cases lists them)"
    )


def test_use_cases_from_several_files(make_app: Callable[..., Flask], use_case_file: Path, tmp_path: Path):
    """CONNECTOR_USE_CASES with two files lists both files' use cases, the first file's first is default."""
    second = tmp_path / "office.ini"
    second.write_text(SECOND_USE_CASE)
    app = make_app(CONNECTOR_USE_CASES=f"{use_case_file},{second}")
    listed = app.test_client().get("/api/v1/use-cases", headers=BEARER).get_json()["use_cases"]
    assert [(item["name"], item["default"], item["es_index"]) for item in listed] == [
        ("terms_rare_childname", True, None),
        ("terms_office_children", False, "osquery-office-*"),
    ]
    catalog = app.extensions["connector"].catalog
    assert catalog.select("office_children").section == "terms_office_children"


def test_oversized_body_is_413(client: FlaskClient, schema_files: dict[str, Any]):
    """A body over CONNECTOR_MAX_BODY_BYTES is 413 request_too_large naming the limit."""
    body = json.dumps({**VALID_BODY, "use_case": "x" * 70_000})
    response = client.post(
        "/api/v1/detect", data=body, headers={**BEARER, "Content-Type": "application/json"}
    )
    error = assert_error(response, 413, "request_too_large", schema_files)
    assert error["message"] == (
        "request body is larger than 65536 bytes (CONNECTOR_MAX_BODY_BYTES); send a smaller body"
    )


# -- routing and unexpected errors -----------------------------------------------------------------


def test_unknown_route_is_a_json_404(client: FlaskClient, schema_files: dict[str, Any]):
    """404 for an unknown path uses the same envelope and points to the OpenAPI document."""
    error = assert_error(client.get("/api/v2/detect", headers=BEARER), 404, "not_found", schema_files)
    assert error["message"] == "no such endpoint: GET /api/v2/detect; GET /openapi.json lists the API"


def test_wrong_method_is_a_json_405_with_allow(client: FlaskClient, schema_files: dict[str, Any]):
    """405 keeps werkzeug's Allow header and lists the allowed methods in the message."""
    response = client.get("/api/v1/detect", headers=BEARER)
    error = assert_error(response, 405, "method_not_allowed", schema_files)
    assert error["message"] == "GET is not allowed on /api/v1/detect; allowed: OPTIONS, POST"
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_unexpected_exception_is_a_500_without_its_text(
    app: Flask, schema_files: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A bug becomes 500 internal_error; the body has no exception text, the log has the traceback."""

    def explode() -> None:
        raise RuntimeError("secret internals /etc/shadow")

    app.add_url_rule("/boom", "boom", explode)
    with caplog.at_level(logging.ERROR, logger="connector"):
        response = app.test_client().get("/boom", headers={**BEARER, "X-Request-Id": "boom-1"})
    error = assert_error(response, 500, "internal_error", schema_files)
    assert "secret internals" not in response.get_data(as_text=True)
    assert error["message"] == "internal error; the service log has the details under this request id"
    (record,) = [record for record in caplog.records if record.exc_info]
    assert record.request_id == "boom-1"
    assert "secret internals" in caplog.text


# -- OpenAPI ---------------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_is_structurally_valid_3_1(client: FlaskClient, schema_files: dict[str, Any]):
    """openapi 3.1.0, every $ref resolves, every operation documents the Error schema, security schemes."""
    response = client.get("/openapi.json", headers=BEARER)
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert {"title", "version"} <= set(document["info"])
    refs = list(_refs(document))
    assert refs, "the document should use $ref"
    for ref in refs:
        _resolve(document, ref)
    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "CONNECTOR_API_TOKENS"},
        "basicAuth": {"type": "http", "scheme": "basic", "description": "CONNECTOR_BASIC_USER"},
    }
    error_ref = "#/components/schemas/Error"
    assert set(document["paths"]) == {
        "/api/v1/checkpoints",
        "/api/v1/detect",
        "/api/v1/metrics",
        "/api/v1/use-cases",
        "/healthz",
        "/readyz",
        "/openapi.json",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert all(status.isdigit() and len(status) == 3 for status in responses), (path, method)
            error_statuses = {
                status
                for status, described in responses.items()
                if described["content"].get("application/json", {}).get("schema") == {"$ref": error_ref}
            }
            assert "500" in error_statuses, (path, method)
            if path != "/healthz":
                assert "401" in error_statuses, (path, method)
            for scheme in operation.get("security", []):
                assert set(scheme) <= set(document["components"]["securitySchemes"])
    detect = document["paths"]["/api/v1/detect"]["post"]
    assert set(detect["responses"]) == {
        "200",
        "207",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "415",
        "422",
        "500",
        "501",
        "502",
        "503",
        "504",
    }
    assert detect["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert detect["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert detect["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DetectRequest"
    }
    assert document["paths"]["/healthz"]["get"]["security"] == []
    paths = ("/api/v1/detect", "/api/v1/checkpoints", "/api/v1/metrics", "/api/v1/use-cases", "/readyz")
    for path in (*paths, "/openapi.json"):
        for operation in document["paths"][path].values():
            assert operation["security"] == [{"bearerAuth": []}, {"basicAuth": []}], path
    metrics = document["paths"]["/api/v1/metrics"]["get"]["responses"]
    assert set(metrics) == {"200", "401", "500", "503", "504"}
    assert metrics["200"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert metrics["503"]["headers"]["Retry-After"]["required"] is True


def test_openapi_component_schemas_are_the_schema_files(client: FlaskClient, schema_files: dict[str, Any]):
    """components.schemas holds each schema file unchanged, and each is a valid Draft 2020-12 schema."""
    components = client.get("/openapi.json", headers=BEARER).get_json()["components"]["schemas"]
    expected = {
        "CheckpointsResponse": schema_files["checkpoints-response"],
        "DetectRequest": schema_files["detect-request"],
        "DetectResponse": schema_files["detect-response"],
        "Error": schema_files["error"],
        "HealthResponse": schema_files["health-response"],
        "ReadinessResponse": schema_files["readiness-response"],
        "UseCasesResponse": schema_files["use-cases-response"],
    }
    assert components == expected
    for schema in components.values():
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/readyz"),
        ("GET", "/openapi.json"),
        ("GET", "/api/v1/use-cases"),
        ("GET", "/api/v1/checkpoints"),
        ("GET", "/api/v1/metrics"),
        ("POST", "/api/v1/detect"),
    ],
)
def test_every_endpoint_but_liveness_needs_credentials(
    client: FlaskClient, method: str, path: str, schema_files: dict[str, Any]
):
    """Readiness (which says whether Elasticsearch accepts the connector) and the API description are
    not for anonymous callers; only /healthz is."""
    response = client.open(path, method=method)
    assert_error(response, 401, "unauthorized", schema_files)
    assert client.open(path, method=method, headers=BEARER).status_code != 401


# -- logs ------------------------------------------------------------------------------------------


def test_credentials_appear_in_no_log_record(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
):
    """Good and bad tokens and passwords, in headers or bodies, never reach a log record."""
    wrong_password = "wrong-Pa55word-zzz"
    wrong_token = "wrong-token-abcdefghijkl"
    with caplog.at_level(logging.DEBUG):
        app = make_app(CONNECTOR_LOG_LEVEL="DEBUG")
        client = app.test_client()
        client.get("/api/v1/use-cases", headers=BEARER)
        client.get("/api/v1/use-cases", headers={"Authorization": f"Bearer {wrong_token}"})
        client.get("/api/v1/use-cases", headers={"Authorization": _basic(BASIC_USER, BASIC_PASSWORD)})
        client.get("/api/v1/use-cases", headers={"Authorization": _basic(BASIC_USER, wrong_password)})
        _post_detect(client, {"range": {"from": TOKEN, "to": "now"}})
        _post_detect(client, {**VALID_BODY, "index": "secret-*"})
        _post_detect(client, {**VALID_BODY, "use_case": "nope"})
        client.get("/readyz", headers=BEARER)
    assert len(caplog.records) >= 8
    encoded_basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.__dict__)
        for secret in (TOKEN, SECOND_TOKEN, BASIC_PASSWORD, wrong_password, wrong_token, encoded_basic):
            assert secret not in text, (secret, record.getMessage())


def test_log_records_carry_the_request_id(client: FlaskClient, caplog: pytest.LogCaptureFixture):
    """Records logged while handling a request have that request's id; a filter puts it there."""
    with caplog.at_level(logging.INFO, logger="connector"):
        client.get("/api/v1/use-cases", headers={"X-Request-Id": "log-id-1"})
    refused = [record for record in caplog.records if "refused" in record.getMessage()]
    assert [record.request_id for record in refused] == ["log-id-1"]


# -- connector serve -------------------------------------------------------------------------------


def test_serve_exits_2_on_misconfiguration_before_gunicorn(use_case_file: Path):
    """connector serve checks the settings first: no ES URL means exit 2 and the variable's name."""
    result = CliRunner().invoke(main, ["serve"], env={"CONNECTOR_USE_CASES": str(use_case_file)})
    assert result.exit_code == 2, result.output
    assert "error: CONNECTOR_ES_URL: required" in result.output


def test_serve_exits_2_on_an_invalid_use_case_file(env: dict[str, str], tmp_path: Path):
    """A broken use-case file stops connector serve with exit 2 naming the file."""
    bad = tmp_path / "bad.ini"
    bad.write_text("[terms_x]\naggregator=a\n")
    result = CliRunner().invoke(main, ["serve"], env={**env, "CONNECTOR_USE_CASES": str(bad)})
    assert result.exit_code == 2, result.output
    assert f"error: {bad} [terms_x]" in result.output


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [(["--workers", "0"], "--workers"), (["--workers", "two"], "--workers"), (["--bind", "8080"], "--bind")],
    ids=["zero-workers", "word-workers", "port-only"],
)
def test_serve_rejects_bad_options(env: dict[str, str], arguments: list[str], fragment: str):
    """Bad --workers/--bind are usage errors (exit 2) naming the option."""
    result = CliRunner().invoke(main, ["serve", *arguments], env=env)
    assert result.exit_code == 2, result.output
    assert fragment in result.output


def test_serve_execs_gunicorn_with_the_package_config(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """With valid settings, serve replaces itself with `python -m gunicorn -c gunicorn_conf.py app`."""
    import connector.cli.commands

    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def record_exec(path: str, argv: list[str], environment: dict[str, str]) -> None:
        calls.append((path, argv, environment))

    monkeypatch.setattr(connector.cli.commands.os, "execve", record_exec)
    result = CliRunner().invoke(main, ["serve", "--bind", "127.0.0.1:9999", "--workers", "3"], env=env)
    assert result.exit_code == 0, result.output
    ((path, argv, environment),) = calls
    assert argv[1:] == [
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "connector/service/gunicorn_conf.py"),
        "connector.service:create_app()",
    ]
    assert path == argv[0]
    assert environment["CONNECTOR_BIND"] == "127.0.0.1:9999"
    assert environment["CONNECTOR_WORKERS"] == "3"


def test_ready_is_logged_only_after_elasticsearch_answers(make_app, closed_port_url, caplog):
    """Elasticsearch down at start: the log says the service waits for it, never that it is ready."""
    with caplog.at_level("INFO", logger="connector.service"):
        app = make_app()
        app.test_client().get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    messages = [
        record.getMessage() for record in caplog.records if record.name.startswith("connector.service")
    ]
    assert not any(message.startswith("service ready") for message in messages), messages
    waiting = [message for message in messages if message.startswith("waiting for Elasticsearch")]
    assert len(waiting) == 1  # said once, though the probe found it still down
    assert waiting[0].startswith(
        f"waiting for Elasticsearch at {closed_port_url} (unreachable): detections answer 503 and "
        "/readyz 503 until it does; 1 use case(s) from "
    )


def test_the_first_successful_check_logs_ready_once(make_app, caplog):
    """The readiness log turns "ready" at the first check that succeeds, and says it once."""
    from connector.service.readiness import ElasticsearchCheck, ReadinessLog

    readiness = ReadinessLog("2 use case(s)")
    with caplog.at_level("INFO", logger="connector.service.readiness"):
        readiness.observe(ElasticsearchCheck.UNREACHABLE, es_url="http://es:9200")
        readiness.observe(ElasticsearchCheck.UNAUTHORIZED, es_url="http://es:9200")
        readiness.observe(ElasticsearchCheck.OK, es_url="http://es:9200")
        readiness.observe(ElasticsearchCheck.OK, es_url="http://es:9200")
    assert [record.getMessage() for record in caplog.records] == [
        "waiting for Elasticsearch at http://es:9200 (unreachable): detections answer 503 and /readyz 503 "
        "until it does; 2 use case(s)",
        "service ready: Elasticsearch at http://es:9200 accepts the connector's credentials; 2 use case(s)",
    ]


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (
            {"since_checkpoint": {}, "range": VALID_BODY["range"]},
            [
                {
                    "path": "$.range",
                    "message": "cannot be combined with since_checkpoint; give one of the two forms",
                }
            ],
        ),
        (
            {"since_checkpoint": {}, "baseline": {"from": "now-7d"}},
            [
                {
                    "path": "$.baseline",
                    "message": "cannot be combined with since_checkpoint; give one of the two forms",
                }
            ],
        ),
        (
            {"since_checkpoint": {"baseline": "7w"}},
            [
                {
                    "path": "$.since_checkpoint.baseline",
                    "message": "'7w' does not match '^[1-9][0-9]{0,4}[dh]$'",
                }
            ],
        ),
        (
            {"since_checkpoint": {"max_spans": 0}},
            [{"path": "$.since_checkpoint.max_spans", "message": "0 is less than the minimum of 1"}],
        ),
        (
            {"since_checkpoint": {"from": "now-1h"}},
            [
                {
                    "path": "$.since_checkpoint.from",
                    "message": "unknown field 'from'; allowed here: "
                    "baseline, initial_from, max_spans, summary, to",
                }
            ],
        ),
    ],
    ids=["with-range", "with-baseline", "baseline-unit", "max-spans-zero", "unknown-field"],
)
def test_since_checkpoint_schema_violations(client: FlaskClient, body, details, schema_files):
    """since_checkpoint replaces range and baseline; its own fields are checked like every other."""
    error = assert_error(_post_detect(client, body), 400, "invalid_request", schema_files)
    assert error["details"] == details
