"""The numbers of ``fidelity_vs_tokens.png``: which measure, at which cost (docs/analysis.md).

For every (measure, method, alpha) of a batch, the mean LLM tokens over the
images against the mean PSNR and SSIM of the model view; the uniform baseline
of the run's model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: the rows' ``model``)
from the same rows (each selection's ``uniform_vit_tokens`` resize: no extra
run); the Pareto front of all those points; and one caption line
naming the best point at the median token count.

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

from aptviz.compute.presets import models_title
from aptviz.errors import ROW_OK

__all__ = [
    "FidelityPoint",
    "FidelitySummary",
    "RetentionCurves",
    "fidelity_points",
    "informative_top",
    "ocr_points",
    "pareto",
    "retention_curves",
]

FIELDS = ("psnr", "ssim")


@dataclass(frozen=True)
class FidelityPoint:
    """One mark: a selection's means over the images (or the uniform baseline's, ``method="uniform"``)."""

    importance: str | None
    method: str
    alpha: float | None
    images: int
    llm_tokens: float
    ssim: float
    psnr: float | None  # mean over the finite values; None when every image was reproduced exactly (infinite dB)
    lossless: int = 0  # images reproduced exactly (PSNR null, infinite dB): left out of the PSNR mean

    @property
    def name(self) -> str:
        if self.method == "uniform":
            return "uniform"  # the model is the summary's (FidelitySummary.model)
        alpha = "" if self.alpha is None else f" a={self.alpha:g}"
        return f"{self.importance} {self.method}{alpha}"


@dataclass
class FidelitySummary:
    """Every point, the uniform curve, the Pareto fronts and the best point at the median token count."""

    points: list[FidelityPoint]
    uniform: list[FidelityPoint]
    front: dict[str, list[FidelityPoint]] = field(default_factory=dict)  # "psnr"/"ssim": Pareto-optimal points
    median_tokens: float | None = None
    best: FidelityPoint | None = None  # highest SSIM among APT points at <= the median token count
    uniform_at_best: dict[str, float | None] = field(default_factory=dict)  # the uniform curve there

    model: str = "Qwen2-VL"  # the rows' model(s), as figures name them (compute.presets.models_title)
    lossless_images: int = 0  # images with a lossless (infinite dB) PSNR in some row: out of the PSNR means

    @property
    def caption(self) -> str:
        """One line: the best point at the median token count, the uniform baseline there, lossless images left out."""
        if self.best is None:
            return "no selection with fidelity numbers"
        b = self.best
        psnr = f"lossless in all {b.images} images" if b.psnr is None else f"{b.psnr:.2f} dB"
        line = (f"At <= {self.median_tokens:.0f} LLM tokens (the median), best SSIM: {b.name} "
                f"(SSIM {b.ssim:.3f}, PSNR {psnr}, {b.llm_tokens:.0f} tokens)")  # fmt: skip
        u = self.uniform_at_best
        if u.get("ssim") is not None:
            line += f"; uniform at {b.llm_tokens:.0f} tokens: SSIM {u['ssim']:.3f}"
            line += f", PSNR {u['psnr']:.2f} dB" if u.get("psnr") is not None else ""
        if self.lossless_images:
            line += f"; PSNR means over finite values ({self.lossless_images} lossless image(s) left out)"
        return line

    def to_dict(self) -> dict:
        def pt(p: FidelityPoint | None):
            return None if p is None else {
                "importance": p.importance, "method": p.method, "alpha": p.alpha, "images": p.images,
                "llm_tokens": p.llm_tokens, "psnr": p.psnr, "psnr_lossless": p.lossless, "ssim": p.ssim,
            }  # fmt: skip

        return {
            "points": [pt(p) for p in self.points],
            "uniform": [pt(p) for p in self.uniform],
            "pareto": {k: [pt(p) for p in v] for k, v in self.front.items()},
            "median_llm_tokens": self.median_tokens,
            "best": pt(self.best),
            "uniform_at_best": self.uniform_at_best,
            "psnr_lossless_images": self.lossless_images,
            "model": self.model,
            "caption": self.caption,
        }


def pareto(points: list[FidelityPoint], key: str) -> list[FidelityPoint]:
    """Points no other beats: fewer or as many tokens and as high or higher ``key``, one strictly.

    Sorted by tokens. Points without the value (a lossless PSNR) are left out.

    Examples
    --------
    >>> P = lambda t, s: FidelityPoint("entropy", "v2", 1.0, 1, t, s, None)
    >>> [p.llm_tokens for p in pareto([P(10, 0.5), P(20, 0.4), P(30, 0.9), P(15, 0.6)], "ssim")]
    [10, 15, 30]
    """
    have = sorted((p for p in points if getattr(p, key) is not None), key=lambda p: (p.llm_tokens, -getattr(p, key)))
    front, best = [], float("-inf")
    for p in have:
        if getattr(p, key) > best:
            front.append(p)
            best = getattr(p, key)
    return front


def _interp(curve: list[FidelityPoint], x: float, key: str) -> float | None:
    """Linear interpolation of the uniform curve at ``x`` tokens; None outside its range."""
    pts = [(p.llm_tokens, getattr(p, key)) for p in curve if getattr(p, key) is not None]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return pts[0][1] if len(pts) == 1 and pts[0][0] == x else None


def _usable(row: dict) -> bool:
    keys = ("llm_tokens", "ssim_apt", "ssim_uniform", "uniform_vit_tokens", "base_small_tokens", "llm_tokens_uniform")
    return row.get("status") == ROW_OK and all(row.get(k) is not None for k in keys)


def _mean_point(importance, method, alpha, members: list[dict], uniform: bool) -> FidelityPoint:
    if uniform:  # the plain model at the lowered max_pixels: its LLM tokens are its ViT tokens / merge**2
        tokens = [r["uniform_vit_tokens"] * r["llm_tokens_uniform"] / r["base_small_tokens"] for r in members]
        ssim, psnr = [r["ssim_uniform"] for r in members], [r.get("psnr_uniform") for r in members]
    else:
        tokens = [r["llm_tokens"] for r in members]
        ssim, psnr = [r["ssim_apt"] for r in members], [r.get("psnr_apt") for r in members]
    finite = [v for v in psnr if v is not None]  # null is infinite dB (lossless): one such image left out
    mean_psnr = fmean(finite) if finite else None
    return FidelityPoint(importance, method, alpha, len(members), fmean(tokens), fmean(ssim), mean_psnr,
                         len(psnr) - len(finite))  # fmt: skip


def fidelity_points(rows: list[dict]) -> FidelitySummary | None:
    """Means per (measure, method, alpha) over the images, the uniform baseline, fronts and the best point.

    ``rows`` are summary rows (summary.json); rows without SSIM are ignored.
    None when no row has the numbers. A null PSNR is an exact reproduction
    (infinite dB): PSNR means are over the finite values, each point counts
    the images left out (``lossless``) and the summary the distinct images. The uniform curve has one point per
    (measure, method, alpha) too: the mean over the images of the baseline
    resized to that selection's ViT tokens; points closer than half a token
    are merged.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if _usable(r):
            groups.setdefault((r.get("importance") or "entropy", r["method"], r["alpha"]), []).append(r)
    if not groups:
        return None
    points = [_mean_point(*key, members, uniform=False) for key, members in groups.items()]
    uniform = sorted((_mean_point(None, "uniform", None, m, uniform=True) for m in groups.values()),
                     key=lambda p: p.llm_tokens)  # fmt: skip
    merged: list[FidelityPoint] = []
    for p in uniform:
        if merged and p.llm_tokens - merged[-1].llm_tokens < 0.5:
            continue
        merged.append(p)
    summary = FidelitySummary(points, merged, model=models_title(r.get("model") for m in groups.values() for r in m))
    summary.lossless_images = len({r.get("image") for m in groups.values() for r in m
                                   if r.get("psnr_apt") is None or r.get("psnr_uniform") is None})  # fmt: skip
    summary.front = {k: pareto(points + merged, k) for k in FIELDS}
    summary.median_tokens = median(p.llm_tokens for p in points)
    near = [p for p in points if p.llm_tokens <= summary.median_tokens]
    summary.best = max(near, key=lambda p: (p.ssim, -p.llm_tokens))
    summary.uniform_at_best = {k: _interp(merged, summary.best.llm_tokens, k) for k in FIELDS}
    return summary


@dataclass(frozen=True)
class RetentionCurves:
    """The numbers of ``psnr_vs_tokens``: retention against PSNR, APT per method and uniform at the same tokens."""

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
        groups.setdefault((r.get("importance") or "entropy", r["method"], r.get("alpha")), []).append(r)
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
