"""Our numpy-free arithmetic agrees with numpy bit for bit, as ee-outliers computes with numpy.

numpy is a test-only dependency: the package reproduces the three routines it needs.
"""

import random

import numpy as np
import pytest

from connector.model.frontier import _numpy_std, _pairwise_sum, _percentile, decision_frontier

SIZES = [1, 2, 7, 8, 9, 16, 17, 128, 129, 300, 1025]


@pytest.mark.parametrize("size", SIZES, ids=[f"n={n}" for n in SIZES])
def test_pairwise_sum_matches_numpy_sum_exactly(size):
    """numpy's pairwise summation rounds differently from a plain loop; we copy it."""
    generator = random.Random(size)
    for _ in range(20):
        values = [generator.random() * generator.choice([1e-3, 1.0, 1e4]) for _ in range(size)]
        assert _pairwise_sum(values) == np.sum(np.array(values))


@pytest.mark.parametrize("size", SIZES, ids=[f"n={n}" for n in SIZES])
def test_population_std_and_linear_percentile_match_numpy_exactly(size):
    """np.std (ddof 0) and np.percentile over distinct values, on count-like integers."""
    generator = random.Random(1000 + size)
    for _ in range(20):
        counts = [generator.randint(1, 5000) for _ in range(size)]
        assert _numpy_std(counts) == np.std(counts)
        percentile = generator.uniform(0, 100)
        assert _percentile(sorted(set(counts)), percentile) == np.percentile(list(set(counts)), percentile)


@pytest.mark.parametrize("trigger_on", ["low", "high"])
@pytest.mark.parametrize("method", ["stdev", "mad", "madpos", "coeff_of_variation"])
def test_numpy_based_methods_match_a_numpy_formulation(method, trigger_on):
    """The frontier equals the same formula written with numpy, on random count lists."""
    generator = random.Random(f"{method}-{trigger_on}")
    for _ in range(50):
        counts = [generator.randint(1, 300) for _ in range(generator.randint(1, 40))]
        sensitivity = generator.choice([0, 1, 2.5, 3])
        array = np.array(counts)
        sign = 1 if trigger_on == "high" else -1
        if method == "stdev":
            expected = np.nanmean(array) + sign * sensitivity * np.std(array)
        elif method == "coeff_of_variation":
            expected = np.std(array) / np.mean(array)
        else:
            median = np.nanmedian(array)
            expected = median + sign * sensitivity * np.nanmedian(np.absolute(array - median))
            if expected == median:
                expected = np.nanmean(array) + sign * np.std(array)
            if method == "madpos":
                expected = max(expected, 0)
        actual = decision_frontier(
            counts, trigger_method=method, trigger_sensitivity=sensitivity, trigger_on=trigger_on
        )
        assert actual == pytest.approx(float(expected), abs=1e-9, rel=0)
