"""Why an outlier is one: the context an analyst needs beyond ee-outliers' record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """Context of one outlier's (aggregator, term) pair, computed for outliers only.

    :ivar aggregator_total: entries counted under the aggregator value (e.g. all children of the parent)
    :ivar aggregator_distinct_terms: distinct terms under it
    :ivar top_terms: its most common terms, most common first, ties by term (deterministic)
    :ivar host_count: distinct hosts on which the pair occurred in the counted events (None: unknown)
    :ivar first_seen_in_range: with a baseline, True when the pair never occurred before the range
    """

    aggregator_total: int
    aggregator_distinct_terms: int
    top_terms: tuple[tuple[str, int], ...]
    host_count: int | None = None
    first_seen_in_range: bool | None = None
