"""``fidelity_vs_tokens.png``: which measure, at which cost (docs/analysis.md, SPEC §17).

:func:`fidelity_figure` draws a :class:`~aptviz.compute.fidelity.FidelitySummary`
(the means, the uniform curve, the Pareto fronts and the caption, computed by
:func:`aptviz.compute.fidelity.fidelity_points`) and returns the Figure.
"""

from __future__ import annotations

from aptviz.compute.fidelity import CostPanel, FidelityPoint, FidelitySummary
from aptviz.compute.measures import MEASURES

__all__ = ["fidelity_figure"]

MEASURE_COLORS = {spec.name: spec.color for spec in MEASURES}
METHOD_MARKERS = {"v1": "o", "v2": "^", "budget": "s"}


def _draw(ax, panel: CostPanel, key: str, ylabel: str, model: str) -> None:
    """One fidelity (``psnr`` or ``ssim``) against one cost: APT lines per (measure, method), uniform, front."""
    lossless = []
    for measure, method in dict.fromkeys((p.importance, p.method) for p in panel.points):
        mine = sorted((p for p in panel.points if (p.importance, p.method) == (measure, method)),
                      key=lambda p: p.retention)  # fmt: skip
        lossless += [p for p in mine if getattr(p, key) is None]
        mine = [p for p in mine if getattr(p, key) is not None]
        if mine:
            ax.plot([100 * p.retention for p in mine], [getattr(p, key) for p in mine],
                    marker=METHOD_MARKERS.get(method, "D"), ls="-", lw=1, ms=6,
                    color=MEASURE_COLORS.get(measure, "tab:purple"), label=f"{measure} {method}")  # fmt: skip
    uni = [p for p in panel.uniform if getattr(p, key) is not None]
    if uni:
        ax.plot([100 * p.retention for p in uni], [getattr(p, key) for p in uni], "k--", lw=1.4,
                label=f"uniform {model} (size sweep, mean over images)")  # fmt: skip
    front = panel.front.get(key, [])
    if front:
        ax.step([100 * p.retention for p in front], [getattr(p, key) for p in front], where="post", color="gold",
                lw=5, alpha=0.45, zorder=0, label="Pareto front (where both are measured)")  # fmt: skip
    lo, hi = _x_range(panel, front) if uni else (0.0, 101.0)
    for p in lossless:  # infinite dB: marked at the top, never squashing the axis
        x = 100 * p.retention
        ax.axvline(x, color=MEASURE_COLORS.get(p.importance, "tab:purple"), lw=0.8, alpha=0.3)
        ha = "right" if x > hi - 6 else "left" if x < lo + 6 else "center"  # the word stays inside the panel
        ax.annotate("lossless", (x, 1.0), xycoords=("data", "axes fraction"), ha=ha, va="top", fontsize=7,
                    color=MEASURE_COLORS.get(p.importance, "tab:purple"))  # fmt: skip
    best = panel.best
    if best is not None and getattr(best, key) is not None:
        ax.plot([100 * best.retention], [getattr(best, key)], "o", ms=14, mfc="none", mec="black",
                label="best SSIM at <= the APT median (APT or the plain model)")  # fmt: skip
    if panel.median_retention is not None:
        ax.axvline(100 * panel.median_retention, color="gray", ls=":", lw=1, label="APT median")
    if uni:  # the APT points' range, so the front and the marks stay readable
        ax.set_xlim(lo, hi)
    ax.set_xlabel(f"{panel.words}: share of plain {model}'s (%, mean over the images)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _x_range(panel: CostPanel, front: list[FidelityPoint]) -> tuple[float, float]:
    """The x range of a panel (percent): the APT points and the front, with a margin."""
    xs = [100 * p.retention for p in panel.points] + [100 * p.retention for p in front]
    return max(0.0, min(xs) - 5), min(100.0, max(xs) + 5) + 1


def fidelity_figure(summary: FidelitySummary):
    """The 2 x 2 figure (SSIM and PSNR against LLM and ViT tokens) with its caption; a matplotlib Figure."""
    from aptviz.render.figures import new_figure

    fig = new_figure(14.5, 9.6)
    axes = fig.subplots(2, 2)
    for col, panel in enumerate(summary.panels):
        _draw(axes[0][col], panel, "ssim", "SSIM of the view vs resized image", summary.model)
        _draw(axes[1][col], panel, "psnr", "PSNR of the view vs resized image (dB)", summary.model)
        axes[0][col].set_title(f"SSIM vs {panel.words}")
        axes[1][col].set_title(f"PSNR vs {panel.words}")
    handles, labels = axes[0][1].get_legend_handles_labels()
    axes[0][1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside the data
    title = f"Which measure, at which cost: APT (measure x method, mean per alpha) vs uniform {summary.model}"
    fig.suptitle(f"{title}\n{summary.caption}", fontsize=9)
    fig.subplots_adjust(top=0.86, hspace=0.32)
    return fig
