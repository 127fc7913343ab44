"""One detection run: source -> model -> whitelist passes -> result.

The engine is the only place that talks to both a source and the model, so the data flows
one way: counts first, then only the documents of candidate pairs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.config import UseCase, load_global_settings, load_use_cases
from connector.model.outlier import Outlier
from connector.model.terms import TermsEvaluation
from connector.sources import EventSource
from connector.sources.ndjson import NdjsonSource, Progress

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

    def to_contract(self) -> dict[str, Any]:
        """The documented JSON shape of a detection (README, "Output contract")."""
        return {
            "use_case": self.use_case.section,
            "events_analyzed": self.events_analyzed,
            "outliers": [outlier_record(outlier) for outlier in self.outliers],
        }


def outlier_record(outlier: Outlier) -> dict[str, Any]:
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
    """Run ``use_case`` over ``source`` and return its outliers, sorted by id, aggregator, term."""
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
) -> DetectionResult:
    global_settings = load_global_settings(global_config_path) if global_config_path else None
    selected = load_use_cases(config_path, global_settings).select(use_case)
    return run(NdjsonSource(events_path, progress=progress), selected)
