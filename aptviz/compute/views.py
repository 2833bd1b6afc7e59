"""What the ViT sees, and fair baselines at the same number of ViT tokens and of LLM tokens (SPEC §8, §17).

* :func:`model_view` -- every kept patch area-averaged to ``P x P`` and shown
  back at its own size by pixel repetition.
* :func:`uniform_view` -- plain Qwen2-VL with ``max_pixels`` lowered to
  ``vit_tokens * P * P``: Pillow BICUBIC down from the original, Pillow
  NEAREST back to the resized size.
* the same baseline at equal LLM tokens: ``max_pixels = llm_tokens * (P*m)**2``
  (SPEC §17), same resize and display rule (:func:`llm_uniform_view`).
* :func:`uniform_sweep` -- that baseline at a sweep of sizes (a fidelity curve
  of retention, the uniform line of fidelity_vs_tokens.png).
* :func:`psnr` -- peak signal-to-noise ratio in dB against the resized image.
* :func:`error_map` and :func:`error_scale` -- ``|view - resized|`` per pixel,
  its mean and the shared colour scale of compare.png's error row.
* SSIM of both views against the resized image (:mod:`aptviz.compute.ssim`,
  scikit-image's definition), with the resized image filtered once per image.

Everything is array work: one block mean per scale over the whole image, no
loop over patches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image

from aptviz.compute.resize import smart_resize
from aptviz.compute.ssim import WIN_SIZE, SsimReference
from aptviz.compute.xp import pool2x2, to_numpy

__all__ = [
    "ErrorScale",
    "ModelView",
    "UniformView",
    "all_views",
    "compare_views",
    "error_map",
    "error_percentile",
    "error_scale",
    "llm_uniform_view",
    "model_view",
    "psnr",
    "ssim_reference",
    "uniform_sweep",
    "uniform_view",
]

#: Target retentions of :func:`uniform_sweep` (share of the full-size tokens; the same at both ends for uniform).
SWEEP_RETENTIONS = (0.03, 0.08, 0.15, 0.25, 0.4, 0.6, 0.8, 0.95, 1.0)


def model_view(resized: np.ndarray, masks: dict) -> np.ndarray:
    """The resized image as the ViT sees it under one selection.

    Every kept patch of size ``s`` is area-averaged to ``P x P`` (the mean of
    each ``(s/P) x (s/P)`` block, rounded half to even, on the uint8 RGB) and
    shown back at size ``s`` by repeating each of its pixels.

    Parameters
    ----------
    resized : ndarray
        ``(H, W, 3)`` uint8 resized image.
    masks : dict[int, ndarray or torch.Tensor]
        Selection masks ``{patch_size: bool grid}`` (a partition).

    Returns
    -------
    ndarray
        ``(H, W, 3)`` uint8; equal to ``resized`` where ``P`` px patches are kept.

    Examples
    --------
    >>> img = np.zeros((28, 28, 3), np.uint8); img[0, 0] = 100
    >>> masks = {14: np.zeros((2, 2), bool), 28: np.ones((1, 1), bool)}
    >>> view = model_view(img, masks)
    >>> int(view[0, 0, 0]), int(view[1, 1, 0]), int(view[2, 2, 0])
    (25, 25, 0)
    """
    image = np.asarray(resized, dtype=np.uint8)
    finest = min(masks)
    out = image.copy()
    coarse = [(finest << k, to_numpy(masks[ps]).astype(bool)) for k, ps in enumerate(sorted(masks)[1:], 1)]
    h, w = image.shape[:2]
    # every kept patch inside the image (always, for a selection): only the kept patches are averaged, the
    # same integers as the pass over the whole image below (2-30x faster); it stays for masks that overhang
    if not any(_overhangs(mask, h // cell, w // cell) for cell, mask in coarse):
        for cell, mask in coarse:
            _average_kept(image, out, mask, cell, cell // finest)
        return out
    sums, ratio = image.astype(np.uint16), 1  # block sums, refined 2x2 at a time (scales double)
    for ps in sorted(masks)[1:]:
        if (2 * ratio) ** 2 * 255 > np.iinfo(sums.dtype).max:  # uint16 holds sums of up to 16x16 pixels
            sums = sums.astype(np.uint32)
        sums, ratio = pool2x2(sums, np.add), ratio * 2
        mask = to_numpy(masks[ps]).astype(bool)
        if not mask.any():
            continue
        # an integer sum divided by a power of two is exact in float64; rint rounds half to even
        means = np.rint(sums / float(ratio * ratio)).astype(np.uint8)  # one value per P x P output pixel
        keep = np.repeat(np.repeat(mask, finest, axis=0), finest, axis=1)[: means.shape[0], : means.shape[1]]
        hb, wb = keep.shape
        # write each mean into its r x r block through a 5-D view: no full-size repeated copies
        region = out[: hb * ratio, : wb * ratio]
        view = region.reshape(hb, ratio, wb, ratio, -1)  # a view whenever the blocks tile the image
        np.copyto(view, means[:hb, None, :wb, None, :], where=keep[:, None, :, None, None])
        if not np.shares_memory(view, out):
            region[...] = view.reshape(region.shape)
    return out


def _overhangs(mask: np.ndarray, rows: int, cols: int) -> bool:
    """Whether ``mask`` keeps a cell beyond the first ``rows x cols`` (one that overhangs the image)."""
    return bool(mask[rows:].any() or mask[:rows, cols:].any())


def _average_kept(image: np.ndarray, out: np.ndarray, mask: np.ndarray, cell: int, ratio: int) -> None:
    """Write into ``out`` the ``ratio x ratio`` block means of every kept ``cell`` px patch inside the image.

    The same integers as :func:`model_view`'s pass over the whole image (exact block sums, divided by
    ``ratio**2`` in float64, rounded half to even), gathered for the kept patches only.
    """
    rows, cols = np.nonzero(mask[: image.shape[0] // cell, : image.shape[1] // cell])
    if not rows.size:
        return
    hc, wc = image.shape[0] // cell, image.shape[1] // cell
    shape = (hc, cell, wc, cell, *image.shape[2:])
    patches = image[: hc * cell, : wc * cell].reshape(shape)[rows, :, cols]  # (K, cell, cell, C)
    sums = patches.astype(np.uint16 if ratio <= 16 else np.uint32)  # uint16 holds sums of up to 16x16 pixels
    for _ in range(ratio.bit_length() - 1):  # scales double: add the 2x2 children, ratio / 2 times over
        k, a, b = sums.shape[:3]
        sums = sums.reshape(k, a // 2, 2, b, -1)
        sums = sums[:, :, 0] + sums[:, :, 1]
        sums = sums.reshape(k, a // 2, b // 2, 2, -1)
        sums = sums[:, :, :, 0] + sums[:, :, :, 1]
    means = np.rint(sums / float(ratio * ratio)).astype(np.uint8)
    target = out[: hc * cell, : wc * cell].reshape(shape)
    if not np.shares_memory(target, out):  # pragma: no cover - a slice of a C-contiguous array always reshapes
        raise AssertionError("model view: the patch grid is not a view")
    target[rows, :, cols] = np.repeat(np.repeat(means, ratio, axis=1), ratio, axis=2).reshape(patches.shape)


def psnr(reference: np.ndarray, other: np.ndarray) -> float | None:
    """Peak signal-to-noise ratio in dB (peak 255), None when the images are identical.

    The mean squared error is taken over all pixels and channels in float64.

    Examples
    --------
    >>> a = np.zeros((2, 2, 3), np.uint8); b = a.copy(); b[0, 0, 0] = 255
    >>> round(psnr(a, b), 4)
    10.7918
    >>> psnr(a, a) is None
    True
    """
    import cv2

    a = np.ascontiguousarray(reference)
    b = np.ascontiguousarray(other)
    # the sum of squared uint8 differences over all channels: an integer below 2**53, so exact in float64
    total = cv2.norm(a, b, cv2.NORM_L2SQR)
    mse = total / a.size
    if mse == 0.0:
        return None
    return 10.0 * math.log10(255.0**2 / mse)


def _error_totals(view: np.ndarray, resized: np.ndarray) -> np.ndarray:
    """``|view - resized|`` summed over the three channels per pixel (uint16, 0 .. 765): exact integers."""
    import cv2

    diff = cv2.absdiff(np.ascontiguousarray(view), np.ascontiguousarray(resized))
    first, second, third = cv2.split(diff)
    return cv2.add(cv2.add(first, second, dtype=cv2.CV_16U), third, dtype=cv2.CV_16U)


def _error_values(totals: np.ndarray) -> np.ndarray:
    out = totals.astype(np.float32)
    out /= np.float32(3)
    return out


def error_map(view: np.ndarray, resized: np.ndarray) -> np.ndarray:
    """``|view - resized|`` per pixel, the mean over the three channels (float32, 0 .. 255).

    The channel sum is an exact integer, divided by 3 in float32 (what a float32 mean gives).

    Examples
    --------
    >>> a = np.zeros((1, 2, 3), np.uint8); b = a.copy(); b[0, 1] = (1, 2, 4)
    >>> error_map(a, b).tolist() == [[0.0, np.float32(7) / np.float32(3)]]
    True
    """
    return _error_values(_error_totals(view, resized))


def error_percentile(counts: np.ndarray, q: float) -> np.float32:
    """``np.percentile`` (linear) of the :func:`error_map` values ``k / 3`` (float32), from their counts.

    ``counts[k]``: how many pixels have the channel sum ``k`` (0 .. 765); the two order statistics come
    from the counts instead of a partition of every value, and the interpolation is NumPy's, step by step
    (float32 values, float64 index), so the result is bit-identical to ``np.percentile`` of the maps.

    Examples
    --------
    >>> k = np.array([0, 1, 2, 765])
    >>> e = k.astype(np.float32) / np.float32(3)
    >>> bool(error_percentile(np.bincount(k, minlength=766), 99.5) == np.percentile(e, 99.5))
    True
    """
    n = int(counts.sum())
    virtual = (n - 1) * np.true_divide(q, 100)
    below = int(np.floor(virtual))
    if virtual >= n - 1:
        below = n - 1
    cumulative = np.cumsum(counts)
    k_lo, k_hi = np.searchsorted(cumulative, [below, min(below + 1, n - 1)], side="right")
    values = np.arange(766, dtype=np.float32) / np.float32(3)
    a, b = values[k_lo], values[k_hi]
    gamma = float(virtual - below) if virtual < n - 1 else 0.0
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


@dataclass(frozen=True)
class ErrorScale:
    """compare.png's error row of one selection, in numbers: each error map's mean and the shared colour scale.

    ``means``: the mean of :func:`error_map` of each view (APT's model view, then the uniform view at equal
    ViT tokens), 0 for a view identical to the resized image; ``top``: the top of the row's colour scale,
    the 99.5th percentile of both maps (at least 1), so one stray pixel does not wash the row out.
    """

    means: tuple[float, ...]
    top: float

    @property
    def lossless(self) -> bool:
        """Every view is the resized image (no colour scale to draw)."""
        return not any(self.means)


def error_scale(resized: np.ndarray, views: list[np.ndarray]) -> ErrorScale:
    """The :class:`ErrorScale` of ``views`` against ``resized``.

    Examples
    --------
    >>> resized = np.zeros((4, 4, 3), np.uint8); a = resized.copy(); a[:2] = 40
    >>> error_scale(resized, [a, resized])
    ErrorScale(means=(20.0, 0.0), top=40.0)
    """
    totals = [_error_totals(np.asarray(v), resized) for v in views]
    counts = sum(np.bincount(t.ravel(), minlength=766) for t in totals)  # the channel sums: k of k / 3, exactly
    means = tuple(float(_error_values(t).mean()) for t in totals)
    return ErrorScale(means, max(1.0, float(error_percentile(counts, 99.5))))


@dataclass(frozen=True)
class UniformView:
    """The uniform Qwen2-VL baseline at a lowered ``max_pixels``.

    Attributes
    ----------
    image : ndarray
        ``(H, W, 3)`` uint8 at the resized size (NEAREST up from ``size``).
    size : (int, int)
        ``(width, height)`` Qwen2-VL would resize to with the lowered max_pixels.
    max_pixels : int
        The lowered bound, ``vit_tokens * P * P``.
    vit_tokens : int
        ``(width / P) * (height / P)``.
    """

    image: np.ndarray
    size: tuple[int, int]
    max_pixels: int
    vit_tokens: int


def uniform_view(
    original: Image.Image,
    resized_size: tuple[int, int],
    vit_tokens: int,
    patch_size: int = 14,
    merge_size: int = 2,
    min_pixels: int = 56 * 56,
    cache: dict | None = None,
) -> UniformView:
    """Plain Qwen2-VL with ``max_pixels = vit_tokens * P * P``, shown at the resized size.

    Parameters
    ----------
    original : PIL.Image.Image
        The loaded RGB image (before any resize).
    resized_size : (int, int)
        ``(width, height)`` of APT's resized image.
    vit_tokens : int
        The APT selection's token count.
    patch_size, merge_size : int
        Qwen2-VL's patch and merge sizes.
    min_pixels : int
        smart_resize's lower bound; capped at the lowered ``max_pixels`` so the
        bounds stay ordered.
    cache : dict, optional
        ``{(width, height): picture}`` of the baselines already made from this
        ``original`` at this ``resized_size``: one of a size in it is not
        resized again (two counts often give one Qwen2-VL size); one made here is added.

    Returns
    -------
    UniformView

    Examples
    --------
    >>> img = Image.new("RGB", (112, 112), (9, 9, 9))
    >>> u = uniform_view(img, (112, 112), vit_tokens=40)
    >>> u.size, u.vit_tokens, u.image.shape
    ((84, 84), 36, (112, 112, 3))
    """
    (w, h), max_pixels = _uniform_size(original, vit_tokens, patch_size, merge_size, min_pixels)
    image = None if cache is None else cache.get((w, h))
    if image is None:
        small = original if (w, h) == original.size else original.resize((w, h), Image.Resampling.BICUBIC)
        shown = small
        if small.size != tuple(resized_size):
            shown = small.resize(tuple(resized_size), Image.Resampling.NEAREST)
        image = np.asarray(shown if shown.mode == "RGB" else shown.convert("RGB"))
        if cache is not None:
            cache[(w, h)] = image
    return UniformView(image, (w, h), max_pixels, (h // patch_size) * (w // patch_size))


def _uniform_size(original: Image.Image, vit_tokens: int, patch_size: int, merge_size: int, min_pixels: int) -> tuple:
    """``((width, height), max_pixels)`` of the uniform baseline at ``vit_tokens`` (:func:`uniform_view`)."""
    max_pixels = int(vit_tokens) * patch_size * patch_size
    factor = patch_size * merge_size
    h, w = smart_resize(original.height, original.width, factor, min(min_pixels, max_pixels), max(max_pixels, 1))
    return (w, h), max_pixels


def llm_uniform_view(
    original: Image.Image,
    resized_size: tuple[int, int],
    llm_tokens: int,
    patch_size: int = 14,
    merge_size: int = 2,
    min_pixels: int = 56 * 56,
    cache: dict | None = None,
) -> UniformView:
    """Plain Qwen2-VL at equal LLM tokens: ``max_pixels = llm_tokens * (P * m)**2``, shown at the resized size.

    Its LLM tokens are ``vit_tokens / m**2`` (both sides are multiples of
    ``P * m``), at most ``llm_tokens``. ``cache`` as :func:`uniform_view`'s.

    Examples
    --------
    >>> img = Image.new("RGB", (112, 112), (9, 9, 9))
    >>> u = llm_uniform_view(img, (112, 112), llm_tokens=10)
    >>> u.size, u.vit_tokens // 4, u.max_pixels
    ((84, 84), 9, 7840)
    """
    return uniform_view(original, resized_size, int(llm_tokens) * merge_size * merge_size, patch_size, merge_size,
                        min_pixels, cache)  # fmt: skip


@dataclass(frozen=True)
class ViewStats:
    """The model-view numbers of one selection (stats.json fields)."""

    psnr_apt: float | None
    uniform_vit_tokens: int
    uniform_size: list[int]
    psnr_uniform: float | None
    ssim_apt: float | None = None  # None only for an image below SSIM's 11 x 11 window (never after smart_resize)
    ssim_uniform: float | None = None
    # the baseline at equal LLM tokens (SPEC §17); None when the selection has no LLM token count
    llm_uniform_tokens: int | None = None
    llm_uniform_size: list[int] | None = None
    psnr_uniform_llm: float | None = None
    ssim_uniform_llm: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelView:
    """Both views of one selection and their numbers."""

    apt: np.ndarray
    uniform: UniformView
    stats: ViewStats
    uniform_llm: UniformView | None = None  # at equal LLM tokens; None without an LLM token count
    errors: ErrorScale | None = None  # compare.png's error row (APT's view, the uniform view at equal ViT tokens)

    def error_maps(self, resized: np.ndarray) -> list[np.ndarray]:
        """:func:`error_map` of APT's view and of the uniform view at equal ViT tokens (what the error row shows)."""
        return [error_map(self.apt, resized), error_map(self.uniform.image, resized)]


def compare_views(
    original: Image.Image,
    resized: np.ndarray,
    masks: dict,
    vit_tokens: int,
    patch_size: int = 14,
    merge_size: int = 2,
    min_pixels: int = 56 * 56,
    reference: SsimReference | None = None,
    with_ssim: bool = True,
    llm_tokens: int | None = None,
    cache: dict | None = None,
) -> ModelView:
    """APT's model view and the uniform baselines, each with its PSNR and SSIM against ``resized``.

    ``reference``: ``resized`` as an :class:`SsimReference` (made here when not
    given); ``with_ssim=False`` leaves the SSIM fields None (:func:`all_views`
    scores every selection of an image in one pass instead). ``llm_tokens``:
    the selection's LLM tokens, for the baseline at equal LLM tokens (left
    out when None). ``cache``: the uniform pictures already made, as
    :func:`uniform_view`'s (the two baselines often have one size).

    Examples
    --------
    >>> img = Image.new("RGB", (56, 56), (50, 60, 70))
    >>> masks = {14: np.zeros((4, 4), bool), 28: np.ones((2, 2), bool)}
    >>> mv = compare_views(img, np.asarray(img), masks, vit_tokens=4)
    >>> mv.stats.psnr_apt is None, mv.stats.uniform_vit_tokens, round(mv.stats.ssim_apt, 6)
    (True, 4, 1.0)
    """
    resized = np.asarray(resized, dtype=np.uint8)
    apt = model_view(resized, masks)
    size = (resized.shape[1], resized.shape[0])
    cache = {} if cache is None else cache
    uni = uniform_view(original, size, vit_tokens, patch_size, merge_size, min_pixels, cache)
    if reference is None and with_ssim:
        reference = ssim_reference(resized)
    llm = None if llm_tokens is None else llm_uniform_view(original, size, llm_tokens, patch_size, merge_size,
                                                            min_pixels, cache)  # fmt: skip
    ssim_apt = ssim_uni = ssim_llm = None
    if reference is not None and with_ssim:
        ssim_apt, ssim_uni, *rest = reference.scores([apt, uni.image] + ([llm.image] if llm is not None else []))
        ssim_llm = rest[0] if rest else None
    stats = ViewStats(psnr(resized, apt), uni.vit_tokens, list(uni.size), psnr(resized, uni.image), ssim_apt, ssim_uni)
    if llm is not None:
        m2 = merge_size * merge_size
        stats = replace(stats, llm_uniform_tokens=llm.vit_tokens // m2, llm_uniform_size=list(llm.size),
                        psnr_uniform_llm=psnr(resized, llm.image), ssim_uniform_llm=ssim_llm)  # fmt: skip
    return ModelView(apt, uni, stats, llm, error_scale(resized, [apt, uni.image]))


def all_views(
    original: Image.Image,
    resized: np.ndarray,
    masks_and_tokens: list,
    patch_size: int = 14,
    merge_size: int = 2,
    min_pixels: int = 56 * 56,
) -> list[ModelView]:
    """:func:`compare_views` of every selection of one image, their SSIMs computed in one pass over it.

    ``masks_and_tokens``: ``(masks, vit_tokens)`` or ``(masks, vit_tokens, llm_tokens)`` per selection.

    Examples
    --------
    >>> img = Image.new("RGB", (56, 56), (50, 60, 70))
    >>> masks = {14: np.zeros((4, 4), bool), 28: np.ones((2, 2), bool)}
    >>> [round(v.stats.ssim_uniform, 6) for v in all_views(img, np.asarray(img), [(masks, 4), (masks, 16)])]
    [1.0, 1.0]
    """
    resized = np.asarray(resized, dtype=np.uint8)
    cache: dict = {}  # the uniform pictures by size, shared by every selection's two baselines
    views = [
        compare_views(original, resized, item[0], item[1], patch_size, merge_size, min_pixels, with_ssim=False,
                      llm_tokens=item[2] if len(item) > 2 else None, cache=cache)
        for item in masks_and_tokens
    ]  # fmt: skip
    reference = ssim_reference(resized)
    if reference is None or not views:
        return views
    # selections with the same uniform size share one uniform picture (budget runs of several measures; a
    # baseline at equal LLM tokens often has the size of another's at equal ViT tokens)
    uniform = {tuple(v.uniform.size): v.uniform.image for v in views}
    uniform.update({tuple(v.uniform_llm.size): v.uniform_llm.image for v in views if v.uniform_llm is not None})
    scores = reference.scores([v.apt for v in views] + list(uniform.values()))
    by_size = dict(zip(uniform, scores[len(views) :]))
    out = []
    for v, s in zip(views, scores):
        stats = replace(v.stats, ssim_apt=s, ssim_uniform=by_size[tuple(v.uniform.size)])
        if v.uniform_llm is not None:
            stats = replace(stats, ssim_uniform_llm=by_size[tuple(v.uniform_llm.size)])
        out.append(replace(v, stats=stats))
    return out


def uniform_sweep(
    original: Image.Image,
    resized: np.ndarray,
    retentions=SWEEP_RETENTIONS,
    patch_size: int = 14,
    merge_size: int = 2,
    min_pixels: int = 56 * 56,
    known: dict | None = None,
) -> list[dict]:
    """The uniform baseline at a sweep of sizes: one fidelity point per distinct Qwen2-VL size.

    ``known``: ``{(W, H): (psnr, ssim)}`` of baselines already scored (the
    selections' own, at equal ViT and LLM tokens): they join the sweep as
    points and are not computed again.

    For each target retention ``r`` the baseline is :func:`uniform_view` at
    ``round(r * N)`` ViT tokens (``N`` = the resized image's finest cells).
    Uniform costs the same share of the full size at both ends (its LLM
    tokens are its ViT tokens / m**2), so one curve serves both costs.

    Returns
    -------
    list of dict
        ``{"size", "vit_tokens", "llm_tokens", "retention", "psnr", "ssim"}``
        sorted by retention (``size`` = ``[W, H]``, ``retention = vit_tokens / N``; ``psnr`` None when
        identical to the resized image, ``ssim`` None below SSIM's window).

    Examples
    --------
    >>> img = Image.new("RGB", (112, 112), (9, 9, 9))
    >>> sweep = uniform_sweep(img, np.asarray(img), (0.5, 1.0))  # a flat picture: every size is lossless
    >>> [(p["size"], p["vit_tokens"], p["retention"], p["psnr"], p["ssim"]) for p in sweep]
    [([56, 56], 16, 0.25, None, 1.0), ([112, 112], 64, 1.0, None, 1.0)]
    """
    resized = np.asarray(resized, dtype=np.uint8)
    h, w = resized.shape[:2]
    n = (h // patch_size) * (w // patch_size)
    m2 = merge_size * merge_size
    known = {tuple(k): v for k, v in (known or {}).items()}
    # the full size is the resized image itself (the same Pillow resize): lossless, nothing to score
    known[(w, h)] = (None, 1.0)
    scored: list[UniformView] = []  # one per size not yet scored, made once (a size is known before its resize)
    for r in sorted(set(retentions)):
        t = max(1, round(r * n))
        size = _uniform_size(original, t, patch_size, merge_size, min_pixels)[0]
        if size not in known and all(u.size != size for u in scored):
            scored.append(uniform_view(original, (w, h), t, patch_size, merge_size, min_pixels))
    reference = ssim_reference(resized) if scored else None
    ssims = reference.scores([u.image for u in scored]) if reference else [None] * len(scored)
    for u, value in zip(scored, ssims):
        known[u.size] = (psnr(resized, u.image), value)
    sizes = sorted(known, key=lambda s: ((s[0] // patch_size) * (s[1] // patch_size), s))
    return [
        {"size": [sw, sh], "vit_tokens": (sw // patch_size) * (sh // patch_size),
         "llm_tokens": (sw // patch_size) * (sh // patch_size) // m2,
         "retention": (sw // patch_size) * (sh // patch_size) / n, "psnr": known[(sw, sh)][0],
         "ssim": known[(sw, sh)][1]}
        for sw, sh in sizes
    ]  # fmt: skip


def ssim_reference(resized: np.ndarray) -> SsimReference | None:
    """The resized image filtered for SSIM, or None when it is smaller than SSIM's 11 x 11 window.

    smart_resize never makes a side below 28 px, so None only comes from arrays made by hand.
    """
    resized = np.asarray(resized, dtype=np.uint8)
    if min(resized.shape[:2]) < WIN_SIZE:
        return None
    return SsimReference(resized)
