"""The numbers of ``fidelity_vs_tokens.png``: which measure, at which cost (docs/analysis.md, SPEC §17).

A selection pays twice: ViT tokens (the vision tower) and LLM tokens (the
language model). One panel per cost and fidelity (SSIM, PSNR), each against
the cost as a share of the plain model's tokens (retention: ``llm_retention``
for LLM tokens, ``retention`` for ViT tokens):

* APT: for every (measure, method, alpha) of a batch, the mean retention over
  the images against the mean PSNR and SSIM of the model view;
* uniform (the run's model: Qwen2-VL, Qwen2.5-VL, Qwen3-VL) from a sweep of
  sizes per image (stats.json ``uniform_sweep``: from almost nothing to the
  full size, so the curve covers every APT point), each image's curve
  interpolated linearly in retention and averaged over the images at equal
  retention (images of different sizes do not zig-zag). Uniform costs the same
  share at both ends (its LLM tokens are its ViT tokens / m**2): one curve for
  both panels;
* the Pareto front of APT and uniform, only over the retention range where
  both are measured;
* one caption line per cost naming the best point at the median APT
  retention, uniform included.

:func:`fidelity_points` is the arithmetic (plain data, testable without
matplotlib); :func:`aptviz.render.fidelity.fidelity_figure` draws it.
:func:`retention_curves` is the same for ``psnr_vs_tokens`` (retention against
PSNR), drawn by :func:`aptviz.render.figures.psnr_curves_png`, and
:func:`ocr_points` for ``ocr_vs_tokens`` (:func:`aptviz.render.figures.ocr_curves_png`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean, median

import numpy as np

from aptviz.compute.measures import DEFAULT_MEASURE
from aptviz.compute.presets import models_title
from aptviz.errors import ROW_OK

__all__ = [
    "COSTS",
    "CostPanel",
    "FidelityPoint",
    "FidelitySummary",
    "RetentionCurves",
    "fidelity_points",
    "informative_top",
    "ocr_points",
    "pareto",
    "retention_curves",
    "uniform_curve",
]

FIELDS = ("psnr", "ssim")
#: ``(cost, retention field of a row, tokens field of a row, words)`` per panel column.
COSTS = (("llm", "llm_retention", "llm_tokens", "LLM tokens"), ("vit", "retention", "vit_tokens", "ViT tokens"))
GRID_STEP = 0.01  # the uniform curve's retention grid (plus the ends of its common range)


@dataclass(frozen=True)
class FidelityPoint:
    """One mark: a selection's means over the images, or a point of the uniform curve (``method="uniform"``)."""

    importance: str | None
    method: str
    alpha: float | None
    images: int
    retention: float  # mean share of the plain model's tokens at this panel's cost
    ssim: float | None
    psnr: float | None  # mean over the finite values; None when every image was reproduced exactly (infinite dB)
    lossless: int = 0  # images reproduced exactly (PSNR null, infinite dB): left out of the PSNR mean
    tokens: float | None = None  # mean tokens at this cost (APT points)

    @property
    def name(self) -> str:
        if self.method == "uniform":
            return "uniform"  # the model is the summary's (FidelitySummary.model)
        alpha = "" if self.alpha is None else f" a={self.alpha:g}"
        return f"{self.importance} {self.method}{alpha}"


@dataclass
class CostPanel:
    """The APT points, the uniform curve, the Pareto fronts and the best point at one cost."""

    cost: str  # "llm" or "vit"
    words: str  # "LLM tokens"
    points: list[FidelityPoint]
    uniform: list[FidelityPoint]
    front: dict[str, list[FidelityPoint]] = field(default_factory=dict)  # "psnr"/"ssim": Pareto-optimal points
    both: tuple[float, float] | None = None  # the retention range where APT and uniform are both measured
    median_retention: float | None = None  # of the APT points
    best: FidelityPoint | None = None  # highest SSIM at <= the median retention, uniform included
    best_apt: FidelityPoint | None = None  # the same among APT points only

    def caption(self, model: str) -> str:
        """One line: the best point at the median retention (uniform included), and APT's best there."""
        if self.best is None:
            return f"{self.words}: no selection with fidelity numbers"
        b = self.best
        line = f"{self.words}: at <= {100 * self.median_retention:.0f}% (the APT median), best SSIM: "
        line += f"{_named(b, model)} ({_numbers(b)})"
        if b.method == "uniform" and self.best_apt is not None:
            line += f"; best APT: {self.best_apt.name} ({_numbers(self.best_apt)})"
        return line

    def to_dict(self, model: str) -> dict:
        return {
            "cost": self.cost,
            "uniform": [{"retention": p.retention, "psnr": p.psnr, "ssim": p.ssim} for p in self.uniform],
            "apt": [_apt_dict(p) for p in self.points],
            "pareto": {k: [_any_dict(p) for p in v] for k, v in self.front.items()},
            "both_measured": None if self.both is None else list(self.both),
            "median_retention": self.median_retention,
            "best": _any_dict(self.best),
            "best_apt": _any_dict(self.best_apt),
            "caption": self.caption(model),
        }


def _named(p: FidelityPoint, model: str) -> str:
    return f"uniform {model}" if p.method == "uniform" else p.name


def _numbers(p: FidelityPoint) -> str:
    psnr = "lossless" if p.psnr is None else f"{p.psnr:.2f} dB"
    return f"SSIM {p.ssim:.3f}, PSNR {psnr}, {100 * p.retention:.1f}%"


def _apt_dict(p: FidelityPoint) -> dict:
    return {"measure": p.importance, "method": p.method, "alpha": p.alpha, "retention": p.retention, "psnr": p.psnr,
            "ssim": p.ssim, "tokens": p.tokens, "images": p.images, "psnr_lossless": p.lossless}  # fmt: skip


def _any_dict(p: FidelityPoint | None) -> dict | None:
    if p is None:
        return None
    if p.method == "uniform":
        return {"method": "uniform", "retention": p.retention, "psnr": p.psnr, "ssim": p.ssim}
    return _apt_dict(p)


@dataclass
class FidelitySummary:
    """One :class:`CostPanel` per cost (LLM first), the model and the images with a lossless PSNR."""

    panels: list[CostPanel]
    model: str = "Qwen2-VL"  # the rows' model(s), as figures name them (compute.presets.models_title)
    lossless_images: int = 0  # images with a lossless (infinite dB) PSNR in some row: out of the PSNR means
    uniform_images: int = 0  # images the uniform curve averages
    uniform_left_out: int = 0  # images whose smallest uniform size costs more than the cheapest APT point

    @property
    def caption(self) -> str:
        """One line per cost, then the images left out of the PSNR means or of the uniform curve."""
        lines = [p.caption(self.model) for p in self.panels]
        notes = []
        if self.lossless_images:
            notes.append(f"PSNR means over finite values ({self.lossless_images} lossless image(s) left out)")
        if self.uniform_left_out:
            notes.append(f"uniform: mean over {self.uniform_images} of {self.uniform_images + self.uniform_left_out} "
                         "images (the others cannot be made as small as the cheapest APT point)")  # fmt: skip
        return "\n".join(lines + (["; ".join(notes)] if notes else []))

    def to_dict(self) -> list[dict]:
        """dataset.json ``fidelity``: one entry per cost (SPEC §17), with the model and the lossless count."""
        return [dict(p.to_dict(self.model), model=self.model, psnr_lossless_images=self.lossless_images,
                     uniform_images=self.uniform_images, uniform_left_out=self.uniform_left_out)
                for p in self.panels]  # fmt: skip

    def panel(self, cost: str) -> CostPanel:
        return next(p for p in self.panels if p.cost == cost)


def pareto(points: list[FidelityPoint], key: str) -> list[FidelityPoint]:
    """Points no other beats: as low or lower retention and as high or higher ``key``, one strictly.

    Sorted by retention. Points without the value (a lossless PSNR) are left out.

    Examples
    --------
    >>> P = lambda t, s: FidelityPoint("entropy", "v2", 1.0, 1, t, s, None)
    >>> [p.retention for p in pareto([P(0.1, 0.5), P(0.2, 0.4), P(0.3, 0.9), P(0.15, 0.6)], "ssim")]
    [0.1, 0.15, 0.3]
    """
    have = sorted((p for p in points if getattr(p, key) is not None), key=lambda p: (p.retention, -getattr(p, key)))
    front, best = [], float("-inf")
    for p in have:
        if getattr(p, key) > best:
            front.append(p)
            best = getattr(p, key)
    return front


def _usable(row: dict) -> bool:
    keys = ("llm_tokens", "llm_retention", "retention", "ssim_apt")
    return row.get("status") == ROW_OK and all(row.get(k) is not None for k in keys)


def _mean_point(importance, method, alpha, members: list[dict], ret_key: str, tok_key: str) -> FidelityPoint:
    psnr = [r.get("psnr_apt") for r in members]
    finite = [v for v in psnr if v is not None]  # null is infinite dB (lossless): one such image left out
    tokens = [r.get(tok_key, r.get("tokens")) for r in members]
    return FidelityPoint(importance, method, alpha, len(members), fmean(r[ret_key] for r in members),
                         fmean(r["ssim_apt"] for r in members), fmean(finite) if finite else None,
                         len(psnr) - len(finite),
                         fmean(tokens) if all(t is not None for t in tokens) else None)  # fmt: skip


def _curve_from_rows(rows: list[dict]) -> list[dict]:
    """One image's uniform points from its rows (both baselines of each selection), for stats without a sweep."""
    out = []
    for r in rows:
        n, n_llm = r.get("base_small_tokens"), r.get("llm_tokens_uniform")
        if r.get("uniform_vit_tokens") is not None and r.get("ssim_uniform") is not None and n:
            out.append({"retention": r["uniform_vit_tokens"] / n, "psnr": r.get("psnr_uniform"),
                        "ssim": r["ssim_uniform"]})  # fmt: skip
        if r.get("llm_uniform_tokens") is not None and r.get("ssim_uniform_llm") is not None and n_llm:
            out.append({"retention": r["llm_uniform_tokens"] / n_llm, "psnr": r.get("psnr_uniform_llm"),
                        "ssim": r["ssim_uniform_llm"]})  # fmt: skip
    return out


def uniform_curve(sweeps: list[list[dict]], step: float = GRID_STEP, at=()) -> list[dict]:
    """The uniform baseline averaged over the images at equal retention.

    Each image's points (``retention``, ``psnr``, ``ssim``) are interpolated
    linearly in retention on one grid (every ``step``, the two ends and the
    retentions ``at``, e.g. the APT points'), over the range every image
    covers; the curve is the mean there. A PSNR is None where some image's
    segment reaches a lossless (null) point; an image lossless at every size
    is left out of the PSNR mean.

    Examples
    --------
    >>> a = [{"retention": 0.1, "psnr": 20.0, "ssim": 0.5}, {"retention": 0.5, "psnr": 30.0, "ssim": 0.9}]
    >>> b = [{"retention": 0.2, "psnr": 24.0, "ssim": 0.6}, {"retention": 0.4, "psnr": 28.0, "ssim": 0.8}]
    >>> c = uniform_curve([a, b], step=0.1)
    >>> [(round(p["retention"], 2), round(p["ssim"], 3)) for p in c]
    [(0.2, 0.6), (0.3, 0.7), (0.4, 0.8)]
    """
    curves = []
    for sweep in sweeps:
        pts = sorted((p for p in sweep if p.get("ssim") is not None and p.get("retention") is not None),
                     key=lambda p: p["retention"])  # fmt: skip
        if pts:
            x = np.array([p["retention"] for p in pts], np.float64)
            keep = np.concatenate([[True], np.diff(x) > 0])  # one point per retention
            curves.append((x[keep], np.array([p["ssim"] for p in pts], np.float64)[keep],
                           np.array([np.nan if p["psnr"] is None else p["psnr"] for p in pts], np.float64)[keep]))
    if not curves:
        return []
    lo, hi = max(c[0][0] for c in curves), min(c[0][-1] for c in curves)
    if lo > hi:
        return []
    inner = np.round(np.arange(np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9) + 1) * step, 12)
    extra = np.asarray([r for r in at if lo < r < hi], np.float64)
    # sorted, one of values equal or a rounding apart (np.unique would import numpy.ma, ~10 ms)
    grid = np.sort(np.concatenate([[lo], inner[(inner > lo) & (inner < hi)], extra, [hi]]))
    grid = grid[np.concatenate([[True], np.diff(grid) > 1e-12])]
    ssim = np.mean([np.interp(grid, x, s) for x, s, _ in curves], axis=0)
    # an image lossless at every size (a flat picture) is left out of the PSNR mean, as for APT's points; any
    # other lossless point (the full size) leaves the mean undefined where it is used
    finite = [c for c in curves if not np.isnan(c[2]).all()]
    psnr = np.mean([_interp_nan(grid, x, p) for x, _, p in finite], axis=0) if finite else np.full(len(grid), np.nan)
    return [{"retention": float(g), "psnr": None if np.isnan(p) else float(p), "ssim": float(s)}
            for g, s, p in zip(grid, ssim, psnr)]  # fmt: skip


def _interp_nan(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation; nan wherever the segment used has a nan end (except exactly at a finite point)."""
    out = np.interp(grid, x, y)
    exact = np.searchsorted(x, grid)
    hit = (exact < len(x)) & (x[np.minimum(exact, len(x) - 1)] == grid)
    out[hit] = y[exact[hit]]
    return out


def _interp_curve(curve: list[FidelityPoint], x: float, key: str) -> float | None:
    pts = [(p.retention, getattr(p, key)) for p in curve]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if y0 is None or y1 is None:
                return y0 if x == x0 else y1 if x == x1 else None
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1] if len(pts) == 1 and pts[0][0] == x else None


def _both(points: list[FidelityPoint], curve: list[FidelityPoint], key: str) -> tuple[float, float] | None:
    """The retention range where APT points and the uniform curve both have ``key``; None when they do not meet."""
    mine = [p.retention for p in curve if getattr(p, key) is not None]
    if not mine:
        return None
    lo = max(min(p.retention for p in points), min(mine))
    hi = min(max(p.retention for p in points), max(mine))
    return (lo, hi) if lo <= hi else None


def _panel(cost, ret_key, tok_key, words, groups: dict, uniform: list[dict]) -> CostPanel:
    points = [_mean_point(*key, members, ret_key, tok_key) for key, members in groups.items()]
    curve = [FidelityPoint(None, "uniform", None, 0, u["retention"], u["ssim"], u["psnr"]) for u in uniform]
    panel = CostPanel(cost, words, points, curve)
    panel.median_retention = median(p.retention for p in points)
    near = [p for p in points if p.retention <= panel.median_retention]
    panel.best_apt = max(near, key=lambda p: (p.ssim, -p.retention))
    panel.best = panel.best_apt
    if curve:
        panel.both = _both(points, curve, "ssim")
        for key in FIELDS:  # only where uniform has the value too (its PSNR ends before a lossless full size)
            both = _both(points, curve, key)
            if both is not None:
                inside = [p for p in points + curve if both[0] - 1e-12 <= p.retention <= both[1] + 1e-12]
                panel.front[key] = pareto(inside, key)
        at = panel.median_retention
        ssim = _interp_curve(curve, at, "ssim")
        if ssim is not None and ssim > panel.best_apt.ssim:  # uniform at the median cost beats every APT point there
            panel.best = FidelityPoint(None, "uniform", None, 0, at, ssim, _interp_curve(curve, at, "psnr"))
    return panel


def fidelity_points(rows: list[dict], sweeps: list[list[dict]] | None = None) -> FidelitySummary | None:
    """Means per (measure, method, alpha) over the images at each cost, the uniform curve, fronts and best points.

    Parameters
    ----------
    rows : list of dict
        Summary rows (summary.json); rows without SSIM are ignored.
    sweeps : list of list of dict, optional
        Every image's ``uniform_sweep`` (stats.json). Images without one
        (or no sweeps at all) contribute the uniform points of their rows
        (both baselines of each selection) instead.

    Returns
    -------
    FidelitySummary or None
        None when no row has the numbers. A null PSNR is an exact
        reproduction (infinite dB): PSNR means are over the finite values,
        each point counts the images left out (``lossless``) and the summary
        the distinct images.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if _usable(r):
            groups.setdefault((r.get("importance") or DEFAULT_MEASURE, r["method"], r["alpha"]), []).append(r)
    if not groups:
        return None
    swept = [s for s in sweeps or [] if s]
    if not swept:  # stats without a sweep: each image's own baselines
        by_image: dict = {}
        for members in groups.values():
            for r in members:
                by_image.setdefault(r.get("image"), []).append(r)
        swept = [c for c in (_curve_from_rows(rs) for rs in by_image.values()) if c]
    at = [fmean(r[k] for r in m) for m in groups.values() for _, k, _, _ in COSTS]  # every APT point's retention
    # an image whose smallest uniform size costs more than the cheapest APT point (a tiny picture: smart_resize's
    # min_pixels) cannot give the curve there: left out of it, and counted
    covering = [s for s in swept if min(p["retention"] for p in s) <= min(at) + 1e-12] or swept
    uniform = uniform_curve(covering, at=at)
    panels = [_panel(*cost, groups, uniform) for cost in COSTS]
    summary = FidelitySummary(panels, model=models_title(r.get("model") for m in groups.values() for r in m))
    summary.uniform_images, summary.uniform_left_out = len(covering), len(swept) - len(covering)
    summary.lossless_images = len({r.get("image") for m in groups.values() for r in m if r.get("psnr_apt") is None})
    return summary


@dataclass(frozen=True)
class RetentionCurves:
    """The numbers of ``psnr_vs_tokens``: retention against PSNR, APT per method and uniform at equal ViT tokens."""

    series: list  # (kind, method, xs, ys); kind: "dots" (one row each), "apt" or "uniform" (means per alpha)
    top: float | None  # the y axis' upper limit leaving out far outliers (:func:`informative_top`); None: all shown
    model: str  # the rows' model(s), as figures name them (compute.presets.models_title)


def retention_curves(rows: list[dict]) -> RetentionCurves | None:
    """:class:`RetentionCurves` of the summary rows, or None when no row has PSNRs.

    Per method (v1, v2, budget): every row as a dot, the means per alpha of
    APT's retention and PSNR, and of uniform's (``uniform_vit_tokens / N``) and its PSNR.
    """
    ok = [r for r in rows if r.get("status") == ROW_OK and r.get("psnr_uniform") is not None]
    ok = [r for r in ok if r.get("psnr_apt") is not None]
    if not ok:
        return None
    series = []  # (kind, method, xs, ys): plotted after the y range is known
    for method in ("v1", "v2", "budget"):
        mine = [r for r in ok if r["method"] == method]
        if not mine:
            continue
        series.append(("dots", method, [r["retention"] for r in mine], [r["psnr_apt"] for r in mine]))
        groups: dict = {}
        for r in mine:
            groups.setdefault(r["alpha"], []).append(r)
        apt = sorted((np.mean([g["retention"] for g in grp]), np.mean([g["psnr_apt"] for g in grp]))
                     for grp in groups.values())  # fmt: skip
        uni = sorted((np.mean([g["uniform_vit_tokens"] / g["base_small_tokens"] for g in grp]),
                      np.mean([g["psnr_uniform"] for g in grp])) for grp in groups.values())  # fmt: skip
        series += [("apt", method, *map(list, zip(*apt))), ("uniform", method, *map(list, zip(*uni)))]
    top = informative_top([y for *_, ys in series for y in ys])
    model = models_title(r.get("model") for r in ok)  # the run's model, not always Qwen2-VL
    return RetentionCurves(series, top, model)


def informative_top(values: list[float]) -> float | None:
    """Upper y limit that leaves out far outliers (a near-lossless point), or None when none is far.

    An outlier lies more than 1.5 interquartile ranges (at least 1.5 dB) above
    the upper quartile (Tukey's fence); the limit is the highest other value plus a margin.

    Examples
    --------
    >>> informative_top([26.0, 28.0, 30.0, 31.0, 70.0])
    32.5
    >>> informative_top([26.0, 28.0, 30.0]) is None
    True
    """
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if vals.size < 3:
        return None
    q1, q3 = np.percentile(vals, [25, 75])
    limit = q3 + 1.5 * max(q3 - q1, 1.0)
    inside = vals[vals <= limit]
    if inside.size == vals.size or not inside.size:
        return None
    return float(inside.max() + max(1.5, 0.05 * (inside.max() - inside.min())))


def ocr_points(rows: list[dict]) -> dict:
    """``{(measure, method): [(llm retention, apt, uniform ViT-equal x, uniform, uniform LLM-equal), ...]}``,
    one tuple per (measure, method, alpha): means over the images with text (rows with ``ocr_apt``)."""
    groups: dict = {}
    for r in rows:
        if r.get("status") != ROW_OK or r.get("ocr_apt") is None or r.get("llm_retention") is None:
            continue
        groups.setdefault((r.get("importance") or DEFAULT_MEASURE, r["method"], r.get("alpha")), []).append(r)
    out: dict = {}
    for (measure, method, _alpha), grp in groups.items():
        # the equal-ViT uniform view's own LLM retention: (uniform_vit_tokens / m**2) / (N / m**2)
        uni_x = [g["uniform_vit_tokens"] / g["base_small_tokens"] for g in grp if g.get("uniform_vit_tokens") is not None]
        llm = [g["ocr_uniform_llm"] for g in grp if g.get("ocr_uniform_llm") is not None]
        out.setdefault((measure, method), []).append((
            float(np.mean([g["llm_retention"] for g in grp])),
            float(np.mean([g["ocr_apt"] for g in grp])),
            float(np.mean(uni_x)) if uni_x else None,
            float(np.mean([g["ocr_uniform"] for g in grp])),
            float(np.mean(llm)) if llm else None,
        ))  # fmt: skip
    return {k: sorted(v) for k, v in out.items()}
