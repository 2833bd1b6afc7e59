"""Stage 4: choose a mixed-size patch partition from the entropy maps (SPEC §1.4).

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
from enum import Enum

import numpy as np

from . import _xp as xp
from .entropy import PAD
from .errors import ParameterError

__all__ = ["Method", "Selection", "coverage", "select_patches", "upsample"]


class Method(str, Enum):
    """Patch selection methods."""

    v1 = "v1"
    v2 = "v2"
    budget = "budget"


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
    budget_info : dict or None
        ``{alpha, base_small_tokens, base_tokens, budget, k, tokens}`` (budget).
    """

    method: str
    alpha: float | None
    masks: dict
    thresholds: list[float | None] | None = None
    budget_info: dict | None = None
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


def _select_budget(maps, alpha: float) -> tuple[dict, dict]:
    scales = sorted(maps)
    finest = scales[0]
    n_small = xp.size(maps[finest])
    budget = round(alpha * n_small)
    pad = {ps: maps[ps] == PAD for ps in scales}
    shape = {ps: tuple(maps[ps].shape) for ps in scales}
    finest_vals = xp.to_float64(maps[finest])

    def parent_up(ps_index: int, grid):
        """A coarser grid (scale index + 1) brought onto scale ``ps_index``."""
        return upsample(grid, 2, shape[scales[ps_index]])

    # base partition: coarsest cells inside the image, overhanging ones split until they fit
    base: dict = {}
    for i in range(len(scales) - 1, -1, -1):
        ps = scales[i]
        if i == len(scales) - 1:
            base[ps] = ~pad[ps]
        else:
            inherited = parent_up(i, pad[scales[i + 1]])
            base[ps] = inherited if i == 0 else inherited & ~pad[ps]
    base_tokens = sum(int(b.sum()) for b in base.values())

    # propagated scores of every splittable cell (scale > finest, inside the image)
    prop: dict = {}
    for i in range(len(scales) - 1, 0, -1):
        ps = scales[i]
        own = _block_mean(finest_vals, ps // finest, shape[ps])
        if i < len(scales) - 1:
            parent = parent_up(i, prop[scales[i + 1]])
            own = xp.where(base[ps], own, xp.minimum(own, parent))
        prop[ps] = own
    order_scales = scales[:0:-1]  # coarsest first: ties go to the larger cell
    splittable = sum(int((~pad[ps]).sum()) for ps in order_scales)
    k = min(max(0, (budget - base_tokens) // 3), splittable)

    split = {ps: xp.zeros_bool(shape[ps], maps[ps]) for ps in scales}
    if k > 0:
        neg_scores = xp.concat([xp.where(pad[ps], float("inf"), -prop[ps]).reshape(-1) for ps in order_scales])
        # stable ascending sort of -score == descending score; ties keep the
        # (larger scale, row, column) order of the concatenation
        chosen = xp.argsort_stable(neg_scores)[:k]
        flags = xp.zeros_bool((xp.size(neg_scores),), neg_scores)
        flags[chosen] = True
        offset = 0
        for ps in order_scales:
            count = shape[ps][0] * shape[ps][1]
            split[ps] = flags[offset : offset + count].reshape(shape[ps])
            offset += count

    masks: dict = {}
    in_tree = base[scales[-1]]
    for i in range(len(scales) - 1, -1, -1):
        ps = scales[i]
        masks[ps] = in_tree & ~split[ps]
        if i > 0:
            in_tree = parent_up(i - 1, split[ps]) | base[scales[i - 1]]
    masks = dict(sorted(masks.items()))
    tokens = sum(int(m.sum()) for m in masks.values())
    info = {
        "alpha": float(alpha),
        "base_small_tokens": n_small,
        "base_tokens": base_tokens,
        "budget": budget,
        "k": k,
        "tokens": tokens,
    }
    return masks, info


def select_patches(
    maps: dict,
    method: str | Method = "v1",
    alpha: float = 1.0,
    thresholds: tuple[float, ...] | list[float] = (3.0, 2.0),
) -> Selection:
    """Select a mixed-size patch partition from entropy maps.

    Parameters
    ----------
    maps : dict[int, torch.Tensor or ndarray]
        Output of :func:`aptviz.entropy_maps` (scales must double each time).
        Masks come back on the same backend and device.
    method : {"v1", "v2", "budget"}
        Selection method (SPEC §1.4).
    alpha : float
        v2: threshold multiplier (>= 0); budget: target retention in [0, 1].
        Ignored by v1.
    thresholds : sequence of float
        v1 only: one entropy threshold (bits) per scale above the finest.

    Returns
    -------
    Selection
        Masks, tokens, retention, thresholds and budget info.

    Examples
    --------
    >>> import numpy as np
    >>> from aptviz.entropy import entropy_maps
    >>> maps = entropy_maps(np.zeros((112, 112, 3), np.uint8))
    >>> select_patches(maps, "v1").tokens_by_scale
    {14: 0, 28: 0, 56: 4}
    >>> sel = select_patches(maps, "budget", alpha=0.5)
    >>> sel.tokens, sel.budget_info["k"]
    (31, 9)
    """
    method = Method(method).value
    if not maps:
        raise ParameterError("no entropy maps given")
    scales = sorted(maps)
    for a, b in zip(scales, scales[1:]):
        if b != 2 * a:
            raise ParameterError(f"scales must double each time, got {scales}")
    if method == "v1":
        thr = [float(t) for t in thresholds]
        if len(thr) != len(scales) - 1:
            raise ParameterError(
                f"v1 needs {len(scales) - 1} threshold(s) (one per scale above the finest), got {len(thr)}"
            )
        return Selection("v1", None, _select_thresholds(maps, thr), thresholds=thr)
    alpha = float(alpha)
    if method == "v2":
        if not alpha >= 0:
            raise ParameterError(f"v2 alpha must be >= 0, got {alpha}")
        thr2 = _v2_thresholds(maps, alpha)
        return Selection("v2", alpha, _select_thresholds(maps, thr2), thresholds=thr2)
    if not 0.0 <= alpha <= 1.0:
        raise ParameterError(f"budget alpha must be in [0, 1], got {alpha}")
    masks, info = _select_budget(maps, alpha)
    return Selection("budget", alpha, masks, budget_info=info)
