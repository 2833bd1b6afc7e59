"""Stage 4: choose a mixed-size patch partition from the entropy maps (docs/pipeline.md §1.4).

Three methods:

* ``v1``     -- fixed entropy thresholds per coarser scale;
* ``v2``     -- thresholds ``alpha * mean(entropy)`` per scale and image;
* ``budget`` -- an exact token budget ``round(alpha * N)`` reached by a
  quadtree of splits ordered by propagated score.

Masks are boolean grids (one per scale, same shape as the maps); together
they cover every finest-scale cell exactly once. Everything works on torch
tensors (any device) and on NumPy arrays alike: the masks come back in the
kind the maps came in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aptviz.compute import xp
from aptviz.compute.entropy import PAD
from aptviz.compute.measures import DEFAULT_MEASURE
from aptviz.compute.params import (
    Measure,
    Method,
    RunSpec,
    default_thresholds,
    parse_measure,
)
from aptviz.compute.stats import BudgetInfo
from aptviz.errors import ParameterError

__all__ = ["Method", "Selection", "coverage", "select", "select_patches", "upsample"]


@dataclass
class Selection:
    """The outcome of one patch selection.

    Attributes
    ----------
    method : str
        ``"v1"``, ``"v2"`` or ``"budget"``.
    alpha : float or None
        The alpha used (None for v1).
    masks : dict[int, torch.Tensor or ndarray]
        ``{patch_size: bool grid}``; True where a patch of that size is kept.
    thresholds : list of float or None
        Thresholds per coarser scale (v1, v2; None entries for scales with
        no data), None for budget.
    budget_info : BudgetInfo or None
        ``alpha, base_small_tokens, base_tokens, budget, k, tokens`` (budget;
        also readable as ``info["k"]``).
    """

    method: str
    alpha: float | None
    masks: dict
    thresholds: list[float | None] | None = None
    budget_info: BudgetInfo | None = None
    tokens_by_scale: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.tokens_by_scale = {ps: int(m.sum()) for ps, m in sorted(self.masks.items())}

    @property
    def tokens(self) -> int:
        """Total number of kept patches (tokens) over all scales."""
        return sum(self.tokens_by_scale.values())

    @property
    def base_small_tokens(self) -> int:
        """``N``: cells of the finest grid (the uniform-patch token count)."""
        finest = min(self.masks)
        return xp.size(self.masks[finest])

    @property
    def retention(self) -> float:
        """``tokens / N``."""
        return self.tokens / self.base_small_tokens

    @property
    def target_retention(self) -> float | None:
        """``alpha`` for budget, None otherwise."""
        return self.alpha if self.method == Method.budget.value else None


def upsample(mask, ratio: int, shape: tuple[int, int]):
    """Repeat every cell ``ratio`` times in both directions, crop to ``shape``.

    Examples
    --------
    >>> upsample(np.array([[True, False]]), 2, (2, 3)).astype(int).tolist()
    [[1, 1, 0], [1, 1, 0]]
    """
    return xp.repeat2d(mask, ratio)[: shape[0], : shape[1]]


def coverage(masks: dict) -> np.ndarray:
    """How many kept patches cover each finest-scale cell (1 everywhere for a partition).

    Examples
    --------
    >>> m = {14: np.array([[True, True], [False, False]]), 28: np.array([[False]])}
    >>> coverage(m).tolist()
    [[1, 1], [0, 0]]
    """
    finest = min(masks)
    shape = tuple(masks[finest].shape)
    total = np.zeros(shape, dtype=np.int32)
    for ps, m in masks.items():
        total += upsample(xp.to_numpy(m), ps // finest, shape)
    return total


def _nested(maps: dict, raw: dict) -> dict:
    """Keep ``raw[s]`` only where no coarser kept patch already covers the cell."""
    scales = sorted(maps)
    masks: dict = {}
    covered = None  # cells of the current scale covered by a coarser kept patch
    for i in range(len(scales) - 1, -1, -1):
        ps = scales[i]
        shape = tuple(maps[ps].shape)
        if covered is None:
            covered = xp.zeros_bool(shape, maps[ps])
        masks[ps] = raw[ps] & ~covered
        if i > 0:
            finer = scales[i - 1]
            covered = upsample(covered | raw[ps], ps // finer, tuple(maps[finer].shape))
    return dict(sorted(masks.items()))


def _select_thresholds(maps, thresholds: list[float | None]) -> dict:
    scales = sorted(maps)
    raw = {scales[0]: ~xp.zeros_bool(tuple(maps[scales[0]].shape), maps[scales[0]])}
    for ps, thr in zip(scales[1:], thresholds):
        ent = maps[ps]
        if thr is None:
            raw[ps] = xp.zeros_bool(tuple(ent.shape), ent)
        else:
            raw[ps] = (xp.to_float64(ent) < float(thr)) & (ent != PAD)
    return _nested(maps, raw)


def _v2_thresholds(maps, alpha: float) -> list[float | None]:
    out: list[float | None] = []
    for ps in sorted(maps)[1:]:
        ent = maps[ps]
        valid = ent[ent != PAD]
        # float32 entropies sum exactly in float64, so the mean is the same on every backend
        out.append(None if xp.size(valid) == 0 else alpha * (float(xp.to_float64(valid).sum()) / xp.size(valid)))
    return out


def _block_mean(finest, ratio: int, shape: tuple[int, int]):
    """Mean of the ``ratio x ratio`` finest cells under each coarse cell (float64).

    Computed for the coarse cells whose block lies within the finest grid
    (every cell inside the image does); the others stay 0 and are never used.
    The float32 inputs sum exactly in float64, so any summation order gives
    the same result.
    """
    rows, cols = shape
    r_in = min(rows, finest.shape[0] // ratio)
    c_in = min(cols, finest.shape[1] // ratio)
    out = xp.zeros_f64(shape, finest)
    if r_in and c_in:
        blocks = finest[: r_in * ratio, : c_in * ratio].reshape(r_in, ratio, c_in, ratio)
        summed = blocks.sum(axis=(1, 3)) if xp.is_numpy(blocks) else blocks.sum(dim=(1, 3))
        out[:r_in, :c_in] = summed / (ratio * ratio)
    return out


@dataclass
class _Grids:
    """The scales of one set of maps with their shapes and PAD cells (finest first)."""

    scales: list[int]
    shape: dict
    pad: dict

    @classmethod
    def of(cls, maps: dict) -> _Grids:
        scales = sorted(maps)
        return cls(scales, {ps: tuple(maps[ps].shape) for ps in scales}, {ps: maps[ps] == PAD for ps in scales})

    def up(self, grid, to_index: int):
        """A grid one scale coarser brought onto scale ``scales[to_index]``."""
        return upsample(grid, 2, self.shape[self.scales[to_index]])


def _base_partition(g: _Grids) -> dict:
    """Coarsest cells inside the image; overhanging ones split until their parts fit."""
    base: dict = {}
    top = len(g.scales) - 1
    for i in range(top, -1, -1):
        ps = g.scales[i]
        if i == top:  # the finest scale covers every cell: with one scale, PAD cells too
            base[ps] = ~g.pad[ps] if i > 0 else ~xp.zeros_bool(g.shape[ps], g.pad[ps])
        else:
            inherited = g.up(g.pad[g.scales[i + 1]], i)
            base[ps] = inherited if i == 0 else inherited & ~g.pad[ps]
    return base


def _propagated_scores(maps: dict, g: _Grids, base: dict, own_value: bool = False) -> dict:
    """Score of every cell above the finest scale, capped by the parent's score.

    A cell's own score is the mean of the finest values it covers, or with
    ``own_value`` its own value at its scale (upsample-mse, whose finest map
    is all zeros). Base cells keep their own score (they have no parent in
    the tree).
    """
    finest = g.scales[0]
    finest_vals = xp.to_float64(maps[finest])
    prop: dict = {}
    for i in range(len(g.scales) - 1, 0, -1):
        ps = g.scales[i]
        if own_value:
            own = xp.to_float64(maps[ps])
        else:
            own = _block_mean(finest_vals, ps // finest, g.shape[ps])
        if i < len(g.scales) - 1:
            own = xp.where(base[ps], own, xp.minimum(own, g.up(prop[g.scales[i + 1]], i)))
        prop[ps] = own
    return prop


def split_order(g: _Grids, prop: dict):
    """Every cell above the finest scale, in the order budget splits them.

    Indices into the concatenation of the flattened grids, coarsest scale
    first (``g.scales[:0:-1]``): propagated score descending; ties: larger
    cell, then row, then column; PAD cells last. The first ``k`` are split.
    """
    order_scales = g.scales[:0:-1]  # coarsest first: ties go to the larger cell
    neg_scores = xp.concat([xp.where(g.pad[ps], float("inf"), -prop[ps]).reshape(-1) for ps in order_scales])
    # stable ascending sort of -score == descending score; ties keep the
    # (larger scale, row, column) order of the concatenation
    return xp.argsort_stable(neg_scores), neg_scores


def _choose_splits(maps: dict, g: _Grids, prop: dict, k: int) -> dict:
    """The ``k`` highest-scoring splittable cells; ties: larger cell, then row, then column."""
    split = {ps: xp.zeros_bool(g.shape[ps], maps[ps]) for ps in g.scales}
    if k <= 0:
        return split
    order_scales = g.scales[:0:-1]
    order, neg_scores = split_order(g, prop)
    chosen = order[:k]
    flags = xp.zeros_bool((xp.size(neg_scores),), neg_scores)
    flags[chosen] = True
    offset = 0
    for ps in order_scales:
        count = g.shape[ps][0] * g.shape[ps][1]
        split[ps] = flags[offset : offset + count].reshape(g.shape[ps])
        offset += count
    return split


def _assemble_masks(g: _Grids, base: dict, split: dict) -> dict:
    """Kept patches: cells in the tree (base or child of a split) that are not split themselves."""
    masks: dict = {}
    in_tree = base[g.scales[-1]]
    for i in range(len(g.scales) - 1, -1, -1):
        ps = g.scales[i]
        masks[ps] = in_tree & ~split[ps]
        if i > 0:
            in_tree = g.up(split[ps], i - 1) | base[g.scales[i - 1]]
    return dict(sorted(masks.items()))


def _select_budget(maps, alpha: float, own_value: bool = False) -> tuple[dict, BudgetInfo]:
    """Budget selection: base partition, propagated scores, top-k splits, masks (docs/pipeline.md §1.4, §7)."""
    g = _Grids.of(maps)
    n_small = xp.size(maps[g.scales[0]])
    budget = round(alpha * n_small)
    base = _base_partition(g)
    base_tokens = sum(int(b.sum()) for b in base.values())
    prop = _propagated_scores(maps, g, base, own_value)
    splittable = sum(int((~g.pad[ps]).sum()) for ps in g.scales[1:])
    k = min(max(0, (budget - base_tokens) // 3), splittable)
    masks = _assemble_masks(g, base, _choose_splits(maps, g, prop, k))
    tokens = sum(int(m.sum()) for m in masks.values())
    return masks, BudgetInfo(float(alpha), n_small, base_tokens, budget, k, tokens)


def select_patches(
    maps: dict,
    method: str | Method = "v1",
    alpha: float = 1.0,
    thresholds: tuple[float, ...] | list[float] | None = None,
    measure: str | Measure = DEFAULT_MEASURE,
) -> Selection:
    """Select a mixed-size patch partition from importance maps.

    Parameters
    ----------
    maps : dict[int, torch.Tensor or ndarray]
        Output of :func:`aptviz.entropy_maps` (scales must double each time).
        Masks come back on the same backend and device.
    method : {"v1", "v2", "budget"}
        Selection method (docs/pipeline.md §1.4).
    alpha : float
        v2: threshold multiplier (>= 0); budget: target retention in [0, 1].
        Ignored by v1.
    thresholds : sequence of float, optional
        v1 only: one threshold per scale above the finest, in the measure's
        unit. Default ``(3.0, 2.0)`` bits for entropy; the other measures
        have no default.
    measure : {"entropy", "laplacian", "upsample-mse"}
        What the maps measure (:func:`aptviz.importance_maps`). Budget scores
        an upsample-mse cell by its own value (its finest map is all zeros),
        every other measure by the mean of the finest cells it covers.

    Returns
    -------
    Selection
        Masks, tokens, retention, thresholds and budget info.

    Examples
    --------
    >>> import numpy as np
    >>> from aptviz.compute.entropy import entropy_maps
    >>> maps = entropy_maps(np.zeros((112, 112, 3), np.uint8))
    >>> select_patches(maps, "v1").tokens_by_scale
    {14: 0, 28: 0, 56: 4}
    >>> sel = select_patches(maps, "budget", alpha=0.5)
    >>> sel.tokens, sel.budget_info["k"]
    (31, 9)
    >>> select_patches(maps, "v1", measure="laplacian")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: v1 has no default thresholds for laplacian: give --thresholds
    """
    if not maps:
        raise ParameterError("no entropy maps given")
    scales = sorted(maps)
    for a, b in zip(scales, scales[1:]):
        if b != 2 * a:
            raise ParameterError(f"scales must double each time, got {scales}")
    measure = parse_measure(measure)
    thresholds = default_thresholds(method, thresholds, measure, len(scales))
    spec = RunSpec(method, alpha, thresholds).check_scales(len(scales))
    return select(maps, spec, measure)


def select(maps: dict, spec: RunSpec, measure: str | Measure = DEFAULT_MEASURE) -> Selection:
    """Run one validated :class:`RunSpec` on importance maps (see :func:`select_patches`)."""
    if spec.method is Method.v1:
        thr = list(spec.thresholds)
        return Selection("v1", None, _select_thresholds(maps, thr), thresholds=thr)
    if spec.method is Method.v2:
        thr2 = _v2_thresholds(maps, spec.alpha)
        return Selection("v2", spec.alpha, _select_thresholds(maps, thr2), thresholds=thr2)
    masks, info = _select_budget(maps, spec.alpha, own_value=parse_measure(measure).spec.finest_is_zero)
    return Selection("budget", spec.alpha, masks, budget_info=info)


def v2_means(maps: dict) -> list[float | None]:
    """The per-scale means v2 multiplies by alpha (above the finest; None for a scale of PAD only).

    The float64 sum of the float32 non-PAD cells divided by their count: the
    very numbers :func:`select_patches` uses (``alpha * mean``).
    """
    return _v2_thresholds(maps, 1.0)  # 1.0 * mean == mean


def budget_split_order(maps: dict, own_value: bool = False) -> tuple[list[int], dict, np.ndarray]:
    """Budget's base partition and the order it splits cells in (what the explorer page redoes).

    Returns
    -------
    scales : list of int
        The scales, finest first.
    base : dict
        ``{patch size: bool mask}`` of the base partition (NumPy).
    order : ndarray
        int32 indices of the splittable cells (non-PAD, above the finest) in
        split order (:func:`split_order`); the page splits the first ``k``.
    """
    g = _Grids.of(maps)
    base = _base_partition(g)
    prop = _propagated_scores(maps, g, base, own_value)
    splittable = sum(int((~g.pad[ps]).sum()) for ps in g.scales[1:])
    order = xp.to_numpy(split_order(g, prop)[0]) if splittable else np.zeros(0, np.int32)
    return g.scales, {ps: xp.to_numpy(b) for ps, b in base.items()}, order[:splittable]
