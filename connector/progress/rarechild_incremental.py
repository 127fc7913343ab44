"""The rarechild model's counts from the baseline summary plus the new span's raw counts.

Per hour the summary keeps each (parent, child, host) with its event count and its earliest event; a
day rollup sums the counts and keeps the earliest. So the model gets what its raw composite
aggregation returns (:meth:`~connector.sources.elasticsearch.ElasticsearchSource.rarechild_counts`):
each group's count over the window, how many of its events lie in the range, when it was first seen,
in the same order. The range's path counts are counted raw, as without the summary: they cover the
range alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from connector.config import RareChildUseCase
from connector.model.rarechild import GroupCount, PathCount
from connector.model.terms import Pair
from connector.progress.incremental import BaselineHours, SummaryUse
from connector.progress.summary import HourSummary, SummaryStore, merge_counts, summary_key
from connector.sources.elasticsearch import ElasticsearchSource

MODEL = "rarechild"


def _group_key(bucket_key: Mapping[str, Any]) -> str:
    return json.dumps([bucket_key["p"], bucket_key["c"], bucket_key.get("h")], separators=(",", ":"))


def _order(text: str) -> tuple[Any, ...]:
    """Where a composite aggregation puts the group: by parent, child, then host (no host first)."""
    parent, child, host = json.loads(text)
    return parent, child, host is not None, "" if host is None else host


class SummarisedRareChildSource:
    """A :class:`~connector.rarechild_engine.RareChildSource` counting whole baseline hours from the
    summary; the parameters are those of :class:`~connector.progress.incremental.BaselineHours`."""

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

    def rarechild_hits(
        self,
        use_case: RareChildUseCase,
        wanted: dict[Pair, frozenset[str] | None],
        range_start: datetime | None = None,
    ) -> dict[Pair, list[dict[str, Any]]]:
        return self.source.rarechild_hits(use_case, wanted, range_start)

    def rarechild_counts(
        self, use_case: RareChildUseCase, range_start: datetime | None = None
    ) -> tuple[list[GroupCount], list[PathCount], int]:
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

        pieces = self.hours.gather(use_case, key, count_hours)
        merged = merge_counts(pieces)
        outside_events = 0
        if source.ingest_time_field is not None:
            # Late events: ingested in the range, their timestamp outside the window.
            query = source.outside_query(use_case, self.hours.baseline_start, source.end)
            late, outside_events = source.composite_buckets(use_case, group_sources, first, query=query)
            merged = merge_counts([*pieces, _summary(0, 0, late)])
            in_range = _counts(source.composite_buckets(use_case, group_sources, start=range_start)[0])
        else:  # the range is its hours by event time: those just counted raw
            span = [piece for piece in pieces if piece.hour_ms >= _ms(range_start)]
            in_range = {text: count for text, (count, _) in merge_counts(span).items()}
        groups = []
        for text in sorted(merged, key=_order):
            count, first_ms = merged[text]
            parent, child, host = json.loads(text)
            groups.append(
                GroupCount(
                    parent=str(parent),
                    child=str(child),
                    host=None if host is None else str(host),
                    count=count,
                    in_range=in_range.get(text, 0),
                    first_ms=first_ms,
                )
            )
        paths = source.rarechild_paths(use_case, range_start)
        self.hours.keep(use_case, key)
        return groups, paths, sum(piece.events for piece in pieces) + outside_events


def _summary(hour_ms: int, events: int, buckets: Iterable[Mapping[str, Any]]) -> HourSummary:
    rows = [
        (_group_key(bucket["key"]), int(bucket["doc_count"]), int(bucket["first"]["value"]))
        for bucket in buckets
    ]
    return HourSummary(
        hour_ms,
        events,
        0,
        tuple(text for text, _, _ in rows),
        tuple(count for _, count, _ in rows),
        firsts=tuple(first for _, _, first in rows),
    )


def _counts(buckets: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return {_group_key(bucket["key"]): int(bucket["doc_count"]) for bucket in buckets}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
