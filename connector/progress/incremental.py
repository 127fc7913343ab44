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
from connector.progress.summary import HourSummary, SummaryStore, key_of, key_text, summary_key
from connector.sources.elasticsearch import ElasticsearchSource

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


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

    def field_names(self) -> frozenset[str]:
        return self.source.field_names()

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        source = self.source
        store = self.store
        end = _ms(source.end)
        key = summary_key(use_case, source.index, source.resolve_fields(use_case))
        start, range_start = _ms(self.baseline_start), _ms(self.range_start)
        baseline_hours = list(range(start, range_start, HOUR_MS))
        span_hours = list(range(range_start, end, HOUR_MS))
        full_days = list(range(_ceil_day(start), range_start - DAY_MS + 1, DAY_MS))
        # Event counts come before any pair count: an event arriving in between makes a stored total
        # smaller than the hour's, so the next call recounts that hour.
        span_events = source.hourly_events(use_case, self.range_start, source.end)
        span_totals = source.hourly_events(use_case, self.range_start, source.end, filtered=False)
        days = store.read(key, full_days, length=24)
        hours = store.read(key, [hour for hour in baseline_hours if not _covered(hour, days)])
        stale: list[int] = []
        known_empty: set[int] = set()
        stored_total = sum(day.total for day in days.values()) + sum(hour.total for hour in hours.values())
        if source.window_total(use_case, self.baseline_start, self.range_start) != stored_total:
            # Something changed (or was never stored): find the hours, recount only those.
            totals = source.hourly_events(use_case, self.baseline_start, self.range_start, filtered=False)
            for day_ms, day in list(days.items()):
                if any(totals.get(day_ms + i * HOUR_MS, 0) != total for i, total in enumerate(day.totals())):
                    del days[day_ms]  # its hours are judged one by one below
            hours.update(
                store.read(
                    key,
                    [hour for hour in baseline_hours if hour not in hours and not _covered(hour, days)],
                )
            )
            for hour in baseline_hours:
                if _covered(hour, days):
                    continue
                summary, now = hours.get(hour), totals.get(hour, 0)
                if summary is None and now == 0:
                    known_empty.add(hour)
                elif summary is None or summary.total != now:
                    stale.append(hour)
                    hours.pop(hour, None)
        recounted: dict[int, HourSummary] = {}
        if stale:
            first, last = _at(min(stale)), _at(max(stale) + HOUR_MS)
            events = source.hourly_events(use_case, first, last)
            totals = source.hourly_events(use_case, first, last, filtered=False)
            counted = source.hourly_key_counts(use_case, first, last)
            for hour in stale:
                recounted[hour] = HourSummary.of(
                    hour, events.get(hour, 0), totals.get(hour, 0), counted.get(hour, [])
                )
        span_counts = source.hourly_key_counts(use_case, self.range_start, source.end)
        span = {
            hour: HourSummary.of(
                hour, span_events.get(hour, 0), span_totals.get(hour, 0), span_counts.get(hour, [])
            )
            for hour in span_hours
        }
        outside, outside_events = source.key_counts_outside(use_case, self.baseline_start, source.end)
        pieces = [*days.values(), *hours.values(), *recounted.values(), *span.values()]
        merged: dict[str, int] = {}
        for summary in pieces:
            for text, count in zip(summary.keys, summary.counts, strict=True):
                merged[text] = merged.get(text, 0) + count
        for aggregator, target, count in outside:
            text = key_text(aggregator, target)
            merged[text] = merged.get(text, 0) + count
        # Folded in the order of a composite aggregation (sorted by key), as a raw recount folds them.
        ordered = sorted(((key_of(text), count) for text, count in merged.items()), key=lambda item: item[0])
        counts = PairCounts()
        source.fold_key_counts(use_case, counts, ((a, t, n) for (a, t), n in ordered))
        events = sum(summary.events for summary in pieces) + outside_events
        from_summary = sum(
            1 for summary in (*days.values(), *hours.values()) for total in summary.totals() if total
        )
        self.use = SummaryUse(hours_from_summary=from_summary, hours_recounted=len(stale), stale=stale)
        if self.write:
            fresh = [*recounted.values(), *span.values()]
            fresh += [HourSummary(hour, 0, 0) for hour in sorted(known_empty)]
            known = {summary.hour_ms: summary for summary in (*hours.values(), *fresh)}
            for day_ms in range(_ceil_day(start), end - DAY_MS + 1, DAY_MS):
                parts = [known.get(hour) for hour in range(day_ms, day_ms + DAY_MS, HOUR_MS)]
                if day_ms not in days and all(part is not None for part in parts):
                    fresh.append(HourSummary.day(day_ms, [part for part in parts if part is not None]))
            self.use.hours_written = store.write(key, use_case, source.index, fresh)
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


def _day(hour_ms: int) -> int:
    return hour_ms - hour_ms % DAY_MS


def _ceil_day(moment_ms: int) -> int:
    return -(-moment_ms // DAY_MS) * DAY_MS


def _covered(hour_ms: int, days: dict[int, HourSummary]) -> bool:
    """Whether a valid day rollup (only whole days of the baseline are read as rollups) holds this hour."""
    return _day(hour_ms) in days
