"""Counts of a span and its baseline from the summary plus the new span's raw counts.

:class:`BaselineHours` is what both models share: which baseline hours the summary still holds (checked
against raw event totals), which must be recounted, and what to store afterwards. Each model counts an
hour its own way and folds the pieces back into the shape its raw counting returns: the same keys, the
same numbers, in the order a composite aggregation returns them (sorted by key), so every decision of
the model is the same. Here the terms model (:class:`SummarisedSource`, the seam is the
:class:`~connector.sources.EventSource`'s ``pair_counts``); the rarechild model in
:mod:`connector.progress.rarechild_incremental`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connector.config import RareChildUseCase, UseCase
from connector.model.terms import Entry, Pair, PairCounts
from connector.progress.summary import HourSummary, SummaryStore, key_of, key_text, merge_counts, summary_key
from connector.sources.elasticsearch import ElasticsearchSource
from connector.timerange import epoch_ms

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

#: Counts ``[first, last)`` from raw events: a summary (its ``total`` unused) per hour with events.
CountHours = Callable[[datetime, datetime], dict[int, HourSummary]]
#: Counts the events of these ``[start, end)`` runs of hours together, as one piece that is not stored.
CountRuns = Callable[[list[tuple[datetime, datetime]]], HourSummary]


@dataclass
class SummaryUse:
    """What one detection did with the summary, for its log and the benchmark."""

    hours_from_summary: int = 0
    hours_recounted: int = 0
    hours_counted_raw: int = 0
    hours_written: int = 0
    stale: list[int] = field(default_factory=list)


class BaselineHours:
    """The pieces (day rollups, hours) that together count ``[baseline_start, end)`` of ``source``.

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
        if epoch_ms(baseline_start) % HOUR_MS or epoch_ms(range_start) % HOUR_MS:
            raise ValueError("the summary works on whole hours: baseline and range must start on the hour")
        self.source = source
        self.store = store
        self.baseline_start = baseline_start
        self.range_start = range_start
        self.write = write
        self.use = SummaryUse()
        self._fresh: list[HourSummary] = []
        self._known: dict[int, HourSummary] = {}
        self._days: set[int] = set()

    def gather(
        self, use_case: UseCase | RareChildUseCase, key: str, count_hours: CountHours, count_runs: CountRuns
    ) -> list[HourSummary]:
        """The pieces covering the window, every one fresh: read back where the totals still add up,
        recounted (``count_hours``, at most the store's ``fill_hours``) where they do not, the rest of
        those counted together (``count_runs``), and the span counted raw."""
        source, store = self.source, self.store
        start, range_start, end = (
            epoch_ms(self.baseline_start),
            epoch_ms(self.range_start),
            epoch_ms(source.end),
        )
        baseline_hours = list(range(start, range_start, HOUR_MS))
        full_days = list(range(_ceil_day(start), range_start - DAY_MS + 1, DAY_MS))
        # The totals come before any count: an event arriving in between makes a stored total smaller
        # than the hour's, so the next call recounts that hour.
        day_set = set(full_days)
        edges = [hour for hour in baseline_hours if _day(hour) not in day_set]
        spans = [(day, 24) for day in full_days] + [(hour, 1) for hour in edges]
        with ThreadPoolExecutor(max_workers=1) as pool:  # the read does not wait for the totals' answer
            reading = pool.submit(store.read_spans, key, spans)
            baseline_total, span_totals = source.freshness_totals(
                use_case, self.baseline_start, self.range_start
            )
            found = reading.result()
        days, hours = found.get(24, {}), found.get(1, {})
        stale: list[int] = []
        known_empty: set[int] = set()
        totals: dict[int, int] = {}
        stored_total = sum(day.total for day in days.values()) + sum(hour.total for hour in hours.values())
        if baseline_total != stored_total:
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
        kept = stale[max(0, len(stale) - store.fill_hours) :]  # the newest: they stay in baselines longest
        rest = stale[: len(stale) - len(kept)]
        if kept:
            counted = count_hours(_at(min(kept)), _at(max(kept) + HOUR_MS))
            recounted = {hour: _with_total(hour, counted, totals.get(hour, 0)) for hour in kept}
        together = [count_runs(_runs(rest))] if rest else []
        counted = count_hours(self.range_start, source.end)
        span = {
            hour: _with_total(hour, counted, span_totals.get(hour, 0))
            for hour in range(range_start, end, HOUR_MS)
        }
        from_summary = sum(
            1 for summary in (*days.values(), *hours.values()) for total in summary.totals() if total
        )
        self.use = SummaryUse(
            hours_from_summary=from_summary,
            hours_recounted=len(kept),
            hours_counted_raw=len(rest),
            stale=stale,
        )
        self._fresh = [
            *recounted.values(),
            *span.values(),
            *(HourSummary(hour, 0, 0) for hour in sorted(known_empty)),
        ]
        self._known = {summary.hour_ms: summary for summary in (*hours.values(), *self._fresh)}
        self._days = set(days)
        return [*days.values(), *hours.values(), *recounted.values(), *together, *span.values()]

    def keep(self, use_case: UseCase | RareChildUseCase, key: str) -> None:
        """Store what :meth:`gather` counted raw, and the rollup of every day now known hour by hour."""
        if self.write:
            fresh = list(self._fresh)
            end = epoch_ms(self.source.end)
            for day_ms in range(_ceil_day(epoch_ms(self.baseline_start)), end - DAY_MS + 1, DAY_MS):
                parts = [self._known.get(hour) for hour in range(day_ms, day_ms + DAY_MS, HOUR_MS)]
                if day_ms not in self._days and all(part is not None for part in parts):
                    fresh.append(HourSummary.day(day_ms, [part for part in parts if part is not None]))
            self.use.hours_written = self.store.write(key, use_case, self.source.index, fresh)
        log.info(
            "use case %s: baseline hours from the summary %d, recounted %d, counted raw (left for later) %d, "
            "written %d",
            use_case.section,
            self.use.hours_from_summary,
            self.use.hours_recounted,
            self.use.hours_counted_raw,
            self.use.hours_written,
        )


class SummarisedCounting:
    """What the summarised sources of both models share: the raw source they wrap, the baseline hours
    they count from the summary (the parameters are those of :class:`BaselineHours`) and what that did."""

    def __init__(
        self,
        source: ElasticsearchSource,
        store: SummaryStore,
        *,
        baseline_start: datetime,
        range_start: datetime,
        write: bool,
    ) -> None:
        self.source = source
        self.hours = BaselineHours(
            source, store, baseline_start=baseline_start, range_start=range_start, write=write
        )

    @property
    def use(self) -> SummaryUse:
        return self.hours.use

    def field_names(self) -> frozenset[str]:
        return self.source.field_names()


class SummarisedSource(SummarisedCounting):
    """An :class:`~connector.sources.EventSource` counting whole baseline hours from the summary;
    ``entries`` (the documents of candidate pairs) still come from Elasticsearch."""

    def entries(self, use_case: UseCase, pairs: set[Pair]) -> Iterator[Entry]:
        return self.source.entries(use_case, pairs)

    def pair_counts(self, use_case: UseCase) -> tuple[PairCounts, int]:
        source = self.source
        key = summary_key(use_case, source.index, source.resolve_fields(use_case))

        def count_hours(first: datetime, last: datetime) -> dict[int, HourSummary]:
            events, counted = source.hourly_key_counts(use_case, first, last)
            return {
                hour: HourSummary.of(hour, events.get(hour, 0), 0, counted.get(hour, []))
                for hour in events.keys() | counted.keys()
            }

        def count_runs(runs: list[tuple[datetime, datetime]]) -> HourSummary:
            counted, events = source.key_counts_in(use_case, runs)
            return HourSummary.of(-1, events, 0, counted)

        pieces = self.hours.gather(use_case, key, count_hours, count_runs)
        outside, outside_events = source.key_counts_outside(use_case, self.hours.baseline_start, source.end)
        merged = merge_counts(pieces)
        for aggregator, target, count in outside:
            text = key_text(aggregator, target)
            merged[text] = merged.get(text, 0) + count
        # Folded in the order of a composite aggregation (sorted by key), as a raw recount folds them.
        ordered = sorted(((key_of(text), count) for text, count in merged.items()), key=lambda item: item[0])
        counts = PairCounts()
        source.fold_key_counts(use_case, counts, ((a, t, n) for (a, t), n in ordered))
        self.hours.keep(use_case, key)
        return counts, sum(piece.events for piece in pieces) + outside_events


def on_the_hour(*moments: datetime) -> bool:
    """Whether the summary can count from these bounds: it stores whole UTC hours."""
    return all(moment.minute == moment.second == moment.microsecond == 0 for moment in moments)


def _with_total(hour_ms: int, counted: dict[int, HourSummary], total: int) -> HourSummary:
    """The hour as counted, with the total of all its events taken before the count."""
    summary = counted.get(hour_ms)
    return HourSummary(hour_ms, 0, total) if summary is None else dataclasses.replace(summary, total=total)


def _runs(hours: list[int]) -> list[tuple[datetime, datetime]]:
    """Sorted hours (epoch ms) as ``[start, end)`` runs of consecutive hours."""
    runs: list[list[int]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR_MS
        else:
            runs.append([hour, hour + HOUR_MS])
    return [(_at(start), _at(end)) for start, end in runs]


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _day(hour_ms: int) -> int:
    return hour_ms - hour_ms % DAY_MS


def _ceil_day(moment_ms: int) -> int:
    return -(-moment_ms // DAY_MS) * DAY_MS


def _covered(hour_ms: int, days: dict[int, HourSummary]) -> bool:
    """Whether a valid day rollup (only whole days of the baseline are read as rollups) holds this hour."""
    return _day(hour_ms) in days
