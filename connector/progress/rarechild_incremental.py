"""The rarechild model's counts from the baseline summary plus the new span's raw counts.

Per hour the summary keeps each stored (parent, child) with its event count, its earliest event and the
hosts it ran on; a day rollup sums the counts, keeps the earliest and joins the hosts. Merging a 30-day
baseline is then one step per pair and piece, not per host. The model gets what folding its raw
composite aggregation gives (:func:`~connector.model.rarechild.tally_groups`): each pair's count over the
window, how many of its events lie in the range, when it was first seen and on which hosts, in the same
order. The range's path counts are counted raw, as without the summary: they cover the range alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from connector.config import RareChildUseCase
from connector.model.rarechild import PairTally, PathCount, tally_groups
from connector.model.terms import Pair
from connector.progress.incremental import SummarisedCounting
from connector.progress.summary import HourSummary, host_columns, merge_tallies, summary_key
from connector.sources.elasticsearch import group_count
from connector.timerange import epoch_ms

MODEL = "rarechild"


class SummarisedRareChildSource(SummarisedCounting):
    """A :class:`~connector.rarechild_engine.RareChildSource` counting whole baseline hours from the
    summary; the events of its alerts still come from Elasticsearch."""

    def rarechild_hits(
        self,
        use_case: RareChildUseCase,
        wanted: dict[Pair, frozenset[str] | None],
        range_start: datetime | None = None,
    ) -> dict[Pair, list[dict[str, Any]]]:
        return self.source.rarechild_hits(use_case, wanted, range_start)

    def rarechild_tallies(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[PairTally], list[PathCount], int]:
        if range_start != self.hours.range_start:
            raise ValueError("the summarised source counts the range it was made for")
        source = self.source
        fields = source.resolve_fields(use_case)
        key = summary_key(use_case, source.index, fields, model=MODEL)
        (group_sources, _, _), _ = source.rarechild_aggregations(use_case, range_start)
        first = {"first": {"min": {"field": fields.timestamp}}}

        def count_hours(start: datetime, end: datetime) -> dict[int, HourSummary]:
            events, buckets = source.hourly_buckets(use_case, start, end, group_sources, first)
            return {hour: _summary(hour, events.get(hour, 0), buckets.get(hour, [])) for hour in events}

        def count_runs(runs: list[tuple[datetime, datetime]]) -> HourSummary:
            query = source.runs_query(use_case, runs)
            buckets, events = source.composite_buckets(use_case, group_sources, first, query=query)
            return _summary(-1, events, buckets)

        pieces = self.hours.gather(use_case, key, count_hours, count_runs)
        outside_events = 0
        if source.ingest_time_field is not None:
            # Late events: ingested in the range, their timestamp outside the window.
            query = source.outside_query(use_case, self.hours.baseline_start, source.end)
            late, outside_events = source.composite_buckets(use_case, group_sources, first, query=query)
            merged = merge_tallies([*pieces, _summary(0, 0, late)])
            in_range_buckets = source.composite_buckets(use_case, group_sources, start=range_start)[0]
            in_range = {_pair_key(tally): tally.count for tally in _tallies(in_range_buckets)}
        else:  # the range is its hours by event time: those just counted raw
            merged = merge_tallies(pieces)
            span = merge_tallies(piece for piece in pieces if piece.hour_ms >= epoch_ms(range_start))
            in_range = {text: count for text, (count, _, _) in span.items()}
        tallies = []
        for text in sorted(merged, key=json.loads):  # a composite aggregation's order: parent, child
            count, first_ms, hosts = merged[text]
            parent, child = json.loads(text)
            tallies.append(
                PairTally(str(parent), str(child), count, in_range.get(text, 0), first_ms, frozenset(hosts))
            )
        paths = source.rarechild_paths(use_case, range_start)
        self.hours.keep(use_case, key)
        return tallies, paths, sum(piece.events for piece in pieces) + outside_events


def _pair_key(tally: PairTally) -> str:
    return json.dumps([tally.parent, tally.child], separators=(",", ":"), ensure_ascii=False)


def _tallies(buckets: Iterable[Mapping[str, Any]]) -> list[PairTally]:
    """(parent, child, host) buckets folded per stored pair, as the raw path folds them."""
    return tally_groups(group_count(bucket) for bucket in buckets)


def _summary(hour_ms: int, events: int, buckets: Iterable[Mapping[str, Any]]) -> HourSummary:
    """An hour's (parent, child, host) buckets folded per pair: count, earliest event, hosts."""
    tallies = _tallies(buckets)
    return HourSummary(
        hour_ms,
        events,
        0,
        tuple(_pair_key(tally) for tally in tallies),
        tuple(tally.count for tally in tallies),
        firsts=tuple(tally.first_ms or 0 for tally in tallies),
        **host_columns([tally.hosts for tally in tallies]),
    )
