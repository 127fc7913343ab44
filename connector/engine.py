"""One detection run: source -> model -> whitelist passes -> result.

The engine is the only place that talks to both a source and the model, so the data flows
one way: counts first, then only the documents of candidate pairs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from connector.config import AnyUseCase, RareChildUseCase, UseCase, load_use_case
from connector.explain import Explanation
from connector.model.fields import text_at
from connector.model.outlier import Outlier
from connector.model.terms import Pair, PairCounts, TermsEvaluation
from connector.profiles import ProfileChoice, profiled
from connector.progress.incremental import SummarisedSource, on_the_hour
from connector.progress.summary import SummaryStore
from connector.rarechild_engine import (
    RareChildDetection,
    RareChildResult,
    detect_rarechild_in_elasticsearch,
    run_rarechild,
)
from connector.results import AnnotateMode, WriteReport, write_outliers
from connector.sources import EventSource
from connector.sources.elasticsearch import COMPOSITE_PAGE_SIZE, ElasticsearchSource, TimeBudget
from connector.sources.ndjson import NdjsonSource, Progress
from connector.timerange import TimeWindow, isoformat_z

DEFAULT_RESULTS_INDEX = "outliers-rare-child"

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DetectionResult:
    use_case: UseCase
    events_analyzed: int
    outliers: tuple[Outlier, ...]
    pairs_counted: int
    entries_fetched: int
    whitelisted_entries: int
    passes: int
    final_counts: PairCounts
    profile: ProfileChoice

    @property
    def aggregators(self) -> int:
        return len(self.final_counts.by_aggregator)

    def to_contract(self) -> dict[str, Any]:
        """The documented JSON shape of a detection (docs/cli.md, "Output contract")."""
        return {
            "use_case": self.use_case.section,
            "events_analyzed": self.events_analyzed,
            "outliers": [contract_record(outlier) for outlier in self.outliers],
        }


def contract_record(outlier: Outlier) -> dict[str, Any]:
    """One outlier in the documented ``connector detect`` JSON shape (docs/cli.md, "Output contract")."""
    observation = outlier.observation
    return {
        "_id": outlier.document_id,
        "_index": outlier.index,
        "aggregator": observation.aggregator,
        "term": observation.term,
        "term_count": observation.term_count,
        "decision_frontier": observation.decision_frontier,
        "trigger_method": outlier.trigger_method,
        "confidence": observation.confidence,
        "type": list(outlier.outlier_type),
        "reason": list(outlier.reason),
        "summary": outlier.summary,
    }


def run(source: EventSource, use_case: UseCase) -> DetectionResult:
    """Run ``use_case`` over ``source`` and return its outliers, sorted by id, aggregator, term.

    The data profile is chosen first (the use case's own, else the one the source's fields show), and
    ``result.use_case`` is the use case as run, with the profile applied.
    """
    use_case, profile = profiled(use_case, source.field_names)
    counts, events = source.pair_counts(use_case)
    pairs_counted = counts.pair_count
    evaluation = TermsEvaluation(use_case, counts)
    entries_fetched = 0
    while not evaluation.done:
        wanted = evaluation.pairs_needing_entries()
        if wanted:
            entries = list(source.entries(use_case, wanted))
            entries_fetched += len(entries)
            evaluation.add_entries(entries, pairs=wanted)
        evaluation.advance()
    log.info(
        "use case %s: %d events, %d pairs, %d entries fetched, %d whitelisted, %d outliers in %d passes",
        use_case.section,
        events,
        pairs_counted,
        entries_fetched,
        evaluation.whitelisted_entries,
        len(evaluation.outliers),
        evaluation.passes,
    )
    return DetectionResult(
        use_case=use_case,
        events_analyzed=events,
        outliers=tuple(sorted(evaluation.outliers, key=Outlier.sort_key)),
        pairs_counted=pairs_counted,
        entries_fetched=entries_fetched,
        whitelisted_entries=evaluation.whitelisted_entries,
        passes=evaluation.passes,
        final_counts=counts,
        profile=profile,
    )


def detect_file(
    *,
    config_path: str | Path,
    events_path: str | Path,
    use_case: str | None = None,
    global_config_path: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Offline detection over an NDJSON file, returned in the documented JSON shape."""
    return detect_file_result(
        config_path=config_path,
        events_path=events_path,
        use_case=use_case,
        global_config_path=global_config_path,
        progress=progress,
    ).to_contract()


def detect_file_result(
    *,
    config_path: str | Path,
    events_path: str | Path,
    use_case: str | None = None,
    global_config_path: str | Path | None = None,
    progress: Progress | None = None,
) -> DetectionResult | RareChildResult:
    selected = load_use_case(config_path, use_case, global_config_path=global_config_path)
    source = NdjsonSource(events_path, progress=progress)
    if isinstance(selected, RareChildUseCase):
        return run_rarechild(source, selected)
    return run(source, selected)


# -- detection over Elasticsearch -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ElasticsearchDetection:
    """A detection over Elasticsearch: the model's result plus context and what was written."""

    result: DetectionResult
    index: str
    start: datetime
    end: datetime
    baseline_start: datetime | None
    outliers: tuple[Outlier, ...]  # in the requested range (all of them without a baseline)
    explanations: Mapping[Pair, Explanation]
    annotation: WriteReport
    aggregators: int
    max_outliers: int | None
    requests: int
    documents_fetched: int
    took_ms: int
    hint: str | None = None

    def to_contract(self) -> dict[str, Any]:
        """The same JSON shape as offline detection (``connector detect``)."""
        return {
            "use_case": self.result.use_case.section,
            "events_analyzed": self.result.events_analyzed,
            "outliers": [contract_record(outlier) for outlier in self.outliers],
        }

    def to_response(self) -> dict[str, Any]:
        """The body of ``POST /api/v1/detect`` (detect-response.schema.json)."""
        shown = self.outliers if self.max_outliers is None else self.outliers[: self.max_outliers]
        return {
            "use_case": self.result.use_case.section,
            "index": self.index,
            "range": {"from": isoformat_z(self.start), "to": isoformat_z(self.end)},
            "baseline": {"from": isoformat_z(self.baseline_start)} if self.baseline_start else None,
            "profile": self.result.profile.to_dict(),
            "events_analyzed": self.result.events_analyzed,
            "aggregators": self.aggregators,
            "outliers_total": len(self.outliers),
            "outliers": [self._explained(outlier) for outlier in shown],
            "annotation": self.annotation.to_dict(),
            "took_ms": self.took_ms,
            **({"hint": self.hint} if self.hint else {}),
        }

    def _explained(self, outlier: Outlier) -> dict[str, Any]:
        use_case = self.result.use_case
        source = outlier.hit.get("_source") or {}
        observation = outlier.observation
        explanation = self.explanations.get(_pair(outlier))
        return {
            "_id": outlier.document_id,
            "_index": outlier.index,
            "@timestamp": text_at(source, use_case.timestamp_field),
            "host": text_at(source, use_case.host_field),
            "aggregator": observation.aggregator,
            "term": observation.term,
            "term_count": observation.term_count,
            "aggregator_total": explanation.aggregator_total if explanation else None,
            "aggregator_distinct_terms": explanation.aggregator_distinct_terms if explanation else None,
            "top_terms": [{"term": term, "count": count} for term, count in explanation.top_terms]
            if explanation
            else [],
            "host_count": explanation.host_count if explanation else None,
            "first_seen_in_range": explanation.first_seen_in_range if explanation else None,
            "decision_frontier": observation.decision_frontier,
            "confidence": observation.confidence,
            "trigger_method": outlier.trigger_method,
            "type": list(outlier.outlier_type),
            "reason": list(outlier.reason),
            "summary": outlier.summary,
            "event": {
                key: text_at(source, path) for key, path in self.result.profile.profile.event_fields.items()
            },
        }


def detect_in_elasticsearch(
    client: Elasticsearch,
    use_case: AnyUseCase,
    *,
    index: str,
    time_range: TimeWindow,
    baseline_start: datetime | None = None,
    annotate: AnnotateMode = AnnotateMode.RESULTS_INDEX,
    dry_run: bool = False,
    results_index: str = DEFAULT_RESULTS_INDEX,
    max_outliers: int | None = None,
    budget: TimeBudget | None = None,
    allowed_indices: tuple[str, ...] | None = None,
    composite_page_size: int = COMPOSITE_PAGE_SIZE,
    ingest_time_field: str | None = None,
    summary: SummaryStore | None = None,
) -> ElasticsearchDetection | RareChildDetection:
    """Run ``use_case`` over ``index`` for ``time_range`` and write the outliers back.

    A rarechild use case runs its own model (:func:`detect_rarechild_in_elasticsearch`), with the same
    range, baseline, write-back and time budget.

    With ``baseline_start`` the counts cover ``[baseline_start, end)`` and only events inside
    ``[start, end)`` are reported and written. ``budget`` bounds every request, reads and writes alike,
    and all of them together (a request that would start after its deadline raises instead).
    ``allowed_indices`` restricts the concrete indices read (aliases and data streams resolved first).
    With ``ingest_time_field`` the range selects events by when they were ingested, and counts still
    follow the event time (scheduled spans, docs/scheduling.md "Late events"). With ``summary`` (a
    baseline, hour-aligned bounds; both models) whole baseline hours are counted from the stored summary
    and the hours counted raw are stored for the next call; the counts are those of a raw recount.

    :raises ElasticsearchTimeoutError: a request, or the whole detection, ran out of time; the message
        names the setting to raise
    :raises IndexNotAllowedError: a concrete index the expression reaches is outside ``allowed_indices``
    """
    if isinstance(use_case, RareChildUseCase):
        return detect_rarechild_in_elasticsearch(
            client,
            use_case,
            index=index,
            time_range=time_range,
            baseline_start=baseline_start,
            annotate=annotate,
            dry_run=dry_run,
            results_index=results_index,
            max_outliers=max_outliers,
            budget=budget,
            allowed_indices=allowed_indices,
            composite_page_size=composite_page_size,
            ingest_time_field=ingest_time_field,
            summary=summary,
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
    counting: EventSource = source
    if summary is not None and baseline_start is not None and on_the_hour(counted_from, time_range.start):
        counting = SummarisedSource(
            source, summary, baseline_start=counted_from, range_start=time_range.start, write=not dry_run
        )
    result = run(counting, use_case)
    use_case = result.use_case  # as run: with its data profile
    hint = source.empty_range_hint(use_case) if result.events_analyzed == 0 else None
    in_range = result.outliers
    has_range = baseline_start is not None or source.ingest_time_field is not None
    if has_range:
        in_range = tuple(
            outlier for outlier in result.outliers if source.in_range(outlier.hit, time_range.start)
        )
    pairs = {_pair(outlier) for outlier in in_range}
    explanations = source.explain(
        use_case,
        pairs,
        result.final_counts,
        range_start=time_range.start if has_range else None,
    )
    report = write_outliers(
        client,
        [(outlier, explanations.get(_pair(outlier))) for outlier in in_range],
        use_case=use_case,
        mode=annotate,
        results_index=results_index,
        dry_run=dry_run,
        budget=budget,
    )
    took_ms = int((time.monotonic() - began) * 1000)
    log.info(
        "detection %s over %s: %d events, %d outliers in range, %d requests, %d documents fetched",
        use_case.section,
        index,
        result.events_analyzed,
        len(in_range),
        source.requests,
        source.documents_fetched,
    )
    return ElasticsearchDetection(
        result=result,
        index=index,
        start=time_range.start,
        end=time_range.end,
        baseline_start=baseline_start,
        outliers=in_range,
        explanations=explanations,
        annotation=report,
        aggregators=result.aggregators,
        max_outliers=max_outliers,
        requests=source.requests,
        documents_fetched=source.documents_fetched,
        took_ms=took_ms,
        hint=hint,
    )


def _pair(outlier: Outlier) -> Pair:
    return (outlier.observation.aggregator, outlier.observation.term)
