"""Stage 5: pictures -- importance heatmaps and patch-boundary overlays.

Everything here is array work (NumPy lookups and repeats); no matplotlib
figure is created per image. Text (colorbar ticks) is drawn with Pillow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aptviz.compute.entropy import PAD

__all__ = [
    "BOUNDARY_COLOR",
    "SCALE_COLORS",
    "WINDOW_COLOR",
    "annotate",
    "blend_heatmap",
    "boundary_mask",
    "colormap_lut",
    "draw_overlay",
    "draw_windows",
    "legible",
    "patch_labels",
    "render_heatmap",
    "scale_colors",
    "scale_legend",
    "scale_of_pixels",
    "text_strip",
    "window_legend",
    "window_mask",
]

BOUNDARY_COLOR = (0, 255, 0)
WINDOW_COLOR = (255, 0, 0)  # attention-window borders (--show-windows): no scale uses red
LINE_WIDTH = 2
NO_DATA_COLORS = ((170, 170, 170), (110, 110, 110))


@lru_cache(maxsize=4)
def colormap_lut(name: str = "inferno") -> np.ndarray:
    """A (256, 3) uint8 lookup table of a matplotlib colormap.

    Examples
    --------
    >>> colormap_lut().shape
    (256, 3)
    """
    if name == "inferno":  # embedded: no matplotlib import on the hot path
        from aptviz.render._colormap_data import INFERNO_HEX

        return np.frombuffer(bytes.fromhex(INFERNO_HEX), dtype=np.uint8).reshape(256, 3).copy()
    try:
        from matplotlib import colormaps
    except ImportError:
        from aptviz.errors import MissingExtraError

        raise MissingExtraError(
            f"the colormap {name!r} needs matplotlib (only inferno is built in): pip install 'aptviz[plots]'"
        ) from None
    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def _expand(cells: np.ndarray, ps: int, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour blow-up of a cell grid to pixels, cropped to the image (a new, writable array).

    Each cell row is widened once, then copied ``ps`` times whole (10x faster
    than repeating every pixel along both axes).

    Examples
    --------
    >>> _expand(np.array([[1, 2], [3, 4]]), 2, 3, 3).tolist()
    [[1, 1, 2], [1, 1, 2], [3, 3, 4]]
    """
    if ps == 1:
        return np.array(cells[:height, :width])
    rows, cols = min(len(cells), -(-height // ps)), -(-width // ps)
    wide = np.repeat(cells[:rows, :cols], ps, axis=1)[:, :width]
    tall = np.empty((rows, ps, *wide.shape[1:]), wide.dtype)
    tall[...] = wide[:, None]
    return tall.reshape(rows * ps, *wide.shape[1:])[:height]


def hatch(height: int, width: int) -> np.ndarray:
    """Diagonal grey stripes: the 'no data' pattern."""
    yy, xx = np.ogrid[:height, :width]
    return hatch_colors(yy, xx)


def hatch_colors(yy, xx) -> np.ndarray:
    stripes = ((yy + xx) // 6) % 2
    return np.array(NO_DATA_COLORS, dtype=np.uint8)[stripes]


@lru_cache(maxsize=8)
def get_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=8)
def _unicode_font(size: int):
    """A font with the glyphs of the units (∇, ²): DejaVu Sans from matplotlib's data, else the default.

    Without matplotlib (the ``plots`` extra) text passes through :func:`legible`.
    """
    from importlib.util import find_spec
    from pathlib import Path

    try:
        spec = find_spec("matplotlib")
    except (ImportError, ValueError):  # blocked or half-imported: as if absent
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:  # pragma: no cover - unreadable font file
                break
    return get_font(size)


# plain spellings for glyphs a font may lack (Pillow's default font has no ∇ or ²); longest first
PLAIN_TEXT = (("|∇²|", "|laplacian|"), ("∇²", "laplacian"), ("∇", "grad"), ("²", "^2"))


@lru_cache(maxsize=256)
def _has_glyph(font, char: str) -> bool:
    """Whether ``font`` draws ``char`` as itself, not as its missing-glyph box."""
    try:
        mask = font.getmask(char)
        missing = font.getmask("\U0010fffd")  # a private-use code point: no font draws it
    except (UnicodeError, OSError, ValueError):  # the bitmap font: Latin-1 only
        return char.isascii()
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def legible(text: str, font) -> str:
    """``text`` as ``font`` can draw it: glyphs it lacks get a plain spelling (no boxes).

    Examples
    --------
    >>> legible("mean |∇²|", get_font(12))  # Pillow's default font has neither glyph
    'mean |laplacian|'
    >>> legible("bits", get_font(12))
    'bits'
    """
    if text.isascii() or all(_has_glyph(font, c) for c in set(text)):
        return text
    for fancy, plain in PLAIN_TEXT:
        text = text.replace(fancy, plain)
    return text


def nice_ticks(vmin: float, vmax: float) -> list[float]:
    """About five round tick values between vmin and vmax.

    Examples
    --------
    >>> nice_ticks(0.0, 8.2)
    [0.0, 2.5, 5.0, 7.5]
    """
    if vmax <= vmin:
        return [float(vmin)]
    raw = (vmax - vmin) / 4
    mag = 10 ** np.floor(np.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    first = np.ceil(vmin / step - 1e-9) * step
    ticks = np.arange(first, vmax + step * 1e-6, step)
    return [round(float(t), 10) + 0.0 for t in ticks]


def colorbar(
    height: int,
    vmin: float,
    vmax: float,
    lut: np.ndarray,
    any_pad: bool,
    ps: int,
    unit: str = "bits",
    measure: str | None = None,
    font_size: int | None = None,
    title: list[str] | None = None,
) -> np.ndarray:
    """A white panel with a vertical colorbar, tick labels and a no-data key.

    Titled with the scale and the unit; a ``measure`` name (any but entropy,
    whose panel is unchanged) goes between them, and the panel widens to fit.
    ``font_size`` (default from the height) and ``title`` (lines above the
    unit instead of the scale) are for figures that show the bar smaller;
    with either, ticks closer than a line are thinned and the width fits the labels.
    """
    fixed = font_size is None and title is None
    font_size = int(np.clip(height // 32, 9, 18)) if font_size is None else font_size
    font = get_font(font_size) if measure is None else _unicode_font(font_size)
    head = [f"{ps}px"] if title is None else list(title)
    titles = [legible(t, font) for t in (head + [unit] if measure is None else head + [measure, unit])]
    width = font_size * 6 + 24
    if measure is not None or not fixed:
        ticks = [f"{t:g}" for t in nice_ticks(vmin, vmax)]
        width = max(width, 12 + int(max(font.getlength(t) for t in titles)), 24 + max(8, font_size)
                    + int(max((font.getlength(t) for t in ticks), default=0)))  # fmt: skip
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    top = font_size * len(titles) + 6 + (0 if fixed else font_size // 2)  # room for the top tick's label
    key = font_size * 3 if any_pad else 0
    bottom = height - font_size - 4 - key
    bar_w = max(8, font_size)
    x0 = 6
    for i, title in enumerate(titles):
        draw.text((x0, 2 + i * (font_size + 1)), title, fill=(0, 0, 0), font=font)
    if bottom - top >= 4:
        span = bottom - top
        levels = np.linspace(255, 0, span).round().astype(np.intp)
        bar = np.repeat(lut[levels][:, None, :], bar_w, axis=1)
        panel.paste(Image.fromarray(bar), (x0, top))
        draw.rectangle((x0 - 1, top - 1, x0 + bar_w, bottom), outline=(0, 0, 0))
        ticks = nice_ticks(vmin, vmax)
        if not fixed and len(ticks) > 1:  # keep a line of space between labels
            room = max(1, int(span // (font_size + 2)))
            ticks = ticks[:: -(-len(ticks) // room)]
        for t in ticks:
            y = bottom - 1 - ((t - vmin) / (vmax - vmin) if vmax > vmin else 0) * (span - 1)
            draw.line((x0 + bar_w, y, x0 + bar_w + 4, y), fill=(0, 0, 0))
            draw.text((x0 + bar_w + 6, y - font_size / 2), f"{t:g}", fill=(0, 0, 0), font=font)
    if any_pad:
        ky = height - key
        swatch = hatch(font_size + 4, bar_w)
        panel.paste(Image.fromarray(swatch), (x0, ky))
        draw.text((x0 + bar_w + 4, ky), "no", fill=(0, 0, 0), font=font)
        draw.text((x0 + bar_w + 4, ky + font_size), "data", fill=(0, 0, 0), font=font)
    return np.asarray(panel)


def render_heatmap(
    entropy,
    patch_size: int,
    size: tuple[int, int],
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "inferno",
    unit: str = "bits",
    measure: str | None = None,
    scale_label: int | None = None,
) -> np.ndarray:
    """Render one importance map as a crisp heatmap with a colorbar in its unit.

    Parameters
    ----------
    entropy : (rows, cols) ndarray or torch.Tensor
        Importance map of one scale (entropy or another measure);
        :data:`aptviz.compute.entropy.PAD` cells are drawn as grey hatching ("no data").
    patch_size : int
        Cell size in pixels at this scale.
    size : (int, int)
        ``(width, height)`` of the resized image; the map is drawn at exactly
        this size, every cell a ``patch_size`` square (cropped at the edges).
    vmin, vmax : float, optional
        Range of the colour scale (bits); default the map's own range.
        Pass one range for all scales of an image to make them comparable.
    cmap : str
        Matplotlib colormap name.
    unit : str
        Unit written on the colorbar (:func:`aptviz.compute.importance.measure_unit`).
    measure : str, optional
        Measure named on the colorbar (None for entropy, whose colorbar shows
        the scale and "bits" only).
    scale_label : int, optional
        Scale named on the colorbar (default ``patch_size``; set it when
        drawing an enlarged copy).

    Returns
    -------
    ndarray
        ``(height, width + colorbar, 3)`` uint8 RGB picture.

    Examples
    --------
    >>> import numpy as np
    >>> pic = render_heatmap(np.array([[0.0, 1.0]]), 14, (28, 14))
    >>> pic.shape[0], pic.shape[2]
    (14, 3)
    """
    ent = np.asarray(entropy).astype(np.float64)
    width, height = size
    pad = ent == PAD
    valid = ent[~pad]
    if vmin is None:
        vmin = float(valid.min()) if valid.size else 0.0
    if vmax is None:
        vmax = float(valid.max()) if valid.size else 0.0
    lut = colormap_lut(cmap)
    span = vmax - vmin
    scaled = (np.where(pad, vmin, ent) - vmin) / span if span > 0 else np.zeros_like(ent)
    idx = np.clip(np.rint(scaled * 255), 0, 255).astype(np.intp)
    pixels = _expand(lut[idx], patch_size, height, width)
    if pad.any():
        ys, xs = np.nonzero(_expand(pad, patch_size, height, width))
        pixels[ys, xs] = hatch_colors(ys, xs)
    bar = colorbar(height, vmin, vmax, lut, bool(pad.any()), scale_label or patch_size, unit, measure)
    return np.concatenate([pixels, bar], axis=1)


def patch_labels(masks: dict) -> np.ndarray:
    """Finest-grid array giving every cell the id of the kept patch covering it.

    Examples
    --------
    >>> m = {14: np.array([[True, True], [False, False]]), 28: np.array([[False]])}
    >>> patch_labels(m).tolist()
    [[0, 1], [-1, -1]]
    """
    finest = min(masks)
    shape = tuple(masks[finest].shape)
    labels = np.full(shape, -1, dtype=np.int64)
    offset = 0
    for ps in sorted(masks):
        m = np.asarray(masks[ps])
        ids = np.arange(m.size, dtype=np.int64).reshape(m.shape) + offset
        ratio = ps // finest
        keep = _expand(m, ratio, *shape)
        labels = np.where(keep, _expand(ids, ratio, *shape), labels)
        offset += m.size
    return labels


def _edge_positions(masks: dict, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels just right of / below every edge between two different patches.

    ``(vert, horiz)``: ``vert[y, x]`` is True where a patch edge runs between
    columns ``x - 1`` and ``x``; ``horiz`` likewise for rows.
    """
    ps = min(masks)
    lab = patch_labels(masks)
    vert = np.zeros((height, width), dtype=bool)
    horiz = np.zeros((height, width), dtype=bool)
    dv = lab[:, 1:] != lab[:, :-1]
    if dv.size:
        xs = np.arange(1, lab.shape[1]) * ps
        keep = xs < width
        vert[:, xs[keep]] = np.repeat(dv, ps, axis=0)[:height][:, keep]
    dh = lab[1:, :] != lab[:-1, :]
    if dh.size:
        ys = np.arange(1, lab.shape[0]) * ps
        keep = ys < height
        horiz[ys[keep], :] = np.repeat(dh, ps, axis=1)[:, :width][keep]
    return vert, horiz


def boundary_mask(masks: dict, height: int, width: int, line_width: int = LINE_WIDTH) -> np.ndarray:
    """Pixels on the boundary of a kept patch: every edge once, ``line_width`` px wide.

    An edge between two patches at pixel column ``x`` covers columns
    ``x - line_width // 2`` to ``x - line_width // 2 + line_width - 1`` (for
    the default 2 px: ``x - 1`` and ``x``, one pixel in each patch); the image
    border covers its outermost ``line_width`` pixels.

    Parameters
    ----------
    masks : dict[int, ndarray or torch.Tensor]
        Selection masks (a partition).
    height, width : int
        Size of the resized image.
    line_width : int
        Line width in pixels (>= 1).

    Returns
    -------
    ndarray
        ``(height, width)`` bool.

    Examples
    --------
    >>> m = {14: np.array([[True, True]]), 28: np.array([[False]])}
    >>> edge = boundary_mask(m, 14, 28)
    >>> edge[7, 12:16].tolist()
    [False, True, True, False]
    >>> boundary_mask(m, 14, 28, line_width=1)[7, 12:16].tolist()
    [False, False, True, False]
    """
    if line_width < 1:
        raise ValueError(f"line width must be >= 1, got {line_width}")
    vert, horiz = _edge_positions(masks, height, width)
    edge = np.zeros((height, width), dtype=bool)
    first = -(line_width // 2)
    for d in range(first, first + line_width):
        if d < 0:
            edge[:, :d] |= vert[:, -d:]
            edge[:d, :] |= horiz[-d:, :]
        elif d > 0:
            edge[:, d:] |= vert[:, :-d]
            edge[d:, :] |= horiz[:-d, :]
        else:
            edge |= vert | horiz
    edge[:line_width, :] = True
    edge[-line_width:, :] = True
    edge[:, :line_width] = True
    edge[:, -line_width:] = True
    return edge


def scale_of_pixels(masks: dict, height: int, width: int) -> np.ndarray:
    """Index (0 = finest) of the scale of the kept patch covering each pixel.

    Examples
    --------
    >>> m = {1: np.array([[True, False], [True, False]]), 2: np.array([[False]])}
    >>> scale_of_pixels(m, 2, 2).tolist()
    [[0, -1], [0, -1]]
    """
    finest = min(masks)
    shape = tuple(np.asarray(masks[finest]).shape)
    index = np.full(shape, -1, dtype=np.int8)
    for i, ps in enumerate(sorted(masks)):
        keep = _expand(np.asarray(masks[ps]).astype(bool), ps // finest, *shape)
        index[keep] = i
    return _expand(index, finest, height, width)


def _paint(out: np.ndarray, where: np.ndarray, color) -> np.ndarray:
    """``out[where] = color`` for a contiguous ``(H, W, 3)`` uint8 picture: one masked copy (OpenCV), ten
    times faster than NumPy's boolean assignment of a colour to a quarter of the pixels."""
    import cv2

    paint = np.empty_like(out)
    for channel, value in enumerate(color):
        paint[..., channel] = value
    return cv2.copyTo(paint, np.ascontiguousarray(where).view(np.uint8), out)


def draw_overlay(
    image: np.ndarray,
    masks: dict,
    line_width: int = LINE_WIDTH,
    color_by_scale: bool = False,
) -> np.ndarray:
    """The resized image with every kept patch outlined.

    By default every boundary is pure green (0, 255, 0), 2 px wide, each
    edge once. With ``color_by_scale`` a boundary pixel takes the colour of
    the scale of the patch it lies in (:data:`SCALE_COLORS`, finest first),
    so with 2 px lines each patch shows a 1 px rim in its own colour.

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` uint8 resized RGB image.
    masks : dict[int, ndarray or torch.Tensor]
        Selection masks.
    line_width : int
        Line width in pixels.
    color_by_scale : bool
        One colour per scale instead of green everywhere.

    Returns
    -------
    ndarray
        A new ``(H, W, 3)`` uint8 array.

    Examples
    --------
    >>> m = {14: np.ones((1, 1), bool)}
    >>> draw_overlay(np.zeros((14, 14, 3), np.uint8), m)[0, 0].tolist()
    [0, 255, 0]
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    edge = boundary_mask(masks, out.shape[0], out.shape[1], line_width)
    if not color_by_scale:
        return _paint(out, edge, BOUNDARY_COLOR)
    scale = scale_of_pixels(masks, out.shape[0], out.shape[1])
    palette = np.array(scale_colors(len(masks)), dtype=np.uint8)
    ys, xs = np.nonzero(edge)
    idx = scale[ys, xs]
    covered = idx >= 0
    out[ys[covered], xs[covered]] = palette[idx[covered]]
    out[ys[~covered], xs[~covered]] = BOUNDARY_COLOR
    return out


def window_mask(height: int, width: int, window: int, line_width: int = LINE_WIDTH) -> np.ndarray:
    """Pixels on the borders between attention windows of ``window`` px (Qwen2.5-VL: 112).

    Windows tile the image from its top-left corner, as the vision tower cuts
    them; a border at column ``x`` (a multiple of ``window``) covers the same
    pixels as a patch edge there (``x - line_width // 2`` onwards). The image
    border is not a window border.

    Examples
    --------
    >>> m = window_mask(4, 10, 4, line_width=2)
    >>> m[0].astype(int).tolist()
    [0, 0, 0, 1, 1, 0, 0, 1, 1, 0]
    >>> m[:, 0].astype(int).tolist()
    [0, 0, 0, 0]
    """
    edge = np.zeros((height, width), dtype=bool)
    offsets = np.arange(line_width) - line_width // 2
    xs = (np.arange(window, width, window)[:, None] + offsets).ravel()
    ys = (np.arange(window, height, window)[:, None] + offsets).ravel()
    edge[:, xs[(xs >= 0) & (xs < width)]] = True
    edge[ys[(ys >= 0) & (ys < height)], :] = True
    return edge


def draw_windows(picture: np.ndarray, window: int, line_width: int = LINE_WIDTH) -> np.ndarray:
    """A copy of ``picture`` (an overlay) with the attention-window borders in :data:`WINDOW_COLOR`.

    Only pixels of :func:`window_mask` change; they are drawn over the patch
    boundaries they cross.

    Examples
    --------
    >>> draw_windows(np.zeros((8, 8, 3), np.uint8), 4)[0, 3].tolist()
    [255, 0, 0]
    """
    out = np.array(picture, dtype=np.uint8, copy=True)
    out[window_mask(out.shape[0], out.shape[1], window, line_width)] = WINDOW_COLOR
    return out


def window_legend(window: int) -> tuple[tuple[int, int, int], str]:
    """The legend entry of the window borders.

    Examples
    --------
    >>> window_legend(112)
    ((255, 0, 0), '112 px attention window')
    """
    return WINDOW_COLOR, f"{window} px attention window"


SCALE_COLORS = ((0, 255, 0), (0, 170, 255), (255, 60, 255), (255, 230, 0), (255, 120, 0), (0, 255, 255))


def scale_colors(n: int) -> list[tuple[int, int, int]]:
    """Boundary colours of ``n`` scales, finest first (cycled beyond six).

    Examples
    --------
    >>> scale_colors(2)
    [(0, 255, 0), (0, 170, 255)]
    """
    return [SCALE_COLORS[i % len(SCALE_COLORS)] for i in range(n)]


def wrap_text(text: str, font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` px (words split only when one alone is too wide).

    Examples
    --------
    >>> wrap_text("budget  alpha=0.3", get_font(15), 70)
    ['budget', 'alpha=0.3']
    """
    lines: list[str] = []
    for word in text.split():
        while font.getlength(word) > width and len(word) > 1:  # a word alone too wide: split it
            cut = max(1, max(i for i in range(1, len(word) + 1) if font.getlength(word[:i]) <= width or i == 1))
            if lines and lines[-1] == "":
                lines.pop()
            lines.append(word[:cut])
            word = word[cut:]
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def text_strip(lines: list[str], width: int, font_size: int | None = None, swatches=None) -> np.ndarray:
    """A white strip of ``width`` px with one line of text per entry.

    ``swatches`` (optional): ``[(color, label), ...]`` drawn as a legend row
    of coloured squares after the text lines.

    Examples
    --------
    >>> text_strip(["hello"], 100).shape[1:]
    (100, 3)
    """
    size = font_size or int(np.clip(width // 40, 10, 22))
    font = get_font(size)
    room = max(8, width - 8)
    lines = [part for line in lines for part in wrap_text(legible(line, font), font, room)]  # never cut at the edge
    rows = len(lines) + (1 if swatches else 0)
    height = rows * (size + 4) + 6
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    y = 3
    for line in lines:
        draw.text((4, y), line, fill=(0, 0, 0), font=font)
        y += size + 4
    if swatches:
        x = 4
        for color, label in swatches:
            draw.rectangle((x, y + 1, x + size - 2, y + size - 1), fill=tuple(color), outline=(0, 0, 0))
            x += size + 2
            label = legible(label, font)
            draw.text((x, y), label, fill=(0, 0, 0), font=font)
            x += int(draw.textlength(label, font=font)) + size
    return np.asarray(panel)


def annotate(picture: np.ndarray, lines: list[str] | None = None, legend=None) -> np.ndarray:
    """``picture`` with a caption (text lines) and/or a legend strip below it.

    Examples
    --------
    >>> annotate(np.zeros((20, 30, 3), np.uint8), ["x"]).shape[0] > 20
    True
    """
    if not lines and not legend:
        return picture
    strip = text_strip(list(lines or []), picture.shape[1], swatches=legend)
    return np.concatenate([picture, strip], axis=0)


def scale_legend(scales, tokens_by_scale: dict | None = None) -> list[tuple[tuple[int, int, int], str]]:
    """Legend entries ``(colour, "14 px: 148")`` for an overlay coloured by scale.

    Examples
    --------
    >>> scale_legend([14, 28], {14: 3, 28: 1})
    [((0, 255, 0), '14 px: 3'), ((0, 170, 255), '28 px: 1')]
    """
    scales = sorted(scales)
    out = []
    for color, ps in zip(scale_colors(len(scales)), scales):
        label = f"{ps} px" if tokens_by_scale is None else f"{ps} px: {tokens_by_scale.get(ps, 0)}"
        out.append((color, label))
    return out


def blend_heatmap(image: np.ndarray, entropy, patch_size: int, vmin: float, vmax: float, opacity: float = 0.55,
                  cmap: str = "inferno") -> np.ndarray:
    """The importance map of one scale blended over the resized photo.

    PAD cells keep the photo. ``opacity`` is the heatmap's weight.

    Examples
    --------
    >>> img = np.full((14, 28, 3), 200, np.uint8)
    >>> blend_heatmap(img, np.array([[0.0, PAD]]), 14, 0.0, 1.0)[0, 20].tolist()
    [200, 200, 200]
    """
    ent = np.asarray(entropy).astype(np.float64)
    height, width = image.shape[:2]
    pad = ent == PAD
    span = vmax - vmin
    scaled = (np.where(pad, vmin, ent) - vmin) / span if span > 0 else np.zeros_like(ent)
    idx = np.clip(np.rint(scaled * 255), 0, 255).astype(np.intp)
    w = int(round(opacity * 256))
    # (photo * (256 - w) + colour * w + 128) >> 8 in uint16 (at most 255 * 256 + 128): the colour's part per LUT entry
    tint = colormap_lut(cmap).astype(np.uint16) * w + 128
    out = np.empty_like(image)
    band = max(patch_size, (1 << 20) // max(1, width * 3) // patch_size * patch_size)
    for y in range(0, height, band):  # a band of cell rows at a time: bounded memory on huge images
        cells = slice(y // patch_size, (y + band) // patch_size + 1)
        h = min(band, height - y)
        mixed = image[y : y + h].astype(np.uint16)
        mixed *= 256 - w
        mixed += _expand(np.take(tint, idx[cells], axis=0), patch_size, h, width)
        mixed >>= 8
        part = out[y : y + h]
        part[...] = mixed
        if pad[cells].any():  # PAD cells keep the photo
            keep = _expand(np.repeat(pad[cells][..., None], 3, axis=2), patch_size, h, width)
            np.copyto(part, image[y : y + h], where=keep)
    return out
