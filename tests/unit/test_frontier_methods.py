"""Decision frontiers and the outlier test, checked against hand-computed values.

Every expected value below was computed by hand from docs/model.md, "Decision frontier" (the arithmetic is in
the comment next to each case), never by running the implementation. Notation: ``v`` the values,
``s`` trigger_sensitivity, ``p = s / 100``, ``m`` the median, ``sigma`` the population standard deviation.
"""

from __future__ import annotations

import math

import pytest

from connector.model.frontier import decision_frontier, is_outlier

TOLERANCE = 1e-9

# (values, trigger_method, trigger_sensitivity, trigger_on, expected frontier)
FRONTIER_CASES = [
    # ---------------------------------------------------------------- percentile
    # Over the sorted DISTINCT values with numpy's linear interpolation: rank = (s/100)·(k-1).
    # v=[1,1,1,1,5,9] -> distinct [1,5,9], k=3, s=50 -> rank 0.5·2 = 1.0 -> distinct[1] = 5.
    # (numpy over all six values would give rank 2.5 between 1 and 1 -> 1, so this pins "distinct".)
    ([1, 1, 1, 1, 5, 9], "percentile", 50, "low", 5.0),
    # s=25 -> rank 0.25·2 = 0.5 -> 1 + 0.5·(5-1) = 3.0  (interpolation between distinct values)
    ([1, 1, 1, 1, 5, 9], "percentile", 25, "low", 3.0),
    # s=90 -> rank 0.9·2 = 1.8 -> 5 + 0.8·(9-5) = 8.2 ; trigger_on does not matter for percentile
    ([1, 1, 1, 1, 5, 9], "percentile", 90, "high", 8.2),
    # s=0 -> smallest distinct value 2 ; s=100 -> largest 10
    ([2, 10, 4, 10], "percentile", 0, "low", 2.0),
    ([2, 10, 4, 10], "percentile", 100, "high", 10.0),
    # unsorted input: distinct sorted [1,2,3], s=50 -> rank 1 -> 2
    ([3, 1, 2], "percentile", 50, "low", 2.0),
    # one distinct value: distinct [7] -> 7 whatever s
    ([7, 7, 7], "percentile", 40, "low", 7.0),
    # ---------------------------------------------------------------- pct_of_max_value
    # max(v)·p = 8·0.5 = 4.0
    ([2, 8, 5], "pct_of_max_value", 50, "low", 4.0),
    # 8·0.1 = 0.8
    ([2, 8, 5], "pct_of_max_value", 10, "high", 0.8),
    # ---------------------------------------------------------------- pct_of_median_value
    # odd n: median([1,3,10]) = 3 -> 3·0.5 = 1.5
    ([1, 3, 10], "pct_of_median_value", 50, "low", 1.5),
    # even n: sorted [1,2,6,10] -> median (2+6)/2 = 4 -> 4·0.5 = 2.0 (input order does not matter)
    ([10, 1, 6, 2], "pct_of_median_value", 50, "low", 2.0),
    # even n with duplicates: [1,1,3,9] -> (1+3)/2 = 2 -> 2·1.5 = 3.0
    ([1, 1, 3, 9], "pct_of_median_value", 150, "high", 3.0),
    # ---------------------------------------------------------------- pct_of_avg_value
    # §9: sum = 500+250+200+150+100+40+1+1 = 1242, mean = 1242/8 = 155.25 -> ·0.01 = 1.5525
    ([500, 250, 200, 150, 100, 40, 1, 1], "pct_of_avg_value", 1, "low", 1.5525),
    # §9: [150,1,1] -> mean 152/3 = 50.666… -> ·0.01 = 0.50666…
    ([150, 1, 1], "pct_of_avg_value", 1, "low", 152 / 3 / 100),
    # mean([2,4]) = 3 -> 3·2.5 = 7.5
    ([2, 4], "pct_of_avg_value", 250, "high", 7.5),
    # ---------------------------------------------------------------- stdev (population sigma)
    # v=[2,4,4,4,5,5,7,9]: mean 40/8 = 5; squared deviations 9+1+1+1+0+0+4+16 = 32; sigma = sqrt(32/8) = 2
    # (the sample sigma would be sqrt(32/7) ≈ 2.138). high: 5 + 1.5·2 = 8 ; low: 5 - 1.5·2 = 2
    ([2, 4, 4, 4, 5, 5, 7, 9], "stdev", 1.5, "high", 8.0),
    ([2, 4, 4, 4, 5, 5, 7, 9], "stdev", 1.5, "low", 2.0),
    # s=0 -> the mean itself
    ([2, 4, 4, 4, 5, 5, 7, 9], "stdev", 0, "high", 5.0),
    # v=[1,1,1,10]: mean 13/4 = 3.25; sq. dev. 3·2.25² + 6.75² = 15.1875 + 45.5625 = 60.75;
    # sigma = sqrt(60.75/4) = sqrt(15.1875) = sqrt(243)/4 ≈ 3.8971 -> low: 3.25 - 3.8971 ≈ -0.6471 (negative)
    ([1, 1, 1, 10], "stdev", 1, "low", 3.25 - math.sqrt(243) / 4),
    # ---------------------------------------------------------------- mad
    # v=[1,2,3,4,100]: m = 3; |v-m| = [2,1,0,1,97] -> sorted [0,1,1,2,97] -> MAD 1
    # high: 3 + 2·1 = 5 ; low: 3 - 2·1 = 1
    ([1, 2, 3, 4, 100], "mad", 2, "high", 5.0),
    ([1, 2, 3, 4, 100], "mad", 2, "low", 1.0),
    # even n: v=[1,2,4,10]: m = (2+4)/2 = 3; |v-m| = [2,1,1,7] -> sorted [1,1,2,7] -> MAD (1+2)/2 = 1.5
    # high: 3 + 2·1.5 = 6 ; low: 3 - 2·1.5 = 0
    ([1, 2, 4, 10], "mad", 2, "high", 6.0),
    ([1, 2, 4, 10], "mad", 2, "low", 0.0),
    # MAD = 0 fallback: v=[5,5,5,1,9]: m = 5; |v-m| = [0,0,0,4,4] -> MAD 0 -> F == m
    # -> mean ± 1·sigma with sensitivity 1 (s=3 ignored): mean 25/5 = 5; sq. dev. 0+0+0+16+16 = 32;
    # sigma = sqrt(32/5) = sqrt(6.4) ≈ 2.5298 -> high 7.5298…, low 2.4702…  (5 ± 3sigma would be wrong)
    ([5, 5, 5, 1, 9], "mad", 3, "high", 5 + math.sqrt(6.4)),
    ([5, 5, 5, 1, 9], "mad", 3, "low", 5 - math.sqrt(6.4)),
    # s = 0 fallback: v=[1,2,3,4,100], MAD 1 but s=0 -> F == m = 3 -> mean ± sigma:
    # mean 110/5 = 22; deviations -21,-20,-19,-18,78; squares 441+400+361+324+6084 = 7610;
    # sigma = sqrt(7610/5) = sqrt(1522) ≈ 39.0128 -> high 61.0128…, low -17.0128…
    ([1, 2, 3, 4, 100], "mad", 0, "high", 22 + math.sqrt(1522)),
    ([1, 2, 3, 4, 100], "mad", 0, "low", 22 - math.sqrt(1522)),
    # ---------------------------------------------------------------- madpos (mad, then max(F, 0))
    # low: 3 - 5·1 = -2 -> clamped to 0
    ([1, 2, 3, 4, 100], "madpos", 5, "low", 0.0),
    # high: 3 + 5·1 = 8 (no clamp needed)
    ([1, 2, 3, 4, 100], "madpos", 5, "high", 8.0),
    # same as mad when positive: 3 - 2·1 = 1
    ([1, 2, 3, 4, 100], "madpos", 2, "low", 1.0),
    # s = 0 -> fallback 22 - sqrt(1522) ≈ -17.01 -> clamped to 0
    ([1, 2, 3, 4, 100], "madpos", 0, "low", 0.0),
    ([1, 2, 3, 4, 100], "madpos", 0, "high", 22 + math.sqrt(1522)),
    # MAD 0 fallback, positive: 5 - sqrt(6.4) ≈ 2.4702 stays
    ([5, 5, 5, 1, 9], "madpos", 3, "low", 5 - math.sqrt(6.4)),
    # ---------------------------------------------------------------- float
    # F = s, values ignored
    ([1, 2, 3], "float", 3, "low", 3.0),
    ([1, 2, 3], "float", 0.25, "high", 0.25),
    # ---------------------------------------------------------------- coeff_of_variation (returns the CV)
    # sigma/mean = 2/5 = 0.4 for [2,4,4,4,5,5,7,9]; s and trigger_on do not change it
    ([2, 4, 4, 4, 5, 5, 7, 9], "coeff_of_variation", 10, "low", 0.4),
    ([2, 4, 4, 4, 5, 5, 7, 9], "coeff_of_variation", 0.1, "high", 0.4),
    # [1,3]: mean 2, sigma = sqrt((1+1)/2) = 1 -> 0.5
    ([1, 3], "coeff_of_variation", 1, "low", 0.5),
    # a single value: sigma = 0 -> CV 0
    ([3], "coeff_of_variation", 1, "low", 0.0),
    # [1,1,1,10]: sigma = sqrt(243)/4, mean 3.25 -> CV = sqrt(243)/13 ≈ 1.1991
    ([1, 1, 1, 10], "coeff_of_variation", 1, "high", math.sqrt(243) / 4 / 3.25),
]

FRONTIER_IDS = [
    "percentile-distinct-s50",
    "percentile-interpolated-s25",
    "percentile-interpolated-s90",
    "percentile-s0-min",
    "percentile-s100-max",
    "percentile-unsorted",
    "percentile-single-distinct",
    "pct_of_max-s50",
    "pct_of_max-s10",
    "pct_of_median-odd",
    "pct_of_median-even",
    "pct_of_median-even-duplicates",
    "pct_of_avg-section9-big-parent",
    "pct_of_avg-section9-small-parent",
    "pct_of_avg-s250",
    "stdev-population-high",
    "stdev-population-low",
    "stdev-s0-is-mean",
    "stdev-negative-low",
    "mad-high",
    "mad-low",
    "mad-even-high",
    "mad-even-low",
    "mad-zero-mad-fallback-high-ignores-s",
    "mad-zero-mad-fallback-low-ignores-s",
    "mad-s0-fallback-high",
    "mad-s0-fallback-low-negative",
    "madpos-clamp-low",
    "madpos-high",
    "madpos-positive-low",
    "madpos-s0-fallback-clamped",
    "madpos-s0-fallback-high",
    "madpos-zero-mad-fallback-low",
    "float-low",
    "float-high",
    "cv-low",
    "cv-high",
    "cv-two-values",
    "cv-single-value",
    "cv-irrational",
]


@pytest.mark.parametrize(
    ("values", "trigger_method", "trigger_sensitivity", "trigger_on", "expected"),
    FRONTIER_CASES,
    ids=FRONTIER_IDS,
)
def test_decision_frontier_matches_hand_computation(
    values: list[int], trigger_method: str, trigger_sensitivity: float, trigger_on: str, expected: float
) -> None:
    """Each trigger_method computes the frontier of docs/model.md (distinct-value percentile, even median,
    population sigma, mad fallback with sensitivity 1, madpos clamp, float = s, CV)."""
    frontier = decision_frontier(
        values,
        trigger_method=trigger_method,
        trigger_sensitivity=trigger_sensitivity,
        trigger_on=trigger_on,
    )
    assert frontier == pytest.approx(expected, abs=TOLERANCE)


@pytest.mark.parametrize(
    "trigger_method",
    [
        "percentile",
        "pct_of_max_value",
        "pct_of_median_value",
        "pct_of_avg_value",
        "float",
        "coeff_of_variation",
    ],
    ids=["percentile", "pct_of_max_value", "pct_of_median_value", "pct_of_avg_value", "float", "cv"],
)
def test_frontier_of_one_sided_methods_ignores_trigger_on(trigger_method: str) -> None:
    """Only stdev, mad and madpos depend on the direction; the other methods give the same F for low
    and high."""
    values = [1, 2, 2, 7]
    low = decision_frontier(values, trigger_method=trigger_method, trigger_sensitivity=50, trigger_on="low")
    high = decision_frontier(values, trigger_method=trigger_method, trigger_sensitivity=50, trigger_on="high")
    assert low == pytest.approx(high, abs=TOLERANCE)


def test_frontier_is_independent_of_value_order() -> None:
    """The frontier is a function of the multiset of counts, not of their order (§9 counts reversed)."""
    forward = [500, 250, 200, 150, 100, 40, 1, 1]
    frontier = decision_frontier(
        list(reversed(forward)), trigger_method="pct_of_avg_value", trigger_sensitivity=1, trigger_on="low"
    )
    # mean 155.25 · 0.01 = 1.5525
    assert frontier == pytest.approx(1.5525, abs=TOLERANCE)


# (term_count, decision_frontier, trigger_on, expected)
OUTLIER_CASES = [
    # §9: count 1 < 1.5525 -> outlier
    (1, 1.5525, "low", True),
    # ties are not outliers (strict <, strict >)
    (1, 1.0, "low", False),
    (4, 4.0, "high", False),
    # strictly beyond the frontier
    (0.999, 1.0, "low", True),
    (2, 1.0, "high", True),
    # wrong side
    (3, 2.0, "low", False),
    (1, 2.0, "high", False),
    # negative frontier with low flags nothing (counts are >= 1)
    (1, -0.647114317029974, "low", False),
    # madpos clamp at 0: low flags nothing, high flags every positive count
    (1, 0.0, "low", False),
    (1, 0.0, "high", True),
]


@pytest.mark.parametrize(
    ("term_count", "frontier", "trigger_on", "expected"),
    OUTLIER_CASES,
    ids=[
        "low-below",
        "low-tie",
        "high-tie",
        "low-just-below",
        "high-above",
        "low-above",
        "high-below",
        "low-negative-frontier",
        "low-zero-frontier",
        "high-zero-frontier",
    ],
)
def test_is_outlier_is_strict(term_count: float, frontier: float, trigger_on: str, expected: bool) -> None:
    """low means count < F and high means count > F, both strict (docs/model.md, "Decision frontier")."""
    assert is_outlier(term_count=term_count, decision_frontier=frontier, trigger_on=trigger_on) is expected


def test_negative_stdev_frontier_with_low_flags_nothing() -> None:
    """stdev low over [1,1,1,10] gives F = 3.25 - sqrt(243)/4 ≈ -0.647, so no count is below it."""
    values = [1, 1, 1, 10]
    frontier = decision_frontier(values, trigger_method="stdev", trigger_sensitivity=1, trigger_on="low")
    assert frontier < 0
    assert [is_outlier(term_count=v, decision_frontier=frontier, trigger_on="low") for v in values] == [
        False
    ] * 4


def test_mad_low_tie_with_the_frontier_is_not_flagged() -> None:
    """mad low over [1,2,3,4,100] with s=2 gives F = 3 - 2·1 = 1; the count 1 ties F and is no outlier,
    while high (F = 5) flags only 100."""
    values = [1, 2, 3, 4, 100]
    low = decision_frontier(values, trigger_method="mad", trigger_sensitivity=2, trigger_on="low")
    high = decision_frontier(values, trigger_method="mad", trigger_sensitivity=2, trigger_on="high")
    assert [v for v in values if is_outlier(term_count=v, decision_frontier=low, trigger_on="low")] == []
    assert [v for v in values if is_outlier(term_count=v, decision_frontier=high, trigger_on="high")] == [100]


def test_section9_frontiers_flag_exactly_the_count_one_children() -> None:
    """§9: [500,250,200,150,100,40,1,1] flags both 1s (1 < 1.5525); [150,1,1] flags nothing
    (F = 152/3·0.01 ≈ 0.507)."""
    big = [500, 250, 200, 150, 100, 40, 1, 1]
    small = [150, 1, 1]
    f_big = decision_frontier(big, trigger_method="pct_of_avg_value", trigger_sensitivity=1, trigger_on="low")
    f_small = decision_frontier(
        small, trigger_method="pct_of_avg_value", trigger_sensitivity=1, trigger_on="low"
    )
    assert [v for v in big if is_outlier(term_count=v, decision_frontier=f_big, trigger_on="low")] == [1, 1]
    assert [v for v in small if is_outlier(term_count=v, decision_frontier=f_small, trigger_on="low")] == []
