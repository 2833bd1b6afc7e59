"""``fidelity_vs_tokens.png``: which measure, at which cost (docs/analysis.md).

:func:`fidelity_figure` draws a :class:`~aptviz.compute.fidelity.FidelitySummary`
(the means, the uniform curve, the Pareto fronts and the caption, computed by
:func:`aptviz.compute.fidelity.fidelity_points`) and returns the Figure.
"""

from __future__ import annotations

from aptviz.compute.fidelity import FidelitySummary

__all__ = ["fidelity_figure"]

MEASURE_COLORS = {"entropy": "tab:blue", "laplacian": "tab:green", "upsample-mse": "tab:red"}
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
