"""End-to-end scenarios of the terms model as docs/model.md documents it, via ``detect_file``.

Every scenario writes a small INI use-case file and an NDJSON events file to ``tmp_path``. The expected
outliers were computed BY HAND from docs/model.md (the computation is in the comment of each test), not by
running the implementation. Floats (decision_frontier, confidence) are compared with a 1e-9 tolerance.

Project decisions used here (see the brief): Q1 wrapping reproduced, Q2 sample not in output nor in the
whitelist universe, Q3 emptied across aggregators kept with u=0, Q5 duplicates counted twice, Q10 across
with an empty batch gives nothing, Q11 a path through a scalar/array/null is "field absent",
confidence = (F - c)/F for low, (c - F)/c for high, clamped to [0, 1], 1.0 when the denominator is 0
(c = term_count; on the within CV path c = CV and F = trigger_sensitivity; on the across path c = u(A)).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.cli import main
from connector.engine import detect_file

TOLERANCE = 1e-9
FLOAT_KEYS = ("decision_frontier", "confidence")
RECORD_KEYS = {
    "_id",
    "_index",
    "aggregator",
    "term",
    "term_count",
    "decision_frontier",
    "trigger_method",
    "confidence",
    "type",
    "reason",
    "summary",
}
INDEX = "osquery-test"
DEFAULT_SUMMARY = "rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}"

# The seed use case (examples/rare_child.ini), verbatim.
SEED_INI = "\n".join(
    [
        "[terms_rare_childname]",
        'es_query_filter=tags:endpoint AND meta.command.name:"get_all_processes_enriched" '
        "AND _exists_:OsqueryFilter.name AND _exists_:OsqueryFilter.parentname "
        'AND NOT OsqueryFilter.parentname.raw:""',
        "aggregator=OsqueryFilter.parentname",
        "target=OsqueryFilter.name",
        "target_count_method=within_aggregator",
        "trigger_on=low",
        "trigger_method=pct_of_avg_value",
        "trigger_sensitivity=1",
        "outlier_type=process execution",
        "outlier_reason=rare child process",
        "outlier_summary=rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}",
        "run_model=1",
        "test_model=0",
        "",
        "[whitelist_regexps]",
        r"rare_child_svchost=^.*rare child process .* for svchost\.exe.*$",
        r"rare_child_services=^.*rare child process .* for services\.exe.*$",
        "",
    ]
)


# --------------------------------------------------------------------------------------------- helpers
def use_case(
    section: str = "terms_test",
    *,
    aggregator: str = "OsqueryFilter.parentname",
    target: str = "OsqueryFilter.name",
    target_count_method: str = "within_aggregator",
    trigger_on: str = "low",
    trigger_method: str = "float",
    trigger_sensitivity: str = "2",
    outlier_type: str = "process execution",
    outlier_reason: str = "rare child process",
    outlier_summary: str = DEFAULT_SUMMARY,
    extra: Iterable[str] = (),
) -> str:
    """One [terms_*] section as INI text."""
    lines = [
        f"[{section}]",
        "es_query_filter=tags:endpoint",
        f"aggregator={aggregator}",
        f"target={target}",
        f"target_count_method={target_count_method}",
        f"trigger_on={trigger_on}",
        f"trigger_method={trigger_method}",
        f"trigger_sensitivity={trigger_sensitivity}",
        f"outlier_type={outlier_type}",
        f"outlier_reason={outlier_reason}",
        f"outlier_summary={outlier_summary}",
        "run_model=1",
        "test_model=0",
        *extra,
    ]
    return "\n".join(lines) + "\n\n"


def whitelist(section: str, entries: dict[str, str]) -> str:
    """A [whitelist_literals] or [whitelist_regexps] section as INI text."""
    return f"[{section}]\n" + "".join(f"{label}={value}\n" for label, value in entries.items()) + "\n"


def hit(_id: str, source: dict[str, Any], index: str = INDEX) -> dict[str, Any]:
    return {"_id": _id, "_index": index, "_source": source}


def proc(parent: Any, name: Any, **extra: Any) -> dict[str, Any]:
    """An osquery-shaped process event source."""
    source: dict[str, Any] = {"OsqueryFilter": {"parentname": parent, "name": name}}
    source.update(extra)
    return source


def children(parent: str, counts: dict[str, int], index: str = INDEX) -> list[dict[str, Any]]:
    """``count`` hits per child name, with ids ``parent|child|i``."""
    return [
        hit(f"{parent}|{child}|{i}", proc(parent, child), index)
        for child, count in counts.items()
        for i in range(count)
    ]


def run(
    tmp_path: Path,
    ini_text: str,
    events: list[dict[str, Any]],
    selected: str | None = None,
    *,
    name: str = "use_cases.ini",
) -> dict[str, Any]:
    config_path = tmp_path / name
    config_path.write_text(ini_text, encoding="utf-8")
    events_path = tmp_path / (name + ".ndjson")
    events_path.write_text("".join(json.dumps(event) + "\n" for event in events), encoding="utf-8")
    result = detect_file(config_path=config_path, events_path=events_path, use_case=selected)
    assert set(result) == {"use_case", "events_analyzed", "outliers"}
    return result


def rec(
    _id: str,
    aggregator: str,
    term: str,
    term_count: int,
    decision_frontier: float,
    confidence: float,
    *,
    summary: str | None = None,
    index: str | None = INDEX,
    trigger_method: str = "float",
    type_: list[str] | None = None,
    reason: list[str] | None = None,
) -> dict[str, Any]:
    """An expected outlier record (summary defaults to DEFAULT_SUMMARY filled from aggregator/term
    when the scenario uses parentname as aggregator and name as target)."""
    return {
        "_id": _id,
        "_index": index,
        "aggregator": aggregator,
        "term": term,
        "term_count": term_count,
        "decision_frontier": decision_frontier,
        "trigger_method": trigger_method,
        "confidence": confidence,
        "type": ["process execution"] if type_ is None else type_,
        "reason": ["rare child process"] if reason is None else reason,
        "summary": f"rare child process {term} for {aggregator}" if summary is None else summary,
    }


def assert_outliers(result: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """Exact comparison, field by field, of the ordered outlier list (floats within 1e-9)."""
    outliers = result["outliers"]
    for record in outliers:
        assert set(record) == RECORD_KEYS, record
    actual_keys = [(o["_id"], o["aggregator"], o["term"], o["term_count"]) for o in outliers]
    expected_keys = [(e["_id"], e["aggregator"], e["term"], e["term_count"]) for e in expected]
    assert actual_keys == expected_keys
    for actual, wanted in zip(outliers, expected, strict=True):
        for key, value in wanted.items():
            if key in FLOAT_KEYS:
                assert actual[key] == pytest.approx(value, abs=TOLERANCE), (actual["_id"], key)
            else:
                assert actual[key] == value, (actual["_id"], key)
                assert type(actual[key]) is type(value), (actual["_id"], key)


# ------------------------------------------------------------------------------ §9 worked example
def test_section9_seed_use_case_flags_the_two_count_one_children(tmp_path: Path) -> None:
    """The worked example with the seed verbatim: only chrome.exe's two count-1 children are outliers; the
    [150,1,1] parent flags nothing; SVCHOST.EXE / Services.exe candidates are whitelisted by the seed
    regexes case-insensitively and their parents re-evaluated."""
    events = (
        # chrome.exe counts [500,250,200,150,100,40,1,1]: sum 1242, mean 155.25, F = 155.25·0.01 = 1.5525
        # -> cmd.exe (1) and 7zFM.exe (1) are < 1.5525; 40 is not. Not whitelisted -> emitted.
        children(
            "chrome.exe",
            {
                "renderer.exe": 500,
                "gpu.exe": 250,
                "utility.exe": 200,
                "crashpad.exe": 150,
                "setup.exe": 100,
                "notification_helper.exe": 40,
                "cmd.exe": 1,
                "7zFM.exe": 1,
            },
        )
        # explorer.exe counts [150,1,1]: mean 152/3 = 50.67, F = 0.5067 -> 1 is not < 0.5067 -> nothing
        + children("explorer.exe", {"notepad.exe": 150, "SUMo.exe": 1, "PremierColor.exe": 1})
        # SVCHOST.EXE counts [300,1]: mean 150.5, F = 1.505 -> x.exe candidate; summary
        # "rare child process x.exe for SVCHOST.EXE" matches rare_child_svchost (IGNORECASE) -> removed;
        # pass 2: [300] -> F = 3.0, 300 is not < 3 -> nothing
        + children("SVCHOST.EXE", {"wuauclt.exe": 300, "x.exe": 1})
        # Services.exe: same shape, whitelisted by rare_child_services
        + children("Services.exe", {"svchost.exe": 300, "y.exe": 1})
    )
    result = run(tmp_path, SEED_INI, events)
    assert result["use_case"] == "terms_rare_childname"
    assert result["events_analyzed"] == 1242 + 152 + 301 + 301
    # confidence = (F - c)/F = (1.5525 - 1)/1.5525 = 0.5525/1.5525 = 0.35587761674718194
    # sorted by _id: "chrome.exe|7zFM.exe|0" < "chrome.exe|cmd.exe|0" ('7' < 'c')
    expected = [
        rec(
            "chrome.exe|7zFM.exe|0",
            "chrome.exe",
            "7zFM.exe",
            1,
            1.5525,
            0.5525 / 1.5525,
            trigger_method="pct_of_avg_value",
        ),
        rec(
            "chrome.exe|cmd.exe|0",
            "chrome.exe",
            "cmd.exe",
            1,
            1.5525,
            0.5525 / 1.5525,
            trigger_method="pct_of_avg_value",
        ),
    ]
    assert_outliers(result, expected)


def test_section9_small_parent_alone_flags_nothing(tmp_path: Path) -> None:
    """§9: a parent with counts [150,1,1] has F = 152/3·0.01 ≈ 0.507, so its count-1 children stay."""
    events = children("explorer.exe", {"notepad.exe": 150, "SUMo.exe": 1, "PremierColor.exe": 1})
    result = run(tmp_path, SEED_INI, events)
    assert result["events_analyzed"] == 152
    assert result["outliers"] == []


# ------------------------------------------------------------------------------ percentile end to end
def test_within_percentile_uses_distinct_counts_and_strict_ties(tmp_path: Path) -> None:
    """Within P, counts a:1 b:1 c:1 d:4 e:9 -> v=[1,1,1,4,9]; percentile over DISTINCT [1,4,9], s=50,
    rank 0.5·2 = 1 -> F = 4. a, b, c (1 < 4) are outliers; d ties F (4 < 4 false). Over all five values
    F would be v_sorted[2] = 1 and nothing would be flagged."""
    ini = use_case(trigger_method="percentile", trigger_sensitivity="50")
    events = children("P", {"a.exe": 1, "b.exe": 1, "c.exe": 1, "d.exe": 4, "e.exe": 9})
    result = run(tmp_path, ini, events)
    # confidence (4 - 1)/4 = 0.75
    expected = [
        rec(f"P|{term}|0", "P", term, 1, 4.0, 0.75, trigger_method="percentile")
        for term in ("a.exe", "b.exe", "c.exe")
    ]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ across_aggregators
def test_across_counts_distinct_terms_and_ignores_min_target_buckets(tmp_path: Path) -> None:
    """across: u(A) = number of DISTINCT terms. aggregator = child, target = parent.
    a.exe {p1,p2,p3} u=3, b.exe {p1,p2,p3} u=3, c.exe {p1 twice} u=1 (2 entries).
    pct_of_max_value s=50: F = max(3,3,1)·0.5 = 1.5; low: only c.exe (1 < 1.5) -> both its entries,
    term_count = u = 1. (Entry counts [3,3,2] would give F=1.5 and flag nothing.) min_target_buckets=10
    is ignored by across (with it, u=1 < 10 would defer c.exe)."""
    ini = use_case(
        aggregator="OsqueryFilter.name",
        target="OsqueryFilter.parentname",
        target_count_method="across_aggregators",
        trigger_method="pct_of_max_value",
        trigger_sensitivity="50",
        extra=["min_target_buckets=10"],
    )
    events = [
        hit("a-p1", proc("p1", "a.exe")),
        hit("a-p2", proc("p2", "a.exe")),
        hit("a-p3", proc("p3", "a.exe")),
        hit("b-p1", proc("p1", "b.exe")),
        hit("b-p2", proc("p2", "b.exe")),
        hit("b-p3", proc("p3", "b.exe")),
        hit("c-p1-1", proc("p1", "c.exe")),
        hit("c-p1-2", proc("p1", "c.exe")),
    ]
    result = run(tmp_path, ini, events)
    # confidence (across: c = u = 1): (1.5 - 1)/1.5 = 1/3
    expected = [
        rec(
            "c-p1-1",
            "c.exe",
            "p1",
            1,
            1.5,
            1 / 3,
            trigger_method="pct_of_max_value",
            summary="rare child process c.exe for p1",
        ),
        rec(
            "c-p1-2",
            "c.exe",
            "p1",
            1,
            1.5,
            1 / 3,
            trigger_method="pct_of_max_value",
            summary="rare child process c.exe for p1",
        ),
    ]
    assert_outliers(result, expected)


def test_across_reevaluation_keeps_emptied_aggregator_as_zero_q3(tmp_path: Path) -> None:
    """Q3: after a whitelist hit, the emptied aggregator stays in the across list with u = 0.
    aggregator = child, target = parent; u: a.exe 1, b.exe 1, trusted.exe 3, d.exe 2.
    pct_of_avg_value s=150, high.
    Pass 1: mean(1,1,3,2) = 7/4 = 1.75, F = 1.75·1.5 = 2.625 -> trusted.exe (3 > 2.625) candidates;
            d.exe 2 is not > 2.625. The literal "trusted.exe" whitelists them -> removed, all discarded.
    Pass 2 (Q3): u = [1,1,0,2], mean 4/4 = 1, F = 1.5 -> d.exe (2 > 1.5) -> its 2 entries, term_count 2.
    (Dropping the emptied aggregator instead: mean(1,1,2) = 4/3, F = 2.0, 2 > 2 false -> nothing.)"""
    ini = use_case(
        aggregator="OsqueryFilter.name",
        target="OsqueryFilter.parentname",
        target_count_method="across_aggregators",
        trigger_on="high",
        trigger_method="pct_of_avg_value",
        trigger_sensitivity="150",
    ) + whitelist("whitelist_literals", {"trusted": "trusted.exe"})
    events = [
        hit("a-p1", proc("p1", "a.exe")),
        hit("b-p1", proc("p1", "b.exe")),
        hit("t-p1", proc("p1", "trusted.exe")),
        hit("t-p2", proc("p2", "trusted.exe")),
        hit("t-p3", proc("p3", "trusted.exe")),
        hit("d-p1", proc("p1", "d.exe")),
        hit("d-p2", proc("p2", "d.exe")),
    ]
    result = run(tmp_path, ini, events)
    # confidence high, c = u = 2: (2 - 1.5)/2 = 0.25
    expected = [
        rec(
            "d-p1",
            "d.exe",
            "p1",
            2,
            1.5,
            0.25,
            trigger_method="pct_of_avg_value",
            summary="rare child process d.exe for p1",
        ),
        rec(
            "d-p2",
            "d.exe",
            "p2",
            2,
            1.5,
            0.25,
            trigger_method="pct_of_avg_value",
            summary="rare child process d.exe for p2",
        ),
    ]
    assert_outliers(result, expected)


def test_across_coeff_of_variation_compares_u_with_the_cv_q7(tmp_path: Path) -> None:
    """Q7: across + coeff_of_variation compares each u(A) with the CV of the u values (s unused).
    u: a.exe 1, b.exe 3 -> mean 2, sigma = sqrt((1+1)/2) = 1, CV = 0.5.
    high: 1 > 0.5 and 3 > 0.5 -> every entry; low: neither 1 nor 3 is < 0.5 -> nothing.
    Also: two use cases in one file, selected by section name."""
    common = {
        "aggregator": "OsqueryFilter.name",
        "target": "OsqueryFilter.parentname",
        "target_count_method": "across_aggregators",
        "trigger_method": "coeff_of_variation",
        "trigger_sensitivity": "99",
    }
    ini = use_case("terms_cv_across_high", trigger_on="high", **common) + use_case(
        "terms_cv_across_low", trigger_on="low", **common
    )
    events = [
        hit("a-p1", proc("p1", "a.exe")),
        hit("b-p1", proc("p1", "b.exe")),
        hit("b-p2", proc("p2", "b.exe")),
        hit("b-p3", proc("p3", "b.exe")),
    ]
    high = run(tmp_path, ini, events, "terms_cv_across_high")
    assert high["use_case"] == "terms_cv_across_high"
    # confidence across high (c = u, F = CV): a: (1 - 0.5)/1 = 0.5 ; b: (3 - 0.5)/3 = 0.8333…
    cv = "coeff_of_variation"
    expected = [
        rec("a-p1", "a.exe", "p1", 1, 0.5, 0.5, trigger_method=cv, summary="rare child process a.exe for p1"),
        rec(
            "b-p1",
            "b.exe",
            "p1",
            3,
            0.5,
            2.5 / 3,
            trigger_method=cv,
            summary="rare child process b.exe for p1",
        ),
        rec(
            "b-p2",
            "b.exe",
            "p2",
            3,
            0.5,
            2.5 / 3,
            trigger_method=cv,
            summary="rare child process b.exe for p2",
        ),
        rec(
            "b-p3",
            "b.exe",
            "p3",
            3,
            0.5,
            2.5 / 3,
            trigger_method=cv,
            summary="rare child process b.exe for p3",
        ),
    ]
    assert_outliers(high, expected)
    low = run(tmp_path, ini, events, "terms_cv_across_low")
    assert low["use_case"] == "terms_cv_across_low"
    assert low["outliers"] == []


@pytest.mark.parametrize(
    "trigger_method",
    [
        "percentile",
        "pct_of_max_value",
        "pct_of_median_value",
        "pct_of_avg_value",
        "mad",
        "madpos",
        "stdev",
        "float",
        "coeff_of_variation",
    ],
    ids=["percentile", "pct_of_max", "pct_of_median", "pct_of_avg", "mad", "madpos", "stdev", "float", "cv"],
)
def test_across_with_an_empty_batch_gives_no_outliers_q10(tmp_path: Path, trigger_method: str) -> None:
    """Q10 (project decision): events exist but none has the target field -> no crash, no outliers,
    events_analyzed still counts the lines read."""
    ini = use_case(
        target_count_method="across_aggregators", trigger_method=trigger_method, trigger_sensitivity="50"
    )
    events = [
        hit("n1", {"OsqueryFilter": {"parentname": "P"}}),
        hit("n2", {"OsqueryFilter": {"parentname": "Q"}}),
    ]
    result = run(tmp_path, ini, events)
    assert result["events_analyzed"] == 2
    assert result["outliers"] == []


def test_empty_events_file_gives_no_outliers(tmp_path: Path) -> None:
    """An empty NDJSON file: events_analyzed 0, no outliers, for across and within alike."""
    across = run(
        tmp_path,
        use_case(target_count_method="across_aggregators", trigger_method="pct_of_avg_value"),
        [],
        name="across.ini",
    )
    within = run(tmp_path, use_case(trigger_method="pct_of_avg_value"), [], name="within.ini")
    assert (across["events_analyzed"], across["outliers"]) == (0, [])
    assert (within["events_analyzed"], within["outliers"]) == (0, [])


# ------------------------------------------------------------------------------ within coeff_of_variation
CV_EVENTS = [
    # P: x.exe 1, y.exe 3 -> v=[1,3]: mean 2, sigma = 1, CV = 0.5
    hit("p-x", proc("P", "x.exe")),
    hit("p-y1", proc("P", "y.exe")),
    hit("p-y2", proc("P", "y.exe")),
    hit("p-y3", proc("P", "y.exe")),
    # Q: z.exe 2, w.exe 2 -> v=[2,2]: sigma = 0, CV = 0
    hit("q-z1", proc("Q", "z.exe")),
    hit("q-z2", proc("Q", "z.exe")),
    hit("q-w1", proc("Q", "w.exe")),
    hit("q-w2", proc("Q", "w.exe")),
    # R: a single distinct term -> v=[1], CV = 0
    hit("r-solo", proc("R", "solo.exe")),
]


def test_within_cv_high_flags_every_entry_of_the_aggregator(tmp_path: Path) -> None:
    """CV path: when CV passes the test against s, EVERY entry of the aggregator is a candidate, with
    decision_frontier = the CV. high, s=0.4: P (0.5 > 0.4) -> x.exe (term_count 1) and 3xy.exe
    (term_count 3); Q and R (CV 0) no.
    confidence (CV path, c = CV = 0.5, F = s = 0.4): (0.5 - 0.4)/0.5 = 0.2."""
    ini = use_case(trigger_on="high", trigger_method="coeff_of_variation", trigger_sensitivity="0.4")
    result = run(tmp_path, ini, CV_EVENTS)
    cv = "coeff_of_variation"
    expected = [
        rec("p-x", "P", "x.exe", 1, 0.5, 0.2, trigger_method=cv),
        rec("p-y1", "P", "y.exe", 3, 0.5, 0.2, trigger_method=cv),
        rec("p-y2", "P", "y.exe", 3, 0.5, 0.2, trigger_method=cv),
        rec("p-y3", "P", "y.exe", 3, 0.5, 0.2, trigger_method=cv),
    ]
    assert_outliers(result, expected)


def test_within_cv_low_flags_single_term_and_flat_aggregators(tmp_path: Path) -> None:
    """CV path, low, s=0.1: P (0.5 < 0.1 false) no; Q (CV 0 < 0.1) -> all 4 entries (term_count 2);
    R has a single distinct term, CV 0 -> always flagged with low (term_count 1). F = 0.0.
    confidence (F = s = 0.1, c = CV = 0): (0.1 - 0)/0.1 = 1.0."""
    ini = use_case(trigger_on="low", trigger_method="coeff_of_variation", trigger_sensitivity="0.1")
    result = run(tmp_path, ini, CV_EVENTS)
    cv = "coeff_of_variation"
    expected = [
        rec("q-w1", "Q", "w.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-w2", "Q", "w.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-z1", "Q", "z.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-z2", "Q", "z.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("r-solo", "R", "solo.exe", 1, 0.0, 1.0, trigger_method=cv),
    ]
    assert_outliers(result, expected)


def test_within_cv_confidence_clamps_and_zero_denominator(tmp_path: Path) -> None:
    """Confidence clamp and zero denominator on the CV path, high, s = -0.5 (everything passes):
    P: c = 0.5, (0.5 - (-0.5))/0.5 = 2 -> clamped to 1.0; Q, R: c = CV = 0 -> denominator 0 -> 1.0."""
    ini = use_case(trigger_on="high", trigger_method="coeff_of_variation", trigger_sensitivity="-0.5")
    result = run(tmp_path, ini, CV_EVENTS)
    cv = "coeff_of_variation"
    expected = [
        rec("p-x", "P", "x.exe", 1, 0.5, 1.0, trigger_method=cv),
        rec("p-y1", "P", "y.exe", 3, 0.5, 1.0, trigger_method=cv),
        rec("p-y2", "P", "y.exe", 3, 0.5, 1.0, trigger_method=cv),
        rec("p-y3", "P", "y.exe", 3, 0.5, 1.0, trigger_method=cv),
        rec("q-w1", "Q", "w.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-w2", "Q", "w.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-z1", "Q", "z.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-z2", "Q", "z.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("r-solo", "R", "solo.exe", 1, 0.0, 1.0, trigger_method=cv),
    ]
    assert_outliers(result, expected)


def test_within_cv_whitelisting_the_only_term_empties_the_aggregator(tmp_path: Path) -> None:
    """§4 step 5 "stop if A is empty": CV low s=0.1; R's only entry is whitelisted by the literal
    "solo.exe" -> R is empty and yields nothing; Q (not whitelisted) is still flagged."""
    ini = use_case(
        trigger_on="low", trigger_method="coeff_of_variation", trigger_sensitivity="0.1"
    ) + whitelist("whitelist_literals", {"solo": "solo.exe"})
    result = run(tmp_path, ini, CV_EVENTS)
    cv = "coeff_of_variation"
    expected = [
        rec("q-w1", "Q", "w.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-w2", "Q", "w.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-z1", "Q", "z.exe", 2, 0.0, 1.0, trigger_method=cv),
        rec("q-z2", "Q", "z.exe", 2, 0.0, 1.0, trigger_method=cv),
    ]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ min_target_buckets
MTB_EVENTS = [
    # P1: a.exe 2, b.exe 1 -> 2 distinct terms
    hit("p1-a1", proc("P1", "a.exe")),
    hit("p1-a2", proc("P1", "a.exe")),
    hit("p1-b", proc("P1", "b.exe")),
    # P2: a.exe 2, b.exe 1, c.exe 2 -> 3 distinct terms
    hit("p2-a1", proc("P2", "a.exe")),
    hit("p2-a2", proc("P2", "a.exe")),
    hit("p2-b", proc("P2", "b.exe")),
    hit("p2-c1", proc("P2", "c.exe")),
    hit("p2-c2", proc("P2", "c.exe")),
    # P3: a.exe 2, b.exe 1, wl.exe 1 -> 3 distinct terms; wl.exe is whitelisted
    hit("p3-a1", proc("P3", "a.exe")),
    hit("p3-a2", proc("P3", "a.exe")),
    hit("p3-b", proc("P3", "b.exe")),
    hit("p3-wl", proc("P3", "wl.exe")),
]


def test_min_target_buckets_defers_and_rechecks_after_whitelisting(tmp_path: Path) -> None:
    """float s=2 low (count 1 flagged), min_target_buckets=3, one batch (deferred = dropped at the end).
    P1: 2 distinct < 3 -> deferred -> nothing.
    P2: 3 distinct -> b.exe (1 < 2) flagged.
    P3: 3 distinct -> candidates b.exe, wl.exe; wl.exe whitelisted -> removed, candidates discarded;
        re-check: {a:2, b:1} = 2 distinct < 3 -> deferred -> dropped, so b.exe is NOT flagged.
    confidence (2 - 1)/2 = 0.5."""
    ini = use_case(extra=["min_target_buckets=3"]) + whitelist("whitelist_literals", {"wl": "wl.exe"})
    result = run(tmp_path, ini, MTB_EVENTS)
    assert result["events_analyzed"] == 12
    assert_outliers(result, [rec("p2-b", "P2", "b.exe", 1, 2.0, 0.5)])


def test_without_min_target_buckets_the_same_events_flag_every_b(tmp_path: Path) -> None:
    """Control for the deferral test: no min_target_buckets -> P1 b, P2 b, and P3 b (pass 2 after
    wl.exe is whitelisted: F is still 2.0 and b's count 1 < 2)."""
    ini = use_case() + whitelist("whitelist_literals", {"wl": "wl.exe"})
    result = run(tmp_path, ini, MTB_EVENTS)
    expected = [
        rec("p1-b", "P1", "b.exe", 1, 2.0, 0.5),
        rec("p2-b", "P2", "b.exe", 1, 2.0, 0.5),
        rec("p3-b", "P3", "b.exe", 1, 2.0, 0.5),
    ]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ fields -> entries
def test_multi_field_aggregator_joins_values_in_field_order(tmp_path: Path) -> None:
    """aggregator "host.name, OsqueryFilter.parentname" (spaces removed) -> values "WS-001 - explorer.exe".
    float s=2 low. WS-001 - explorer.exe: notepad 2, calc 1 -> calc flagged (1 < 2);
    WS-002 - explorer.exe: calc 2 -> nothing. (Aggregating on the parent alone would give calc 3,
    notepad 2 -> nothing.) confidence (2 - 1)/2 = 0.5."""
    ini = use_case(
        aggregator="host.name, OsqueryFilter.parentname",
        outlier_summary=DEFAULT_SUMMARY + " on {host.name}",
    )
    events = [
        hit("e1", proc("explorer.exe", "notepad.exe", host={"name": "WS-001"})),
        hit("e2", proc("explorer.exe", "notepad.exe", host={"name": "WS-001"})),
        hit("e3", proc("explorer.exe", "calc.exe", host={"name": "WS-001"})),
        hit("e4", proc("explorer.exe", "calc.exe", host={"name": "WS-002"})),
        hit("e5", proc("explorer.exe", "calc.exe", host={"name": "WS-002"})),
    ]
    result = run(tmp_path, ini, events)
    expected = [
        rec(
            "e3",
            "WS-001 - explorer.exe",
            "calc.exe",
            1,
            2.0,
            0.5,
            summary="rare child process calc.exe for explorer.exe on WS-001",
        ),
    ]
    assert_outliers(result, expected)


def test_cartesian_product_of_array_fields_and_sort_order(tmp_path: Path) -> None:
    """Every (target string, aggregator string) pair is an entry; multi-field values are the Cartesian
    product joined " - " in FIELD order (field loop order is not visible after sorting); a null array
    element is dropped; output sorted by _id, aggregator, term whatever the file order.
    float s=0 high -> every entry is an outlier (count > 0), confidence (c - 0)/c = 1.0.
    e1: host ["h1","h2"] x targets name "cmd.exe" x groups ["admins","users"]
        -> terms "cmd.exe - admins", "cmd.exe - users" under h1 and h2 (4 entries, count 1 each).
    e2: host "h1", names ["a.exe","b.exe"] x groups ["g1", null] -> "a.exe - g1", "b.exe - g1".
    e3: groups [] -> no entries; e4: groups null -> no entries."""
    ini = use_case(
        aggregator="host.name",
        target="OsqueryFilter.name,user.groups",
        trigger_on="high",
        trigger_sensitivity="0",
        outlier_summary="{OsqueryFilter.parentname}",
    )
    events = [
        hit("e2", proc("P", ["a.exe", "b.exe"], host={"name": "h1"}, user={"groups": ["g1", None]})),
        hit("e1", proc("P", "cmd.exe", host={"name": ["h1", "h2"]}, user={"groups": ["admins", "users"]})),
        hit("e3", proc("P", "cmd.exe", host={"name": "h1"}, user={"groups": []})),
        hit("e4", proc("P", "cmd.exe", host={"name": "h1"}, user={"groups": None})),
    ]
    result = run(tmp_path, ini, events)
    assert result["events_analyzed"] == 4
    expected = [
        rec("e1", "h1", "cmd.exe - admins", 1, 0.0, 1.0, summary="P"),
        rec("e1", "h1", "cmd.exe - users", 1, 0.0, 1.0, summary="P"),
        rec("e1", "h2", "cmd.exe - admins", 1, 0.0, 1.0, summary="P"),
        rec("e1", "h2", "cmd.exe - users", 1, 0.0, 1.0, summary="P"),
        rec("e2", "h1", "a.exe - g1", 1, 0.0, 1.0, summary="P"),
        rec("e2", "h1", "b.exe - g1", 1, 0.0, 1.0, summary="P"),
    ]
    assert_outliers(result, expected)


def test_list_valued_target_q5(tmp_path: Path) -> None:
    """§2.3 / Q5: array elements are entries; duplicates count twice (and give TWO identical records);
    non-strings use Python spelling; an inner array of scalars is joined " - " (null -> "None");
    null, object and array-with-array/object elements are dropped; an empty string is a normal value.
    float s=0 high -> every entry flagged, so the output shows the entries exactly (confidence 1.0).
    l1 ["dup","dup"]            -> "dup" count 2, two records; summary "args: dup, dup"
    l2 [true,1.5,7,7.0,""]      -> "True","1.5","7","7.0","" count 1; summary complex field
    l3 [["x","y"],["x",null],["x",true],null,{"k":"v"},["a",["b"]],["c",{"d":1}],"kept"]
                                -> "x - y","x - None","x - True","kept"
    l4 []  -> nothing;  l5 "scalar" -> "scalar";  l6 null -> nothing."""
    ini = use_case(
        aggregator="host.name",
        target="OsqueryFilter.args",
        trigger_on="high",
        trigger_sensitivity="0",
        outlier_summary="args: {OsqueryFilter.args}",
    )

    def ev(_id: str, args: Any) -> dict[str, Any]:
        return hit(_id, {"host": {"name": "h1"}, "OsqueryFilter": {"args": args}})

    events = [
        ev("l1", ["dup", "dup"]),
        ev("l2", [True, 1.5, 7, 7.0, ""]),
        ev(
            "l3",
            [["x", "y"], ["x", None], ["x", True], None, {"k": "v"}, ["a", ["b"]], ["c", {"d": 1}], "kept"],
        ),
        ev("l4", []),
        ev("l5", "scalar"),
        ev("l6", None),
    ]
    result = run(tmp_path, ini, events)
    assert result["events_analyzed"] == 6
    complex_summary = "args: complex field OsqueryFilter.args"
    expected = [
        rec("l1", "h1", "dup", 2, 0.0, 1.0, summary="args: dup, dup"),
        rec("l1", "h1", "dup", 2, 0.0, 1.0, summary="args: dup, dup"),
        # terms sorted: "" < "1.5" < "7" < "7.0" < "True"
        rec("l2", "h1", "", 1, 0.0, 1.0, summary=complex_summary),
        rec("l2", "h1", "1.5", 1, 0.0, 1.0, summary=complex_summary),
        rec("l2", "h1", "7", 1, 0.0, 1.0, summary=complex_summary),
        rec("l2", "h1", "7.0", 1, 0.0, 1.0, summary=complex_summary),
        rec("l2", "h1", "True", 1, 0.0, 1.0, summary=complex_summary),
        # "kept" < "x - None" < "x - True" < "x - y"
        rec("l3", "h1", "kept", 1, 0.0, 1.0, summary=complex_summary),
        rec("l3", "h1", "x - None", 1, 0.0, 1.0, summary=complex_summary),
        rec("l3", "h1", "x - True", 1, 0.0, 1.0, summary=complex_summary),
        rec("l3", "h1", "x - y", 1, 0.0, 1.0, summary=complex_summary),
        rec("l5", "h1", "scalar", 1, 0.0, 1.0, summary="args: scalar"),
    ]
    assert_outliers(result, expected)


def test_duplicate_array_elements_raise_the_count_q5(tmp_path: Path) -> None:
    """Q5 with a count-sensitive rule: float s=2 low. Under h1, "dup" comes from ["dup","dup"] (count 2,
    not < 2) and "once" from ["once"] (count 1 < 2). Collapsing duplicates would flag "dup" too."""
    ini = use_case(aggregator="host.name", target="OsqueryFilter.args", outlier_summary="x")
    events = [
        hit("d1", {"host": {"name": "h1"}, "OsqueryFilter": {"args": ["dup", "dup"]}}),
        hit("d2", {"host": {"name": "h1"}, "OsqueryFilter": {"args": ["once"]}}),
    ]
    result = run(tmp_path, ini, events)
    assert_outliers(result, [rec("d2", "h1", "once", 1, 2.0, 0.5, summary="x")])


def test_events_missing_a_field_are_skipped_q11(tmp_path: Path) -> None:
    """§2.2 and Q11: an event whose aggregator or target does not resolve is skipped (never counted,
    never an outlier); a path through a string, an array or null is "field absent" (no crash); a literal
    dotted key "host.name" is not resolved; an object value yields no entry.
    float s=0 high -> every counted entry would be an outlier, so only s1 may appear."""
    ini = use_case(aggregator="host.name", trigger_on="high", trigger_sensitivity="0", outlier_summary="x")
    events = [
        hit("s1", proc("P", "ok.exe", host={"name": "h1"})),
        hit("s2", proc("P", "nohost.exe")),
        hit("s3", {"host": {"name": "h1"}, "OsqueryFilter": {"parentname": "P"}}),
        hit("s4", {"host": {"name": "h1"}, "OsqueryFilter": "a string"}),
        hit("s5", {"host": {"name": "h1"}, "OsqueryFilter": [{"name": "inarray.exe"}]}),
        hit("s6", {"host": {"name": "h1"}, "OsqueryFilter": None}),
        hit("s7", proc("P", "dotted.exe", **{"host.name": "h1"})),
        hit("s8", proc("P", {"nested": "object.exe"}, host={"name": "h1"})),
        hit("s9", {"host": "h-scalar", "OsqueryFilter": {"name": "scalarhost.exe"}}),
    ]
    result = run(tmp_path, ini, events)
    assert result["events_analyzed"] == 9
    assert_outliers(result, [rec("s1", "h1", "ok.exe", 1, 0.0, 1.0, summary="x")])


def test_field_paths_are_case_insensitive_first_key_wins(tmp_path: Path) -> None:
    """§2.1: each path segment matches keys case-insensitively; when several keys match, the first in
    document order wins. Placeholders use the same lookup. float s=0 high flags both events."""
    ini = use_case(
        aggregator="HOST.Name",
        target="osqueryfilter.NAME",
        trigger_on="high",
        trigger_sensitivity="0",
        outlier_summary="{OSQUERYFILTER.name} on {Host.NAME}",
    )
    events = [
        hit("c1", {"Host": {"NAME": "h1"}, "osqueryFilter": {"Name": "a.exe"}}),
        hit(
            "c2", {"host": {"name": "first"}, "HOST": {"name": "second"}, "OsqueryFilter": {"name": "b.exe"}}
        ),
    ]
    result = run(tmp_path, ini, events)
    expected = [
        rec("c1", "h1", "a.exe", 1, 0.0, 1.0, summary="a.exe on h1"),
        rec("c2", "first", "b.exe", 1, 0.0, 1.0, summary="b.exe on first"),
    ]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ whitelists
def test_literal_whitelist_needs_every_comma_part(tmp_path: Path) -> None:
    """§6 literal entries: split on ",", each part stripped, and EVERY part must equal (case-sensitive)
    some universe string; parts may match different fields. float s=2 low; P: a 3, b 1, c 1, d 1.
    Pass 1 candidates b, c, d (1 < 2):
      "c.exe, P"         -> c: "c.exe" (term) and "P" (aggregator) -> whitelisted
      "b.exe, nonexistent" -> one part missing -> no
      "D.EXE"            -> case differs -> no
      "a.exe"            -> only a non-outlier term (Q2 sample is NOT in the universe) -> no
      "0.5"              -> the confidence, NOT in the universe -> no
    c removed -> pass 2: a 3, b 1, d 1 -> F still 2 -> b, d emitted. confidence (2 - 1)/2 = 0.5."""
    ini = use_case(trigger_sensitivity="2") + whitelist(
        "whitelist_literals",
        {
            "wl_multi": "c.exe, P",
            "wl_partial": "b.exe, nonexistent",
            "wl_case": "D.EXE",
            "wl_sample": "a.exe",
            "wl_confidence": "0.5",
        },
    )
    events = [
        hit("a1", proc("P", "a.exe")),
        hit("a2", proc("P", "a.exe")),
        hit("a3", proc("P", "a.exe")),
        hit("b1", proc("P", "b.exe")),
        hit("c1", proc("P", "c.exe")),
        hit("d1", proc("P", "d.exe")),
    ]
    result = run(tmp_path, ini, events)
    assert_outliers(result, [rec("b1", "P", "b.exe", 1, 2.0, 0.5), rec("d1", "P", "d.exe", 1, 2.0, 0.5)])


def test_literal_one_matches_term_count_one_q8(tmp_path: Path) -> None:
    """Q8: observation values are in the universe, so the literal "1" whitelists any candidate whose
    term_count is 1. float s=3 low; P: a 3, b 2, c 1 -> candidates b (2 < 3) and c (1 < 3); c has
    term_count "1" -> whitelisted; pass 2: b (2 < 3) emitted. confidence (3 - 2)/3 = 1/3."""
    ini = use_case(trigger_sensitivity="3") + whitelist("whitelist_literals", {"count_one": "1"})
    events = [
        hit("a-x", proc("P", "a.exe")),
        hit("a-y", proc("P", "a.exe")),
        hit("a-z", proc("P", "a.exe")),
        hit("b-x", proc("P", "b.exe")),
        hit("b-y", proc("P", "b.exe")),
        hit("c-x", proc("P", "c.exe")),
    ]
    result = run(tmp_path, ini, events)
    expected = [rec("b-x", "P", "b.exe", 2, 3.0, 1 / 3), rec("b-y", "P", "b.exe", 2, 3.0, 1 / 3)]
    assert_outliers(result, expected)


def test_empty_literal_whitelists_events_with_an_empty_field_q8(tmp_path: Path) -> None:
    """Q8: an empty literal value gives the set {""}, which whitelists any candidate that has an
    empty-string field. float s=2 low; P: a 2, b 1 (cmdline ""), c 1 (cmdline "c"). Pass 1: b, c
    candidates; b has "" -> whitelisted. Pass 2: a 2, c 1 -> c emitted (1 < 2), confidence 0.5."""
    ini = use_case() + whitelist("whitelist_literals", {"wl_empty": ""})
    events = [
        hit("e-a1", proc("P", "a.exe")),
        hit("e-a2", proc("P", "a.exe")),
        hit("e-b", {"OsqueryFilter": {"parentname": "P", "name": "b.exe", "cmdline": ""}}),
        hit("e-c", {"OsqueryFilter": {"parentname": "P", "name": "c.exe", "cmdline": "c"}}),
    ]
    result = run(tmp_path, ini, events)
    assert_outliers(result, [rec("e-c", "P", "c.exe", 1, 2.0, 0.5)])


def test_whitelisting_one_event_of_a_term_lowers_its_count(tmp_path: Path) -> None:
    """Whitelisting removes entries (events), not whole terms: the other events of the term stay and are
    re-counted. float s=3 low; P: a 3, b 2 (b-keep, b-drop). Pass 1: b (2 < 3) -> both entries are
    candidates; the literal "b-drop" (an _id) whitelists one -> removed. Pass 2: a 3, b 1 -> b-keep
    with term_count 1. confidence (3 - 1)/3 = 2/3."""
    ini = use_case(trigger_sensitivity="3") + whitelist("whitelist_literals", {"one_event": "b-drop"})
    events = [
        hit("pa1", proc("P", "a.exe")),
        hit("pa2", proc("P", "a.exe")),
        hit("pa3", proc("P", "a.exe")),
        hit("b-keep", proc("P", "b.exe")),
        hit("b-drop", proc("P", "b.exe")),
    ]
    result = run(tmp_path, ini, events)
    assert_outliers(result, [rec("b-keep", "P", "b.exe", 1, 3.0, 2 / 3)])


def test_across_whitelisting_one_event_lowers_distinct_terms(tmp_path: Path) -> None:
    """across: a whitelisted entry leaves its aggregator, which is re-counted. aggregator = child,
    target = parent; a.exe {p1,p2,p3} u=3, c.exe {p1, p2} u=2. pct_of_max_value s=80 low:
    F = 3·0.8 = 2.4 -> c.exe (2 < 2.4) candidates; "c-p2-drop" whitelisted -> removed.
    Pass 2: u a 3, c 1 -> F 2.4 -> c-p1 with term_count 1. confidence (2.4 - 1)/2.4."""
    ini = use_case(
        aggregator="OsqueryFilter.name",
        target="OsqueryFilter.parentname",
        target_count_method="across_aggregators",
        trigger_method="pct_of_max_value",
        trigger_sensitivity="80",
    ) + whitelist("whitelist_literals", {"one_event": "c-p2-drop"})
    events = [
        hit("a-p1", proc("p1", "a.exe")),
        hit("a-p2", proc("p2", "a.exe")),
        hit("a-p3", proc("p3", "a.exe")),
        hit("c-p1", proc("p1", "c.exe")),
        hit("c-p2-drop", proc("p2", "c.exe")),
    ]
    result = run(tmp_path, ini, events)
    expected = [
        rec(
            "c-p1",
            "c.exe",
            "p1",
            1,
            2.4,
            1.4 / 2.4,
            trigger_method="pct_of_max_value",
            summary="rare child process c.exe for p1",
        ),
    ]
    assert_outliers(result, expected)


UNIVERSE_INI = use_case(
    "terms_wlu",
    outlier_type="process execution, lateral",
    extra=["owner_team=blue-team"],
).replace("es_query_filter=tags:endpoint", "es_query_filter=tags:endpoint AND host.os:windows")

UNIVERSE_EVENTS = [
    # P: a.exe 2, b.exe 1; float s=2 low -> b.exe is the only candidate (1 < 2), F = 2.0, term_count 1,
    # summary "rare child process b.exe for P". After whitelisting b: a 2 -> 2 < 2 false -> nothing.
    hit("w-a1", proc("P", "a.exe")),
    hit("w-a2", proc("P", "a.exe")),
    hit(
        "w-b1",
        {
            "OsqueryFilter": {
                "parentname": "P",
                "name": "b.exe",
                "cmdline": "b.exe /quiet",
                "comment": "  padded  ",
            },
            "host": {"name": "WS-9", "ips": ["10.0.0.1", "10.0.0.2"]},
            "process": {"pid": 4242},
        },
        index="osquery-wl",
    ),
]

UNIVERSE_CANDIDATE = [
    rec("w-b1", "P", "b.exe", 1, 2.0, 0.5, index="osquery-wl", type_=["process execution", "lateral"])
]

LITERAL_UNIVERSE_CASES = [
    ("w-b1", True),  # _id
    ("osquery-wl", True),  # _index
    ("10.0.0.2", True),  # an array item of _source
    ("4242", True),  # an int leaf, str() of it
    ("b.exe /quiet", True),  # a nested _source leaf
    ("padded", True),  # a leaf is stripped before comparison
    ("rare child process b.exe for P", True),  # summary
    ("lateral", True),  # a type item (after the "," split)
    ("rare child process", True),  # a reason item
    ("wlu", True),  # model_name ([terms_wlu] minus "terms_")
    ("terms", True),  # model_type
    ("tags:endpoint AND host.os:windows", True),  # elasticsearch_filter
    ("blue-team", True),  # an arbitrary option is copied into the record
    ("2.0", True),  # decision_frontier
    ("1", True),  # term_count (Q8)
    ("float", True),  # trigger_method
    ("P", True),  # aggregator
    ("b.exe", True),  # term
    ("0.5", False),  # confidence is not in the universe
    ("a.exe", False),  # a non-outlier term: the Q2 sample is not in our universe
    ("Rare Child Process", False),  # literals are case-sensitive
    ("rare child", False),  # literals need equality, not a prefix
    ("w-a1", False),  # another event's id
    ("2", False),  # trigger_sensitivity is a known option, not copied into the record
]


@pytest.mark.parametrize(
    ("literal", "whitelisted"),
    LITERAL_UNIVERSE_CASES,
    ids=[
        "_id",
        "_index",
        "source-array-item",
        "source-int",
        "source-nested",
        "source-stripped",
        "summary",
        "type-item",
        "reason-item",
        "model_name",
        "model_type",
        "elasticsearch_filter",
        "extra-option",
        "decision_frontier",
        "term_count",
        "trigger_method",
        "aggregator",
        "term",
        "not-confidence",
        "not-sample",
        "not-case-insensitive",
        "not-prefix",
        "not-other-event",
        "not-trigger_sensitivity",
    ],
)
def test_literal_whitelist_universe(tmp_path: Path, literal: str, whitelisted: bool) -> None:
    """§6 whitelist universe (project list): raw-hit leaves (_id, _index, _source leaves and array
    items, stripped) plus the outlier record values; confidence and the sample are not part of it."""
    ini = UNIVERSE_INI + whitelist("whitelist_literals", {"candidate": literal})
    result = run(tmp_path, ini, UNIVERSE_EVENTS)
    assert_outliers(result, [] if whitelisted else UNIVERSE_CANDIDATE)


REGEX_UNIVERSE_CASES = [
    ("rare child", True),  # matches the start of the summary / reason
    (r"RARE CHILD PROCESS B\.EXE", True),  # case-insensitive
    ("w-b", True),  # start of _id
    (r"^b\.exe$, ^p$", True),  # both comma parts match ("P" case-insensitively)
    (r"10\.0\.0", True),  # start of an array item
    ("blu", True),  # start of the extra option value
    (r"2\.0$", True),  # decision_frontier
    ("^terms$", True),  # model_type
    (r".*/quiet", True),  # .* is allowed to reach into a leaf
    ("child process", False),  # no universe string STARTS with it (match, not search)
    ("quiet", False),  # only inside "b.exe /quiet", not at its start
    (r"^b\.exe$, ^nothing$", False),  # every comma part must match
    (r"0\.5", False),  # confidence is not in the universe
    (r"a\.exe", False),  # non-outlier term (Q2 sample not in the universe)
]


@pytest.mark.parametrize(
    ("regex", "whitelisted"),
    REGEX_UNIVERSE_CASES,
    ids=[
        "prefix",
        "case-insensitive",
        "_id-prefix",
        "comma-parts-all-match",
        "array-item",
        "extra-option",
        "decision_frontier",
        "model_type",
        "dot-star",
        "not-search",
        "not-search-2",
        "comma-part-fails",
        "not-confidence",
        "not-sample",
    ],
)
def test_regex_whitelist_match_at_start_case_insensitive(
    tmp_path: Path, regex: str, whitelisted: bool
) -> None:
    """§6 regex entries: split on ",", each compiled case-insensitively, each must match the START of at
    least one universe string (re.match semantics, not anchored at the end unless "$")."""
    ini = UNIVERSE_INI + whitelist("whitelist_regexps", {"candidate": regex})
    result = run(tmp_path, ini, UNIVERSE_EVENTS)
    assert_outliers(result, [] if whitelisted else UNIVERSE_CANDIDATE)


REEVAL_EVENTS = (
    # P: a.exe 16, b.exe 4, c.exe 1
    [hit(f"a{i:02d}", proc("P", "a.exe")) for i in range(16)]
    + [hit(f"b{i}", proc("P", "b.exe")) for i in range(1, 5)]
    + [hit("c1", proc("P", "c.exe"))]
)


def test_regex_whitelist_reevaluation_flags_a_different_term(tmp_path: Path) -> None:
    """§4 step 5: after a whitelist hit, the reduced aggregator is re-evaluated from scratch.
    pct_of_avg_value s=50 low. Pass 1: mean(16,4,1) = 21/3 = 7, F = 3.5 -> c (1) candidate, b (4) not.
    The regex "^rare child process c\\.exe" whitelists c -> removed. Pass 2: mean(16,4) = 10, F = 5.0
    -> b (4 < 5) is now an outlier: 4 records, term_count 4. confidence (5 - 4)/5 = 0.2."""
    ini = use_case(trigger_method="pct_of_avg_value", trigger_sensitivity="50") + whitelist(
        "whitelist_regexps", {"c_child": r"^rare child process c\.exe"}
    )
    result = run(tmp_path, ini, REEVAL_EVENTS)
    expected = [
        rec(f"b{i}", "P", "b.exe", 4, 5.0, 0.2, trigger_method="pct_of_avg_value") for i in range(1, 5)
    ]
    assert_outliers(result, expected)


def test_without_whitelist_only_the_first_pass_candidate_is_flagged(tmp_path: Path) -> None:
    """Control for the re-evaluation test: with no whitelist, pass 1 is final -> only c (1 < 3.5).
    confidence (3.5 - 1)/3.5 = 2.5/3.5."""
    ini = use_case(trigger_method="pct_of_avg_value", trigger_sensitivity="50")
    result = run(tmp_path, ini, REEVAL_EVENTS)
    assert_outliers(result, [rec("c1", "P", "c.exe", 1, 3.5, 2.5 / 3.5, trigger_method="pct_of_avg_value")])


def test_summary_wrapped_at_150_defeats_dot_star_regex_q1(tmp_path: Path) -> None:
    """Q1: the summary is textwrap.fill(width=150). The seed regex "^.*rare child process .* for
    svchost\\.exe.*$" then fails on a wrapped summary ('.' stops at '\\n', '$' is not before it).
    svchost.exe: wuauclt.exe 300, at.exe 1, cmd.exe 1 (cmdline = 20 x "abcdefghi").
    Pass 1: mean(300,1,1) = 302/3 = 100.67, F = 1.0067 -> at.exe and cmd.exe candidates.
      at.exe summary (short) matches the seed regex -> whitelisted -> all candidates discarded.
      cmd.exe summary is wrapped -> no match.
    Pass 2: mean(300,1) = 150.5, F = 1.505 -> cmd.exe (1 < 1.505) emitted, not whitelisted.
    Wrapping: prefix "rare child process cmd.exe for svchost.exe cmdline " is 51 chars; each further word
    "abcdefghi" takes 10 (space + 9): 51 + 9 + 9·10 = 150 -> 10 words fit exactly on line 1 (≤ 150),
    line 2 = the other 10 words (99 chars). confidence (1.505 - 1)/1.505."""
    ini = SEED_INI.replace(
        "outlier_summary=rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname}",
        "outlier_summary=rare child process {OsqueryFilter.name} for {OsqueryFilter.parentname} "
        "cmdline {OsqueryFilter.cmdline}",
    )
    words = ["abcdefghi"] * 20
    events = [
        hit(
            f"sv-wu-{i:03d}",
            {"OsqueryFilter": {"parentname": "svchost.exe", "name": "wuauclt.exe", "cmdline": "wuauclt"}},
        )
        for i in range(300)
    ] + [
        hit(
            "sv-at", {"OsqueryFilter": {"parentname": "svchost.exe", "name": "at.exe", "cmdline": "at 10:00"}}
        ),
        hit(
            "sv-cmd",
            {"OsqueryFilter": {"parentname": "svchost.exe", "name": "cmd.exe", "cmdline": " ".join(words)}},
        ),
    ]
    line1 = "rare child process cmd.exe for svchost.exe cmdline " + " ".join(words[:10])
    line2 = " ".join(words[10:])
    assert (len(line1), len(line2)) == (150, 99)  # self-check of the hand count above
    # self-check of our arithmetic against the stdlib wrapper docs/model.md names (not the implementation)
    assert textwrap.fill(line1 + " " + line2, width=150) == line1 + "\n" + line2
    result = run(tmp_path, ini, events)
    expected = [
        rec(
            "sv-cmd",
            "svchost.exe",
            "cmd.exe",
            1,
            1.505,
            0.505 / 1.505,
            summary=line1 + "\n" + line2,
            trigger_method="pct_of_avg_value",
        ),
    ]
    assert_outliers(result, expected)


@pytest.mark.parametrize(
    ("cmdline", "summary"),
    [
        # exactly 150 characters: unchanged
        ("z" * 150, "z" * 150),
        # a 160-character word is split at 150
        ("x" * 160, "x" * 150 + "\n" + "x" * 10),
        # 140 a's + " abcde-fghij" = 152 chars; chunks "a"*140, " ", "abcde-", "fghij":
        # 140 + 1 + 6 = 147 <= 150, + 5 = 152 > 150 -> break after the hyphen
        ("a" * 140 + " abcde-fghij", "a" * 140 + " abcde-\nfghij"),
        # a tab expands to column 8 ("a" + 7 spaces), trailing whitespace dropped
        ("a\tb  ", "a       b"),
        # a newline inside the text becomes a space
        ("one\ntwo", "one two"),
    ],
    ids=["exactly-150", "long-word-split", "break-after-hyphen", "tab-expanded", "newline-to-space"],
)
def test_summary_is_textwrap_filled_at_150_q1(tmp_path: Path, cmdline: str, summary: str) -> None:
    """Q1: the summary is Python textwrap.fill(width=150) of the filled template: long words split, breaks
    after hyphens, tabs expanded, whitespace normalised, trailing whitespace dropped."""
    assert textwrap.fill(cmdline, width=150) == summary  # self-check of the hand result
    ini = use_case(trigger_on="high", trigger_sensitivity="0", outlier_summary="{OsqueryFilter.cmdline}")
    events = [hit("w1", {"OsqueryFilter": {"parentname": "P", "name": "n.exe", "cmdline": cmdline}})]
    result = run(tmp_path, ini, events)
    assert_outliers(result, [rec("w1", "P", "n.exe", 1, 0.0, 1.0, summary=summary)])


def test_within_mad_fallback_end_to_end(tmp_path: Path) -> None:
    """mad low s=3 with MAD = 0: P counts a 5, b 5, c 5, d 1, e 9 -> m = 5, |v - m| = [0,0,0,4,4],
    MAD 0 -> F = mean - 1·sigma = 5 - sqrt(32/5) = 5 - sqrt(6.4) ≈ 2.4702 (s ignored) -> d (1) flagged.
    (Using s: 5 - 3·sqrt(6.4) < 0 would flag nothing.) confidence (F - 1)/F."""
    ini = use_case(trigger_method="mad", trigger_sensitivity="3")
    events = children("P", {"a.exe": 5, "b.exe": 5, "c.exe": 5, "d.exe": 1, "e.exe": 9})
    result = run(tmp_path, ini, events)
    frontier = 5 - math.sqrt(6.4)
    expected = [rec("P|d.exe|0", "P", "d.exe", 1, frontier, (frontier - 1) / frontier, trigger_method="mad")]
    assert_outliers(result, expected)


def test_within_pct_of_median_even_end_to_end(tmp_path: Path) -> None:
    """pct_of_median_value s=50 low: P counts a 1, b 3, c 5, d 7 -> median (3 + 5)/2 = 4, F = 2.0 ->
    a (1 < 2) flagged; b (3) not. confidence (2 - 1)/2 = 0.5."""
    ini = use_case(trigger_method="pct_of_median_value", trigger_sensitivity="50")
    events = children("P", {"a.exe": 1, "b.exe": 3, "c.exe": 5, "d.exe": 7})
    result = run(tmp_path, ini, events)
    expected = [rec("P|a.exe|0", "P", "a.exe", 1, 2.0, 0.5, trigger_method="pct_of_median_value")]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ placeholders
def test_placeholders_and_type_reason_split(tmp_path: Path) -> None:
    """§6 placeholders: case-insensitive lookup in _source overlaid with the observations, model_name
    and model_type (overlay wins: _source "term_count"/"aggregator" are ignored); array of strings
    joined ", "; array with a non-string -> "complex field <path>"; missing ->
    "{field <path> not found in event}" (a path through a string is missing, Q11); type and reason are
    split on "," after filling and stripped.
    float s=2 low; winword.exe: a.exe 2, cmd.exe 1 -> cmd.exe flagged, F 2.0, term_count 1.
    type   "process execution, {model_type}, {model_name}" -> ["process execution","terms","placeholders"]
    reason "rare child {osqueryfilter.NAME}, users {user.names}, {nope.missing}"
        -> "rare child cmd.exe, users alice, bob, {field nope.missing not found in event}" -> 4 items
    summary: see below (143 chars, so no wrapping)."""
    ini = use_case(
        "terms_placeholders",
        outlier_type="process execution, {model_type}, {model_name}",
        outlier_reason="rare child {osqueryfilter.NAME}, users {user.names}, {nope.missing}",
        outlier_summary="{OsqueryFilter.name} ({term_count}) for {aggregator} pid {process.pid} "
        "mixed {OsqueryFilter.mixed} sub {OsqueryFilter.name.sub} frontier {decision_frontier}",
    )
    cmd_source = {
        "OsqueryFilter": {"parentname": "winword.exe", "name": "cmd.exe", "mixed": ["a", 1]},
        "user": {"names": ["alice", "bob"]},
        "process": {"pid": 4242},
        "term_count": "999",
        "aggregator": "fake",
    }
    events = [
        hit("ph-a1", proc("winword.exe", "a.exe")),
        hit("ph-a2", proc("winword.exe", "a.exe")),
        hit("ph-cmd", cmd_source),
    ]
    summary = (
        "cmd.exe (1) for winword.exe pid 4242 mixed complex field OsqueryFilter.mixed "
        "sub {field OsqueryFilter.name.sub not found in event} frontier 2.0"
    )
    assert len(summary) == 143  # self-check: below 150, no wrapping
    result = run(tmp_path, ini, events)
    expected = [
        rec(
            "ph-cmd",
            "winword.exe",
            "cmd.exe",
            1,
            2.0,
            0.5,
            summary=summary,
            type_=["process execution", "terms", "placeholders"],
            reason=["rare child cmd.exe", "users alice", "bob", "{field nope.missing not found in event}"],
        )
    ]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ input format, ids
def test_bare_event_lines_get_line_ids_and_null_index(tmp_path: Path) -> None:
    """NDJSON lines may be hits or bare documents; a bare document gets _id "line-<n>" (1-based line
    number) and _index null. float s=0 high flags all three; sorted "h2" < "line-1" < "line-3"."""
    ini = use_case(trigger_on="high", trigger_sensitivity="0")
    events = [
        proc("P", "x.exe"),
        {"_id": "h2", "_index": "idx-2", "_source": proc("P", "y.exe")},
        proc("P", "z.exe"),
    ]
    result = run(tmp_path, ini, events)
    assert result["events_analyzed"] == 3
    expected = [
        rec("h2", "P", "y.exe", 1, 0.0, 1.0, index="idx-2"),
        rec("line-1", "P", "x.exe", 1, 0.0, 1.0, index=None),
        rec("line-3", "P", "z.exe", 1, 0.0, 1.0, index=None),
    ]
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ confidence
CONFIDENCE_EVENTS = [hit("c-a", proc("P", "a.exe"))] + [
    hit(f"c-b{i}", proc("P", "b.exe")) for i in range(1, 6)
]


def _b_records(frontier: float, confidence: float, method: str) -> list[dict[str, Any]]:
    return [rec(f"c-b{i}", "P", "b.exe", 5, frontier, confidence, trigger_method=method) for i in range(1, 6)]


@pytest.mark.parametrize(
    ("trigger_method", "sensitivity", "trigger_on", "expected"),
    [
        # P: a 1, b 5. float s=3 low: a (1 < 3); confidence (3 - 1)/3 = 2/3
        ("float", "3", "low", [rec("c-a", "P", "a.exe", 1, 3.0, 2 / 3)]),
        # float s=2 high: b (5 > 2); confidence (5 - 2)/5 = 0.6
        ("float", "2", "high", _b_records(2.0, 0.6, "float")),
        # float s=-1 high: both; a (1 + 1)/1 = 2 -> 1.0; b (5 + 1)/5 = 1.2 -> 1.0 (clamped)
        ("float", "-1", "high", [rec("c-a", "P", "a.exe", 1, -1.0, 1.0), *_b_records(-1.0, 1.0, "float")]),
        # pct_of_max_value s=50 high: F = 5·0.5 = 2.5; b (5 > 2.5); confidence (5 - 2.5)/5 = 0.5
        ("pct_of_max_value", "50", "high", _b_records(2.5, 0.5, "pct_of_max_value")),
        # stdev s=0.5 low: mean(1,5) = 3, sigma = 2, F = 3 - 1 = 2; a (1 < 2); confidence (2 - 1)/2 = 0.5
        ("stdev", "0.5", "low", [rec("c-a", "P", "a.exe", 1, 2.0, 0.5, trigger_method="stdev")]),
    ],
    ids=["float-low", "float-high", "float-negative-clamped", "pct_of_max-high", "stdev-low"],
)
def test_confidence_values(
    tmp_path: Path, trigger_method: str, sensitivity: str, trigger_on: str, expected: list[dict[str, Any]]
) -> None:
    """confidence = (F - c)/F for low, (c - F)/c for high, clamped to [0, 1] (c = term_count)."""
    ini = use_case(trigger_method=trigger_method, trigger_sensitivity=sensitivity, trigger_on=trigger_on)
    result = run(tmp_path, ini, CONFIDENCE_EVENTS)
    assert_outliers(result, expected)


# ------------------------------------------------------------------------------ selection, CLI
SELECTION_INI = (
    whitelist("whitelist_literals", {"unused": "no-such-value"})
    + use_case("terms_first")
    + use_case("terms_second", trigger_on="high", trigger_sensitivity="0")
)
SELECTION_EVENTS = [
    hit("s-a1", proc("P", "a.exe")),
    hit("s-a2", proc("P", "a.exe")),
    hit("s-b", proc("P", "b.exe")),
]
# terms_first: float s=2 low -> b (1 < 2), confidence 0.5.
FIRST_EXPECTED = [rec("s-b", "P", "b.exe", 1, 2.0, 0.5)]
# terms_second: float s=0 high -> everything, a count 2, b count 1, confidence 1.0.
SECOND_EXPECTED = [
    rec("s-a1", "P", "a.exe", 2, 0.0, 1.0),
    rec("s-a2", "P", "a.exe", 2, 0.0, 1.0),
    rec("s-b", "P", "b.exe", 1, 0.0, 1.0),
]


def test_use_case_defaults_to_first_terms_section(tmp_path: Path) -> None:
    """Without use_case, the first [terms_*] section runs (a whitelist section before it is skipped)."""
    result = run(tmp_path, SELECTION_INI, SELECTION_EVENTS)
    assert result["use_case"] == "terms_first"
    assert_outliers(result, FIRST_EXPECTED)


def test_use_case_selected_by_section_name(tmp_path: Path) -> None:
    """use_case picks a section of a multi-use-case file by its name."""
    result = run(tmp_path, SELECTION_INI, SELECTION_EVENTS, "terms_second")
    assert result["use_case"] == "terms_second"
    assert result["events_analyzed"] == 3
    assert_outliers(result, SECOND_EXPECTED)


def test_cli_detect_prints_the_same_report_as_json(tmp_path: Path) -> None:
    """`connector detect --config --events --use-case` exits 0 and prints the report as JSON on stdout."""
    config_path = tmp_path / "cli.ini"
    config_path.write_text(SELECTION_INI, encoding="utf-8")
    events_path = tmp_path / "cli.ndjson"
    events_path.write_text("".join(json.dumps(e) + "\n" for e in SELECTION_EVENTS), encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "detect",
            "--config",
            str(config_path),
            "--events",
            str(events_path),
            "--use-case",
            "terms_second",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"use_case", "events_analyzed", "outliers"}
    assert (report["use_case"], report["events_analyzed"]) == ("terms_second", 3)
    assert_outliers(report, SECOND_EXPECTED)
