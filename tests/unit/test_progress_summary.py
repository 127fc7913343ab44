"""The summary's pure parts: merging hours, day rollups, the stored blob, the rarechild group order."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

from connector.config import load_use_case
from connector.progress.summary import (
    HourSummary,
    _decode,
    _encode,
    host_columns,
    merge_counts,
    merge_tallies,
    summary_key,
)
from connector.sources.elasticsearch import ResolvedFields

HOUR_MS = 3_600_000
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_merging_sums_counts_and_for_rarechild_hours_keeps_the_earliest_event_and_all_hosts():
    first = HourSummary(
        0, 3, 5, ("a", "b"), (2, 1), firsts=(100, 200), **host_columns([{"h1"}, {"h1", "h2"}])
    )
    second = HourSummary(
        HOUR_MS, 4, 4, ("b", "c"), (3, 1), firsts=(150, 4_000_000), **host_columns([{"h3"}, set()])
    )
    assert merge_counts([first, second]) == {"a": 2, "b": 4, "c": 1}
    assert merge_tallies([first, second]) == {
        "a": (2, 100, {"h1"}),
        "b": (4, 150, {"h1", "h2", "h3"}),
        "c": (1, 4_000_000, set()),
    }


def test_a_day_rollup_keeps_each_hours_total_and_for_rarechild_the_first_times_and_hosts():
    hours = [
        HourSummary(
            h * HOUR_MS, 1, h, ("k",), (1,), firsts=(h * HOUR_MS + 7,), **host_columns([{f"h{h % 2}"}])
        )
        for h in range(24)
    ]
    day = HourSummary.day(0, hours)
    assert (day.events, day.total, day.hours) == (24, sum(range(24)), 24)
    assert day.totals() == tuple(range(24))
    assert (day.keys, day.counts, day.firsts, day.hosts) == (("k",), (24,), (7,), (("h0", "h1"),))
    terms_day = HourSummary.day(0, [HourSummary(h * HOUR_MS, 1, 1, ("k",), (1,)) for h in range(24)])
    assert (terms_day.counts, terms_day.firsts, terms_day.hosts) == ((24,), (), ())


def test_the_blob_round_trips_hosts_as_positions_and_terms_blobs_have_neither():
    summary = HourSummary(0, 3, 3, ("ä", "b"), (2, 1), firsts=(5, 6), **host_columns([{"z", "a"}, {"a"}]))
    assert (summary.host_names, summary.host_masks, summary.hosts) == (
        ("a", "z"),
        (3, 1),
        (("a", "z"), ("a",)),
    )
    blob = _encode(summary)
    assert _decode(blob) == {
        "keys": ("ä", "b"),
        "counts": (2, 1),
        "firsts": (5, 6),
        "host_names": ("a", "z"),
        "host_masks": (3, 1),
    }
    assert json.loads(zlib.decompress(base64.b64decode(blob)))["m"] == ["3", "1"]  # each name once
    terms = _decode(_encode(HourSummary(0, 1, 1, ("x",), (1,))))
    assert terms == {"keys": ("x",), "counts": (1,), "firsts": (), "host_names": (), "host_masks": ()}


def test_hosts_join_across_pieces_whose_host_lists_differ():
    pieces = [
        HourSummary(0, 1, 1, ("k", "j"), (1, 1), firsts=(5, 5), **host_columns([{"b", "c"}, {"c"}])),
        HourSummary(HOUR_MS, 1, 1, ("k",), (2,), firsts=(3,), **host_columns([{"a", "d"}])),
        HourSummary(2 * HOUR_MS, 1, 1, ("j",), (1,), firsts=(9,), **host_columns([{"b", "c"}])),
    ]
    assert merge_tallies(pieces) == {"k": (3, 3, {"a", "b", "c", "d"}), "j": (2, 5, {"b", "c"})}


def test_each_model_has_its_own_summary_key_and_the_terms_key_is_unchanged_by_the_host():
    use_case = load_use_case(EXAMPLES / "rare_child.ini", None)
    fields = ResolvedFields(aggregator=("p",), target=("c",), timestamp="@timestamp", host="host.name")
    other_host = ResolvedFields(aggregator=("p",), target=("c",), timestamp="@timestamp", host="h2")
    assert summary_key(use_case, "i", fields) == summary_key(use_case, "i", other_host)
    assert summary_key(use_case, "i", fields, model="rarechild") != summary_key(use_case, "i", fields)
    assert summary_key(use_case, "i", fields, model="rarechild") != summary_key(
        use_case, "i", other_host, model="rarechild"
    )
