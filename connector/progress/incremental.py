"""Pair counts of a span and its baseline from the summary plus the new span's raw counts.

The seam is the terms engine's :class:`~connector.sources.EventSource`: ``pair_counts`` comes from here,
``entries`` (the documents of candidate pairs) still from Elasticsearch. The counts equal a raw recount:
the same keys, the same numbers, folded in the order a composite aggregation returns them (sorted by
key), so every decision of the model is the same. Only the terms model uses it; the rarechild model
recounts its baseline from raw events (docs/scheduling.md, "Incremental baseline").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connector.config import UseCase
from connector.model.terms import Entry, Pair, PairCounts
from connector.progress.summary import HourSummary, SummaryStore, summary_key
from connector.sources.elasticsearch import ElasticsearchSource, KeyCount

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class SummaryUse:
    """What one detection did with the summary, for its log and the benchmark."""

    hours_from_summary: int = 0
    hours_recounted: int = 0
    hours_written: int = 0
    stale: list[int] = field(default_factory=list)


class SummarisedSource:
    """An :class:`~connector.sources.EventSource` counting whole baseline hours from the summary.

    :param baseline_start: hour-aligned start of the counted window
    :param range_start: hour-aligned start of the evaluated span (its hours are counted raw)
    :param write: store the summaries of the hours counted raw (not in a dry run)
    """

    def __init__(
        self,
        source: ElasticsearchSource,
        store: SummaryStore,
        *,
        baseline_start: datetime,
        range_start: datetime,
        write: bool,
    ) -> None:
        if _ms(baseline_start) % HOUR_MS or _ms(range_start) % HOUR_MS:
            raise ValueError("the summary works on whole hours: baseline and range must start on the hour")
        self.source = source
        self.store = store
        self.baseline_start = baseline_start
        self.range_start = range_start
        self.write = write
        self.use = SummaryUse()

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        return self.source.entries(use_case, pairs)

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        source = self.source
        end = source.end
        key = summary_key(use_case, source.index, source.resolve_fields(use_case))
        # First the event counts per hour (before any pair count: an event arriving in between makes the
        # stored count disagree with the keys, so the next call recounts that hour).
        observed = source.hourly_events(use_case, self.baseline_start, end)
        baseline_hours = range(_ms(self.baseline_start), _ms(self.range_start), HOUR_MS)
        stored = self.store.read(key, (hour for hour in baseline_hours if observed.get(hour)))
        usable: dict[int, HourSummary] = {}
        stale: list[int] = []
        for hour in baseline_hours:
            events = observed.get(hour, 0)
            if not events:
                continue  # no event now: nothing to count, whatever was stored
            summary = stored.get(hour)
            if summary is not None and summary.events == events:
                usable[hour] = summary
            else:
                stale.append(hour)
        recounted: dict[int, list[KeyCount]] = {}
        if stale:
            first, last = min(stale), max(stale) + HOUR_MS
            counted = source.hourly_key_counts(use_case, _at(first), _at(last))
            recounted.update({hour: counted.get(hour, []) for hour in stale})
        span = source.hourly_key_counts(use_case, self.range_start, end)
        outside, outside_events = source.key_counts_outside(use_case, self.baseline_start, end)
        merged: dict[tuple[tuple[object, ...], tuple[object, ...]], int] = {}
        for key_counts in (
            *(summary.key_counts for summary in usable.values()),
            *recounted.values(),
            *span.values(),
            outside,
        ):
            for aggregator, target, count in key_counts:
                merged[(aggregator, target)] = merged.get((aggregator, target), 0) + count
        counts = PairCounts()
        ordered = sorted(merged.items(), key=lambda item: item[0])
        source.fold_key_counts(use_case, counts, ((a, t, n) for (a, t), n in ordered))
        events = sum(observed.values()) + outside_events
        self.use = SummaryUse(hours_from_summary=len(usable), hours_recounted=len(stale), stale=stale)
        if self.write:
            fresh = [HourSummary(hour, observed.get(hour, 0), tuple(recounted[hour])) for hour in stale]
            fresh += [
                HourSummary(hour, observed.get(hour, 0), tuple(span.get(hour, [])))
                for hour in range(_ms(self.range_start), _ms(end), HOUR_MS)
                if observed.get(hour) and _ms(end) - hour >= HOUR_MS
            ]
            self.use.hours_written = self.store.write(key, use_case, source.index, fresh)
        log.info(
            "use case %s: baseline hours from the summary %d, recounted %d, written %d",
            use_case.section,
            self.use.hours_from_summary,
            self.use.hours_recounted,
            self.use.hours_written,
        )
        return counts, events


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
