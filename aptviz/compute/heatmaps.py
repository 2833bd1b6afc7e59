"""What each measure's heatmaps show, computed before anything is drawn.

:func:`heat_scales` gives, per measure, the colorbar's unit and title, the
one colour range of all its scales and the scale the one-scale pictures show
(the blend, compare.png); the rendering package draws from these numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from aptviz.compute.importance import informative_scale, measure_unit
from aptviz.compute.measures import DEFAULT_MEASURE

__all__ = ["CardScale", "HeatScale", "card_scale", "heat_scales", "heat_style", "value_range"]


@dataclass(frozen=True)
class HeatScale:
    """One measure's heatmaps: colorbar unit and title, colour range, the scale shown alone."""

    unit: str
    measure: str | None  # named on the colorbar; None: entropy's plain title
    vmin: float
    vmax: float
    scale: int  # :func:`aptviz.compute.importance.informative_scale`

    @property
    def style(self) -> dict:
        """``{"unit", "measure"}``: the colorbar's keywords."""
        return {"unit": self.unit, "measure": self.measure}

    @property
    def vrange(self) -> tuple[float, float]:
        return self.vmin, self.vmax


def heat_style(params, measure: str | None = None, aggregate: str | None = None) -> dict:
    """``unit`` and ``measure`` of the heatmap colorbar (entropy's colorbar keeps its plain title).

    ``measure`` (runs of several measures, with its ``aggregate``): that
    measure's colorbar, always named.

    Examples
    --------
    >>> from aptviz.compute.params import Params
    >>> heat_style(Params()), heat_style(Params(), "laplacian", "max")
    ({'unit': 'bits', 'measure': None}, {'unit': 'max |∇²|', 'measure': 'laplacian'})
    """
    if measure is not None:
        return {"unit": measure_unit(measure, aggregate or "mean"), "measure": measure}
    unit = measure_unit(params.importance, params.aggregate or "mean")
    return {"unit": unit, "measure": None if params.importance == DEFAULT_MEASURE else params.importance}


def value_range(summaries: dict) -> tuple[float, float]:
    """One colour scale for all scales of a measure: its non-PAD range (``stats.importance`` per scale)."""
    summaries = [e for e in summaries.values() if e.min is not None]
    return min((e.min for e in summaries), default=0.0), max((e.max for e in summaries), default=0.0)


def heat_scales(analysis, stats) -> dict[str, HeatScale]:
    """``{measure: HeatScale}`` of one image, in the order of its heatmaps (the run's measure first).

    Parameters
    ----------
    analysis : aptviz.compute.analysis.Analysis
        The image, computed.
    stats : aptviz.compute.stats.ImageStats
        Its stats (the per-scale summaries give the colour ranges).
    """
    several = analysis.several_measures
    by_measure = stats.importance_by_measure if several else {analysis.measure: stats.importance}
    aggregates = {s.importance: s.aggregate for s in stats.selections}
    out = {}
    for measure, summaries in by_measure.items():
        style = heat_style(analysis.params, *((measure, aggregates.get(measure)) if several else ()))
        scale = informative_scale(measure, analysis.maps_by_measure[measure])
        out[measure] = HeatScale(style["unit"], style["measure"], *value_range(summaries), scale)
    return out


@dataclass(frozen=True)
class CardScale:
    """The colour scale of an image's heatmaps on its report card, from its stats.json."""

    lo: float
    hi: float
    unit: str
    pad: bool  # some cell is PAD (the scale then shows a no-data key)


def _finite(value) -> float | None:
    """``value`` as a float when it is a finite number (bools are not numbers), else None."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def card_scale(stats: dict) -> CardScale | None:
    """The report card's heatmap scale of one image: the range over its scales' ``min``/``max``, the unit of its
    measure, whether PAD cells exist; None when the stats (a file read back) give no range.

    Examples
    --------
    >>> card_scale({"importance": {"14": {"min": 1.5, "max": 6.0}, "28": {"min": 0.5, "max": 7.0, "pad_cells": 3}}})
    CardScale(lo=0.5, hi=7.0, unit='bits', pad=True)
    >>> card_scale({"importance": {"14": {"min": None, "max": "x"}}}) is None
    True
    """
    from aptviz.compute.importance import UNITS

    summaries = stats.get("importance") or stats.get("entropy") or {}
    if not isinstance(summaries, dict):
        return None
    entries = [e for e in summaries.values() if isinstance(e, dict)]
    lows = [v for v in (_finite(e.get("min")) for e in entries) if v is not None]
    highs = [v for v in (_finite(e.get("max")) for e in entries) if v is not None]
    if not lows or not highs:
        return None
    params = stats.get("params") if isinstance(stats.get("params"), dict) else {}
    measure, aggregate = params.get("importance") or DEFAULT_MEASURE, params.get("aggregate") or "mean"
    unit = UNITS.get((str(measure).lower().replace("_", "-"), str(aggregate).lower()), "importance")
    pad = any((_finite(e.get("pad_cells")) or 0) > 0 for e in entries)
    return CardScale(min(lows), max(highs), unit, pad)
