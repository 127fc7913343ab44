"""Bad input, end to end: real gunicorn on loopback, real Elasticsearch node, real sockets.

The unit tests (tests/unit/test_service_app.py) pin each refusal with Flask's test client; this
module proves they survive gunicorn: bodies over the limit with and without Content-Length
(chunked), nesting deep enough to exhaust the parser, numbers Python cannot hold, headers and
request lines over gunicorn's limits, wrong types, absurd ranges and date math, index names that try
to widen access. Every refusal is asserted by status, error ``code``, the JSON path it blames and
the words that say how to fix it, and the workers survive every one of them.

Use-case files the service must refuse to start with are run through both ``connector serve`` and
plain ``gunicorn -c gunicorn_conf.py``: non-zero exit, quickly, naming file, section and option.
"""

from __future__ import annotations

import gzip
import html
import http.client
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest_service import (
    APP_FACTORY,
    EXAMPLE_USE_CASES,
    GUNICORN_CONF,
    ROOT,
    SERVICE_INDEX_PREFIX,
    HttpResult,
    RunningService,
    ServiceCredentials,
    free_loopback_port,
    running_service,
)
from elasticsearch import Elasticsearch
from es_data import create_sample_index
from test_service_http import assert_error

DETECT = "/api/v1/detect"
MAX_BODY_BYTES = 65536  # the service default, CONNECTOR_MAX_BODY_BYTES
MAX_RANGE_DAYS = 400  # the service default, CONNECTOR_MAX_RANGE_DAYS
#: An index the service may read but that does not exist: a body that gets this far was accepted.
MISSING_INDEX = f"{SERVICE_INDEX_PREFIX}missing-{uuid.uuid4().hex}"
STARTUP_TIMEOUT_S = 30.0


def _post(service: RunningService, body: Any) -> HttpResult:
    return service.call("POST", DETECT, json_body=body, headers=service.bearer)


def _post_raw(service: RunningService, raw: bytes, content_type: str = "application/json") -> HttpResult:
    return service.call("POST", DETECT, data=raw, headers={**service.bearer, "Content-Type": content_type})


def _raw_exchange(service: RunningService, method: str, path: str, **request: Any) -> tuple[int, bytes]:
    """One request over a fresh connection with full control of headers and framing (e.g. chunked)."""
    host, port = service.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, **request)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _assert_still_serving(service: RunningService, log_offset: int) -> None:
    """Both workers still answer, and nothing since ``log_offset`` says a worker died or a 500 happened."""
    for _ in range(4):
        assert service.call("GET", "/healthz").status == 200
    since = service.log_text()[log_offset:]
    for symptom in ("Worker (pid:", "SIGSEGV", "Traceback", "internal_error", "Booting worker"):
        assert symptom not in since, since[-3000:]


def _log_offset(service: RunningService) -> int:
    return len(service.log_text())


def _problem(result: HttpResult, status: int, code: str, path: str) -> str:
    """The one detail's message, after checking the envelope, the code and the blamed path."""
    error = assert_error(result, status, code)
    assert [detail["path"] for detail in error["details"]] == [path], error
    return str(error["details"][0]["message"])


# -- body size -------------------------------------------------------------------------------------


def test_body_over_the_limit_with_content_length_is_413(gunicorn_service: RunningService):
    """One byte over CONNECTOR_MAX_BODY_BYTES (declared in Content-Length): 413 naming the limit."""
    body = json.dumps({"range": {"from": "now-1h", "to": "now"}}).encode()
    raw = body + b" " * (MAX_BODY_BYTES + 1 - len(body))
    error = assert_error(_post_raw(gunicorn_service, raw), 413, "request_too_large")
    assert error["message"] == (
        f"request body is larger than {MAX_BODY_BYTES} bytes (CONNECTOR_MAX_BODY_BYTES); send a smaller body"
    )


def _at_the_limit() -> bytes:
    """A valid body padded with spaces to exactly CONNECTOR_MAX_BODY_BYTES."""
    body = json.dumps({"range": {"from": "now-1h", "to": "now"}, "index": MISSING_INDEX, "dry_run": True})
    raw = body.encode() + b" " * (MAX_BODY_BYTES - len(body))
    assert len(raw) == MAX_BODY_BYTES
    return raw


def _assert_reached_elasticsearch(status: int, body: bytes) -> None:
    # The body was read whole, parsed and validated: the detection ran and the index does not exist.
    assert status == 422, body
    assert MISSING_INDEX in json.loads(body)["error"]["message"]


def test_body_exactly_at_the_limit_is_read(gunicorn_service: RunningService):
    """A body of exactly CONNECTOR_MAX_BODY_BYTES is parsed and validated, not refused."""
    result = _post_raw(gunicorn_service, _at_the_limit())
    _assert_reached_elasticsearch(result.status, result.body)


def test_chunked_body_exactly_at_the_limit_is_read(gunicorn_service: RunningService):
    """Chunked, without Content-Length: exactly CONNECTOR_MAX_BODY_BYTES is still accepted."""
    raw = _at_the_limit()
    chunks = [raw[start : start + 10_000] for start in range(0, len(raw), 10_000)]
    status, body = _raw_exchange(
        gunicorn_service,
        "POST",
        DETECT,
        body=iter(chunks),
        headers={**gunicorn_service.bearer, "Content-Type": "application/json"},
        encode_chunked=True,
    )
    _assert_reached_elasticsearch(status, body)


def test_chunked_body_over_the_limit_is_413(gunicorn_service: RunningService):
    """Without Content-Length (Transfer-Encoding: chunked) the limit still holds: 413, not a body cut at
    the limit and parsed as if it ended there (regression: it was a 400 "Unterminated string")."""
    opening = b'{"range": {"from": "now-1h", "to": "now"}, "use_case": "'
    payload = opening + b"x" * (MAX_BODY_BYTES + 1024 - len(opening)) + b'"}'
    # Sent in one go, so the service answering before it read everything cannot break the sending.
    status, body = _send_chunked(gunicorn_service, payload)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "request_too_large"


def _send_chunked(service: RunningService, payload: bytes) -> tuple[int, bytes]:
    """POST ``payload`` to detect as one chunked request written at once; the status and body."""
    host, port = service.url.removeprefix("http://").split(":")
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(piece), piece)
        for piece in (payload[start : start + 8192] for start in range(0, len(payload), 8192))
    )
    head = (
        f"POST {DETECT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {service.token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(head + chunks + b"0\r\n\r\n")
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, response.read()


def test_small_chunked_body_is_read(gunicorn_service: RunningService):
    """A chunked body under the limit is reassembled and validated like any other (here: 400 at its path)."""
    chunks = [b'{"range": {"from": "now-1h",', b' "to": "now"}, "surprise": 1}']
    status, body = _raw_exchange(
        gunicorn_service,
        "POST",
        DETECT,
        body=iter(chunks),
        headers={**gunicorn_service.bearer, "Content-Type": "application/json"},
        encode_chunked=True,
    )
    assert status == 400, body
    assert [detail["path"] for detail in json.loads(body)["error"]["details"]] == ["$.surprise"]


# -- malformed JSON, numbers, nesting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"[" * 65_000, "request body is nested too deeply"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "request body is nested too deeply"),
        (b'{"max_outliers": ' + b"9" * 20_000 + b"}", "an integer has 20000 digits; at most 100 are read"),
        (b'{"max_outliers": 1e999}', "the number '1e999' is too large for a double"),
        (b'{"range": {"from": "now-1h", "to": "now"}} trailing', "Extra data at line 1, column 44"),
        (b"{'range': {}}", "Expecting property name enclosed in double quotes at line 1, column 2"),
        (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
        (b'{"use_case": "\xc3\x28"}', "request body is not UTF-8 text (invalid byte at offset 14)"),
    ],
    ids=[
        "65k-open-brackets",
        "10k-nested-objects",
        "20k-digit-integer",
        "float-overflow",
        "trailing-garbage",
        "single-quotes",
        "utf8-bom",
        "invalid-utf8",
    ],
)
def test_malformed_json_is_400_and_the_workers_survive(gunicorn_service: RunningService, raw, fragment):
    """Bodies that exhaust or trick the parser are 400 malformed_json at $, never a 500 or a dead worker."""
    offset = _log_offset(gunicorn_service)
    message = _problem(_post_raw(gunicorn_service, raw), 400, "malformed_json", "$")
    assert fragment in message
    _assert_still_serving(gunicorn_service, offset)


@pytest.fixture(scope="module")
def roomy_service(
    es_url: str, service_workdir: Path, service_credentials: ServiceCredentials
) -> Iterator[RunningService]:
    """Real gunicorn with a 2 MiB body limit, so nesting far deeper than 64 KiB allows reaches the parser."""
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(service_workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{SERVICE_INDEX_PREFIX}*",
        "CONNECTOR_MAX_BODY_BYTES": str(2 * 2**20),
    }
    with running_service(service_workdir, environment, service_credentials, workers=1) as service:
        yield service


@pytest.mark.parametrize("depth", [100_000, 1_000_000], ids=["100k", "1M"])
def test_100k_and_1m_levels_of_brackets_are_400(roomy_service: RunningService, depth: int):
    """100,000 and 1,000,000 levels of '[' (under a raised body limit) are refused as too deep."""
    offset = _log_offset(roomy_service)
    message = _problem(_post_raw(roomy_service, b"[" * depth + b"]" * depth), 400, "malformed_json", "$")
    assert message == "request body is nested too deeply"
    _assert_still_serving(roomy_service, offset)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ],
    ids=["text", "form", "multipart", "json-lookalike"],
)
def test_wrong_content_type_is_415_naming_the_header(gunicorn_service: RunningService, content_type: str):
    """A JSON body under another media type is 415: the message says which header to send."""
    raw = json.dumps({"range": {"from": "now-1h", "to": "now"}}).encode()
    error = assert_error(_post_raw(gunicorn_service, raw, content_type), 415, "unsupported_media_type")
    assert "send the body as JSON with 'Content-Type: application/json'" in error["message"]


# -- gunicorn's own limits ---------------------------------------------------------------------------


LONG_PATH = "/healthz?" + "q" * 5000


@dataclass(frozen=True)
class RawAnswer:
    """An HTTP answer read off the socket as the server wrote it."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def _exchange_bytes(service: RunningService, request: bytes) -> RawAnswer:
    """Write ``request`` as is on a fresh connection and read the answer until the server closes it."""
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return RawAnswer(response.status, headers, response.read())


def _request_bytes(service: RunningService, method: str, path: str, headers: dict[str, str]) -> bytes:
    host = service.url.removeprefix("http://")
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _assert_answered_by_gunicorn(
    service: RunningService, answer: RawAnswer, log_offset: int, *, status: int, reason: str, problem: str
) -> None:
    """gunicorn's own short error page, not the JSON envelope, and the app never saw the request.

    The app puts ``X-Request-Id`` on every answer and logs every refusal under ``connector.*``; gunicorn's
    page (text/html) has neither, and gunicorn logs one warning naming the problem.
    """
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "text/html", answer.headers
    assert "x-request-id" not in answer.headers, answer.headers
    page = html.unescape(answer.body.decode("latin-1"))
    assert page.startswith("<html>") and f"<title>{reason}</title>" in page, page
    assert problem in page, page
    with pytest.raises(ValueError):
        json.loads(answer.body)  # not the envelope, nor any JSON
    since = [json.loads(line) for line in service.log_text()[log_offset:].splitlines()]
    assert [line["message"] for line in since if line["log"]["logger"].startswith("connector.")] == []
    warnings = [line["message"] for line in since if line["log"]["logger"] == "gunicorn.error"]
    assert f"Invalid request from ip=127.0.0.1: {problem}" in warnings, warnings


@pytest.mark.parametrize(
    ("path", "headers", "status", "reason", "problem"),
    [
        (
            "/healthz",
            {"X-Padding": "a" * 9000},
            431,
            "Request Header Fields Too Large",
            "limit request headers fields size",
        ),
        (
            LONG_PATH,
            {},
            400,
            "Bad Request",
            f"Request Line is too large ({len(f'GET {LONG_PATH} HTTP/1.1')} > 4094)",
        ),
        (
            "/healthz",
            {f"X-Field-{number}": "1" for number in range(60)},
            431,
            "Request Header Fields Too Large",
            "limit request headers fields",
        ),
    ],
    ids=["header-over-8190-bytes", "request-line-over-4094-bytes", "over-50-header-fields"],
)
def test_requests_over_gunicorn_limits_are_refused_before_the_app(
    gunicorn_service: RunningService,
    path: str,
    headers: dict[str, str],
    status: int,
    reason: str,
    problem: str,
):
    """gunicorn refuses oversized headers and request lines itself (its short error page, not the envelope:
    the app never sees them) and keeps serving."""
    offset = _log_offset(gunicorn_service)
    answer = _exchange_bytes(gunicorn_service, _request_bytes(gunicorn_service, "GET", path, headers))
    _assert_answered_by_gunicorn(
        gunicorn_service, answer, offset, status=status, reason=reason, problem=problem
    )
    _assert_still_serving(gunicorn_service, offset)


def test_content_length_with_chunked_encoding_is_refused(gunicorn_service: RunningService):
    """A request smuggling attempt (Content-Length and Transfer-Encoding together) never reaches the app:
    gunicorn answers 400 with its own page, and no line of the app's is logged for it."""
    offset = _log_offset(gunicorn_service)
    head = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {gunicorn_service.token}",
        "Content-Length": "4",
        "Transfer-Encoding": "chunked",
    }
    request = _request_bytes(gunicorn_service, "POST", DETECT, head) + b"0\r\n\r\n"
    answer = _exchange_bytes(gunicorn_service, request)
    _assert_answered_by_gunicorn(
        gunicorn_service,
        answer,
        offset,
        status=400,
        reason="Bad Request",
        problem="Invalid HTTP Header: 'CONTENT-LENGTH'",
    )
    _assert_still_serving(gunicorn_service, offset)


def test_an_unsupported_transfer_coding_is_501_before_the_app(gunicorn_service: RunningService):
    """``Transfer-Encoding: br`` (a coding gunicorn does not decode) is 501 from gunicorn, never the app."""
    offset = _log_offset(gunicorn_service)
    head = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {gunicorn_service.token}",
        "Transfer-Encoding": "br",
    }
    answer = _exchange_bytes(gunicorn_service, _request_bytes(gunicorn_service, "POST", DETECT, head))
    _assert_answered_by_gunicorn(
        gunicorn_service,
        answer,
        offset,
        status=501,
        reason="Bad Request",
        problem="Unsupported transfer coding: 'br'",
    )
    _assert_still_serving(gunicorn_service, offset)


def test_long_request_id_under_the_header_limit_is_replaced(gunicorn_service: RunningService):
    """An 8000-character X-Request-Id passes gunicorn but is not echoed: the service mints its own."""
    result = gunicorn_service.call("GET", "/healthz", headers={"X-Request-Id": "r" * 8000})
    assert result.status == 200
    assert len(result.headers["X-Request-Id"]) == 36


# -- schema violations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        (
            {"range": {"from": "now-1h", "to": "now"}, "dry-run": True},
            '$["dry-run"]',
            "unknown field 'dry-run'",
        ),
        ({"range": {"from": "now-1h", "to": "now", "tz": "UTC"}}, "$.range.tz", "allowed here: from, to"),
        (
            {"range": {"from": "now-1h", "to": "now"}, "max_outliers": "10"},
            "$.max_outliers",
            "not of type 'integer'",
        ),
        (
            {"range": {"from": "now-1h", "to": "now"}, "dry_run": "false"},
            "$.dry_run",
            "not of type 'boolean'",
        ),
        ({"range": {"from": 1709510400, "to": "now"}}, "$.range.from", "not of type 'string'"),
        ({"range": ["now-1h", "now"]}, "$.range", "not of type 'object'"),
        ({"range": {"from": "now-1h", "to": "now"}, "index": ["a", "b"]}, "$.index", "not of type 'string'"),
        ({"range": {"from": "now-1h", "to": "now"}, "use_case": [[[[[[1]]]]]]}, "$.use_case", "not of type"),
        ({"range": {"from": "now-1h", "to": "n" * 65}}, "$.range.to", "is too long"),
    ],
    ids=[
        "unknown-field",
        "unknown-nested-field",
        "integer-as-string",
        "boolean-as-string",
        "epoch-number-range",
        "range-as-array",
        "index-list",
        "nested-array-use-case",
        "bound-too-long",
    ],
)
def test_wrong_types_and_unknown_fields_are_400_at_their_path(gunicorn_service, body, path, fragment):
    """Each violation is 400 invalid_request at the JSON path of the offending value, saying what is wrong."""
    assert fragment in _problem(_post(gunicorn_service, body), 400, "invalid_request", path)


# -- ranges and date math -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_range", "path", "fragments"),
    [
        (
            {"from": "now-1x", "to": "now"},
            "$.range.from",
            ["cannot read date math at '-1x'", "write +N<unit>"],
        ),
        (
            {"from": "now+-1d", "to": "now"},
            "$.range.from",
            ["cannot read date math at '+-1d'", "units y (years)"],
        ),
        ({"from": "2024-13-01", "to": "now"}, "$.range.from", ["month must be in 1..12", "use ISO-8601"]),
        ({"from": "now-1d", "to": "now/"}, "$.range.to", ["cannot read date math at '/'"]),
        ({"from": "yesterday", "to": "now"}, "$.range.from", ["is neither ISO-8601", "date math (now-7d"]),
        ({"from": "0999-12-31", "to": "1000-01-02"}, "$.range.from", ["years 1000 to 9999"]),
        ({"from": "now", "to": "now+999999999y"}, "$.range.to", ["outside the supported dates"]),
        (
            {"from": "2024-03-07T00:00:00Z", "to": "2024-03-04T00:00:00Z"},
            "$.range.to",
            ["must be after from", "resolves to 2024-03-04T00:00:00.000Z"],
        ),
        ({"from": "now", "to": "now"}, "$.range.to", ["must be after from"]),
        (
            {"from": "2015-01-01", "to": "2024-01-01"},
            "$.range",
            ["the range spans 3287.0 days", f"the limit is {MAX_RANGE_DAYS} days (CONNECTOR_MAX_RANGE_DAYS)"],
        ),
    ],
    ids=[
        "unknown-unit",
        "double-sign",
        "month-13",
        "rounding-without-unit",
        "word",
        "three-digit-year",
        "far-future",
        "to-before-from",
        "empty-range",
        "nine-years",
    ],
)
def test_bad_ranges_are_400_naming_the_bound_and_the_fix(gunicorn_service, time_range, path, fragments):
    """The service resolves every bound itself: a bad one is 400 invalid_range at its path, saying why."""
    message = _problem(_post(gunicorn_service, {"range": time_range}), 400, "invalid_range", path)
    for fragment in fragments:
        assert fragment in message, message


def test_both_bad_bounds_are_reported_at_once(gunicorn_service: RunningService):
    """Two unreadable bounds: one request, two details, in document order."""
    error = assert_error(
        _post(gunicorn_service, {"range": {"from": "now-1x", "to": "later"}}), 400, "invalid_range"
    )
    assert [detail["path"] for detail in error["details"]] == ["$.range.from", "$.range.to"]


@pytest.mark.parametrize(
    ("baseline", "fragment"),
    [
        (
            "now-5y",
            f"baseline and range together span more than {MAX_RANGE_DAYS} days (CONNECTOR_MAX_RANGE_DAYS)",
        ),
        ("now", "must be before the range"),
        ("now-1q", "cannot read date math at '-1q'"),
    ],
    ids=["years-long", "after-start", "bad-math"],
)
def test_bad_baselines_are_400_at_their_path(gunicorn_service: RunningService, baseline: str, fragment: str):
    """A baseline is checked like a bound, and counts towards CONNECTOR_MAX_RANGE_DAYS."""
    body = {"range": {"from": "now-1d", "to": "now"}, "baseline": {"from": baseline}}
    assert fragment in _problem(_post(gunicorn_service, body), 400, "invalid_range", "$.baseline.from")


# -- index names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index",
    [
        "*",
        f"{SERVICE_INDEX_PREFIX}a,.security",
        f"{SERVICE_INDEX_PREFIX}*,-{SERVICE_INDEX_PREFIX}b",
        f"-{SERVICE_INDEX_PREFIX}a",
        f"remote:{SERVICE_INDEX_PREFIX}a",
        f"<{SERVICE_INDEX_PREFIX}{{now/d}}>",
        f"%3C{SERVICE_INDEX_PREFIX}%7Bnow%2Fd%7D%3E",
        f"{SERVICE_INDEX_PREFIX}%2A",
        f"{SERVICE_INDEX_PREFIX}a%2C.security",
        f"{SERVICE_INDEX_PREFIX.upper()}A",
        "_all",
        ".security",
        f"{SERVICE_INDEX_PREFIX}?",
        f"{SERVICE_INDEX_PREFIX}[ab]",
        f" {SERVICE_INDEX_PREFIX}a",
        f"{SERVICE_INDEX_PREFIX}a\u0000",
        f"{SERVICE_INDEX_PREFIX}\u0430",
        "rcp-svc*",
    ],
    ids=[
        "star",
        "comma-list",
        "star-minus-exclusion",
        "leading-minus",
        "remote-cluster",
        "date-math-name",
        "url-encoded-date-math",
        "url-encoded-star",
        "url-encoded-comma",
        "uppercase",
        "all",
        "security-index",
        "question-mark",
        "brackets",
        "leading-space",
        "nul-byte",
        "cyrillic-lookalike",
        "wider-than-allowed",
    ],
)
def test_index_names_that_could_widen_access_are_403(gunicorn_service: RunningService, index: str):
    """Anything not provably inside the allowed patterns is 403 at $.index, naming them and the fix."""
    body = {"range": {"from": "now-1h", "to": "now"}, "index": index, "dry_run": True}
    message = _problem(_post(gunicorn_service, body), 403, "index_not_allowed", "$.index")
    assert f"is not covered by the allowed patterns ({SERVICE_INDEX_PREFIX}*)" in message
    assert "name one index or pattern inside them, without ','" in message


# -- aliases and data streams: the allowed patterns apply to concrete indices -------------------------

#: Outside the allowed patterns (rcp-svc-*): what an alias inside them must not reveal.
SECRET_INDEX = f"rcp-secret-{uuid.uuid4().hex[:12]}"
LEAKY_ALIAS = f"{SERVICE_INDEX_PREFIX}alias-{uuid.uuid4().hex[:12]}"
SAMPLE_RANGE = {"from": "2024-03-04T00:00:00Z", "to": "2024-03-07T00:00:00Z"}


@pytest.fixture
def alias_to_secret(es_client: Elasticsearch) -> Iterator[str]:
    """``SECRET_INDEX`` holds the sample; ``LEAKY_ALIAS`` (inside the allowed patterns) points at it."""
    create_sample_index(es_client, SECRET_INDEX, shards=1)
    try:
        es_client.indices.put_alias(index=SECRET_INDEX, name=LEAKY_ALIAS)
        yield LEAKY_ALIAS
    finally:
        es_client.options(ignore_status=404).indices.delete(index=SECRET_INDEX)


def _assert_secret_untouched(es_client: Elasticsearch, results_index: str) -> None:
    """Nothing of the secret index was copied into the results index or annotated in place."""
    es_client.indices.refresh(index=SECRET_INDEX)
    annotated = es_client.count(index=SECRET_INDEX, query={"exists": {"field": "outliers"}})["count"]
    assert annotated == 0
    if es_client.indices.exists(index=results_index):
        es_client.indices.refresh(index=results_index)
        query = {"term": {"outliers.source_index": SECRET_INDEX}}
        copied = es_client.count(index=results_index, query=query)["count"]
        assert copied == 0


@pytest.mark.parametrize("annotate", ["results_index", "in_place"])
@pytest.mark.parametrize("requested", ["alias", "allowed-pattern"])
def test_an_alias_inside_the_patterns_to_an_index_outside_is_403_naming_the_index(
    gunicorn_service: RunningService,
    es_client: Elasticsearch,
    service_results_index: str,
    alias_to_secret: str,
    requested: str,
    annotate: str,
):
    """The alias name matches rcp-svc-*, the index behind it does not: refused before anything is read,
    whether the alias is named or matched by the allowed pattern itself; nothing is copied or annotated
    (the node has no security, so the service's credentials could write anywhere)."""
    index = alias_to_secret if requested == "alias" else f"{SERVICE_INDEX_PREFIX}*"
    body = {"range": SAMPLE_RANGE, "index": index, "annotate": annotate}
    message = _problem(_post(gunicorn_service, body), 403, "index_not_allowed", "$.index")
    assert message == (
        f"index {index!r} reaches the concrete index {SECRET_INDEX!r} through alias {LEAKY_ALIAS!r}, which "
        f"the allowed patterns ({SERVICE_INDEX_PREFIX}*) do not cover: they apply to concrete indices, not "
        "to alias names; ask for indices inside them, or move the alias"
    )
    _assert_secret_untouched(es_client, service_results_index)


# -- use-case files the service refuses to start with ---------------------------------------------------

_SECTION = "terms_rare_childname"
BROKEN_USE_CASE_FILES = {
    "broken-regex": (
        lambda text: text + "broken_parent=^(unclosed.*$\n",
        "[whitelist_regexps] broken_parent: invalid regular expression '^(unclosed.*$'",
    ),
    "unknown-trigger_method": (
        lambda text: text.replace("trigger_method=pct_of_avg_value", "trigger_method=median"),
        f"[{_SECTION}] trigger_method: unknown value 'median'; allowed: percentile,",
    ),
    "unknown-target_count_method": (
        lambda text: text.replace("target_count_method=within_aggregator", "target_count_method=per_host"),
        f"[{_SECTION}] target_count_method: unknown value 'per_host'; allowed: within_aggregator,",
    ),
    "missing-aggregator": (
        lambda text: text.replace("aggregator=OsqueryFilter.parentname\n", ""),
        f"[{_SECTION}] aggregator: required option is missing; add a line 'aggregator=...'",
    ),
    "non-numeric-sensitivity": (
        lambda text: text.replace("trigger_sensitivity=1", "trigger_sensitivity=low"),
        f"[{_SECTION}] trigger_sensitivity: 'low' is not a number; write e.g. 1 or 2.5",
    ),
}


def _broken_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A copy of the example use-case file with one mistake, and the message part that must name it."""
    edit, expected = BROKEN_USE_CASE_FILES[case]
    path = tmp_path / f"{case}.ini"
    text = edit(EXAMPLE_USE_CASES.read_text())
    assert text != EXAMPLE_USE_CASES.read_text()
    path.write_text(text)
    return path, f"{path} {expected}"


def _start(command: list[str], use_cases: Path, credentials: ServiceCredentials) -> tuple[int, str]:
    """Run a service command to its exit: exit code and combined output. A service that keeps running
    (serving, or restarting workers) fails the test at STARTUP_TIMEOUT_S."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("CONNECTOR_")}
    environment.update(
        {
            "CONNECTOR_ES_URL": "http://127.0.0.1:9",
            "CONNECTOR_USE_CASES": str(use_cases),
            "CONNECTOR_BIND": f"127.0.0.1:{free_loopback_port()}",
            "CONNECTOR_WORKERS": "2",
            **credentials.environment(),
        }
    )
    completed = subprocess.run(
        command,
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=False,
    )
    return completed.returncode, completed.stdout + completed.stderr


@pytest.mark.parametrize("case", sorted(BROKEN_USE_CASE_FILES))
def test_connector_serve_refuses_a_broken_use_case_file_in_one_line(
    tmp_path: Path, service_credentials: ServiceCredentials, case: str
):
    """`connector serve` checks the files before starting gunicorn: exit 2, one line naming file,
    section and option and what is allowed, no traceback, no gunicorn started."""
    path, expected = _broken_file(tmp_path, case)
    command = [sys.executable, "-m", "connector", "serve", "--workers", "2"]
    code, output = _start(command, path, service_credentials)
    assert code == 2, output
    assert output.splitlines() == [output.strip()], output
    assert output.startswith(f"error: {expected}"), output
    assert "Traceback" not in output and "gunicorn" not in output


@pytest.mark.parametrize("case", sorted(BROKEN_USE_CASE_FILES))
def test_plain_gunicorn_refuses_a_broken_use_case_file(
    tmp_path: Path, service_credentials: ServiceCredentials, case: str
):
    """`gunicorn -c gunicorn_conf.py 'connector.service:create_app()'` checks the files in the master
    (on_starting) before forking workers: exit 2, one error line naming file, section and option, and
    no worker traceback."""
    path, expected = _broken_file(tmp_path, case)
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), APP_FACTORY]
    code, output = _start(command, path, service_credentials)
    assert code == 2, output
    assert "Traceback" not in output and "Booting worker" not in output, output
    errors = [json.loads(line) for line in output.splitlines() if '"log.level": "error"' in line]
    assert len(errors) == 1, output
    assert errors[0]["message"].startswith(f"error: {expected}"), output


# -- routing, transfer codings: nothing but /healthz answers without credentials ------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/static/app.js", 404, "not_found"),
        ("GET", "/static/", 404, "not_found"),
        ("GET", DETECT, 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("POST", "/api/v1//detect", 404, "not_found"),
        ("POST", "/api//v1/detect", 404, "not_found"),
        ("GET", "/api/v1/use-cases/", 404, "not_found"),
    ],
)
def test_unknown_paths_and_methods_need_credentials_and_never_redirect(
    gunicorn_service: RunningService, method: str, path: str, status: int, code: str
):
    """Without credentials 401; with them the JSON 404/405. No 3xx (whose Location would be built from the
    caller's Host header) and no static files."""
    service = gunicorn_service
    hostile = {"Host": "attacker.example", "Content-Type": "application/json"}
    for headers, expected, expected_code in ((hostile, 401, "unauthorized"), (service.bearer, status, code)):
        result = service.call(method, path, data=b"{}", headers={**hostile, **headers})
        assert_error(result, expected, expected_code)
        assert "Location" not in result.headers
    assert service.call("GET", "/healthz").status == 200


def test_a_compressed_transfer_coding_is_501_naming_it(gunicorn_service: RunningService):
    """'Transfer-Encoding: gzip, chunked' would reach the app still compressed: refused, naming the fix."""
    payload = gzip.compress(json.dumps({"range": {"from": "now-1h", "to": "now"}}).encode())
    host, port = gunicorn_service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST {DETECT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {gunicorn_service.token}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                f"{len(payload):x}\r\n"
            ).encode()
            + payload
            + b"\r\n0\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501 "), answer[:300]
    error = json.loads(body)["error"]
    assert error["code"] == "unsupported_transfer_coding"
    assert error["message"] == (
        "transfer coding 'gzip' is not supported; send the body uncompressed, with Content-Length or "
        "'Transfer-Encoding: chunked' alone"
    )
