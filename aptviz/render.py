"""Stage 5: pictures -- importance heatmaps and patch-boundary overlays.

Everything here is array work (NumPy lookups and repeats); no matplotlib
figure is created per image. Text (colorbar ticks) is drawn with Pillow.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._xp import to_numpy
from .entropy import PAD

__all__ = [
    "BOUNDARY_COLOR",
    "boundary_mask",
    "colormap_lut",
    "draw_overlay",
    "patch_labels",
    "render_heatmap",
]

BOUNDARY_COLOR = (0, 255, 0)
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
        from ._colormap_data import INFERNO_HEX

        return np.frombuffer(bytes.fromhex(INFERNO_HEX), dtype=np.uint8).reshape(256, 3).copy()
    from matplotlib import colormaps

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def _expand(cells: np.ndarray, ps: int, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour blow-up of a cell grid to pixels, cropped to the image."""
    return np.repeat(np.repeat(cells, ps, axis=0), ps, axis=1)[:height, :width]


def _hatch(height: int, width: int) -> np.ndarray:
    """Diagonal grey stripes: the 'no data' pattern."""
    yy, xx = np.ogrid[:height, :width]
    return _hatch_colors(yy, xx)


def _hatch_colors(yy, xx) -> np.ndarray:
    stripes = ((yy + xx) // 6) % 2
    return np.array(NO_DATA_COLORS, dtype=np.uint8)[stripes]


@lru_cache(maxsize=8)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=8)
def _unicode_font(size: int):
    """A font with the glyphs of the units (∇, ²): DejaVu Sans from matplotlib's data, else the default."""
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            try:
                return ImageFont.truetype(str(path), size)
            except OSError:  # pragma: no cover - unreadable font file
                break
    return _font(size)


def _nice_ticks(vmin: float, vmax: float) -> list[float]:
    """About five round tick values between vmin and vmax.

    Examples
    --------
    >>> _nice_ticks(0.0, 8.2)
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


def _colorbar(
    height: int,
    vmin: float,
    vmax: float,
    lut: np.ndarray,
    any_pad: bool,
    ps: int,
    unit: str = "bits",
    measure: str | None = None,
) -> np.ndarray:
    """A white panel with a vertical colorbar, tick labels and a no-data key.

    Titled with the scale and the unit; a ``measure`` name (any but entropy,
    whose panel is unchanged) goes between them, and the panel widens to fit.
    """
    font_size = int(np.clip(height // 32, 9, 18))
    titles = [f"{ps}px", unit] if measure is None else [f"{ps}px", measure, unit]
    font = _font(font_size) if measure is None else _unicode_font(font_size)
    width = font_size * 6 + 24
    if measure is not None:
        labels = titles + [f"{t:g}" for t in _nice_ticks(vmin, vmax)]
        width = max(width, 12 + int(max(font.getlength(t) for t in labels[:3])), 24 + max(8, font_size)
                    + int(max(font.getlength(t) for t in labels[3:])))  # fmt: skip
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    top = font_size * len(titles) + 6
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
        for t in _nice_ticks(vmin, vmax):
            y = bottom - 1 - ((t - vmin) / (vmax - vmin) if vmax > vmin else 0) * (span - 1)
            draw.line((x0 + bar_w, y, x0 + bar_w + 4, y), fill=(0, 0, 0))
            draw.text((x0 + bar_w + 6, y - font_size / 2), f"{t:g}", fill=(0, 0, 0), font=font)
    if any_pad:
        ky = height - key
        swatch = _hatch(font_size + 4, bar_w)
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
) -> np.ndarray:
    """Render one importance map as a crisp heatmap with a colorbar in its unit.

    Parameters
    ----------
    entropy : (rows, cols) ndarray or torch.Tensor
        Importance map of one scale (entropy or another measure);
        :data:`aptviz.entropy.PAD` cells are drawn as grey hatching ("no data").
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
        Unit written on the colorbar (:func:`aptviz.importance.measure_unit`).
    measure : str, optional
        Measure named on the colorbar (None for entropy, whose colorbar shows
        the scale and "bits" only).

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
    ent = to_numpy(entropy).astype(np.float64)
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
        pixels[ys, xs] = _hatch_colors(ys, xs)
    bar = _colorbar(height, vmin, vmax, lut, bool(pad.any()), patch_size, unit, measure)
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
        m = to_numpy(masks[ps])
        ids = np.arange(m.size, dtype=np.int64).reshape(m.shape) + offset
        ratio = ps // finest
        keep = _expand(m, ratio, *shape)
        labels = np.where(keep, _expand(ids, ratio, *shape), labels)
        offset += m.size
    return labels


def boundary_mask(masks: dict, height: int, width: int) -> np.ndarray:
    """Pixels on the boundary of a kept patch: every edge once, 2 px wide.

    An edge between two patches at pixel column ``x`` covers columns
    ``x - 1`` and ``x``; the image border covers its outermost two pixels.

    Parameters
    ----------
    masks : dict[int, ndarray or torch.Tensor]
        Selection masks (a partition).
    height, width : int
        Size of the resized image.

    Returns
    -------
    ndarray
        ``(height, width)`` bool.
    """
    ps = min(masks)
    lab = patch_labels(masks)
    edge = np.zeros((height, width), dtype=bool)
    # vertical edges between horizontally adjacent cells of different patches
    dv = lab[:, 1:] != lab[:, :-1]
    if dv.size:
        xs = np.arange(1, lab.shape[1]) * ps
        rows = np.repeat(dv, ps, axis=0)[:height]
        edge[:, xs - 1] |= rows
        edge[:, xs] |= rows
    dh = lab[1:, :] != lab[:-1, :]
    if dh.size:
        ys = np.arange(1, lab.shape[0]) * ps
        cols = np.repeat(dh, ps, axis=1)[:, :width]
        edge[ys - 1, :] |= cols
        edge[ys, :] |= cols
    edge[:LINE_WIDTH, :] = True
    edge[-LINE_WIDTH:, :] = True
    edge[:, :LINE_WIDTH] = True
    edge[:, -LINE_WIDTH:] = True
    return edge


def draw_overlay(image: np.ndarray, masks: dict) -> np.ndarray:
    """The resized image with every kept patch outlined in green (0, 255, 0).

    Parameters
    ----------
    image : ndarray
        ``(H, W, 3)`` uint8 resized RGB image.
    masks : dict[int, ndarray or torch.Tensor]
        Selection masks.

    Returns
    -------
    ndarray
        A new ``(H, W, 3)`` uint8 array.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    edge = boundary_mask(masks, out.shape[0], out.shape[1])
    out[edge] = BOUNDARY_COLOR
    return out
