"""HTTP endpoints: the API (``/api/v1``), readiness and the OpenAPI document need credentials; only the
liveness probe ``/healthz`` does not (it says nothing but "the process serves requests")."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from connector.annotate import AnnotateMode
from connector.engine import detect_in_elasticsearch
from connector.service.access import choose_index
from connector.service.errors import MalformedJsonError, UnsupportedMediaTypeError
from connector.service.readiness import ElasticsearchCheck, check_elasticsearch
from connector.service.state import ServiceState
from connector.sources.elasticsearch import TimeBudget
from connector.timerange import isoformat_z, resolve_baseline, resolve_range

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api/v1")
#: Authenticated endpoints outside /api/v1: readiness and the API description.
service = Blueprint("service", __name__)
#: The liveness probe, the one endpoint without authentication (container and load-balancer checks).
public = Blueprint("public", __name__)


def service_state() -> ServiceState:
    state = current_app.extensions["connector"]
    assert isinstance(state, ServiceState)
    return state


@api.before_request
@service.before_request
def authenticate() -> None:
    service_state().authenticator.check(request.headers.get("Authorization"))


@api.post("/detect")
def detect() -> Response:
    """Validate the request, resolve use case, index and range, run the engine, return its report.

    The answer is 207 (not 200) when some outliers could not be written: the detection is complete,
    its write-back is not (``annotation.outcome`` is ``partial`` or ``failed``, ``annotation.errors`` says
    why).
    """
    state = service_state()
    settings = state.settings
    # The deadline counts from the request's arrival: it bounds what the caller waits for.
    budget = TimeBudget(settings.es_timeout_seconds, settings.detect_timeout_seconds)
    body = read_json_body()
    state.schemas.validate("detect-request", body)

    now = datetime.now(UTC)
    time_range = resolve_range(
        body["range"]["from"], body["range"]["to"], now=now, max_days=settings.max_range_days
    )
    baseline_start = None
    if "baseline" in body:
        baseline_start = resolve_baseline(
            body["baseline"]["from"], time_range=time_range, now=now, max_days=settings.max_range_days
        )
    use_case = state.catalog.select(body.get("use_case"))
    index = choose_index(body.get("index"), use_case, settings.allowed_indices)

    log.info(
        "detect %s over %s from %s to %s (baseline %s)",
        use_case.section,
        index,
        isoformat_z(time_range.start),
        isoformat_z(time_range.end),
        isoformat_z(baseline_start) if baseline_start else "none",
    )
    result = detect_in_elasticsearch(
        state.es_client,
        use_case,
        index=index,
        time_range=time_range,
        baseline_start=baseline_start,
        annotate=AnnotateMode(body.get("annotate", "results_index")),
        dry_run=bool(body.get("dry_run", False)),
        results_index=settings.results_index,
        max_outliers=int(body.get("max_outliers", 1000)),
        budget=budget,
    )
    response_body = result.to_response()
    response_body["request_id"] = g.request_id
    response = jsonify(response_body)
    if result.annotation.failed:
        response.status_code = HTTPStatus.MULTI_STATUS
    return response


@api.get("/use-cases")
def list_use_cases() -> Response:
    catalog = service_state().catalog
    use_cases = [
        {
            "name": use_case.section,
            "model_name": use_case.model_name,
            "default": position == 0,
            "aggregator": list(use_case.aggregator),
            "target": list(use_case.target),
            "target_count_method": use_case.target_count_method.value,
            "trigger_method": use_case.trigger_method.value,
            "trigger_on": use_case.trigger_on.value,
            "trigger_sensitivity": use_case.trigger_sensitivity,
            "es_index": use_case.es_index,
        }
        for position, use_case in enumerate(catalog.use_cases)
    ]
    return jsonify({"use_cases": use_cases})


@public.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@service.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when Elasticsearch answers our credentials and use cases are loaded; reveals nothing else."""
    state = service_state()
    elasticsearch = check_elasticsearch(state.es_client)
    use_cases = len(state.catalog.use_cases)
    ready = elasticsearch is ElasticsearchCheck.OK and use_cases > 0
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {"elasticsearch": elasticsearch.value, "use_cases": use_cases},
    }
    return jsonify(body), 200 if ready else 503


@service.get("/openapi.json")
def openapi() -> Response:
    return jsonify(service_state().openapi)


class _JsonProblem(ValueError):
    """Valid JSON syntax that we still refuse (NaN/Infinity, out-of-range numbers, duplicate keys)."""


#: Longer integers than this are refused before Python converts them (it refuses above 4300 digits
#: with a ValueError that is not a JSON error, and converting is quadratic in the digits).
MAX_INTEGER_DIGITS = 100


def _refuse_constant(name: str) -> Any:
    raise _JsonProblem(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise _JsonProblem(f"an integer has {digits} digits; at most {MAX_INTEGER_DIGITS} are read")
    return int(text)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _JsonProblem(f"the number {text[:40]!r} is too large for a double")
    return number


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonProblem(f"duplicate key {key!r} in an object")
        result[key] = value
    return result


def read_json_body() -> Any:
    """The request body parsed as strict JSON.

    :raises UnsupportedMediaTypeError: (415) unless ``Content-Type`` is ``application/json``.
    :raises MalformedJsonError: (400) naming line and column of the syntax error.
    :raises werkzeug.exceptions.RequestEntityTooLarge: (413) above ``MAX_CONTENT_LENGTH``.
    """
    if request.mimetype != "application/json":
        declared = (request.mimetype or "none")[:100]
        raise UnsupportedMediaTypeError(
            f"send the body as JSON with 'Content-Type: application/json' (got {declared!r})"
        )
    raw = request.get_data(cache=False)
    _refuse_cut_stream(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed(f"request body is not UTF-8 text (invalid byte at offset {error.start})") from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            object_pairs_hook=_refuse_duplicates,
        )
    except json.JSONDecodeError as error:
        raise _malformed(
            f"request body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except _JsonProblem as error:
        raise _malformed(f"request body is not accepted: {error}") from None
    except RecursionError:
        raise _malformed("request body is nested too deeply") from None


def _refuse_cut_stream(raw: bytes) -> None:
    """413 for a body without Content-Length (chunked) that is longer than MAX_CONTENT_LENGTH.

    Werkzeug stops reading such a stream at the limit and returns what it has, as if the body ended
    there; one more byte from the server's input tells a body of exactly the limit from a longer one.
    """
    limit = request.max_content_length
    if limit is None or request.content_length is not None or len(raw) < limit:
        return
    if request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def _malformed(message: str) -> MalformedJsonError:
    return MalformedJsonError(message, details=[{"path": "$", "message": message}])
