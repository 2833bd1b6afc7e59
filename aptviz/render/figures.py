"""Figures that explain themselves: the per-image comparison and the dataset view (SPEC §8).

* :func:`build_compare` -- ``compare.png``: a grid with one layout for every
  image (original, heatmap, blend; per selection the overlay, the model view,
  uniform at equal ViT tokens and at equal LLM tokens, the two error maps), as a :class:`Layout` that
  :func:`encode_figure` draws as PNG (Pillow, no matplotlib) or PDF/SVG.
* :func:`importance_histogram_png` and :func:`psnr_curves_png` -- the batch
  figures as PNG, PDF or SVG bytes (matplotlib, once per batch); the caller writes them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from aptviz.compute.fidelity import RetentionCurves
from aptviz.compute.histogram import HIST_BINS
from aptviz.render.pictures import (
    BOUNDARY_COLOR,
    LINE_WIDTH,
    blend_heatmap,
    draw_overlay,
    get_font,
    legible,
    patch_labels,
    scale_colors,
    scale_of_pixels,
    wrap_text,
)

__all__ = [
    "FIGURE_FORMATS",
    "Layout",
    "build_compare",
    "display_overlay",
    "display_scale",
    "encode_figure",
    "figure_bytes",
    "importance_histogram_png",
    "ocr_curves_png",
    "psnr_curves_png",
    "require_vector",
    "selection_title",
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
    ent = np.asarray(entropy)[ys[:, None] // patch_size, xs[None, :] // patch_size]
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


def _fidelity_line(entry: dict, which: str) -> str:
    """``PSNR 33.1 dB`` of one view, with its SSIM when the entry has one.

    Examples
    --------
    >>> _fidelity_line({"psnr_apt": None}, "apt")
    'PSNR lossless'
    >>> _fidelity_line({"psnr_uniform": 30.0, "ssim_uniform": 0.9}, "uniform")
    'PSNR 30.0 dB, SSIM 0.900'
    """
    line = f"PSNR {_db(entry.get(f'psnr_{which}'))}"
    ssim = entry.get(f"ssim_{which}")
    return line if ssim is None else f"{line}, SSIM {_ssim(ssim)}"


def fit_text(lines: list[str], width: int, size: int, smallest: int = 10) -> tuple[list[str], int]:
    """Title lines wrapped to ``width`` px; the font shrinks (to ``smallest``) before a word is split.

    Returns the wrapped lines and the font size. Nothing is ever cut.

    Examples
    --------
    >>> fit_text(["ViT 628/1225 (51.3%)"], 400, 15)
    (['ViT 628/1225 (51.3%)'], 15)
    >>> wrapped, size = fit_text(["ViT 628/1225 (51.3%)  LLM 310/306 (101.3%)"], 120, 15)
    >>> len(wrapped) > 1 and all(get_font(size).getlength(t) <= 120 for t in wrapped)
    True
    """
    for s in range(size, smallest - 1, -1):
        font = get_font(s)
        words = [w for line in lines for w in line.split()]
        if all(font.getlength(w) <= width for w in words):
            break
    font = get_font(s)
    out = [w for line in lines for w in wrap_text(legible(line, font), font, width)]
    return out, s


@dataclass
class Layout:
    """A figure as placed items, drawn as PNG (Pillow) or PDF/SVG (matplotlib).

    ``images``: ``(x, y, uint8 RGB array)``; ``texts``: ``(x, y, text, size px)``
    with ``(x, y)`` the top-left corner of the text.
    """

    width: int
    height: int
    images: list = field(default_factory=list)
    texts: list = field(default_factory=list)


LINE_GAP = 3  # px between title lines
GAP = 10  # px between panels and around the figure
TITLE_SIZE = 15  # px; shrinks to 10 for a long word in a narrow panel
BAR_FONT = 16  # colorbar font in compare: digits about 11 px high


def grid_layout(rows: list[list[tuple[np.ndarray, list[str]]]], gap: int = GAP) -> Layout:
    """Rows of titled panels: every title wrapped to its panel, all panels of a row with one top edge,
    and the i-th panel of every row at the same x (columns as wide as their widest panel).

    Examples
    --------
    >>> lay = grid_layout([[(np.zeros((30, 40, 3), np.uint8), ["a"]), (np.zeros((20, 10, 3), np.uint8), ["b c"])]])
    >>> [y for _, y, _ in lay.images]  # the same top edge
    [48, 48]
    >>> lay = grid_layout([[(np.zeros((9, 40, 3), np.uint8), ["a"])] * 2, [(np.zeros((9, 60, 3), np.uint8), ["b"])] * 2])
    >>> sorted({x for x, _, _ in lay.images})  # the second column starts after the widest first panel
    [10, 80]
    """
    columns = max((len(row) for row in rows), default=0)
    widths = [max(row[i][0].shape[1] for row in rows if len(row) > i) for i in range(columns)]
    starts = [gap + sum(widths[:i]) + i * gap for i in range(columns)]  # every row's i-th panel starts here
    placed = []
    y = gap
    width = 0
    for row in rows:
        titles = [fit_text(lines, max(p.shape[1], 8), TITLE_SIZE) for p, lines in row]
        title_h = max(len(t) * (size + LINE_GAP) for t, size in titles) + 2
        for x, (pic, _), (lines, size) in zip(starts, row, titles):
            placed.append(("image", x, y + title_h, pic))
            for i, line in enumerate(lines):
                placed.append(("text", x, y + i * (size + LINE_GAP), line, size))
            width = max(width, x + pic.shape[1] + gap)
        y += title_h + max(p.shape[0] for p, _ in row) + gap
    lay = Layout(width, y)
    for item in placed:
        (lay.images if item[0] == "image" else lay.texts).append(item[1:])
    return lay


def draw_png(layout: Layout) -> np.ndarray:
    """The layout drawn with Pillow: a uint8 RGB array."""
    from PIL import ImageDraw

    canvas = Image.new("RGB", (layout.width, layout.height), (255, 255, 255))
    for x, y, pic in layout.images:
        canvas.paste(Image.fromarray(np.ascontiguousarray(pic)), (int(x), int(y)))
    draw = ImageDraw.Draw(canvas)
    for x, y, text, size in layout.texts:
        draw.text((x, y), text, fill=(0, 0, 0), font=get_font(size))
    return np.asarray(canvas)


def draw_vector(layout: Layout, fmt: str) -> bytes:
    """The layout as a PDF or SVG (matplotlib, the ``plots`` extra): text as vector, pictures embedded."""
    fig = new_figure(layout.width / 100, layout.height / 100, dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, layout.width)
    ax.set_ylim(layout.height, 0)
    ax.set_axis_off()
    for x, y, pic in layout.images:
        h, w = pic.shape[:2]
        ax.imshow(pic, extent=(x, x + w, y + h, y), interpolation="none")
    for x, y, text, size in layout.texts:
        ax.text(x, y, text, fontsize=size * 0.72 * 0.85, va="top", ha="left")  # px at 100 dpi -> pt
    ax.set_xlim(0, layout.width)
    ax.set_ylim(layout.height, 0)
    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format=fmt, dpi=100)
    return buf.getvalue()


def encode_figure(layout: Layout, fmt: str = "png") -> bytes:
    """The layout's file content in ``fmt`` (png, pdf or svg)."""
    if fmt == "png":
        buf = io.BytesIO()
        Image.fromarray(draw_png(layout)).save(buf, format="PNG")
        return buf.getvalue()
    require_vector(fmt)
    return draw_vector(layout, fmt)


FIGURE_FORMATS = ("png", "pdf", "svg")


def require_vector(fmt: str) -> None:
    """Raise a clear error when ``fmt`` is not a figure format or matplotlib is missing for it."""
    from aptviz.errors import MissingExtraError, ParameterError

    if fmt not in FIGURE_FORMATS:
        raise ParameterError(f"figure-format must be png, pdf or svg, got {fmt!r}")
    if fmt == "png":
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtraError(
            f"--figure-format {fmt} needs matplotlib: pip install 'aptviz[plots]' (or use png)"
        ) from None


def _heatmap_note(shown: int, finest: int | None) -> str:
    """Second title line of the heatmap panel.

    Examples
    --------
    >>> _heatmap_note(14, None), _heatmap_note(28, 14)
    ('(finest scale)', '(14 px: all zero)')
    """
    return "(finest scale)" if finest is None or finest == shown else f"({finest} px: all zero)"


COMPARE_HEIGHT = 320  # target panel height in compare.png
COMPARE_PANEL_WIDTH = 520  # and the widest a panel may be (5 panels to a row)
BAR_MIN_HEIGHT = 160  # a colorbar is never shorter (wide panoramas)
# ColorBrewer "Reds": white (no error) to dark red
ERROR_STOPS = ((255, 255, 255), (252, 187, 161), (251, 106, 74), (203, 24, 29), (103, 0, 13))


def compare_zoom(height: int, width: int) -> float:
    """Zoom of every compare.png panel: whole numbers up for small images, fractions down.

    Examples
    --------
    >>> compare_zoom(56, 56), compare_zoom(980, 980), compare_zoom(504, 2016)
    (5, 0.32653061224489793, 0.25793650793650796)
    """
    if height <= COMPARE_HEIGHT and width <= COMPARE_PANEL_WIDTH:
        return max(1, min(COMPARE_HEIGHT // height, COMPARE_PANEL_WIDTH // width))
    return min(COMPARE_HEIGHT / height, COMPARE_PANEL_WIDTH / width)


def error_lut() -> np.ndarray:
    """(256, 3) uint8 ramp of :data:`ERROR_STOPS` (white = no error)."""
    stops = np.array(ERROR_STOPS, dtype=np.float64)
    pos = np.linspace(0, 255, len(stops))
    x = np.arange(256)
    return np.stack([np.interp(x, pos, stops[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def _show(picture: np.ndarray, zoom: float) -> np.ndarray:
    """A picture at display size: pixel repetition up, area average down."""
    return _zoom(picture, zoom, Image.Resampling.BOX)


def _sample(cells: np.ndarray, cell: int, size: tuple[int, int], zoom: float) -> np.ndarray:
    """The cell under each display pixel (crisp cells at any zoom)."""
    w, h = size
    dh, dw = max(1, round(h * zoom)), max(1, round(w * zoom))
    ys = np.minimum((np.arange(dh) / zoom).astype(np.intp), h - 1) // cell
    xs = np.minimum((np.arange(dw) / zoom).astype(np.intp), w - 1) // cell
    return cells[ys[:, None], xs[None, :]]


def heat_panel(entropy, patch_size: int, size, vrange, zoom: float, style: dict | None = None) -> np.ndarray:
    """The heatmap at display size with its colour scale beneath (labels ``BAR_FONT`` px).

    The scale runs under the map, as wide as it, so the panel is exactly as
    wide as the photo panels of its column (the unit goes in the panel's title).
    """
    from aptviz.render.pictures import PAD, hatch_colors, colormap_lut

    ent = np.asarray(entropy).astype(np.float64)
    vmin, vmax = vrange
    lut = colormap_lut()
    pad = ent == PAD
    span = vmax - vmin
    scaled = (np.where(pad, vmin, ent) - vmin) / span if span > 0 else np.zeros_like(ent)
    idx = np.clip(np.rint(scaled * 255), 0, 255).astype(np.intp)
    pixels = lut[_sample(idx, patch_size, size, zoom)]
    shown_pad = _sample(pad, patch_size, size, zoom)
    if shown_pad.any():
        ys, xs = np.nonzero(shown_pad)
        pixels[ys, xs] = hatch_colors(ys, xs)
    bar = scale_bar(pixels.shape[1], vmin, vmax, lut, bool(pad.any()))
    return np.concatenate([pixels, np.full((4, pixels.shape[1], 3), 255, np.uint8), bar], axis=0)


def scale_bar(width: int, vmin: float, vmax: float, lut: np.ndarray, any_pad: bool = False,
              font_size: int = BAR_FONT) -> np.ndarray:
    """A horizontal colour scale ``width`` px wide: the ramp, round ticks below it, and a no-data key.

    Tick labels that would overlap the previous one are left out; none is cut.

    Examples
    --------
    >>> from aptviz.render.pictures import colormap_lut
    >>> bar = scale_bar(200, 0.0, 8.0, colormap_lut())
    >>> bar.shape[1], bar.shape[0] > BAR_FONT
    (200, True)
    """
    from PIL import ImageDraw

    from aptviz.render.pictures import hatch, nice_ticks

    font = get_font(font_size)
    ramp_h = max(8, font_size * 3 // 4)
    key_w = int(font_size + 8 + font.getlength("no data")) if any_pad else 0
    bar_w = max(8, width - key_w - 2)
    height = ramp_h + 6 + font_size + 4
    panel = Image.new("RGB", (max(width, bar_w + 2), height), (255, 255, 255))
    levels = np.linspace(0, 255, bar_w).round().astype(np.intp)
    panel.paste(Image.fromarray(np.ascontiguousarray(np.repeat(lut[levels][None], ramp_h, axis=0))), (1, 0))
    draw = ImageDraw.Draw(panel)
    draw.rectangle((0, 0, bar_w + 1, ramp_h), outline=(0, 0, 0))
    right = -1.0  # the end of the last label drawn
    for t in nice_ticks(vmin, vmax):
        x = 1 + ((t - vmin) / (vmax - vmin) if vmax > vmin else 0.0) * (bar_w - 1)
        label = f"{t:g}"
        lw = font.getlength(label)
        left = min(max(0.0, x - lw / 2), bar_w + 2 - lw)
        if left < right + font_size // 2:
            continue
        draw.line((x, ramp_h, x, ramp_h + 4), fill=(0, 0, 0))
        draw.text((left, ramp_h + 5), label, fill=(0, 0, 0), font=font)
        right = left + lw
    if any_pad:
        kx = width - key_w + 6
        panel.paste(Image.fromarray(hatch(ramp_h, font_size)), (kx, 0))
        draw.text((kx + font_size + 3, 0), "no data", fill=(0, 0, 0), font=font)
    return np.asarray(panel)[:, :width]


def _side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    h = max(left.shape[0], right.shape[0])
    out = np.full((h, left.shape[1] + gap + right.shape[1], 3), 255, np.uint8)
    out[: left.shape[0], : left.shape[1]] = left
    out[: right.shape[0], left.shape[1] + gap :] = right
    return out


def error_panels(maps: list[np.ndarray], scale, zoom: float) -> tuple[list, np.ndarray | None]:
    """Error maps on the row's one colour scale at display size, and its colorbar.

    ``maps``: ``|view - resized|`` per view (:meth:`aptviz.compute.views.ModelView.error_maps`); ``scale``: their
    :class:`aptviz.compute.views.ErrorScale`, whose ``top`` takes the top colour. The colorbar is None when every
    view is identical to ``resized`` (all means 0).
    """
    from aptviz.render.pictures import colorbar

    lut = error_lut()
    shown = []
    for err in maps:
        small = err if zoom == 1 else np.asarray(Image.fromarray(err, mode="F").resize(
            (max(1, round(err.shape[1] * zoom)), max(1, round(err.shape[0] * zoom))),
            Image.Resampling.NEAREST if zoom > 1 else Image.Resampling.BOX))  # fmt: skip
        shown.append(lut[np.clip(np.rint(small / scale.top * 255), 0, 255).astype(np.intp)])
    if scale.lossless:  # every view identical to the resized image: nothing to scale
        return shown, None
    height = max(shown[0].shape[0], BAR_MIN_HEIGHT)
    bar = colorbar(height, 0.0, scale.top, lut, False, 0, "0-255", None, font_size=BAR_FONT, title=["|error|"])
    return shown, bar


def lossless_panel(height: int, width: int) -> np.ndarray:
    """A blank panel the size of an error map that says "lossless" (the view is the resized image).

    Examples
    --------
    >>> p = lossless_panel(60, 120)
    >>> p.shape, bool((p < 128).any())
    ((60, 120, 3), True)
    """
    from PIL import ImageDraw

    panel = Image.new("RGB", (max(1, width), max(1, height)), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    draw.rectangle((0, 0, panel.width - 1, panel.height - 1), outline=(200, 200, 200))
    size = max(8, min(TITLE_SIZE + 5, panel.width // 6))
    font = get_font(size)
    text_w = font.getlength("lossless")
    draw.text(((panel.width - text_w) / 2, (panel.height - size) / 2), "lossless", fill=(90, 90, 90), font=font)
    return np.asarray(panel)


def display_windows(picture: np.ndarray, window: int, zoom: float, size: tuple[int, int]) -> np.ndarray:
    """The attention-window borders (``window`` px of the resized image, ``size`` = (W, H)) on a display picture.

    Whole-number zooms draw :func:`aptviz.render.pictures.draw_windows` at
    ``window * zoom``; reductions draw a 1 px line wherever the window under the pixel changes.

    Examples
    --------
    >>> display_windows(np.zeros((8, 8, 3), np.uint8), 4, 1, (8, 8))[0, 3].tolist()
    [255, 0, 0]
    >>> out = display_windows(np.zeros((4, 4, 3), np.uint8), 4, 0.5, (8, 8))
    >>> [int(out[0, x, 0]) for x in range(4)]
    [0, 0, 255, 0]
    """
    from aptviz.render.pictures import WINDOW_COLOR, draw_windows

    if zoom >= 1:
        return draw_windows(picture, window * int(zoom), LINE_WIDTH)
    w, h = size
    ys = np.minimum((np.arange(picture.shape[0]) / zoom).astype(np.intp), h - 1) // window
    xs = np.minimum((np.arange(picture.shape[1]) / zoom).astype(np.intp), w - 1) // window
    out = np.array(picture, dtype=np.uint8, copy=True)
    out[np.flatnonzero(np.diff(ys)) + 1, :] = WINDOW_COLOR
    out[:, np.flatnonzero(np.diff(xs)) + 1] = WINDOW_COLOR
    return out


def _heat_lines(heat: dict) -> list[str]:
    """Title of one heatmap panel: the measure (or "importance"), the scale, the note and the colour unit."""
    style = heat.get("style") or {}
    name = style.get("measure") or "importance"
    return [f"{name}, {heat['scale']} px", f"{_heatmap_note(heat['scale'], heat.get('finest'))}, colour in "
            f"{style.get('unit', 'bits')}"]  # fmt: skip


def _error_row(resized: np.ndarray, view, zoom: float) -> list:
    """The error-map panels of one selection (its model view's :class:`aptviz.compute.views.ErrorScale`): one colour
    scale (its bar after the last), "lossless" panels."""
    errors, bar = error_panels(view.error_maps(resized), view.errors, zoom)
    row = []
    for name, err, mean in zip(("|APT view - resized|", "|uniform - resized|"), errors, view.errors.means):
        if mean == 0:
            row.append((lossless_panel(*err.shape[:2]), [name, "lossless: the resized image"]))
        else:
            row.append((err, [name, f"mean {mean:.2f} of 255"]))
    if bar is not None:
        row[-1] = (_side_by_side(row[-1][0], bar), row[-1][1])
    return row


def build_compare(
    original,
    resized: np.ndarray,
    heat: dict | list[dict],
    selections: list[tuple[dict, dict, object]],
    color_by_scale: bool = False,
    window: int = 0,
) -> Layout:
    """``compare`` of one image as a :class:`Layout` (draw it with :func:`encode_figure`).

    The same grid for every image, in columns: a first row with the original,
    the importance heatmap of every measure (its colour scale beneath) and the
    blend; then one row per selection with its overlay, the model view, the
    uniform baselines at equal ViT tokens and at equal LLM tokens and the two
    error maps ``|view - resized|`` (APT, uniform at equal ViT tokens) on one
    colour scale (with its colorbar; a view identical to the resized image says
    "lossless" instead).

    Parameters
    ----------
    original : PIL.Image.Image
        The loaded image (for its size).
    resized : ndarray
        The resized image.
    heat : dict or list of dict
        Per measure (the first is blended): ``map`` (the shown importance
        map), ``scale`` (its patch size), ``finest`` (the finest patch size),
        ``vrange`` (colour range), ``style`` (``unit`` and ``measure``).
    selections : list of (dict, dict, ModelView)
        ``(stats entry, masks, model view)`` of every selection.
    color_by_scale : bool
        Colour the overlays by scale.
    window : int
        Attention-window side in px drawn in red on the overlays (``--show-windows``); 0: none.

    Returns
    -------
    Layout
    """
    h, w = resized.shape[:2]
    zoom = compare_zoom(h, w)
    small = _show(np.asarray(resized), zoom)
    heats = [heat] if isinstance(heat, dict) else list(heat)
    first = heats[0]
    blend = blend_heatmap(small, _sample(np.asarray(first["map"]), first["scale"], (w, h), zoom), 1, *first["vrange"])
    blend_name = (first.get("style") or {}).get("measure") if len(heats) > 1 else None
    rows = [[
        (small, ["original", f"{original.width}x{original.height} -> {w}x{h}"]),
        *((heat_panel(m["map"], m["scale"], (w, h), m["vrange"], zoom, m.get("style")), _heat_lines(m)) for m in heats),
        (blend, [f"{blend_name or 'importance'} over the photo"]),
    ]]  # fmt: skip
    for entry, masks, view in selections:
        uniform = view.uniform.image
        tokens = entry.get("uniform_vit_tokens")
        overlay = display_overlay(resized, masks, zoom, color_by_scale, small if zoom < 1 else None)
        title = selection_title(entry)[:2]
        if window:
            overlay = display_windows(overlay, window, zoom, (w, h))
            title.append(f"red: {window} px attention windows")
        rows.append([
            (overlay, title),
            (_show(np.asarray(view.apt), zoom), ["what the ViT sees", _fidelity_line(entry, "apt")]),
            (_show(np.asarray(uniform), zoom),
             [f"uniform, {tokens} ViT tokens" if tokens is not None else "uniform", _fidelity_line(entry, "uniform")]),
            *_llm_uniform_panel(entry, view, zoom),
            *_error_row(resized, view, zoom),
        ])  # fmt: skip
    return grid_layout(rows)


def _llm_uniform_panel(entry: dict, view, zoom: float) -> list:
    """compare.png's panel of the uniform baseline at equal LLM tokens (none without one)."""
    llm = getattr(view, "uniform_llm", None)
    if llm is None:
        return []
    title = f"uniform, {entry.get('llm_uniform_tokens')} LLM tokens"
    return [(_show(np.asarray(llm.image), zoom), [title, _fidelity_line(entry, "uniform_llm")])]


# ---------------------------------------------------------------- dataset view


def new_figure(width: float, height: float, dpi: int = 110):
    """A matplotlib Figure (Agg canvas, 110 dpi) of ``width`` x ``height`` inches, no pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """Lay out ``fig`` and encode it in ``fmt`` (png, pdf or svg), into memory."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.canvas.print_figure(buf, format=fmt)
    return buf.getvalue()


def importance_histogram_png(
    hist: dict,
    v1_thresholds=None,
    v2_lines: list[tuple[float, dict]] | None = None,
    unit: str = "bits",
    fmt: str = "png",
    percentiles: dict | None = None,
) -> bytes | None:
    """Per-scale importance histograms of a batch with the v1/v2 thresholds marked, as file bytes (``fmt``).

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
    percentiles : dict, optional
        ``{scale: {"p50": median, ...}}`` (dataset.json ``percentiles``): each panel's title names the median.

    Returns
    -------
    bytes or None
        None when there is no cell to show.
    """
    figure = importance_histogram_figure(hist, v1_thresholds, v2_lines, unit, percentiles)
    return None if figure is None else figure_bytes(figure, fmt)


def importance_histogram_figure(hist: dict, v1_thresholds=None, v2_lines=None, unit: str = "bits", percentiles=None):
    """The matplotlib Figure of :func:`importance_histogram_png` (None when there is no cell);
    each panel's legend sits below it, off the bars and the threshold lines."""
    scales = sorted(hist, key=int)
    if not scales or not any(sum(hist[s]["counts"]) for s in scales):
        return None
    entries = 2 + len(v2_lines or [])  # the most legend lines of a panel: cells, v1, every v2 alpha
    fig = new_figure(3.6 * len(scales), 3.4 + 0.17 * entries)
    axes = fig.subplots(1, len(scales), squeeze=False)[0]
    colors = ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red")
    for i, (ax, s) in enumerate(zip(axes, scales)):
        h = hist[s]
        counts = np.asarray(h["counts"], dtype=np.float64)
        edges = np.linspace(h["lo"], h["hi"], HIST_BINS + 1)
        # 100 display bins
        group = HIST_BINS // 100
        disp = counts.reshape(-1, group).sum(axis=1)
        ax.stairs(disp, edges[::group], fill=True, color="tab:purple", alpha=0.5, label="cells (100 bins)")
        median = (percentiles or {}).get(s, {}).get("p50")
        ax.set_title(f"{s} px  (median {median:.2f})" if median is not None else f"{s} px")
        ax.set_xlabel(f"importance ({unit})")
        if i == 0:
            ax.set_ylabel("cells")
        if i > 0 and v1_thresholds is not None and i - 1 < len(v1_thresholds):
            ax.axvline(v1_thresholds[i - 1], color=colors[0], ls="--", lw=1.5,
                       label=f"v1: {v1_thresholds[i - 1]:g} {unit} at {s} px")  # fmt: skip
        for j, (alpha, thr) in enumerate(v2_lines or []):
            if i > 0 and thr.get(s) is not None:
                ax.axvline(thr[s], color=colors[1 + j % 4], ls="-", lw=1.2,
                           label=f"v2 alpha={alpha:g}: {thr[s]:.2f} {unit} at {s} px")  # fmt: skip
        # below the panel, off the bars and the threshold lines
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.suptitle("Importance of all non-PAD cells in the batch (kept as one patch when below the threshold)",
                 fontsize=9)
    return fig


def _mark_off_scale(ax, series, top: float, colors: dict) -> list:
    """Points above ``top`` drawn as arrows at the top edge, each tied to its value by a leader line.

    Points that share a marker (same method, same x to 0.005) share one label
    listing their values; labels are staggered downwards from the top edge,
    left to right, in the series' colour. Returns the annotations.
    """
    marks: dict = {}  # (method, x rounded) -> (x, [values])
    for _kind, method, xs, ys in series:
        for x, y in zip(xs, ys):
            if y > top:
                marks.setdefault((method, round(x / 0.005)), (x, []))[1].append(y)
    notes = []
    for i, ((method, _), (x, values)) in enumerate(sorted(marks.items(), key=lambda kv: kv[1][0])):
        ax.plot([x], [top], marker="^", ms=8, color=colors[method], ls="none")
        text = ", ".join(f"{v:.0f}" for v in sorted(set(round(v) for v in values))) + " dB"
        notes.append(ax.annotate(
            text, (x, top), textcoords="offset points", xytext=(0, -16 - 11 * (i % 4)), fontsize=7, ha="center",
            va="top", color=colors[method], arrowprops=dict(arrowstyle="-", lw=0.6, color=colors[method]),
        ))  # fmt: skip
    if marks:  # one legend entry, in black: the colour is the method's
        ax.plot([], [], marker="^", ms=8, color="black", ls="none", label="off scale (value in dB)")
    ax.set_ylim(top=top + 0.5)
    return notes


def psnr_curves_png(curves: RetentionCurves | None, fmt: str = "png") -> bytes | None:
    """Retention against PSNR for APT (per method) and the rows' model, uniform, at equal ViT tokens, as bytes (``fmt``).

    Every (image, selection) row is a faint point; lines join the means per
    (method, alpha) (:func:`aptviz.compute.fidelity.retention_curves`). Uniform
    points sit at ``uniform_vit_tokens / N``. None when no row has PSNRs.
    """
    figure = psnr_curves_figure(curves)
    return None if figure is None else figure_bytes(figure, fmt)


def psnr_curves_figure(curves: RetentionCurves | None):
    """The matplotlib Figure of :func:`psnr_curves_png`, or None when no row has PSNRs."""
    if curves is None:
        return None
    fig = new_figure(8.8, 4.4)
    ax = fig.subplots()
    colors = {"v1": "tab:gray", "v2": "tab:blue", "budget": "tab:orange"}
    series, top, model = curves.series, curves.top, curves.model
    styles = {
        "dots": lambda m: dict(ls="none", marker=".", ms=5, alpha=0.35, label=f"APT {m}, one image"),
        "apt": lambda m: dict(ls="-", marker="o", label=f"APT {m} (mean per alpha)"),
        "uniform": lambda m: dict(ls="--", marker="s", mfc="white", label=f"uniform {model} at {m}'s tokens"),
    }
    for kind, method, xs, ys in series:
        ax.plot(xs, np.minimum(ys, top) if top is not None else ys, color=colors[method], **styles[kind](method))
    if top is not None:
        _mark_off_scale(ax, series, top, colors)
    ax.set_xlabel("retention (ViT tokens / N)")
    ax.set_ylabel("PSNR vs resized image (dB)")
    ax.set_title("What the ViT sees: APT vs uniform at equal ViT tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def ocr_curves_png(points: dict, fmt: str = "png") -> bytes | None:
    """Tesseract's character accuracy against LLM retention: APT and both uniform baselines, as bytes (``fmt``).

    One point per (measure, method, alpha), the mean over the images with text
    (``--ocr`` rows whose resized image has text); uniform at equal LLM tokens
    sits at APT's LLM retention, uniform at equal ViT tokens at its own
    (``uniform_vit_tokens / N``: every uniform ViT token is a finest patch). None
    when no row has an OCR score (``points``: :func:`aptviz.compute.fidelity.ocr_points`).
    """
    if not points:
        return None
    fig = new_figure(8.8, 4.4)
    ax = fig.subplots()
    palette = ("tab:orange", "tab:blue", "tab:gray", "tab:green", "tab:purple", "tab:brown")
    several = len({m for m, _ in points}) > 1
    for i, ((measure, method), pts) in enumerate(sorted(points.items())):
        color, name = palette[i % len(palette)], f"{measure} {method}" if several else method
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1] for p in pts], color=color, marker="o", label=f"APT {name}")
        uni = [(p[2], p[3]) for p in pts if p[2] is not None]
        if uni:
            ax.plot(*zip(*uni), color=color, ls=":", marker="s", mfc="white",
                    label=f"uniform, equal ViT tokens ({name})")  # fmt: skip
        llm = [(p[0], p[4]) for p in pts if p[4] is not None]
        if llm:
            ax.plot(*zip(*llm), color=color, ls="--", marker="D", mfc="white",
                    label=f"uniform, equal LLM tokens ({name})")  # fmt: skip
    ax.set_xlabel("LLM retention (LLM tokens / plain model's)")
    ax.set_ylabel("character accuracy (1 - CER)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Text fidelity: Tesseract on each view against the resized image (mean over images with text)")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure_bytes(fig, fmt)
