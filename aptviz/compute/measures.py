"""The importance measures: one :class:`MeasureSpec` each, in one table.

Every other module reads a measure's facts from here (its unit, the scale a
one-scale picture shows, its memory, its colour, its default thresholds, the
``--importance`` help) and never names a measure. Adding a measure is one
entry in :data:`MEASURES` and its maps function in
:mod:`aptviz.compute.importance` (``tests/test_structure.py`` counts the files
that name each measure). This module is a leaf: it imports nothing of aptviz.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_MEASURE", "MEASURES", "MeasureSpec", "measure_spec"]


@dataclass(frozen=True)
class MeasureSpec:
    """What the rest of aptviz knows of one importance measure.

    Attributes
    ----------
    name : str
        The ``--importance`` name (and the ``Measure`` member's value).
    maps : str
        The function of :mod:`aptviz.compute.importance` that computes its maps,
        called as ``maps(image, aggregate, patch_size, num_scales, bins, device, backend)``.
    help : str
        A few words for ``--importance`` help.
    unit : str
        Unit of its values; ``{aggregate}`` stands for the per-cell aggregate.
    mean_unit : str or None
        Unit when the aggregate is ``mean``, if it differs from ``unit``.
    takes_aggregate : bool
        Whether per-pixel values are aggregated per cell (``--aggregate``).
    finest_is_zero : bool
        Its finest map is all zeros (nothing is lost at the finest size): the
        one-scale pictures show the next scale, and budget scores a cell by
        its own value.
    bytes_per_pixel : int
        Extra memory per resized pixel while its maps are computed (the
        entropy tiles are counted apart, by :mod:`aptviz.runs.memory`).
    color : str
        Its matplotlib colour in the batch figures.
    default_thresholds : tuple of float or None
        v1's thresholds for three scales (more scales repeat the last), or
        None: v1 then needs ``--thresholds``.
    max_value : callable or None
        ``max_value(bins)``, a fixed upper end of its values (histogram
        range); None: the values' own maximum.
    maps_over_time : str or None
        The function of :mod:`aptviz.compute.importance` that computes its maps
        over a video tubelet's frames jointly, called as
        ``maps(frames, patch_size, num_scales, bins)``; None: each frame's
        per-pixel values are aggregated together (mean, max, pooled std).
    js_twin : str or None
        The function of ``render/explorer.js`` that computes it in the browser,
        if any (none does today: the explorer reads the maps).

    Examples
    --------
    >>> spec = measure_spec(DEFAULT_MEASURE)
    >>> spec.unit_for("mean"), spec.takes_aggregate, spec.max_value(512)
    ('bits', False, 9.0)
    """

    name: str
    maps: str
    help: str
    unit: str
    mean_unit: str | None = None
    takes_aggregate: bool = True
    finest_is_zero: bool = False
    bytes_per_pixel: int = 0
    color: str = "tab:purple"
    default_thresholds: tuple[float, ...] | None = None
    max_value: Callable[[int], float] | None = None
    maps_over_time: str | None = None
    js_twin: str | None = None

    def unit_for(self, aggregate: str = "mean") -> str:
        """The unit of its values under ``aggregate`` (for colorbars and tables)."""
        if aggregate == "mean" and self.mean_unit is not None:
            return self.mean_unit
        return self.unit.format(aggregate=aggregate)

    def informative_scale(self, scales) -> int:
        """The finest scale whose map carries information (the one-scale pictures show it)."""
        scales = sorted(scales)
        return scales[1] if self.finest_is_zero and len(scales) > 1 else scales[0]


MEASURES: tuple[MeasureSpec, ...] = (
    MeasureSpec(
        name="entropy",
        maps="entropy_cells",
        help="entropy (bits)",
        unit="bits",
        takes_aggregate=False,
        color="tab:blue",
        default_thresholds=(3.0, 2.0),
        max_value=math.log2,
        maps_over_time="entropy_cells_over_time",
    ),
    MeasureSpec(
        name="laplacian",
        maps="laplacian_cells",
        help="laplacian (|∇²| of gray/255)",
        unit="{aggregate} |∇²|",
        bytes_per_pixel=20,
        color="tab:green",
    ),
    MeasureSpec(
        name="upsample-mse",
        maps="reconstruction_cells",
        help="upsample-mse (error of a bilinear down-up reconstruction at the patch's scale)",
        unit="{aggregate} squared error",
        mean_unit="MSE",
        finest_is_zero=True,
        bytes_per_pixel=36,
        color="tab:red",
    ),
)
"""Every measure; the first is the default."""

DEFAULT_MEASURE = MEASURES[0].name
"""The measure used when none is given (``--importance``, ``Params.importance``)."""

_BY_NAME = {spec.name: spec for spec in MEASURES}


def measure_spec(name) -> MeasureSpec:
    """The :class:`MeasureSpec` of a measure name or ``Measure`` member (KeyError when unknown).

    Examples
    --------
    >>> measure_spec(MEASURES[1].name) is MEASURES[1]
    True
    """
    return _BY_NAME[str(getattr(name, "value", name))]
