"""Figures that explain themselves: the per-image comparison and the dataset view (SPEC §8).

* :func:`compare_figure` -- ``compare.png``: the original, the finest heatmap
  and every selection's overlay side by side, each with a title. Built with
  Pillow and array operations (no matplotlib figure per image).
* :func:`percentiles` -- the per-scale importance distribution of a batch,
  from the compact per-image histograms of :mod:`aptviz.compute.histogram`.
* :func:`importance_histogram_png` and :func:`psnr_curves_png` -- the batch
  figures as PNG bytes (matplotlib, once per batch); the caller writes them.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from aptviz.compute.entropy import PAD
from aptviz.compute.histogram import HIST_BINS, merge_histograms, value_histogram, value_range  # noqa: F401
from aptviz.compute.percentiles import PERCENTILES, histogram_percentiles
from aptviz.compute.xp import to_numpy
from aptviz.errors import ROW_OK
from aptviz.render.pictures import (
    BOUNDARY_COLOR,
    LINE_WIDTH,
    blend_heatmap,
    draw_overlay,
    patch_labels,
    scale_colors,
    scale_of_pixels,
    text_strip,
)

__all__ = [
    "PERCENTILES",
    "compare_figure",
    "display_overlay",
    "display_scale",
    "figure_png",
    "importance_histogram_png",
    "merge_histograms",
    "percentiles",
    "psnr_curves_png",
    "selection_title",
    "value_histogram",
]

DISPLAY_HEIGHT = 360  # panel height in compare.png
MAX_PANEL_WIDTH = 1400  # and the widest a panel may be


def display_scale(height: int, width: int | None = None, target: int = DISPLAY_HEIGHT) -> float:
    """Zoom of a panel: an integer upscale for small images, a downscale for large ones.

    About ``target`` px tall, and never wider than ``MAX_PANEL_WIDTH`` (very
    wide images are shown smaller).

    Examples
    --------
    >>> display_scale(56), display_scale(360), display_scale(720), display_scale(28, 2800)
    (6, 1, 0.5, 0.5)
    """
    if height <= target:
        zoom = max(1, target // height)
    else:
        zoom = target / height
    if width is not None and width * zoom > MAX_PANEL_WIDTH:
        zoom = max(1, MAX_PANEL_WIDTH // width) if width <= MAX_PANEL_WIDTH else MAX_PANEL_WIDTH / width
    return zoom


def _zoom(picture: np.ndarray, zoom: float, resample=Image.Resampling.BOX) -> np.ndarray:
    """Integer zooms repeat pixels (crisp); fractional ones use Pillow ``resample``."""
    if zoom == 1:
        return picture
    if float(zoom).is_integer() and zoom > 1:
        k = int(zoom)
        return np.repeat(np.repeat(picture, k, axis=0), k, axis=1)
    h, w = picture.shape[:2]
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    return np.asarray(Image.fromarray(picture).resize(size, resample))


def display_overlay(
    resized: np.ndarray, masks: dict, zoom: float, color_by_scale: bool = False, small: np.ndarray | None = None
) -> np.ndarray:
    """An overlay drawn for display at ``zoom``.

    Upscaling repeats the image's pixels and draws 2 px lines at the new size.
    Downscaling draws on the reduced image (``small``, computed when not
    given): each display pixel takes the patch under its source pixel, and a
    1 px line runs wherever that patch changes, so no edge is lost however far
    the image is reduced and small cells stay visible.

    Examples
    --------
    >>> m = {14: np.ones((4, 4), bool)}
    >>> display_overlay(np.zeros((56, 56, 3), np.uint8), m, 6).shape
    (336, 336, 3)
    >>> display_overlay(np.zeros((56, 56, 3), np.uint8), m, 0.5)[5, 6:9].tolist()
    [[0, 0, 0], [0, 255, 0], [0, 0, 0]]
    """
    if zoom >= 1:
        k = int(zoom)
        big = _zoom(np.asarray(resized), k)
        return draw_overlay(big, {ps * k: m for ps, m in masks.items()}, LINE_WIDTH, color_by_scale)
    if small is None:
        small = _zoom(np.asarray(resized), zoom)
    h, w = resized.shape[:2]
    finest = min(masks)
    ys = np.minimum((np.arange(small.shape[0]) / zoom).astype(np.intp), h - 1) // finest
    xs = np.minimum((np.arange(small.shape[1]) / zoom).astype(np.intp), w - 1) // finest
    labels = patch_labels(masks)[ys[:, None], xs[None, :]]
    # 1 px lines where the patch changes: reduced cells are small, wider lines would hide them
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    out = np.array(small, dtype=np.uint8, copy=True)
    if not color_by_scale:
        out[edge] = BOUNDARY_COLOR
        return out
    scale = scale_of_pixels(masks, h, w)[np.minimum((np.arange(small.shape[0]) / zoom).astype(np.intp), h - 1)[:, None],
                                         np.minimum((np.arange(small.shape[1]) / zoom).astype(np.intp), w - 1)[None, :]]
    palette = np.array(scale_colors(len(masks)), dtype=np.uint8)
    out[edge] = palette[np.maximum(scale[edge], 0)]
    return out


def display_image(resized: np.ndarray) -> np.ndarray | None:
    """The resized image reduced to compare.png's panel size (None when it is not reduced).

    Examples
    --------
    >>> display_image(np.zeros((720, 100, 3), np.uint8)).shape, display_image(np.zeros((56, 56, 3), np.uint8))
    ((360, 50, 3), None)
    """
    h, w = resized.shape[:2]
    zoom = display_scale(h, w)
    return _zoom(np.asarray(resized), zoom) if zoom < 1 else None


def display_blend(
    resized: np.ndarray, entropy, patch_size: int, vrange: tuple[float, float], small: np.ndarray | None = None
) -> np.ndarray:
    """The importance map blended over the photo, at compare.png's panel size (never larger than the image).

    Examples
    --------
    >>> display_blend(np.zeros((28, 28, 3), np.uint8), np.zeros((2, 2)), 14, (0.0, 1.0)).shape
    (28, 28, 3)
    """
    h, w = resized.shape[:2]
    zoom = min(1.0, display_scale(h, w))
    if zoom == 1:
        return blend_heatmap(resized, entropy, patch_size, *vrange)
    if small is None:
        small = display_image(resized)
    # the cell under each display pixel, then the same blend as at full size
    ys = np.minimum((np.arange(small.shape[0]) / zoom).astype(np.intp), h - 1)
    xs = np.minimum((np.arange(small.shape[1]) / zoom).astype(np.intp), w - 1)
    ent = to_numpy(entropy)[ys[:, None] // patch_size, xs[None, :] // patch_size]
    return blend_heatmap(small, ent, 1, *vrange)


def selection_title(sel: dict) -> list[str]:
    """Title lines of one selection panel from its stats.json entry.

    Shows LLM tokens when the entry has them (``llm_tokens``), the
    model-view PSNRs and SSIMs when present, and the measure first when the
    entry says ``show_measure`` (runs of several measures).

    Examples
    --------
    >>> selection_title({"method": "budget", "alpha": 0.3, "tokens": 209, "base_small_tokens": 704,
    ...                  "retention": 0.2969})
    ['budget  alpha=0.3', 'ViT 209/704 (29.7%)']
    >>> selection_title({"method": "v1", "tokens": 9, "base_small_tokens": 16, "retention": 0.5625,
    ...                  "psnr_apt": 30.04, "uniform_vit_tokens": 4, "psnr_uniform": 28.0,
    ...                  "ssim_apt": 0.91234, "ssim_uniform": 0.8})[2:]
    ['PSNR 30.0 dB  uniform (4 tok) 28.0 dB', 'SSIM 0.912  uniform 0.800']
    """
    name = sel["method"] if sel.get("alpha") is None else f"{sel['method']}  alpha={sel['alpha']:g}"
    if sel.get("show_measure") and sel.get("importance"):  # a run of several measures names each row's
        name = f"{sel['importance']}  {name}"
    lines = [name]
    vit = sel.get("vit_tokens", sel["tokens"])
    lines.append(f"ViT {vit}/{sel['base_small_tokens']} ({100 * sel['retention']:.1f}%)")
    if sel.get("llm_tokens") is not None:
        llm_ret = sel.get("llm_retention")
        pct = f" ({100 * llm_ret:.1f}%)" if llm_ret is not None else ""
        lines[-1] += f"  LLM {sel['llm_tokens']}/{sel.get('llm_tokens_uniform', '?')}{pct}"
    if "psnr_apt" in sel:
        uni = f"uniform ({sel['uniform_vit_tokens']} tok)" if sel.get("uniform_vit_tokens") is not None else "uniform"
        lines.append(f"PSNR {_db(sel.get('psnr_apt'))}  {uni} {_db(sel.get('psnr_uniform'))}")
    if sel.get("ssim_apt") is not None:
        lines.append(f"SSIM {_ssim(sel['ssim_apt'])}  uniform {_ssim(sel.get('ssim_uniform'))}")
    return lines


def _ssim(value) -> str:
    """SSIM with three decimals (1.000 for a lossless view).

    Examples
    --------
    >>> _ssim(0.91234), _ssim(None)
    ('0.912', '-')
    """
    return "-" if value is None else f"{value:.3f}"


def _db(value) -> str:
    return "lossless" if value is None else f"{value:.1f} dB"


def _titled(picture: np.ndarray, lines: list[str], font_size: int) -> np.ndarray:
    """Title lines above a picture; narrow pictures get a white margin so the title fits."""
    width = max(picture.shape[1], font_size * 20)
    body = _pad_to(picture, picture.shape[0], width)
    return np.concatenate([text_strip(lines, width, font_size), body], axis=0)


def _pad_to(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    out[: picture.shape[0], : picture.shape[1]] = picture
    return out


def compare_figure(panels: list[tuple[np.ndarray, list[str]]], per_row: int | None = None, gap: int = 8) -> np.ndarray:
    """Titled panels side by side (``per_row`` to a row) on white.

    Parameters
    ----------
    panels : list of (ndarray, list of str)
        Pictures (uint8 RGB, already at display size) and their title lines.
    per_row : int, optional
        Panels per row (default: up to 4, fewer for wide panels).
    gap : int
        White pixels between panels.

    Returns
    -------
    ndarray
        uint8 RGB figure.

    Examples
    --------
    >>> pics = [(np.zeros((300, 400, 3), np.uint8), ["a"]), (np.zeros((300, 500, 3), np.uint8), ["b"])]
    >>> compare_figure(pics).shape[1]  # 8 + 400 + 8 + 500 + 8
    924
    """
    heights = [p.shape[0] for p, _ in panels]
    font_size = int(np.clip(min(heights) // 18, 11, 18))
    titled = [_titled(p, lines, font_size) for p, lines in panels]
    if per_row is None:
        per_row = max(1, min(4, 2400 // max(p.shape[1] for p in titled)))
    rows = [titled[i : i + per_row] for i in range(0, len(titled), per_row)]
    row_pics = []
    width = 0
    for row in rows:
        h = max(p.shape[0] for p in row)
        parts = []
        for p in row:
            parts += [_pad_to(p, h, p.shape[1]), np.full((h, gap, 3), 255, np.uint8)]
        pic = np.concatenate([np.full((h, gap, 3), 255, np.uint8)] + parts, axis=1)
        row_pics.append(pic)
        width = max(width, pic.shape[1])
    out = [np.full((gap, width, 3), 255, np.uint8)]
    for pic in row_pics:
        out += [_pad_to(pic, pic.shape[0], width), np.full((gap, width, 3), 255, np.uint8)]
    return np.concatenate(out, axis=0)


def _heatmap_note(shown: int, finest: int | None) -> str:
    """Second title line of the heatmap panel.

    Examples
    --------
    >>> _heatmap_note(14, None), _heatmap_note(28, 14)
    ('(finest scale)', '(14 px: all zero)')
    """
    return "(finest scale)" if finest is None or finest == shown else f"({finest} px: all zero)"


def build_compare(
    original,
    resized: np.ndarray,
    heatmap: np.ndarray,
    finest: int,
    selections: list[tuple[dict, dict]],
    color_by_scale: bool = False,
    finest_scale: int | None = None,
    heatmap_at=None,
    small: np.ndarray | None = None,
) -> np.ndarray:
    """``compare.png`` of one image.

    Parameters
    ----------
    original : PIL.Image.Image
        The loaded image.
    resized : ndarray
        The resized image.
    heatmap : ndarray
        The heatmap picture (image + colorbar) at the resized size: the
        finest scale's, or for upsample-mse (all zeros there) the next one.
    finest : int
        Patch size of that heatmap (for its title).
    selections : list of (dict, dict)
        ``(stats entry, masks)`` of every selection.
    color_by_scale : bool
        Colour the overlays by scale.
    finest_scale : int, optional
        The finest patch size, when the heatmap shows a coarser one.
    heatmap_at : callable, optional
        ``k -> picture``: the heatmap drawn ``k`` times larger (used for
        integer zooms, so the colorbar stays readable); else ``heatmap`` is scaled.
    small : ndarray, optional
        :func:`display_image` of ``resized`` when already computed.

    Returns
    -------
    ndarray
    """
    h, w = resized.shape[:2]
    zoom = display_scale(h, w)
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    resample = Image.Resampling.NEAREST if zoom >= 1 else Image.Resampling.BOX
    # the original is shown at display size: reduce the resized image (same picture, fewer pixels to read)
    if small is None and zoom < 1:
        small = _zoom(np.asarray(resized), zoom, resample)
    orig = small if small is not None else np.asarray(original.convert("RGB").resize(size, resample))
    if heatmap_at is not None and zoom > 1:
        heat_zoom = heatmap_at(int(zoom))
    else:
        heat_zoom = _zoom(heatmap, zoom, Image.Resampling.BOX)
    panels = [
        (orig, ["original", f"{original.width}x{original.height} -> {w}x{h}"]),
        (heat_zoom, [f"importance, {finest} px", _heatmap_note(finest, finest_scale)]),
    ]
    for entry, masks in selections:
        panels.append((display_overlay(resized, masks, zoom, color_by_scale, small), selection_title(entry)))
    return compare_figure(panels)


# ---------------------------------------------------------------- dataset view


def percentiles(hist: dict, qs=PERCENTILES) -> dict:
    """Percentiles of a histogram made by :func:`value_histogram` (the one rule:
    :func:`aptviz.compute.percentiles.histogram_percentiles`; within one bin width of the exact value).

    Examples
    --------
    >>> h = {"lo": 0.0, "hi": 10.0, "counts": [0] * 250 + [10]}
    >>> percentiles(h)["p50"]
    5.01
    """
    width = (hist["hi"] - hist["lo"]) / HIST_BINS
    values = histogram_percentiles(hist["counts"], hist["lo"], width, qs)
    return {f"p{q}": None if v is None else round(v, 6) for q, v in zip(qs, values)}


def new_figure(width: float, height: float):
    """A matplotlib Figure (Agg canvas, 110 dpi) of ``width`` x ``height`` inches, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """Lay out ``fig`` and encode it as PNG bytes (as ``savefig`` would, into memory)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format="png")
    return buf.getvalue()


def importance_histogram_png(
    hist: dict,
    v1_thresholds=None,
    v2_lines: list[tuple[float, dict]] | None = None,
    unit: str = "bits",
) -> bytes | None:
    """Per-scale importance histograms of a batch with the v1/v2 thresholds marked, as PNG bytes.

    Parameters
    ----------
    hist : dict
        :func:`merge_histograms` output.
    v1_thresholds : sequence of float, optional
        v1 thresholds (one per scale above the finest), drawn as dashed lines.
    v2_lines : list of (alpha, {scale: mean threshold}), optional
        v2 thresholds (alpha times the scale's mean, averaged over images).
    unit : str
        Unit of the measure (axis label).

    Returns
    -------
    bytes or None
        None when there is no cell to show.
    """
    scales = sorted(hist, key=int)
    if not scales or not any(sum(hist[s]["counts"]) for s in scales):
        return None
    fig = new_figure(3.6 * len(scales), 3.4)
    axes = fig.subplots(1, len(scales), squeeze=False)[0]
    colors = ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red")
    for i, (ax, s) in enumerate(zip(axes, scales)):
        h = hist[s]
        counts = np.asarray(h["counts"], dtype=np.float64)
        edges = np.linspace(h["lo"], h["hi"], HIST_BINS + 1)
        # 100 display bins
        group = HIST_BINS // 100
        disp = counts.reshape(-1, group).sum(axis=1)
        ax.stairs(disp, edges[::group], fill=True, color="tab:purple", alpha=0.5)
        pct = percentiles(h)
        ax.set_title(f"{s} px  (median {pct['p50']:.2f})" if pct["p50"] is not None else f"{s} px")
        ax.set_xlabel(f"importance ({unit})")
        if i == 0:
            ax.set_ylabel("cells")
        if i > 0 and v1_thresholds is not None and i - 1 < len(v1_thresholds):
            ax.axvline(v1_thresholds[i - 1], color=colors[0], ls="--", lw=1.5, label=f"v1 {v1_thresholds[i - 1]:g}")
        for j, (alpha, thr) in enumerate(v2_lines or []):
            if i > 0 and thr.get(s) is not None:
                ax.axvline(thr[s], color=colors[1 + j % 4], ls="-", lw=1.2, label=f"v2 a={alpha:g}: {thr[s]:.2f}")
        if i > 0 and (v1_thresholds is not None or v2_lines):
            ax.legend(fontsize=7)
    fig.suptitle("Importance of all non-PAD cells in the batch (kept as one patch when below the threshold)",
                 fontsize=9)
    return figure_png(fig)


def psnr_curves_png(rows: list[dict]) -> bytes | None:
    """Retention against PSNR for APT (per method) and uniform Qwen2-VL at the same tokens, as PNG bytes.

    Every (image, selection) row is a faint point; lines join the means per
    (method, alpha). Uniform points sit at ``uniform_vit_tokens / N``. None when no row has PSNRs.
    """
    ok = [r for r in rows if r.get("status") == ROW_OK and r.get("psnr_uniform") is not None]
    ok = [r for r in ok if r.get("psnr_apt") is not None]
    if not ok:
        return None
    fig = new_figure(6.4, 4.4)
    ax = fig.subplots()
    colors = {"v1": "tab:gray", "v2": "tab:blue", "budget": "tab:orange"}
    for method in ("v1", "v2", "budget"):
        mine = [r for r in ok if r["method"] == method]
        if not mine:
            continue
        ax.scatter([r["retention"] for r in mine], [r["psnr_apt"] for r in mine], s=8, alpha=0.3,
                   color=colors[method])
        groups: dict = {}
        for r in mine:
            groups.setdefault(r["alpha"], []).append(r)
        apt, uni = [], []
        for grp in groups.values():
            apt.append((np.mean([g["retention"] for g in grp]), np.mean([g["psnr_apt"] for g in grp])))
            uni.append((
                np.mean([g["uniform_vit_tokens"] / g["base_small_tokens"] for g in grp]),
                np.mean([g["psnr_uniform"] for g in grp]),
            ))
        ax.plot(*zip(*sorted(apt)), "o-", color=colors[method], label=f"APT {method} (mean per alpha)")
        ax.plot(*zip(*sorted(uni)), "s--", color=colors[method], mfc="white",
                label=f"uniform Qwen2-VL at {method}'s tokens")
    ax.set_xlabel("retention (ViT tokens / N)")
    ax.set_ylabel("PSNR vs resized image (dB)")
    ax.set_title("What the ViT sees: APT vs uniform at equal token counts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)
