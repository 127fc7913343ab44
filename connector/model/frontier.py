"""Decision frontiers: the threshold each trigger method derives from a list of counts.

The arithmetic follows ee-outliers, which mixes Python's ``statistics`` module and numpy:
``pct_of_avg_value``/``pct_of_median_value`` use ``statistics``; ``stdev``, ``mad`` and
``coeff_of_variation`` use numpy's mean and population standard deviation. numpy is not a
dependency here; the few numpy routines involved are reproduced (pairwise summation, linear
percentile interpolation) so that frontiers agree to the last bit in ordinary cases.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from connector.config import TriggerMethod, TriggerOn

_PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE


def decision_frontier(
    values: Sequence[float],
    *,
    trigger_method: TriggerMethod | str,
    trigger_sensitivity: float,
    trigger_on: TriggerOn | str,
) -> float:
    """The frontier F for ``values``; for ``coeff_of_variation`` the CV itself.

    :raises ValueError: for an empty ``values`` (callers flag nothing instead).
    """
    if not values:
        raise ValueError("a decision frontier needs at least one value")
    method = TriggerMethod(trigger_method)
    on = TriggerOn(trigger_on)
    sensitivity = trigger_sensitivity
    fraction = sensitivity / 100
    match method:
        case TriggerMethod.PERCENTILE:
            return _percentile(sorted(set(values)), sensitivity)
        case TriggerMethod.PCT_OF_MAX_VALUE:
            return float(max(values) * fraction)
        case TriggerMethod.PCT_OF_MEDIAN_VALUE:
            return float(statistics.median(values) * fraction)
        case TriggerMethod.PCT_OF_AVG_VALUE:
            return float(statistics.mean(values) * fraction)
        case TriggerMethod.STDEV:
            return _stdev_frontier(values, sensitivity, on)
        case TriggerMethod.MAD | TriggerMethod.MADPOS:
            frontier = _mad_frontier(values, sensitivity, on)
            if method is TriggerMethod.MADPOS:
                frontier = max(frontier, 0.0)
            return frontier
        case TriggerMethod.FLOAT:
            return float(sensitivity)
        case TriggerMethod.COEFF_OF_VARIATION:
            mean = _numpy_mean(values)
            return _numpy_std(values) / mean if mean != 0 else math.nan
    raise AssertionError(f"unhandled trigger method {method}")  # pragma: no cover


def is_outlier(*, term_count: float, decision_frontier: float, trigger_on: TriggerOn | str) -> bool:
    """Strict comparison: a value equal to the frontier is never an outlier."""
    if TriggerOn(trigger_on) is TriggerOn.LOW:
        return term_count < decision_frontier
    return term_count > decision_frontier


def confidence(*, value: float, decision_frontier: float, trigger_on: TriggerOn | str) -> float:
    """How far beyond the frontier a flagged value lies, as a number in [0, 1].

    ``low``: (F - value) / F, the share of the way from the frontier down to zero.
    ``high``: (value - F) / value, the share of the value that lies above the frontier.
    0 means "on the frontier", 1 means "as far from it as a count can be".
    """
    if TriggerOn(trigger_on) is TriggerOn.LOW:
        distance, scale = decision_frontier - value, decision_frontier
    else:
        distance, scale = value - decision_frontier, value
    if not math.isfinite(distance):
        return 0.0
    if scale == 0:
        return 1.0 if distance > 0 else 0.0
    return min(1.0, max(0.0, distance / scale))


def _stdev_frontier(values: Sequence[float], sensitivity: float, on: TriggerOn) -> float:
    mean = _numpy_mean(values)
    spread = sensitivity * _numpy_std(values)
    return mean + spread if on is TriggerOn.HIGH else mean - spread


def _mad_frontier(values: Sequence[float], sensitivity: float, on: TriggerOn) -> float:
    median = _numpy_median(values)
    mad = _numpy_median([abs(value - median) for value in values])
    frontier = median + sensitivity * mad if on is TriggerOn.HIGH else median - sensitivity * mad
    if frontier == median:
        # More than half the values are equal (or s is 0): ee-outliers falls back to the
        # standard deviation with sensitivity 1, whatever s is.
        frontier = _stdev_frontier(values, 1, on)
    return frontier


def _numpy_median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return (float(ordered[middle - 1]) + float(ordered[middle])) / 2


def _numpy_mean(values: Sequence[float]) -> float:
    return _pairwise_sum([float(value) for value in values]) / len(values)


def _numpy_std(values: Sequence[float]) -> float:
    """Population standard deviation, computed as ``numpy.std`` does."""
    mean = _numpy_mean(values)
    squares = [(float(value) - mean) * (float(value) - mean) for value in values]
    return math.sqrt(_pairwise_sum(squares) / len(values))


def _pairwise_sum(values: list[float]) -> float:
    """numpy's pairwise summation (``pairwise_sum_DOUBLE``), so rounding matches numpy's."""
    count = len(values)
    if count < 8:
        total = 0.0
        for value in values:
            total += value
        return total
    if count <= _PAIRWISE_BLOCK:
        partial = values[:8]
        index = 8
        while index < count - (count % 8):
            for lane in range(8):
                partial[lane] += values[index + lane]
            index += 8
        total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + (
            (partial[4] + partial[5]) + (partial[6] + partial[7])
        )
        for value in values[index:]:
            total += value
        return total
    half = count // 2
    half -= half % 8
    return _pairwise_sum(values[:half]) + _pairwise_sum(values[half:])


def _percentile(distinct_sorted: Sequence[float], percentile: float) -> float:
    """numpy.percentile with linear interpolation over already sorted values."""
    last = len(distinct_sorted) - 1
    rank = last * (percentile / 100)
    if rank >= last:
        return float(distinct_sorted[last])
    if rank <= 0:
        return float(distinct_sorted[0])
    below = math.floor(rank)
    weight = rank - below
    low, high = float(distinct_sorted[below]), float(distinct_sorted[below + 1])
    step = high - low
    # numpy interpolates from whichever end is nearer, for symmetry.
    if weight >= 0.5:
        return high - step * (1 - weight)
    return low + step * weight
