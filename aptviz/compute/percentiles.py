"""The one percentile rule of aptviz: NumPy's default (linear) rule.

For ``n`` sorted values ``v[0] <= ... <= v[n-1]``, the ``q``-th percentile
sits at position ``h = q / 100 * (n - 1)``: ``v[floor h]`` plus the fraction
``h - floor h`` of the step to ``v[floor h + 1]`` (NumPy's ``"linear"``
method, Arrow's ``interpolation="linear"``, Hyndman & Fan type 7).

Two places use it, on two kinds of data:

* :func:`exact_percentiles` -- when the values are at hand (one image's
  cells: the ``importance_p*`` columns of ``aptviz stats``): exact;
* :func:`histogram_percentiles` -- when only a histogram is kept (a batch's
  ``dataset.json``, merged from every image's ``importance_histogram``): the
  same rule over the values the histogram stands for, the ``c`` values of a
  bin spread evenly inside it (at the midpoints of ``c`` equal sub-bins). It
  is within one bin width of the exact percentile of the original values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PERCENTILES", "exact_percentiles", "histogram_percentiles"]

PERCENTILES = (5, 25, 50, 75, 95)


def exact_percentiles(values, qs=PERCENTILES) -> list[float | None]:
    """The rule on the values themselves (None each when there are none).

    Examples
    --------
    >>> exact_percentiles([4.0, 1.0, 3.0, 2.0], (0, 50, 100))
    [1.0, 2.5, 4.0]
    >>> exact_percentiles([], (50,))
    [None]
    """
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return [None] * len(qs)
    return [float(v) for v in np.percentile(a, qs)]


def histogram_percentiles(counts, lo: float, width: float, qs=PERCENTILES) -> list[float | None]:
    """The rule on the values a histogram stands for (bin ``i`` is ``[lo + i*width, lo + (i+1)*width)``).

    The ``c`` values of a bin are taken at the midpoints of ``c`` equal parts
    of the bin; order statistics are found through the cumulative counts,
    never by listing the values.

    Examples
    --------
    >>> histogram_percentiles([0, 2, 0, 2], lo=0.0, width=1.0, qs=(0, 50, 100))
    [1.25, 2.5, 3.75]
    >>> import numpy as np
    >>> np.percentile([1.25, 1.75, 3.25, 3.75], [0, 50, 100]).tolist()
    [1.25, 2.5, 3.75]
    """
    c = np.asarray(counts, dtype=np.int64)
    n = int(c.sum())
    if n == 0:
        return [None] * len(qs)
    cum = np.cumsum(c)

    def value(k: np.ndarray) -> np.ndarray:  # the k-th smallest value (0-based)
        i = np.searchsorted(cum, k, side="right")
        before = np.where(i > 0, cum[np.maximum(i - 1, 0)], 0)
        return lo + (i + (k - before + 0.5) / c[i]) * width

    h = np.asarray(qs, dtype=np.float64) / 100 * (n - 1)
    below = np.floor(h).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    a, b = value(below), value(above)
    return [float(x) for x in a + (h - below) * (b - a)]
