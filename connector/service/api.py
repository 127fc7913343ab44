"""HTTP endpoints: the API (``/api/v1``), readiness and the OpenAPI document need credentials; only the
liveness probe ``/healthz`` does not (it says nothing but "the process serves requests"). The check is
the app's (:mod:`connector.service.app`), so unknown paths and methods need credentials too."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from connector.config import AnyUseCase, RareChildUseCase
from connector.engine import detect_in_elasticsearch
from connector.progress.catch_up import catch_up
from connector.progress.checkpoints import CheckpointStore
from connector.progress.request import resolve_catch_up
from connector.progress.summary import SummaryStore
from connector.results import AnnotateMode
from connector.service.access import choose_index
from connector.service.body import read_json_body
from connector.service.metrics import CONTENT_TYPE, render_checkpoint_metrics
from connector.service.readiness import ElasticsearchCheck, check_elasticsearch
from connector.service.state import ServiceState
from connector.settings import WORKER_TIMEOUT_MARGIN_SECONDS
from connector.sources.elasticsearch import TimeBudget
from connector.timerange import TimeRange, isoformat_z, resolve_baseline, resolve_range

log = logging.getLogger(__name__)

api = Blueprint("api", __name__, url_prefix="/api/v1")
#: Authenticated endpoints outside /api/v1: readiness and the API description.
service = Blueprint("service", __name__)
#: The liveness probe, the one endpoint without authentication (container and load-balancer checks).
public = Blueprint("public", __name__)
#: Endpoints answered without credentials.
PUBLIC_ENDPOINTS = frozenset({"public.healthz"})


def service_state() -> ServiceState:
    state = current_app.extensions["connector"]
    assert isinstance(state, ServiceState)
    return state


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
    if "since_checkpoint" in body:
        return _detect_since_checkpoint(state, body, budget)

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
        allowed_indices=settings.allowed_indices,
        composite_page_size=settings.composite_page_size,
    )
    response_body = result.to_response()
    response_body["request_id"] = g.request_id
    response = jsonify(response_body)
    if result.annotation.failed:
        response.status_code = HTTPStatus.MULTI_STATUS
    return response


def _detect_since_checkpoint(state: ServiceState, body: dict[str, Any], budget: TimeBudget) -> Response:
    """Every whole hour since the stored checkpoint (docs/scheduling.md, "Checkpoints")."""
    settings = state.settings
    use_case = state.catalog.select(body.get("use_case"))
    index = choose_index(body.get("index"), use_case, settings.allowed_indices)
    request = resolve_catch_up(
        body["since_checkpoint"],
        use_case=use_case.section,
        index=index,
        now=datetime.now(UTC),
        max_spans=settings.catch_up_max_spans,
        annotate=AnnotateMode(body.get("annotate", "results_index")),
        dry_run=bool(body.get("dry_run", False)),
        results_index=settings.results_index,
        max_outliers=int(body.get("max_outliers", 1000)),
    )

    def detect_span(span: TimeRange, baseline_start: datetime | None) -> Any:
        log.info("detect %s over %s: span %s", use_case.section, index, isoformat_z(span.start))
        return detect_in_elasticsearch(
            state.es_client,
            use_case,
            index=index,
            time_range=span,
            baseline_start=baseline_start,
            annotate=request.annotate,
            dry_run=request.dry_run,
            results_index=settings.results_index,
            max_outliers=request.max_outliers,
            budget=budget,
            allowed_indices=settings.allowed_indices,
            composite_page_size=settings.composite_page_size,
            ingest_time_field=use_case.ingest_time_field,
            summary=summary,
        )

    summary = (
        SummaryStore(state.es_client, settings.summary_index, budget=budget) if request.summary else None
    )
    store = CheckpointStore(state.es_client, settings.checkpoint_index, budget=budget)
    result = catch_up(
        store,
        request,
        detect=detect_span,
        # Unique even when a caller reuses its X-Request-Id: the lease must tell two calls apart.
        holder=f"{g.request_id}/{uuid.uuid4().hex[:12]}",
        lease=timedelta(seconds=settings.detect_timeout_seconds + WORKER_TIMEOUT_MARGIN_SECONDS),
        clock=lambda: datetime.now(UTC),
        max_days=settings.max_range_days,
        seconds_left=budget.remaining_s,
    )
    response_body = result.to_response()
    response_body["request_id"] = g.request_id
    stored = result.checkpoint.analysed_to if result.checkpoint else None
    if stored is not None and datetime.now(UTC) - stored > timedelta(hours=settings.checkpoint_max_lag_hours):
        # Alerting can match this line; GET /api/v1/checkpoints says the same for every use case.
        log.warning(
            "use case %s over %s is behind: analysed up to %s (more than %d h ago, "
            "CONNECTOR_CHECKPOINT_MAX_LAG_HOURS); owed: %s",
            use_case.section,
            index,
            isoformat_z(stored),
            settings.checkpoint_max_lag_hours,
            response_body["checkpoint"]["owed"],
        )
    response = jsonify(response_body)
    if result.annotation_failed:
        response.status_code = HTTPStatus.MULTI_STATUS
    return response


@api.get("/checkpoints")
def list_checkpoints() -> Response:
    """Each stored checkpoint and how far behind it is (checkpoints-response.schema.json)."""
    settings = service_state().settings
    checkpoints = _checkpoint_entries()
    return jsonify(
        {
            "index": settings.checkpoint_index,
            "max_lag_hours": settings.checkpoint_max_lag_hours,
            "behind": sum(1 for checkpoint in checkpoints if checkpoint["behind"]),
            "checkpoints": checkpoints,
        }
    )


@api.get("/metrics")
def metrics() -> Response:
    """The checkpoints' lag for a Prometheus scrape: alerting on lag without failing /readyz."""
    max_lag_seconds = service_state().settings.checkpoint_max_lag_hours * 3600
    text = render_checkpoint_metrics(_checkpoint_entries(), max_lag_seconds=max_lag_seconds)
    return Response(text, status=HTTPStatus.OK, content_type=CONTENT_TYPE)


def _checkpoint_entries() -> list[dict[str, Any]]:
    """Every stored checkpoint as ``GET /api/v1/checkpoints`` lists it, its lag counted from now."""
    state = service_state()
    settings = state.settings
    budget = TimeBudget(settings.es_timeout_seconds, settings.detect_timeout_seconds)
    store = CheckpointStore(state.es_client, settings.checkpoint_index, budget=budget)
    now = datetime.now(UTC)
    max_lag = timedelta(hours=settings.checkpoint_max_lag_hours)
    return [checkpoint.to_dict(now, max_lag=max_lag) for checkpoint in store.all()]


@api.get("/use-cases")
def list_use_cases() -> Response:
    catalog = service_state().catalog
    use_cases = [
        describe_use_case(use_case, default=position == 0)
        for position, use_case in enumerate(catalog.use_cases)
    ]
    return jsonify({"use_cases": use_cases})


def describe_use_case(use_case: AnyUseCase, *, default: bool) -> dict[str, Any]:
    """One entry of ``GET /api/v1/use-cases`` (use-cases-response.schema.json)."""
    if isinstance(use_case, RareChildUseCase):
        return {
            "name": use_case.section,
            "model_name": use_case.model_name,
            "model": "rarechild",
            "default": default,
            "aggregator": list(use_case.aggregator),
            "target": list(use_case.target),
            "score_threshold": use_case.score_threshold,
            "max_alerts": use_case.max_alerts,
            "es_index": use_case.es_index,
            "profile": use_case.profile,
        }
    return {
        "name": use_case.section,
        "model_name": use_case.model_name,
        "default": default,
        "aggregator": list(use_case.aggregator),
        "target": list(use_case.target),
        "target_count_method": use_case.target_count_method.value,
        "trigger_method": use_case.trigger_method.value,
        "trigger_on": use_case.trigger_on.value,
        "trigger_sensitivity": use_case.trigger_sensitivity,
        "es_index": use_case.es_index,
        "profile": use_case.profile,
    }


@public.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@service.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready when Elasticsearch answers our credentials and use cases are loaded; reveals nothing else."""
    state = service_state()
    elasticsearch = check_elasticsearch(state.probe_client)
    state.readiness.observe(elasticsearch, es_url=", ".join(state.settings.es_urls))
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
