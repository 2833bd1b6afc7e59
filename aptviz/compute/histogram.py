"""Compact per-image histograms of importance values (stats.json ``importance_histogram``).

Each image stores per scale the counts of its non-PAD cells over
:data:`HIST_BINS` equal bins; a batch merges them (:func:`merge_histograms`)
to get its percentiles without reading any map again.
"""

from __future__ import annotations

import math

import numpy as np

from aptviz.compute.entropy import PAD

__all__ = ["HIST_BINS", "is_histogram", "merge_histograms", "value_histogram", "value_range"]

HIST_BINS = 500  # linear bins over the measure's range (entropy: 0 .. log2(bins) bits)


def value_range(importance: str = "entropy", bins: int = 512, values: np.ndarray | None = None) -> float:
    """Upper end of the histogram range: ``log2(bins)`` bits for entropy, else the values' max."""
    if importance == "entropy":
        return math.log2(bins)
    if values is None or values.size == 0:
        return 1.0
    top = float(values.max())
    return top if top > 0 else 1.0


def value_histogram(maps: dict, importance: str = "entropy", bins: int = 512) -> dict:
    """Per-scale histogram of the non-PAD cell values of one image (for stats.json).

    ``{"14": {"lo": 0.0, "hi": 9.0, "counts": [...]}, ...}`` with
    :data:`HIST_BINS` equal bins over ``[lo, hi]`` (trailing zeros dropped).

    Examples
    --------
    >>> h = value_histogram({14: np.array([[0.0, 9.0], [4.5, PAD]], np.float32)})
    >>> h["14"]["hi"], sum(h["14"]["counts"]), len(h["14"]["counts"])
    (9.0, 3, 500)
    """
    out = {}
    for ps, m in sorted(maps.items()):
        arr = np.asarray(m)
        vals = arr[arr != PAD].astype(np.float64)
        hi = value_range(importance, bins, vals)
        idx = np.clip((vals / hi * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
        counts = np.bincount(idx, minlength=HIST_BINS)
        nz = np.nonzero(counts)[0]
        counts = counts[: nz[-1] + 1] if nz.size else counts[:0]
        out[str(ps)] = {"lo": 0.0, "hi": hi, "counts": counts.tolist()}
    return out


def merge_histograms(hists: list[dict]) -> dict:
    """Sum per-image histograms scale by scale (images with another range are rebinned).

    Examples
    --------
    >>> a = {"14": {"lo": 0.0, "hi": 9.0, "counts": [1, 2]}}
    >>> merge_histograms([a, a])["14"]["counts"][:2]
    [2, 4]
    """
    merged: dict = {}
    for hist in hists:
        for ps, h in hist.items():
            counts = np.zeros(HIST_BINS, dtype=np.int64)
            counts[: len(h["counts"])] = h["counts"]
            if ps not in merged:
                merged[ps] = {"lo": h["lo"], "hi": h["hi"], "counts": counts}
                continue
            m = merged[ps]
            if h["hi"] != m["hi"]:  # rebin by bin centres onto the merged range (widening it if needed)
                hi = max(h["hi"], m["hi"])
                m["counts"] = _rebin(m["counts"], m["hi"], hi)
                counts = _rebin(counts, h["hi"], hi)
                m["hi"] = hi
            m["counts"] = m["counts"] + counts
    return {ps: {"lo": m["lo"], "hi": m["hi"], "counts": m["counts"].tolist()} for ps, m in merged.items()}


def _rebin(counts: np.ndarray, hi: float, new_hi: float) -> np.ndarray:
    centres = (np.arange(HIST_BINS) + 0.5) * hi / HIST_BINS
    idx = np.clip((centres / new_hi * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
    return np.bincount(idx, weights=counts, minlength=HIST_BINS).astype(np.int64)


def is_histogram(hist) -> bool:
    """Whether ``hist`` is a per-scale histogram as :func:`value_histogram` writes it (from an untrusted stats.json).

    Scale keys are digit strings; ``lo`` and ``hi`` finite numbers with
    ``lo < hi``; ``counts`` at most :data:`HIST_BINS` non-negative integers.

    Examples
    --------
    >>> is_histogram({"14": {"lo": 0.0, "hi": 9.0, "counts": [1, 2]}}), is_histogram({"x": "y"})
    (True, False)
    """

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def scale(key, h) -> bool:
        return (
            isinstance(key, str) and key.isdigit() and isinstance(h, dict)
            and number(h.get("lo")) and number(h.get("hi")) and h["lo"] < h["hi"]
            and isinstance(h.get("counts"), list) and len(h["counts"]) <= HIST_BINS
            and set(map(type, h["counts"])) <= {int} and min(h["counts"], default=0) >= 0
        )  # fmt: skip

    return isinstance(hist, dict) and all(scale(k, h) for k, h in hist.items())
