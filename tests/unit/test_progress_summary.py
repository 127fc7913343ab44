"""The summary's pure parts: merging hours, day rollups, the stored blob, the rarechild group order."""

from __future__ import annotations

import json
from pathlib import Path

from connector.config import load_use_case
from connector.progress.rarechild_incremental import _order
from connector.progress.summary import HourSummary, _decode, _encode, merge_counts, summary_key
from connector.sources.elasticsearch import ResolvedFields

HOUR_MS = 3_600_000
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_merging_sums_counts_and_keeps_the_earliest_event_of_each_key():
    first = HourSummary(0, 3, 5, ("a", "b"), (2, 1), firsts=(100, 200))
    second = HourSummary(HOUR_MS, 4, 4, ("b", "c"), (3, 1), firsts=(150, 4_000_000))
    assert merge_counts([first, second]) == {"a": (2, 100), "b": (4, 150), "c": (1, 4_000_000)}


def test_merging_hours_without_first_times_sums_counts_alone():
    pieces = [HourSummary(0, 2, 2, ("a",), (2,)), HourSummary(HOUR_MS, 1, 9, ("a",), (1,))]
    assert merge_counts(pieces) == {"a": (3, 0)}


def test_a_day_rollup_keeps_each_hours_total_and_the_first_times():
    hours = [HourSummary(h * HOUR_MS, 1, h, ("k",), (1,), firsts=(h * HOUR_MS + 7,)) for h in range(24)]
    day = HourSummary.day(0, hours)
    assert (day.events, day.total, day.hours) == (24, sum(range(24)), 24)
    assert day.totals() == tuple(range(24))
    assert (day.keys, day.counts, day.firsts) == (("k",), (24,), (7,))
    terms_day = HourSummary.day(0, [HourSummary(h * HOUR_MS, 1, 1, ("k",), (1,)) for h in range(24)])
    assert terms_day.firsts == ()


def test_the_blob_round_trips_and_old_blobs_without_first_times_still_read():
    summary = HourSummary(0, 3, 3, ("ä", "b"), (2, 1), firsts=(5, 6))
    assert _decode(_encode(summary)) == (("ä", "b"), (2, 1), (5, 6))
    assert _decode(_encode(HourSummary(0, 1, 1, ("x",), (1,)))) == (("x",), (1,), ())


def test_groups_are_ordered_as_a_composite_aggregation_orders_them_no_host_first():
    texts = [json.dumps(key) for key in (["p", "c", "z"], ["p", "c", None], ["p", "b", "y"], ["a", "c", "h"])]
    ordered = [json.loads(text) for text in sorted(texts, key=_order)]
    assert ordered == [["a", "c", "h"], ["p", "b", "y"], ["p", "c", None], ["p", "c", "z"]]


def test_each_model_has_its_own_summary_key_and_the_terms_key_is_unchanged_by_the_host():
    use_case = load_use_case(EXAMPLES / "rare_child.ini", None)
    fields = ResolvedFields(aggregator=("p",), target=("c",), timestamp="@timestamp", host="host.name")
    other_host = ResolvedFields(aggregator=("p",), target=("c",), timestamp="@timestamp", host="h2")
    assert summary_key(use_case, "i", fields) == summary_key(use_case, "i", other_host)
    assert summary_key(use_case, "i", fields, model="rarechild") != summary_key(use_case, "i", fields)
    assert summary_key(use_case, "i", fields, model="rarechild") != summary_key(
        use_case, "i", other_host, model="rarechild"
    )
