"""``fidelity_vs_tokens.png``: which measure, at which cost (docs/analysis.md).

For every (measure, method, alpha) of a batch, the mean LLM tokens over the
images against the mean PSNR and SSIM of the model view; the uniform baseline
of the run's model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL: the rows' ``model``)
from the same rows (each selection's ``uniform_vit_tokens`` resize: no extra
run); the Pareto front of all those points; and one caption line
naming the best point at the median token count.

:func:`fidelity_points` is the arithmetic (plain data, testable without
matplotlib); :func:`fidelity_figure` draws it and returns the Figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean, median

from aptviz.compute.measures import DEFAULT_MEASURE, MEASURES
from aptviz.compute.presets import models_title
from aptviz.errors import ROW_OK

__all__ = ["FidelityPoint", "FidelitySummary", "fidelity_figure", "fidelity_points", "pareto"]

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
            groups.setdefault((r.get("importance") or DEFAULT_MEASURE, r["method"], r["alpha"]), []).append(r)
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


MEASURE_COLORS = {spec.name: spec.color for spec in MEASURES}
METHOD_MARKERS = {"v1": "o", "v2": "^", "budget": "s"}


def _panel(ax, summary: FidelitySummary, key: str, ylabel: str) -> None:
    """One fidelity (``psnr`` or ``ssim``) against LLM tokens: APT lines per (measure, method), uniform, front."""
    lossless = []
    for (measure, method) in dict.fromkeys((p.importance, p.method) for p in summary.points):
        mine = sorted((p for p in summary.points if (p.importance, p.method) == (measure, method)),
                      key=lambda p: p.llm_tokens)  # fmt: skip
        lossless += [p for p in mine if getattr(p, key) is None]
        mine = [p for p in mine if getattr(p, key) is not None]
        if mine:
            ax.plot([p.llm_tokens for p in mine], [getattr(p, key) for p in mine],
                    marker=METHOD_MARKERS.get(method, "D"), ls="-", lw=1, ms=6,
                    color=MEASURE_COLORS.get(measure, "tab:purple"), label=f"{measure} {method}")  # fmt: skip
    uni = [p for p in summary.uniform if getattr(p, key) is not None]
    if uni:
        ax.plot([p.llm_tokens for p in uni], [getattr(p, key) for p in uni], "k--", marker="x", ms=5, lw=1.2,
                label=f"uniform {summary.model} (same resizes)")  # fmt: skip
    front = summary.front.get(key, [])
    if front:
        ax.step([p.llm_tokens for p in front], [getattr(p, key) for p in front], where="post", color="gold",
                lw=5, alpha=0.45, zorder=0, label="Pareto front")  # fmt: skip
    for p in lossless:  # infinite dB: marked at the top, never squashing the axis
        # a faint line at its tokens also widens the x range to it (the mark is not drawn outside the panel)
        ax.axvline(p.llm_tokens, color=MEASURE_COLORS.get(p.importance, "tab:purple"), lw=0.8, alpha=0.3)
        ax.annotate("lossless", (p.llm_tokens, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top",
                    fontsize=7, color=MEASURE_COLORS.get(p.importance, "tab:purple"))  # fmt: skip
    if summary.best is not None and getattr(summary.best, key) is not None:
        ax.plot([summary.best.llm_tokens], [getattr(summary.best, key)], "o", ms=14, mfc="none", mec="black",
                label="best SSIM at <= median tokens")  # fmt: skip
    if summary.median_tokens is not None:
        ax.axvline(summary.median_tokens, color="gray", ls=":", lw=1, label="median LLM tokens (APT)")
    ax.set_xlabel("LLM tokens per image (mean over the batch)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def fidelity_figure(summary: FidelitySummary):
    """The two-panel figure (PSNR, SSIM) with its caption line; a matplotlib Figure (nothing written)."""
    from aptviz.render.figures import new_figure

    fig = new_figure(14.5, 5.2)
    ax1, ax2 = fig.subplots(1, 2)
    _panel(ax1, summary, "psnr", "PSNR of what the ViT sees vs resized image (dB)")
    _panel(ax2, summary, "ssim", "SSIM of what the ViT sees vs resized image")
    ax1.set_title("PSNR vs LLM tokens")
    ax2.set_title("SSIM vs LLM tokens")
    handles, labels = ax2.get_legend_handles_labels()
    ax2.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside: hides no mark
    title = f"Which measure, at which cost: APT (measure x method, mean per alpha) vs uniform {summary.model}"
    fig.suptitle(f"{title}\n{summary.caption}", fontsize=9)  # the caption line under the title
    return fig
