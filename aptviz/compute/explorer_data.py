"""The explorer's data: everything about one image that does not depend on alpha (docs/explorer.md).

The page redoes the selection itself (``explorer.js``), exactly as
:func:`aptviz.select_patches`, from what is computed here once:

* the float32 map values of every scale (base64, little-endian), so the page
  compares the very same numbers in float64;
* the per-scale means v2 multiplies by alpha (float64 sum of the float32
  non-PAD cells divided by their count, as :mod:`aptviz.compute.selection` does);
* budget's base partition and its split order (propagated score descending,
  ties to the larger cell, then row, then column): the page splits the first k;
* per-cell squared errors of the model view at every scale (a kept patch of
  that size at that cell), so that any selection's ``psnr_apt`` is a sum over
  its kept cells;
* the uniform baseline's token count and PSNR for every achievable ViT token
  count (one entry per distinct Qwen2-VL size), and likewise the baseline at
  equal LLM tokens for every LLM token count (``uniform_llm``);
* per-cell average colours (the model view drawn as flat blocks), value
  histograms and a downscaled JPEG of the resized image for the canvases.

Nothing here writes a file or depends on alpha; :mod:`aptviz.render.explorer` makes
the pages and the data file from it.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from aptviz.compute.entropy import PAD
from aptviz.compute.importance import measure_unit
from aptviz.compute.params import Params, parse_measure
from aptviz.compute.resize import smart_resize
from aptviz.compute.selection import budget_split_order, v2_means
from aptviz.compute.views import llm_uniform_view, psnr, uniform_view
from aptviz.compute.xp import to_numpy

__all__ = [
    "BATCH_UNIFORM_VIEWS",
    "HIST_BINS",
    "PREVIEW_SIDE",
    "cell_errors",
    "explorer_data",
    "dataset_start",
    "image_explorer_data",
    "llm_uniform_table",
    "preview_uri",
    "uniform_sizes",
    "uniform_table",
]

HIST_BINS = 48
PREVIEW_SIDE = 800  # longest side of the embedded picture, in px
BAND_PIXELS = 1 << 20  # pixels per band of cell rows in the per-cell sums (bounded memory)
BATCH_UNIFORM_VIEWS = 0  # uniform baselines computed per image for report.html besides the selections' own
# (reused from the analysis; aptviz explore computes all)


def _b64(arr: np.ndarray, dtype: str) -> str:
    """Base64 of the array's little-endian bytes in ``dtype`` (row-major)."""
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode(
        "ascii"
    )


def _channel_sum(image: np.ndarray) -> np.ndarray:
    """The sum of the three channels of a float32 image (one pass, OpenCV)."""
    import cv2

    return cv2.transform(image, np.ones((1, 3), np.float32))


def _bands(rows: int, side: int, width: int):
    """Bands of cell rows of ``side`` px covering ``rows`` rows, about :data:`BAND_PIXELS` pixels each."""
    step = max(1, BAND_PIXELS // max(1, side * side * width))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def cell_errors(resized: np.ndarray, patch_size: int, scales: list[int], grids: dict) -> dict[int, np.ndarray]:
    """Squared error of the model view inside every cell, for a patch of that cell's size kept there.

    The model view of a kept ``s`` px patch is its ``(s/P) x (s/P)`` block means
    (rounded half to even) repeated back (:func:`aptviz.compute.views.model_view`).
    For every scale and cell the sum over its pixels and channels of
    ``(view - resized)**2`` is returned (float64, exact integers). Cells that
    overhang the image get 0 (they are never kept); the finest scale is 0.
    Works on bands of cell rows: memory stays bounded for any image size.

    Examples
    --------
    >>> img = np.zeros((28, 28, 3), np.uint8); img[0, 0] = 100
    >>> err = cell_errors(img, 14, [14, 28], {14: (2, 2), 28: (1, 1)})
    >>> float(err[28][0, 0]) == 3 * (75**2 + 3 * 25**2)
    True
    """
    return _cell_stats(resized, patch_size, scales, grids)[0]


def _cell_stats(resized: np.ndarray, patch_size: int, scales: list[int], grids: dict) -> tuple[dict, dict]:
    """:func:`cell_errors` and the average colour (uint8 RGB, rounded half to even) of every cell inside the
    image per scale above the finest, from one set of block sums per band of cell rows (a scale done in one
    band hands its block sums on: the next scale's are their 2 x 2 sums)."""
    image = np.asarray(resized, dtype=np.uint8)
    h, w = image.shape[:2]
    errors: dict[int, np.ndarray] = {}
    colours: dict[int, np.ndarray] = {}
    level = None  # (ratio, S1, S2) over the whole region of the last scale done in one band
    for i, ps in enumerate(scales):
        rows, cols = grids[ps]
        errors[ps] = np.zeros((rows, cols), np.float64)
        if i:
            colours[ps] = np.zeros((rows, cols, 3), np.uint8)
        ratio = max(1, ps // patch_size)
        r_in, c_in = h // ps, w // ps
        bands = list(_bands(r_in, ps, c_in)) if c_in and (i or ps // patch_size > 1) else []
        for r0, r1 in bands:
            s1, s2 = _finer_sums(level, ratio, r_in * ps, c_in * ps) if len(bands) == 1 else (None, None)
            if s1 is None:
                s1, s2 = _block_level(image[r0 * ps : r1 * ps, : c_in * ps], ratio)
            level = (ratio, s1, s2) if len(bands) == 1 else None
            err, sums = _band_stats(s1, s2, ps, ratio)
            if ps // patch_size > 1:
                errors[ps][r0:r1, :c_in] = err
            if i:
                colours[ps][r0:r1, :c_in] = np.rint(sums / float(ps * ps)).astype(np.uint8)
    return errors, colours


def _finer_sums(level, ratio: int, height: int, width: int) -> tuple:
    """The ``ratio`` block sums of the image's top-left ``height x width`` from a finer level's, if it covers it."""
    if level is None:
        return None, None
    finer, s1, s2 = level
    if ratio % finer or height > s1.shape[0] * finer or width > s1.shape[1] * finer:
        return None, None
    k = ratio // finer
    s1 = s1[: height // finer, : width // finer]
    if ratio > 16 and s1.dtype == np.uint16:  # uint16 holds sums of up to 16 x 16 pixels
        s1 = s1.astype(np.uint32)
    return _block_sums_of(s1, k), _block_sums_of(s2[: height // finer, : width // finer], k)


def _block_level(band: np.ndarray, ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """``(S1, S2)``: each ``ratio x ratio`` block's channel sums (uint) and sum of squares over its channels
    (float64), exact."""
    import cv2

    squares = _channel_sum(cv2.multiply(band, band, dtype=cv2.CV_32F))  # at most 3 * 255**2: exact
    s1 = _block_sums_of(band.astype(np.uint16 if ratio <= 16 else np.uint32), ratio)
    return s1, _block_sums_of(squares.astype(np.float64), ratio)


def _block_sums_of(a: np.ndarray, r: int) -> np.ndarray:
    """Sums of the ``r x r`` blocks of an array whose height and width are multiples of ``r`` (any trailing axes):
    2 x 2 at a time when ``r`` is a power of two (scales double), else in one reduction."""
    h, w = a.shape[:2]
    if r & (r - 1):
        return a.reshape(h // r, r, w // r, r, *a.shape[2:]).sum(axis=(1, 3), dtype=a.dtype)
    for _ in range(r.bit_length() - 1):
        a = a.reshape(h // 2, 2, w, -1)
        a = a[:, 0] + a[:, 1]
        a = a.reshape(h // 2, w // 2, 2, -1)
        h, w = h // 2, w // 2
        a = (a[:, :, 0] + a[:, :, 1]).reshape(h, w, *a.shape[3:])
    return a


def _band_stats(s1: np.ndarray, s2: np.ndarray, ps: int, ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-view error and channel sums of whole ``ps`` px cells from their blocks' sums (:func:`_block_level`).

    Over a ``ratio x ratio`` block of one channel with sum ``S1``, sum of squares
    ``S2`` and mean ``m = rint(S1 / ratio**2)``, the squared error of the
    repeated mean is ``S2 - m (2 S1 - ratio**2 m)``: integers throughout, exact
    in float64, so every cell's error is the same number as summing
    ``(view - resized)**2`` pixel by pixel, at a fraction of the passes. The
    cells' channel sums (float64, exact) add up the blocks' ``S1``.
    """
    m = np.rint(s1 / float(ratio * ratio))
    t = 2.0 * s1
    t -= float(ratio * ratio) * m
    t *= m  # m (2 S1 - ratio**2 m), per channel
    dev = s2.reshape(s2.shape[:2]) - t[..., 0] - t[..., 1] - t[..., 2]
    p = ps // ratio
    rows, cols = s1.shape[0] // p, s1.shape[1] // p
    err = dev.reshape(rows, p, cols * p).sum(axis=1).reshape(rows, cols, p).sum(axis=2)
    sums = s1.reshape(rows, p, cols * p * 3).sum(axis=1, dtype=np.float64).reshape(rows, cols, p, 3).sum(axis=2)
    return err, sums


def uniform_sizes(original_hw: tuple[int, int], lo: int, hi: int, patch_size: int, merge_size: int,
                  min_pixels: int, token_side: int | None = None) -> list[tuple[int, tuple[int, int]]]:
    """``[(t_from, (h, w)), ...]``: the Qwen2-VL size of the uniform baseline for ViT token counts ``lo..hi``.

    The entry with the largest ``t_from <= t`` holds at ``t`` tokens
    (``max_pixels = t * P * P``, as :func:`aptviz.compute.views.uniform_view`;
    ``token_side = P * m`` counts LLM tokens instead: ``max_pixels = t * (P*m)**2``).

    Examples
    --------
    >>> uniform_sizes((300, 451), 700, 704, 14, 2, 3136)
    [(700, (280, 448)), (704, (308, 448))]
    >>> uniform_sizes((300, 451), 175, 176, 14, 2, 3136, token_side=28)
    [(175, (280, 448)), (176, (308, 448))]
    """
    factor = patch_size * merge_size
    side = token_side or patch_size
    ts = np.arange(max(lo, 0), hi + 1, dtype=np.int64)
    if not ts.size:
        return []
    h, w = _smart_sizes(int(original_hw[0]), int(original_hw[1]), factor, ts * (side * side), min_pixels)
    new = np.ones(ts.size, bool)
    new[1:] = (h[1:] != h[:-1]) | (w[1:] != w[:-1])
    return [(int(t), (int(a), int(b))) for t, a, b in zip(ts[new], h[new], w[new])]


def _smart_sizes(height: int, width: int, factor: int, max_pixels: np.ndarray, min_pixels: int):
    """``smart_resize(height, width, factor, min(min_pixels, m), max(m, 1))`` for every ``m`` of ``max_pixels``.

    The same float64 operations in the same order as
    :func:`aptviz.compute.resize.smart_resize`, on arrays: the same sizes.
    """
    smart_resize(height, width, factor)  # its aspect-ratio check
    lows, highs = np.minimum(min_pixels, max_pixels), np.maximum(max_pixels, 1)
    h0, w0 = round(height / factor) * factor, round(width / factor) * factor
    h, w = np.full(highs.size, h0, np.int64), np.full(highs.size, w0, np.int64)
    area = height * width
    down = h0 * w0 > highs
    beta = np.sqrt(area / highs[down].astype(np.float64))
    h[down] = np.maximum(factor, np.floor(height / beta / factor).astype(np.int64) * factor)
    w[down] = np.maximum(factor, np.floor(width / beta / factor).astype(np.int64) * factor)
    up = ~down & (h0 * w0 < lows)
    beta = np.sqrt(lows[up].astype(np.float64) / area)
    h[up] = np.ceil(height * beta / factor).astype(np.int64) * factor
    w[up] = np.ceil(width * beta / factor).astype(np.int64) * factor
    return h, w


def uniform_table(
    original: Image.Image, resized: np.ndarray, lo: int, hi: int, patch_size: int, merge_size: int, min_pixels: int,
    views: int | None = None, known: dict | None = None,
) -> list[list]:  # fmt: skip
    """The uniform baseline for every ViT token count ``t`` in ``[lo, hi]``.

    Returns ``[[t_from, uniform_vit_tokens, psnr_uniform], ...]``: the entry
    with the largest ``t_from <= t`` is the baseline at ``t`` tokens
    (:func:`aptviz.compute.views.uniform_view`), one per distinct Qwen2-VL size.

    ``views`` bounds the number of baselines computed (each is a Pillow resize
    of the original): the others, spread evenly, get only their token count
    (``[t_from, uniform_vit_tokens]``). ``known`` gives PSNRs already computed,
    ``{t: psnr_uniform}`` (the batch's own selections).
    """
    sizes = uniform_sizes((original.height, original.width), lo, hi, patch_size, merge_size, min_pixels)
    return _baseline_table(original, resized, sizes, patch_size, views, known,
                           lambda size, t: uniform_view(original, size, t, patch_size, merge_size, min_pixels))


def llm_uniform_table(
    original: Image.Image, resized: np.ndarray, hi: int, patch_size: int, merge_size: int, min_pixels: int,
    views: int | None = None, known: dict | None = None,
) -> list[list]:  # fmt: skip
    """The baseline at equal LLM tokens for every LLM token count ``l`` in ``[1, hi]``.

    Returns ``[[l_from, llm_uniform_tokens, psnr_uniform_llm], ...]`` like
    :func:`uniform_table` (``max_pixels = l * (P*m)**2``,
    :func:`aptviz.compute.views.llm_uniform_view`); ``views`` and ``known``
    (``{llm tokens: psnr_uniform_llm}``) as there.
    """
    unit = patch_size * merge_size
    sizes = uniform_sizes((original.height, original.width), 1, hi, patch_size, merge_size, min_pixels, unit)
    return _baseline_table(original, resized, sizes, unit, views, known,
                           lambda size, t: llm_uniform_view(original, size, t, patch_size, merge_size, min_pixels))


def _baseline_table(original, resized, sizes: list, unit: int, views: int | None, known: dict | None, view) -> list:
    """``[[t_from, tokens, psnr], ...]`` over ``sizes`` (:func:`uniform_sizes`): ``tokens`` counts ``unit`` px
    squares; the PSNR of ``view(size, t)`` at ``views`` evenly spread entries, or from ``known``."""
    chosen = set(range(len(sizes)))
    if views is not None and len(sizes) > views:
        chosen = {round(i * (len(sizes) - 1) / max(views - 1, 1)) for i in range(views)}
    known_at = {_entry_at(sizes, t): value for t, value in (known or {}).items()}
    size = (int(resized.shape[1]), int(resized.shape[0]))
    table: list[list] = []
    for i, (t, (h, w)) in enumerate(sizes):
        entry = [t, (h // unit) * (w // unit)]
        if i in known_at:
            entry.append(None if known_at[i] is None else round(known_at[i], 6))
        elif i in chosen:
            value = psnr(resized, view(size, t).image)
            entry.append(None if value is None else round(value, 6))
        table.append(entry)
    return table


def _entry_at(sizes: list, t: int) -> int:
    """Index of the entry of :func:`uniform_sizes` that holds at ``t`` tokens (-1 below the first)."""
    index = -1
    for i, (t_from, _) in enumerate(sizes):
        if t_from <= t:
            index = i
    return index


def _budget(maps: dict, own_value: bool) -> dict:
    """Base partition and split order of the budget method (:func:`aptviz.compute.selection.budget_split_order`)."""
    scales, base, order = budget_split_order(maps, own_value)
    return {
        "base": {str(ps): _b64(base[ps], "u1") for ps in scales},
        "base_tokens": sum(int(b.sum()) for b in base.values()),
        "order": _b64(order, "i4"),
        "own_value": own_value,
    }


def _histograms(maps: dict) -> dict:
    out = {}
    for ps, m in maps.items():
        vals = m[m != PAD].astype(np.float64)
        hi = float(vals.max()) if vals.size and vals.max() > 0 else 1.0
        idx = np.clip((vals / hi * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
        out[str(ps)] = {"hi": hi, "counts": np.bincount(idx, minlength=HIST_BINS).tolist()}
    return out


def image_explorer_data(analysis, stats) -> dict | None:
    """The explorer data of one image folder for report.html (``None`` when ``stats.files`` lists none).

    Its picture is the image folder's resized image (report cards point at it).
    The uniform baseline's PSNR is computed at :data:`BATCH_UNIFORM_VIEWS`
    sizes and at the batch's own selections (each is a resize of the original,
    most of the data's cost); ``aptviz explore`` computes every size.
    """
    if not (stats.files or {}).get("explorer"):
        return None
    known = {s.selection.tokens: s.view.stats.psnr_uniform for s in analysis.selections if s.view is not None}
    known_llm = {e.llm_tokens: e.psnr_uniform_llm for e in stats.selections if e.llm_uniform_tokens is not None}
    return explorer_data(
        analysis.path.stem, analysis.loaded.image, analysis.resized, analysis.maps, analysis.params,
        image_url=stats.files.get("resized"), uniform_views=BATCH_UNIFORM_VIEWS, known_uniform=known,
        known_uniform_llm=known_llm,
    )


def preview_uri(resized: np.ndarray, side: int = PREVIEW_SIDE) -> str:
    """A JPEG data URI of the resized image, downscaled so its longest side is at most ``side``."""
    img = Image.fromarray(np.asarray(resized, dtype=np.uint8))
    scale = min(1.0, side / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def explorer_data(
    name: str,
    original: Image.Image,
    resized: np.ndarray,
    maps: dict,
    params: Params,
    image_url: str | None = None,
    uniform_views: int | None = None,
    known_uniform: dict | None = None,
    known_uniform_llm: dict | None = None,
) -> dict:
    """The explorer's data for one analysed image (JSON-ready; see the module docstring).

    Parameters
    ----------
    name : str
        The explorer's name (``data-image``; the output folder name in a report).
    original : PIL.Image.Image
        The loaded RGB image (for the uniform baseline).
    resized : ndarray
        ``(H, W, 3)`` uint8 resized image.
    maps : dict
        Importance maps ``{patch size: grid}`` (NumPy or torch).
    params : Params
        The pipeline parameters the maps were computed with.
    image_url : str, optional
        Where the page finds the picture; default: a downscaled JPEG data URI.
    uniform_views : int, optional
        At most this many uniform baselines are computed (default: every
        distinct size); see :func:`uniform_table`.
    known_uniform : dict, optional
        ``{vit tokens: psnr_uniform}`` already computed.
    known_uniform_llm : dict, optional
        ``{llm tokens: psnr_uniform_llm}`` already computed.

    Returns
    -------
    dict
    """
    maps = {int(ps): np.asarray(to_numpy(m), dtype=np.float32) for ps, m in sorted(maps.items())}
    scales = sorted(maps)
    grids = {ps: tuple(int(n) for n in m.shape) for ps, m in maps.items()}
    measure = parse_measure(params.importance)
    means = v2_means(maps)  # the very float64 v2 multiplies by alpha
    budget = _budget(maps, measure.spec.finest_is_zero)
    n = grids[scales[0]][0] * grids[scales[0]][1]
    errors, colours = _cell_stats(resized, params.patch_size, scales, grids)
    return {
        "name": name,
        "size": [int(resized.shape[1]), int(resized.shape[0])],
        "patch": params.patch_size,
        "merge": params.merge_size,
        "scales": scales,
        "grid": {str(ps): list(grids[ps]) for ps in scales},
        "measure": measure.value,
        "unit": measure_unit(measure, params.aggregate or "mean"),
        "maps": {str(ps): _b64(maps[ps], "f4") for ps in scales},
        "means": {str(ps): v for ps, v in zip(scales[1:], means)},
        "budget": budget,
        "err": {str(ps): _b64(errors[ps], "f8") for ps in scales[1:]},
        "colours": {str(ps): _b64(colours[ps], "u1") for ps in scales[1:]},
        "uniform": uniform_table(
            original, resized, budget["base_tokens"], n, params.patch_size, params.merge_size, params.min_pixels,
            uniform_views, known_uniform,
        ),
        "uniform_llm": llm_uniform_table(
            original, resized, n // (params.merge_size * params.merge_size), params.patch_size, params.merge_size,
            params.min_pixels, uniform_views, known_uniform_llm,
        ),
        "hist": _histograms(maps),
        "image": image_url or preview_uri(resized),
        "max_value": {str(ps): _finite_max(maps[ps]) for ps in scales},
    }


def _finite_max(m: np.ndarray) -> float:
    vals = m[m != PAD]
    return float(vals.max()) if vals.size else 0.0


def _median(values: list[float]) -> float | None:
    s = sorted(values)
    n = len(s)
    if not n:
        return None
    return s[(n - 1) // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def dataset_start(stats_list: list[dict]) -> dict | None:
    """The dataset explorer's starting point from the images' stats: the first v2 selection every image has
    (else the first budget one), with each image's retentions and their mean and median (as the page computes
    them).

    None when the images share no such selection (the page then loads their data at once).

    Examples
    --------
    >>> one = {"selections": [{"method": "v1"}, {"method": "budget", "alpha": 0.3, "retention": 0.25,
    ...                                          "llm_retention": 0.5}]}
    >>> two = {"selections": [{"method": "budget", "alpha": 0.3, "retention": 0.35, "llm_retention": 0.7}]}
    >>> start = dataset_start([one, two])
    >>> start["method"], start["alpha"], start["retention"], round(start["median_llm_retention"], 6)
    ('budget', 0.3, [0.25, 0.35], 0.6)
    """
    def own(stats: dict) -> dict:
        measure = (stats.get("params") or {}).get("importance") if isinstance(stats.get("params"), dict) else None
        out = {}
        for sel in stats.get("selections") or []:
            if not isinstance(sel, dict) or sel.get("importance") not in (None, measure):
                continue
            key = (sel.get("method"), sel.get("alpha"))
            if key[0] in ("v2", "budget") and isinstance(key[1], (int, float)) and not isinstance(key[1], bool):
                out.setdefault(key, sel)
        return out

    per = [own(s) if isinstance(s, dict) else {} for s in stats_list]
    if not per:
        return None
    for key in sorted(per[0], key=lambda k: k[0] != "v2"):  # v2 first (the page's own default), in order
        sels = [p.get(key) for p in per]
        ret = [s.get("retention") if s else None for s in sels]
        llm = [s.get("llm_retention") if s else None for s in sels]
        if any(not isinstance(r, (int, float)) or isinstance(r, bool) for r in ret):
            continue
        llm_ok = [v for v in llm if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return {
            "method": key[0], "alpha": float(key[1]), "retention": [float(r) for r in ret],
            "mean_retention": sum(ret) / len(ret), "median_retention": _median(ret),
            "mean_llm_retention": sum(llm_ok) / len(llm_ok) if llm_ok else None,
            "median_llm_retention": _median(llm_ok),
        }  # fmt: skip
    return None
