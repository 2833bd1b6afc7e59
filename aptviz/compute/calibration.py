"""Find the alpha (v2) or threshold factor (v1) that gives a target retention (SPEC §8).

For v1 and v2 a coarse cell of value ``v`` at scale ``s`` is kept as a whole
patch when ``v < x * base[s]`` (``x`` = alpha and ``base`` = the scale's mean
for v2; ``x`` = factor and ``base`` = the given thresholds for v1). So the cell
switches on exactly when ``x`` passes ``v / base[s]`` (its *activation*), and
it contributes one token while it is switched on and no coarser ancestor is:
for ``activation < x <= min(ancestors' activations)``. An image's token count,
and so its retention and any statistic over images, is therefore a step
function of ``x`` that only changes at activations. :func:`calibrate_maps`
evaluates that function exactly at every step, picks the step whose statistic
is closest to the target from below, returns a short decimal inside it, and
re-checks it with :func:`aptviz.compute.selection.select_patches` on every image.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import numpy as np

from aptviz.compute.entropy import PAD
from aptviz.compute.params import Statistic
from aptviz.compute.selection import select_patches
from aptviz.compute.xp import to_numpy
from aptviz.errors import ParameterError

__all__ = ["Calibration", "calibrate_maps", "retention_curve", "step_function"]

STATISTICS = tuple(s.value for s in Statistic)  # the choices of --statistic


@dataclass(frozen=True)
class StepFunction:
    """Token count of one image as a function of ``x`` (alpha or factor).

    ``tokens(x) = #(lo < x) - #(hi < x)`` over the cells with ``lo < hi``.
    """

    lo: np.ndarray  # sorted activations (where a cell switches on)
    hi: np.ndarray  # sorted switch-off points (an ancestor switches on)
    n: int  # base_small_tokens

    def tokens(self, x: np.ndarray) -> np.ndarray:
        """Token count at each ``x`` (vectorised).

        Examples
        --------
        >>> f = StepFunction(np.array([-np.inf, 1.0]), np.array([1.0, np.inf]), 1)
        >>> f.tokens(np.array([0.5, 1.0, 1.5])).tolist()
        [1, 1, 1]
        """
        x = np.asarray(x, dtype=np.float64)
        return np.searchsorted(self.lo, x, side="left") - np.searchsorted(self.hi, x, side="left")

    def retention(self, x: np.ndarray) -> np.ndarray:
        return self.tokens(x) / self.n


def _bases(maps: dict, method: str, thresholds) -> list[float | None]:
    """Per coarser scale, the quantity ``x`` multiplies (mean for v2, threshold for v1)."""
    scales = sorted(maps)[1:]
    if method == "v1":
        return [float(t) for t in thresholds]
    out: list[float | None] = []
    for ps in scales:
        ent = to_numpy(maps[ps])
        valid = ent[ent != PAD].astype(np.float64)
        out.append(float(valid.sum()) / valid.size if valid.size else None)
    return out


def step_function(maps: dict, method: str = "v2", thresholds=(3.0, 2.0)) -> StepFunction:
    """The exact token-count step function of one image for v2 (alpha) or v1 (factor).

    Parameters
    ----------
    maps : dict[int, ndarray or torch.Tensor]
        Importance maps of one image.
    method : {"v2", "v1"}
        v2: ``x`` is alpha; v1: ``x`` multiplies every threshold.
    thresholds : sequence of float
        v1's base thresholds (one per scale above the finest).

    Returns
    -------
    StepFunction

    Examples
    --------
    >>> from aptviz.compute.entropy import entropy_maps
    >>> img = np.zeros((56, 56, 3), np.uint8); img[:14, :14] = 255; img[:7, :7] = 0
    >>> f = step_function(entropy_maps(img), "v2")
    >>> f.tokens(np.array([0.0, 1.0, 5.0])).tolist()
    [16, 7, 1]
    """
    scales = sorted(maps)
    bases = _bases(maps, method, thresholds)
    # activation of every cell, scale by scale (finest: always on; PAD / no base: never)
    act = {scales[0]: np.full(to_numpy(maps[scales[0]]).shape, -np.inf)}
    for ps, base in zip(scales[1:], bases):
        ent = to_numpy(maps[ps])
        vals = ent.astype(np.float64)
        if base is None or not base > 0:
            a = np.full(vals.shape, np.inf)
        else:
            a = np.where(ent == PAD, np.inf, vals / base)
        act[ps] = a
    los, his = [], []
    ceiling = None  # min activation of the coarser ancestors, on the current grid
    for i in range(len(scales) - 1, -1, -1):
        ps = scales[i]
        a = act[ps]
        hi = np.full(a.shape, np.inf) if ceiling is None else ceiling
        on = a < hi
        los.append(a[on])
        his.append(hi[on])
        if i > 0:
            finer = to_numpy(maps[scales[i - 1]]).shape
            ceiling = np.repeat(np.repeat(np.minimum(a, hi), 2, axis=0), 2, axis=1)[: finer[0], : finer[1]]
    n = int(np.prod(to_numpy(maps[scales[0]]).shape))
    return StepFunction(np.sort(np.concatenate(los)), np.sort(np.concatenate(his)), n)


def _statistic(values: np.ndarray, statistic: str) -> np.ndarray:
    """Mean or median over images (axis 0), like :mod:`statistics` does it."""
    return values.mean(axis=0) if statistic == "mean" else np.median(values, axis=0)


def _short_decimal(lo: float, hi: float) -> float:
    """The shortest decimal strictly inside ``(lo, hi)``, kept clear of both ends.

    Examples
    --------
    >>> _short_decimal(1.2345, 1.31)
    1.3
    >>> _short_decimal(0.0, math.inf)
    1.0
    """
    if math.isinf(hi):
        hi = max(2.0 * lo, lo + 2.0)
    margin = (hi - lo) * 1e-6
    for digits in range(0, 16):
        scale = 10.0**digits
        x = math.floor(lo * scale + 1.0) / scale
        x = round(x, digits)
        if lo + margin < x < hi - margin:
            return x
    return (lo + hi) / 2.0


@dataclass
class Calibration:
    """The outcome of a calibration (``calibration.json``)."""

    method: str
    statistic: str
    target: float
    value: float  # alpha (v2) or factor (v1)
    achieved: float
    retentions: list[float]
    paths: list[str] = field(default_factory=list)
    thresholds: list[float | None] | None = None  # v1: the scaled thresholds
    below_target: bool = True  # False when no value reaches the target from below
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) of images left out; not in the json

    def to_dict(self) -> dict:
        out = {
            "method": self.method,
            "statistic": self.statistic,
            "target": self.target,
            ("alpha" if self.method == "v2" else "factor"): self.value,
            "achieved": self.achieved,
        }
        if self.thresholds is not None:
            out["thresholds"] = self.thresholds
        out["reached_from_below"] = self.below_target
        out["images"] = [{"path": p, "retention": r} for p, r in zip(self.paths, self.retentions)]
        return out


def retention_curve(functions: list[StepFunction], xs: np.ndarray, statistic: str = "mean") -> np.ndarray:
    """The retention statistic over images at each ``x``.

    Evaluated a block of ``x`` at a time, so memory stays bounded by
    :data:`CURVE_BLOCK` values whatever the number of images and points.
    """
    xs = np.asarray(xs, dtype=np.float64)
    out = np.empty(xs.shape, dtype=np.float64)
    block = max(16, CURVE_BLOCK // max(1, len(functions)))
    for start in range(0, xs.size, block):
        values = np.stack([f.retention(xs[start : start + block]) for f in functions])
        out[start : start + block] = _statistic(values, statistic)
    return out


CURVE_BLOCK = 1 << 20
"""At most this many (image, x) retentions are held at once by :func:`retention_curve`."""


class _Curve:
    """The retention statistic of many images, evaluated one step at a time in O(images + steps) memory.

    Every image's switch-on and switch-off points are kept once, concatenated
    (each image's own points sorted, in input order); the statistic at ``x``
    counts each image's points below ``x``, exactly as
    :meth:`StepFunction.tokens` does, and combines the per-image retentions as
    :func:`retention_curve` does (a sequential sum in image order for the mean,
    ``np.median`` for the median), so every value equals that function's.
    The intervals between consecutive steps are indexed: ``0`` is ``x = 0``
    itself, ``j >= 1`` the open interval ``(edges[j-1], edges[j])``.
    """

    def __init__(self, functions: list[StepFunction], statistic: str) -> None:
        self.statistic = statistic
        self.n = np.array([f.n for f in functions], dtype=np.int64)
        self.lo = np.concatenate([f.lo for f in functions])
        self.hi = np.concatenate([f.hi for f in functions])
        self.lo_at = np.cumsum([0] + [f.lo.size for f in functions[:-1]])
        self.hi_at = np.cumsum([0] + [f.hi.size for f in functions[:-1]])
        steps = np.unique(np.concatenate([self.lo, self.hi]))
        steps = steps[np.isfinite(steps) & (steps > 0)]
        self.edges = np.concatenate([[0.0], steps, [np.inf]])
        self.size = self.edges.size  # x = 0, then one open interval per pair of consecutive edges

    def bounds(self, j: int) -> tuple[float, float]:
        """The interval ``j`` as ``(low, high)`` (``(0, 0)`` for ``x = 0``)."""
        return (0.0, 0.0) if j == 0 else (float(self.edges[j - 1]), float(self.edges[j]))

    def value(self, j: int) -> float:
        """The statistic inside interval ``j``."""
        lo, hi = self.bounds(j)
        x = lo + 1.0 if math.isinf(hi) else (lo + hi) / 2.0
        tokens = np.add.reduceat(self.lo < x, self.lo_at, dtype=np.int64)
        tokens -= np.add.reduceat(self.hi < x, self.hi_at, dtype=np.int64)
        ret = tokens / self.n
        if self.statistic == "mean":  # what values.mean(axis=0) does: add the images in order, divide
            return float(np.cumsum(ret)[-1] / ret.size)
        return float(np.median(ret))

    def first(self, accept, start: int = 0) -> int:
        """The first ``j >= start`` whose value ``accept`` takes (``size`` if none); the curve is monotone."""
        lo, hi = start, self.size
        while lo < hi:
            mid = (lo + hi) // 2
            if accept(self.value(mid)):
                hi = mid
            else:
                lo = mid + 1
        return lo


def calibrate_maps(
    maps_list: list[dict],
    method: str = "v2",
    target: float = 0.3,
    statistic: str = "mean",
    thresholds=(3.0, 2.0),
    paths: list[str] | None = None,
) -> Calibration:
    """Alpha (v2) or threshold factor (v1) whose retention statistic is closest to ``target`` from below.

    Parameters
    ----------
    maps_list : list of dict
        Importance maps, one dict per image (computed once).
    method : {"v2", "v1"}
        Which parameter to calibrate.
    target : float
        Target retention in (0, 1].
    statistic : {"mean", "median"}
        Statistic of the per-image retentions.
    thresholds : sequence of float
        v1's base thresholds, multiplied by the factor found.
    paths : list of str, optional
        Names of the images (recorded in the result).

    Returns
    -------
    Calibration
        ``achieved`` and ``retentions`` come from :func:`select_patches` run
        at the value found, so a sweep at that value gives exactly them.

    Examples
    --------
    >>> from aptviz.compute.entropy import entropy_maps
    >>> rng = np.random.default_rng(0)
    >>> img = (rng.random((112, 112, 1)) * np.linspace(0, 255, 112)[None, :, None]).astype(np.uint8)
    >>> cal = calibrate_maps([entropy_maps(np.repeat(img, 3, axis=2))], "v2", target=0.5)
    >>> cal.achieved <= 0.5, cal.value
    (True, 1.08)
    """
    method = str(getattr(method, "value", method))
    if method not in ("v1", "v2"):
        raise ParameterError(f"calibrate works for v1 and v2 (budget's alpha is its target retention), got {method!r}")
    if statistic not in STATISTICS:
        raise ParameterError(f"statistic must be mean or median, got {statistic!r}")
    if not (0.0 < target <= 1.0):
        raise ParameterError(f"target must be in (0, 1], got {target}")
    if not maps_list:
        raise ParameterError("no images to calibrate on")
    thresholds = [float(t) for t in thresholds]
    curve = _Curve([step_function(m, method, thresholds) for m in maps_list], statistic)
    # the statistic never increases with x: the first interval at or below the target is the best
    pick = curve.first(lambda v: v <= target + 1e-12)
    below = pick < curve.size
    if not below:  # the smallest statistic possible, from the first interval that has it
        least = curve.value(curve.size - 1)
        pick = curve.first(lambda v: v <= least)
    # the whole run of intervals with that same statistic is acceptable: widen to it
    same = curve.value(pick)
    last = curve.first(lambda v: v < same, pick) - 1
    lo, hi = curve.bounds(pick)[0], curve.bounds(last)[1]
    value = _short_decimal(float(lo), float(hi))
    retentions = [_retention_at(m, method, value, thresholds) for m in maps_list]
    achieved = float(statistics.fmean(retentions) if statistic == "mean" else statistics.median(retentions))
    scaled = [value * t for t in thresholds] if method == "v1" else None
    return Calibration(method, statistic, float(target), float(value), achieved, retentions, list(paths or []),
                       scaled, bool(below and achieved <= target))  # fmt: skip


def _retention_at(maps: dict, method: str, value: float, thresholds: list[float]) -> float:
    if method == "v2":
        return select_patches(maps, "v2", alpha=value).retention
    return select_patches(maps, "v1", thresholds=[value * t for t in thresholds]).retention






