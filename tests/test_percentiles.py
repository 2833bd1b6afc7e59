"""The one percentile rule (aptviz.compute.percentiles): exact on values, the same rule over a histogram."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aptviz.compute.histogram import HIST_BINS, binned_percentiles, value_histogram
from aptviz.compute.percentiles import PERCENTILES, exact_percentiles, histogram_percentiles

counts_lists = st.lists(st.integers(0, 6), min_size=1, max_size=12).filter(lambda c: sum(c) > 0)


@given(counts_lists, st.floats(-5, 5), st.floats(0.1, 3))
def test_a_histogram_stands_for_values_spread_evenly_in_its_bins(counts, lo, width):
    """The histogram rule is NumPy's rule on the values it stands for (c values at the centres of c sub-bins)."""
    values = [lo + (i + (j + 0.5) / c) * width for i, c in enumerate(counts) for j in range(c)]
    qs = (0, 5, 25, 50, 75, 95, 100)
    got = histogram_percentiles(counts, lo, width, qs)
    np.testing.assert_allclose(got, np.percentile(values, qs), rtol=0, atol=1e-9)


@given(st.lists(st.floats(0, 9, allow_nan=False), min_size=1, max_size=300))
def test_within_one_bin_of_the_exact_percentile(values):
    maps = {14: np.asarray(values, dtype=np.float32).reshape(1, -1)}
    hist = value_histogram(maps)["14"]
    width = (hist["hi"] - hist["lo"]) / HIST_BINS
    exact = exact_percentiles(np.asarray(values, dtype=np.float32))
    approx = binned_percentiles(hist)
    for q, e in zip(PERCENTILES, exact):
        assert abs(approx[f"p{q}"] - e) <= width + 1e-6


def test_exact_is_numpys_default_rule():
    rng = np.random.default_rng(3)
    values = rng.normal(size=1001)
    assert exact_percentiles(values) == [float(v) for v in np.percentile(values, PERCENTILES)]
    assert exact_percentiles([]) == [None] * len(PERCENTILES)
