"""Property-based fuzzing of the HTTP API from its own OpenAPI document, over real gunicorn and Elasticsearch.

schemathesis reads ``/openapi.json`` from the running service and, for every operation, sends the
documented examples, its coverage cases (boundary values and one-rule violations of each schema
keyword) and a bounded number of generated requests, both schema-valid and schema-invalid. Every
response must:

- not be a 5xx, except the documented 503/504, which then carry the error envelope (and 503 a
  ``Retry-After``);
- have a status code, content type and headers the document declares for that operation;
- validate against the documented schema: every 4xx against ``Error``, every 2xx against its
  response schema (schemathesis' ``response_schema_conformance``, checked again here with the
  service's own schema files);
- reject schema-invalid input with a 4xx (``negative_data_rejection``), and only answer 2xx to
  authenticated calls (``ignored_auth``).

A second pass sends the generated requests with no or wrong credentials: every answer but the
liveness probe's is the 401 envelope.

Bounded and repeatable: a fixed seed, deterministic generation, no example database, no deadline,
``MAX_EXAMPLES`` generated cases per operation, loopback only. The service under test reads one
small throw-away events index and writes to a throw-away results index, both under ``rcp-svc-``,
so real (non dry-run) detections stay cheap and touch nothing else.
"""

from __future__ import annotations

import collections
import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest_service import (
    ROOT,
    SERVICE_INDEX_PREFIX,
    RunningService,
    ServiceCredentials,
    running_service,
)
from elasticsearch import Elasticsearch, helpers
from es_data import SAMPLE_MAPPINGS
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from connector.service.openapi import build_openapi
from connector.service.validation import load_schemas

SCHEMA_DIR = ROOT / "connector/service/schemas"
#: Generated cases per operation (examples and coverage cases come on top).
MAX_EXAMPLES = 100
SEED = 20240304
#: The only 5xx the document promises (Elasticsearch unreachable / too slow); never 500.
DOCUMENTED_5XX = frozenset({503, 504})
_RUN = uuid.uuid4().hex[:12]
EVENTS_INDEX = f"{SERVICE_INDEX_PREFIX}fuzz-{_RUN}-events"
RESULTS_INDEX = f"{SERVICE_INDEX_PREFIX}fuzz-{_RUN}-results"


def _validator(name: str) -> Draft202012Validator:
    document = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return Draft202012Validator(document, format_checker=Draft202012Validator.FORMAT_CHECKER)


ERROR_SCHEMA = _validator("error")
#: The 2xx schema of each operation, straight from the service's schema files.
SUCCESS_SCHEMAS = {
    ("POST", "/api/v1/detect"): _validator("detect-response"),
    ("GET", "/api/v1/use-cases"): _validator("use-cases-response"),
    ("GET", "/healthz"): _validator("health-response"),
    ("GET", "/readyz"): _validator("readiness-response"),
}


def _schema_problems(validator: Draft202012Validator, instance: Any) -> list[str]:
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(instance)]


def _events(now: datetime) -> Iterator[dict[str, Any]]:
    """A parent with one common and one rare child in the last hour: detections find one outlier."""
    children = [("chrome.exe", 250), ("cmd.exe", 1)]
    number = 0
    for child, count in children:
        for _ in range(count):
            number += 1
            yield {
                "_index": EVENTS_INDEX,
                "_id": f"fuzz-{number}",
                "_source": {
                    "@timestamp": (now - timedelta(minutes=30, seconds=number)).isoformat(),
                    "tags": ["endpoint"],
                    "meta": {"command": {"name": "get_all_processes_enriched"}},
                    "host": {"name": f"WS-{number % 3}"},
                    "OsqueryFilter": {"name": child, "parentname": "explorer.exe", "cmdline": child},
                },
            }


@pytest.fixture(scope="module")
def fuzz_service(
    es_url: str,
    es_client: Elasticsearch,
    service_workdir: Path,
    service_credentials: ServiceCredentials,
) -> Iterator[RunningService]:
    """Real gunicorn that may read only this module's events index and writes to its own results index."""
    es_client.indices.create(
        index=EVENTS_INDEX,
        settings={"number_of_shards": 1, "number_of_replicas": 0},
        mappings=SAMPLE_MAPPINGS,
    )
    environment = {
        "CONNECTOR_ES_URL": es_url,
        "CONNECTOR_USE_CASES": str(service_workdir / "rare_child.ini"),
        "CONNECTOR_ALLOWED_INDICES": f"{EVENTS_INDEX}*",
        "CONNECTOR_RESULTS_INDEX": RESULTS_INDEX,
    }
    try:
        _, errors = helpers.bulk(es_client, _events(datetime.now(UTC)), refresh="wait_for")
        assert errors == []
        with running_service(service_workdir, environment, service_credentials) as service:
            yield service
    finally:
        es_client.options(ignore_status=404).indices.delete(index=f"{EVENTS_INDEX},{RESULTS_INDEX}")


def _config(*, security_parameters: bool) -> schemathesis.Config:
    """Bounded, repeatable generation; the stateful phase is off (this API has no resources to link)."""
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": 60,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": security_parameters,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


def _document() -> dict[str, Any]:
    # What GET /openapi.json serves (test_the_fuzzed_document_is_the_served_one pins it), built here
    # because pytest collects the cases before the service runs.
    return build_openapi(load_schemas().documents)


def only_documented_server_errors(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """No 500 ever; a 503/504 is the error envelope, and a 503 says when to retry."""
    status = response.status_code
    if status < 500:
        return None
    assert status in DOCUMENTED_5XX, f"undocumented server error {status}: {response.text[:500]}"
    assert not _schema_problems(ERROR_SCHEMA, response.json()), response.text[:500]
    if status == 503:
        assert int(response.headers["retry-after"][0]) > 0
    return True


def body_matches_the_service_schemas(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx body is the Error envelope, every 2xx body its operation's response schema."""
    status = response.status_code
    if status >= 400:
        problems = _schema_problems(ERROR_SCHEMA, response.json())
        assert not problems, (status, problems, response.text[:500])
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"][0]
        return True
    validator = SUCCESS_SCHEMAS.get((case.method.upper(), case.path))
    if validator is None or not 200 <= status < 300:
        return None
    problems = _schema_problems(validator, response.json())
    assert not problems, (status, problems)
    return True


def api_needs_credentials(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Without valid credentials every documented call but /healthz is the 401 envelope with a challenge."""
    if case.path == "/healthz" or response.status_code == 405:
        return None
    assert response.status_code == 401, (response.status_code, response.text[:500])
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"][0] == 'Bearer realm="connector", Basic realm="connector"'
    return True


CONFORMANCE_CHECKS = [
    not_a_server_error,
    only_documented_server_errors,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    body_matches_the_service_schemas,
]


# -- steering: schema-valid strings the service treats specially -----------------------------------

_UNITS = "yMwdhHms"


def _date_math() -> st.SearchStrategy[str]:
    """``now`` or an ISO anchor, then up to three +N<unit>, -N<unit> or /<unit> steps (N up to 9 digits)."""
    step = st.one_of(
        st.tuples(
            st.sampled_from("+-"), st.integers(0, 999_999_999).map(str) | st.just(""), st.sampled_from(_UNITS)
        ),
        st.tuples(st.just("/"), st.just(""), st.sampled_from(_UNITS)),
    ).map("".join)
    anchor = st.one_of(st.just("now"), _iso_dates().map(lambda text: text + "||"))
    return st.builds(lambda start, steps: start + "".join(steps), anchor, st.lists(step, max_size=3))


def _iso_dates() -> st.SearchStrategy[str]:
    """ISO-8601 dates and times from year 1 to 9999, with and without offsets and fractions."""
    moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))
    offsets = st.sampled_from(["", "Z", "+00:00", "+14:00", "-12:00"])
    return st.one_of(
        moments.map(lambda moment: moment.date().isoformat()),
        st.builds(lambda moment, offset: moment.isoformat() + offset, moments, offsets),
    )


def _near_misses() -> st.SearchStrategy[str]:
    """Strings that look like dates but are not: bad units, doubled signs, impossible calendar dates."""
    return st.sampled_from(
        [
            "now-1x",
            "now+-1d",
            "now--1d",
            "now/",
            "now-",
            "2024-13-01",
            "2024-02-30",
            "2024-03-04T25:00:00Z",
            "now||-1d",
            "||-1d",
            "now-1d/d/",
            "0000-01-01",
            "2024-03-04T00:00:00Z||",
            "NOW",
            " now",
        ]
    )


DATE_TEXTS = st.one_of(_date_math(), _iso_dates(), _near_misses()).filter(lambda text: 1 <= len(text) <= 64)
ALLOWED_INDEX_TEXTS = st.sampled_from([EVENTS_INDEX, f"{EVENTS_INDEX}*", f"{EVENTS_INDEX[:-3]}*s"])
FORBIDDEN_INDEX_TEXTS = st.sampled_from(
    [
        f"{SERVICE_INDEX_PREFIX}*",
        "*",
        "_all",
        ".security",
        f"{EVENTS_INDEX},x",
        f"-{EVENTS_INDEX}",
        f"x:{EVENTS_INDEX}",
        f"<{EVENTS_INDEX}-{{now/d}}>",
        EVENTS_INDEX.upper(),
        "%2A",
    ]
)
USE_CASE_TEXTS = st.sampled_from(["terms_rare_childname", "rare_childname", "nope"]) | st.sampled_from(
    ["terms_broken_query", "terms_unknown_field"]
)


def _replaceable(value: Any, max_length: int) -> bool:
    # Swapping a string that already satisfies its length bounds (or adding an optional one that is
    # absent) for another one that does keeps a valid body valid and an invalid one invalid: the
    # negative cases stay negative.
    return value is _ABSENT or (isinstance(value, str) and 1 <= len(value) <= max_length)


_ABSENT = object()
SENSIBLE_RANGES = st.tuples(
    st.sampled_from(["now-1h", "now-1d", "now-7d/d", "now-399d", "now-1h/h", "now-1M"]),
    st.sampled_from(["now", "now+1h", "now/d", "now+1d/d", "now/M"]),
) | st.sampled_from(
    # The edges of the supported years: valid ranges over no events, and one step beyond them.
    [
        ("1000-01-01", "1000-01-02"),
        ("0999-12-31", "1000-01-02"),
        ("9999-12-30", "9999-12-31T23:59:59.999Z"),
        ("9999-12-30", "9999-12-31||/d"),
    ]
)


@st.composite
def _steered(draw: st.DrawFn, body: Any) -> Any:
    """``body``, or a copy with its date, index and use-case strings swapped for ones that reach deeper."""
    # Hypothesis favours "simple" draws (0, False, the first branch): those mean "steer".
    if not isinstance(body, dict) or draw(st.integers(0, 3)) == 3:
        return body
    body = copy.deepcopy(body)
    time_range = body.get("range")
    if isinstance(time_range, dict) and all(
        isinstance(time_range.get(key), str) and _replaceable(time_range[key], 64) for key in ("from", "to")
    ):
        pair = draw(st.one_of(SENSIBLE_RANGES, SENSIBLE_RANGES, st.tuples(DATE_TEXTS, DATE_TEXTS)))
        time_range["from"], time_range["to"] = pair
    baseline = body.get("baseline")
    if (
        isinstance(baseline, dict)
        and isinstance(baseline.get("from"), str)
        and _replaceable(baseline["from"], 64)
    ):
        baseline["from"] = draw(st.sampled_from(["now-30d", "now-2d", "now"]) | DATE_TEXTS)
    _maybe_set(draw, body, "index", 255, ALLOWED_INDEX_TEXTS | FORBIDDEN_INDEX_TEXTS)
    _maybe_set(draw, body, "use_case", 200, USE_CASE_TEXTS)
    return body


def _maybe_set(
    draw: st.DrawFn, body: dict[str, Any], key: str, max_length: int, texts: st.SearchStrategy
) -> None:
    if _replaceable(body.get(key, _ABSENT), max_length) and not draw(st.booleans()):
        body[key] = draw(texts)


authenticated = schemathesis.openapi.from_dict(_document(), config=_config(security_parameters=False))
anonymous = schemathesis.openapi.from_dict(_document(), config=_config(security_parameters=True))


@authenticated.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Half of the detect bodies get real date expressions, allowed and forbidden indices, known use cases."""
    return _steered(body)


#: (method, path) -> statuses seen by the authenticated fuzz test, read by the last test of this module.
REACHED: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)


def test_the_fuzzed_document_is_the_served_one(fuzz_service: RunningService) -> None:
    """The cases below come from exactly the document the running service serves at /openapi.json."""
    result = fuzz_service.call("GET", "/openapi.json", headers=fuzz_service.bearer)
    assert result.status == 200
    assert result.json() == json.loads(json.dumps(_document()))


@authenticated.parametrize()
def test_every_operation_answers_as_documented_with_valid_credentials(
    case: Case, fuzz_service: RunningService
) -> None:
    """Valid bearer token: documented statuses, headers and bodies only, never an undocumented 5xx."""
    response = case.call_and_validate(
        base_url=fuzz_service.url, headers=fuzz_service.bearer, checks=CONFORMANCE_CHECKS
    )
    REACHED[(case.method.upper(), case.path)][response.status_code] += 1


@anonymous.parametrize()
def test_every_operation_answers_as_documented_without_credentials(
    case: Case, fuzz_service: RunningService
) -> None:
    """No or generated (wrong) credentials: always the 401 envelope, except the public liveness probe."""
    case.call_and_validate(base_url=fuzz_service.url, checks=[*CONFORMANCE_CHECKS, api_needs_credentials])


def test_the_fuzzing_reached_the_engine_and_every_refusal(fuzz_service: RunningService) -> None:
    """The generated detect calls got past validation: successes, and each kind of refusal, were seen.

    Reads what the authenticated fuzz test above recorded (pytest runs a module's tests in order).
    """
    reached = REACHED[("POST", "/api/v1/detect")]
    assert reached, "run the whole module: the authenticated fuzz test records what it reached"
    assert {200, 400, 403, 404, 415, 422} <= set(reached), dict(reached)
    assert set(reached) <= {200, 207, 400, 403, 404, 405, 413, 415, 422, 503, 504}, dict(reached)
