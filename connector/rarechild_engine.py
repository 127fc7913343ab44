"""One rarechild detection: source counts -> model scores -> events of the best pairs -> alerts.

The counterpart of :mod:`connector.engine` for the scored model. Counting happens where the data is;
only the events of the pairs that will alert are fetched, a batch of at most ``max_alerts`` pairs at a
time (a pair whose every event is whitelisted leaves room for the next one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from elasticsearch import Elasticsearch

from connector.config import RareChildUseCase
from connector.errors import RequestValidationError
from connector.knowledge import load_knowledge
from connector.model.fields import text_at
from connector.model.rarechild import (
    Alert,
    Candidate,
    Pair,
    PairTally,
    PathCount,
    Population,
    ScoringSettings,
    build_alert,
    score_pairs,
)
from connector.profiles import ProfileChoice, profiled
from connector.progress.incremental import on_the_hour
from connector.progress.rarechild_incremental import SummarisedRareChildSource
from connector.progress.summary import SummaryStore
from connector.results import (
    AnnotateMode,
    WriteReport,
    alert_document,
    alert_document_id,
    write_result_documents,
)
from connector.sources.elasticsearch import COMPOSITE_PAGE_SIZE, ElasticsearchSource, TimeBudget
from connector.timerange import TimeWindow, isoformat_z

log = logging.getLogger(__name__)

#: The ids an alert record lists; ``count`` always says how many events the alert has.
MAX_EVENT_IDS = 100


class RareChildSource(Protocol):
    """Where the rarechild model's counts and its alerts' events come from (NDJSON or Elasticsearch)."""

    def rarechild_tallies(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[PairTally], list[PathCount], int]: ...

    def rarechild_hits(
        self,
        use_case: RareChildUseCase,
        wanted: dict[Pair, frozenset[str] | None],
        range_start: datetime | None = None,
    ) -> dict[Pair, list[dict[str, Any]]]: ...

    def field_names(self) -> frozenset[str]: ...


@dataclass(frozen=True, kw_only=True)
class RareChildResult:
    use_case: RareChildUseCase
    events_analyzed: int
    alerts: tuple[Alert, ...]
    pairs_counted: int
    pairs_above_threshold: int
    whitelisted_events: int
    hosts_seen: int
    profile: ProfileChoice

    def to_contract(self) -> dict[str, Any]:
        """The documented ``connector detect`` JSON of a rarechild use case (docs/rarechild.md)."""
        return {
            "use_case": self.use_case.section,
            "model": "rarechild",
            "events_analyzed": self.events_analyzed,
            "pairs_above_threshold": self.pairs_above_threshold,
            "outliers": [alert_record(self.use_case, alert) for alert in self.alerts],
        }


def alert_record(use_case: RareChildUseCase, alert: Alert) -> dict[str, Any]:
    """One alert in the documented record shape, the same from a file and from Elasticsearch."""
    candidate = alert.candidate
    return {
        "_id": alert.document_id,
        "_index": alert.index,
        "aggregator": candidate.parent,
        "term": candidate.child,
        "score": round(candidate.score, 3),
        "threshold": use_case.score_threshold,
        "factors": [factor.to_dict() for factor in candidate.factors],
        "explanation": candidate.explanation(),
        "count": len(alert.hits),
        "event_ids": alert.event_ids[:MAX_EVENT_IDS],
        "hosts": list(alert.hosts),
        "host_count": len(alert.hosts),
        "hosts_seen": candidate.hosts_seen,
        "first_time": alert.first_time,
        "last_time": alert.last_time,
        "flagged_events_only": candidate.flagged_only,
        "whitelisted_events": alert.whitelisted_events,
        "type": list(alert.outlier_type),
        "reason": list(alert.reason),
        "summary": alert.summary,
    }


def run_rarechild(
    source: RareChildSource,
    use_case: RareChildUseCase,
    *,
    range_start: datetime | None = None,
    baseline_label: str = "",
) -> RareChildResult:
    """Score every pair of ``source`` and turn the best into at most ``max_alerts`` alerts.

    As for the terms model, the data profile is chosen first and ``result.use_case`` has it applied.
    """
    use_case, profile = profiled(use_case, source.field_names)
    knowledge = load_knowledge(use_case.knowledge)
    tallies, paths, events = source.rarechild_tallies(use_case, range_start)
    population = Population.from_tallies(tallies, paths, knowledge)
    settings = ScoringSettings(
        threshold=use_case.score_threshold,
        smoothing=use_case.smoothing,
        range_has_baseline=range_start is not None,
        baseline_label=baseline_label,
    )
    candidates = score_pairs(population, knowledge, settings)
    alerts: list[Alert] = []
    whitelisted = 0
    position = 0
    while len(alerts) < use_case.max_alerts and position < len(candidates):
        batch = candidates[position : position + use_case.max_alerts - len(alerts)]
        position += len(batch)
        wanted = {
            raw: frozenset(candidate.flagged_paths) if candidate.flagged_only else None
            for candidate in batch
            for raw in candidate.raw_pairs
        }
        hits = source.rarechild_hits(use_case, wanted, range_start)
        for candidate in batch:
            alert = _alert(use_case, candidate, hits)
            if alert is None:
                whitelisted += candidate.events_in_scope
                continue
            whitelisted += alert.whitelisted_events
            alerts.append(alert)
    log.info(
        "use case %s: %d events, %d pairs, %d above the threshold, %d alerts, %d events whitelisted",
        use_case.section,
        events,
        len(population.pairs),
        len(candidates),
        len(alerts),
        whitelisted,
    )
    return RareChildResult(
        use_case=use_case,
        events_analyzed=events,
        alerts=tuple(alerts),
        pairs_counted=len(population.pairs),
        pairs_above_threshold=len(candidates),
        whitelisted_events=whitelisted,
        hosts_seen=len(population.hosts),
        profile=profile,
    )


def _alert(
    use_case: RareChildUseCase, candidate: Candidate, hits: Mapping[Pair, Sequence[Mapping[str, Any]]]
) -> Alert | None:
    events: dict[str, Mapping[str, Any]] = {}
    for raw in candidate.raw_pairs:
        for hit in hits.get(raw, ()):
            events.setdefault(f"{hit.get('_index')}/{hit.get('_id')}", hit)
    # Oldest first, ties by id: a file's order and Elasticsearch's sort agree.
    ordered = sorted(
        events.values(),
        key=lambda hit: (
            text_at(hit.get("_source") or {}, use_case.timestamp_field) or "",
            str(hit.get("_id")),
        ),
    )
    return build_alert(
        use_case,
        candidate,
        ordered,
        event_time=lambda hit: text_at(hit.get("_source") or {}, use_case.timestamp_field),
        host_of=lambda hit: text_at(hit.get("_source") or {}, use_case.host_field),
    )


# -- over Elasticsearch -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RareChildDetection:
    """A rarechild detection over Elasticsearch: the model's result, its context and what was written."""

    result: RareChildResult
    index: str
    start: datetime
    end: datetime
    baseline_start: datetime | None
    annotation: WriteReport
    max_outliers: int | None
    requests: int
    documents_fetched: int
    took_ms: int
    hint: str | None = None

    def to_contract(self) -> dict[str, Any]:
        return self.result.to_contract()

    def to_response(self) -> dict[str, Any]:
        """The body of ``POST /api/v1/detect`` for a rarechild use case (detect-response.schema.json)."""
        alerts = self.result.alerts
        shown = alerts if self.max_outliers is None else alerts[: self.max_outliers]
        use_case = self.result.use_case
        return {
            "use_case": use_case.section,
            "model": "rarechild",
            "index": self.index,
            "profile": self.result.profile.to_dict(),
            "range": {"from": isoformat_z(self.start), "to": isoformat_z(self.end)},
            "baseline": {"from": isoformat_z(self.baseline_start)} if self.baseline_start else None,
            "events_analyzed": self.result.events_analyzed,
            "aggregators": self.result.pairs_counted,
            "pairs_above_threshold": self.result.pairs_above_threshold,
            "outliers_total": len(alerts),
            "outliers": [
                {
                    **alert_record(use_case, alert),
                    "event": {
                        key: text_at(alert.first_hit.get("_source") or {}, path)
                        for key, path in self.result.profile.profile.event_fields.items()
                    },
                }
                for alert in shown
            ],
            "annotation": self.annotation.to_dict(),
            "took_ms": self.took_ms,
            **({"hint": self.hint} if self.hint else {}),
        }


def detect_rarechild_in_elasticsearch(
    client: Elasticsearch,
    use_case: RareChildUseCase,
    *,
    index: str,
    time_range: TimeWindow,
    baseline_start: datetime | None = None,
    annotate: AnnotateMode = AnnotateMode.RESULTS_INDEX,
    dry_run: bool = False,
    results_index: str,
    max_outliers: int | None = None,
    budget: TimeBudget | None = None,
    allowed_indices: tuple[str, ...] | None = None,
    composite_page_size: int = COMPOSITE_PAGE_SIZE,
    ingest_time_field: str | None = None,
    summary: SummaryStore | None = None,
) -> RareChildDetection:
    """Run a rarechild use case over ``index`` for ``time_range`` and write its alerts back.

    With ``baseline_start`` the counts (and so every rarity factor) cover ``[baseline_start, end)``,
    novelty says whether a pair occurred before the range, and only events in the range alert. With
    ``summary`` (and hour-aligned bounds) whole baseline hours are counted from the stored summary.

    :raises RequestValidationError: ``annotate=in_place``, which only the terms model's records have
    :raises IndexNotAllowedError: a concrete index the expression reaches is outside ``allowed_indices``
    """
    annotate = AnnotateMode(annotate)
    if annotate is AnnotateMode.IN_PLACE:
        raise RequestValidationError(
            f"use case {use_case.section} is a rarechild use case: its alerts roll up events, so they are "
            "written to the results index, not into each event; use annotate 'results_index' or 'none'"
        )
    began = time.monotonic()
    counted_from = min(baseline_start, time_range.start) if baseline_start else time_range.start
    source = ElasticsearchSource(
        client,
        index=index,
        start=counted_from,
        end=time_range.end,
        host_field=use_case.host_field,
        budget=budget,
        allowed_indices=allowed_indices,
        composite_page_size=composite_page_size,
        ingest_time_field=ingest_time_field,
        range_start=time_range.start,
    )
    has_range = baseline_start is not None or source.ingest_time_field is not None
    range_start = time_range.start if has_range else None
    label = ""
    if range_start is not None:
        days = (time_range.start - counted_from).total_seconds() / 86400
        label = f"baseline {days:g} d"
    counting: RareChildSource = source
    if summary is not None and baseline_start is not None and on_the_hour(counted_from, time_range.start):
        counting = SummarisedRareChildSource(
            source, summary, baseline_start=counted_from, range_start=time_range.start, write=not dry_run
        )
    result = run_rarechild(counting, use_case, range_start=range_start, baseline_label=label)
    use_case = result.use_case  # as run: with its data profile
    hint = source.empty_range_hint(use_case) if result.events_analyzed == 0 else None
    documents = []
    for alert in result.alerts:
        record = alert_record(use_case, alert)
        documents.append(
            (alert_document_id(use_case, record), alert_document(use_case, record, alert.first_hit))
        )
    report = write_result_documents(
        client, documents, mode=annotate, results_index=results_index, dry_run=dry_run, budget=budget
    )
    took_ms = int((time.monotonic() - began) * 1000)
    log.info(
        "detection %s over %s: %d events, %d alerts, %d requests, %d documents fetched",
        use_case.section,
        index,
        result.events_analyzed,
        len(result.alerts),
        source.requests,
        source.documents_fetched,
    )
    return RareChildDetection(
        result=result,
        index=index,
        start=time_range.start,
        end=time_range.end,
        baseline_start=baseline_start,
        annotation=report,
        max_outliers=max_outliers,
        requests=source.requests,
        documents_fetched=source.documents_fetched,
        took_ms=took_ms,
        hint=hint,
    )
