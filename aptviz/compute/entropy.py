"""Stage 3: multi-scale entropy maps (docs/pipeline.md §1.3).

One pass over the pixels builds the finest-scale histograms (a single
``bincount`` over ``cell * bins + bin``); every coarser scale's histograms are
2x2 sums of the next finer ones. The entropy of a cell of ``n`` pixels is
``sum(c * log2(n / c)) / n`` over its bin counts ``c``, read from a lookup
table in integer fixed point, so the result does not depend on the order of
summation: NumPy on the CPU and torch on a GPU give bit-identical maps.

Memory is linear in pixels and bounded per band of rows: nothing of size
cells x pixels-per-cell x bins is ever built.

The CPU backend is pure NumPy (torch is not even imported); ``device="cuda"``
runs the same steps with torch.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from aptviz.compute.xp import concat
from aptviz.errors import require_torch

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "GRAY_WEIGHTS",
    "PAD",
    "compute_maps",
    "entropy_maps",
    "entropy_maps_over_time",
    "band_pixels",
    "is_sparse",
    "get_num_threads",
    "grayscale",
    "pad_mask",
    "scales_for",
    "set_num_threads",
]

PAD = 1e6
"""Value of a cell whose grid overhangs the image (never kept, never counted)."""

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)

FIXED_POINT_BITS = 32
"""Entropy sums are accumulated as integers in units of 2**-32 bits: exact
to ~1e-9 before the final float32 rounding, whatever the summation order."""

BAND_PIXELS = 1 << 20
"""Rows are processed in bands of about this many pixels (at least one band
per thread), so temporary memory stays bounded (~25 MB a band)."""

BAND_HIST_ENTRIES = 1 << 22
"""At most about this many histogram entries (finest cells x bins) per band:
with small patches and many bins (``--patch-size 1``, ``--bins 4096``) the
histograms, not the pixels, dominate, and a band holds them to ~100 MB."""


CACHE_TILE_PIXELS = 100_000
"""Pixels per tile of the NumPy dense kernel (fewer than :func:`band_pixels`
allows): a tile's keys, histograms and table lookups (~5 MB at 14 px, 512
bins: 2**18 histogram entries) stay near the core's cache, which makes the
kernel faster than one pass over a whole band, while the Python cost per tile
(about 25 NumPy and OpenCV calls) stays small by comparison. Measured on the
benchmark's photos: 64k pixels cost ~5% more, 131k and 200k about as much or
more; below 32k the calls dominate."""

SPARSE_RATIO = 16
"""Bins per finest-cell pixel above which a cell's histogram is mostly empty
and the sparse kernel (sorted keys) replaces the dense one (NumPy only)."""

LUT_CHUNK = 1 << 18
"""``cv2.LUT`` spreads arrays of this many entries or more over OpenCV's own
threads; the dense kernel looks up fewer at a time, so that it keeps to the
threads of :func:`set_num_threads`."""


def is_sparse(patch_size: int, bins: int) -> bool:
    """Whether the CPU kernel counts sorted bin keys instead of filling dense histograms.

    Examples
    --------
    >>> is_sparse(14, 512), is_sparse(2, 4096), is_sparse(1, 512)
    (False, True, True)
    """
    return bins >= SPARSE_RATIO * patch_size * patch_size


def band_pixels(patch_size: int, bins: int, sparse: bool = False) -> int:
    """Pixels per band for these options: :data:`BAND_PIXELS`, fewer when dense histograms dominate.

    Examples
    --------
    >>> band_pixels(14, 512), band_pixels(1, 512), band_pixels(1, 512, sparse=True)
    (1048576, 8192, 1048576)
    """
    if sparse:
        return BAND_PIXELS
    return max(1, min(BAND_PIXELS, BAND_HIST_ENTRIES * patch_size * patch_size // bins))


_THREADS: int | None = None


def set_num_threads(n: int | None) -> None:
    """Threads for the CPU entropy kernel (None: every available core)."""
    global _THREADS
    _THREADS = None if n is None else max(1, int(n))


def get_num_threads() -> int:
    """Threads the CPU entropy kernel uses.

    Examples
    --------
    >>> get_num_threads() >= 1
    True
    """
    if _THREADS is not None:
        return _THREADS
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def scales_for(patch_size: int, num_scales: int) -> list[int]:
    """Patch sizes of every scale, finest first.

    Examples
    --------
    >>> scales_for(14, 3)
    [14, 28, 56]
    """
    return [patch_size * 2**i for i in range(num_scales)]


def _check_shape(shape) -> None:
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {tuple(shape)}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError("image has no pixels")


def as_image_array(image) -> np.ndarray:
    """An HxWx3 uint8 image (array or tensor) as a NumPy array; TypeError/ValueError for anything else."""
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}")
    _check_shape(arr.shape)
    return arr


def as_image_tensor(image, device) -> torch.Tensor:
    """An HxWx3 uint8 image as a torch tensor (for the torch backend); TypeError/ValueError for anything else."""
    torch = require_torch(f"entropy maps on device {str(device)!r}")

    if isinstance(image, torch.Tensor):
        t = image
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError(f"expected a uint8 image, got {arr.dtype}")
        arr = np.ascontiguousarray(arr)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch wants writable memory
    if t.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 image, got {t.dtype}")
    _check_shape(tuple(t.shape))
    return t.to(device)


def grayscale(image):
    """Luma in float32: ``0.2989*R + 0.5870*G + 0.1140*B`` (left to right).

    Parameters
    ----------
    image : ndarray or torch.Tensor
        HxWx3 uint8.

    Returns
    -------
    ndarray or torch.Tensor
        HxW float32, same kind as the input.

    Examples
    --------
    >>> float(grayscale(np.full((1, 1, 3), 255, np.uint8))[0, 0])
    254.97451782226562
    """
    r, g, b = (np.float32(w) for w in GRAY_WEIGHTS)
    if isinstance(image, np.ndarray):
        gray = image[..., 0] * r
        gray += image[..., 1] * g
        gray += image[..., 2] * b
        return gray
    import torch

    gray = image[..., 0].to(torch.float32) * float(r)
    gray += image[..., 1].to(torch.float32) * float(g)
    gray += image[..., 2].to(torch.float32) * float(b)
    return gray


def _bin_keys(img, ps: int, bins: int):
    """``cell * bins + bin`` for every pixel, where ``bin = min(floor(gray * bins / 256), bins - 1)``.

    The product is taken in float64 from the float32 gray value, which is
    exact for any bin count (a 24-bit mantissa times ``bins <= 2**29`` fits
    in 53 bits; dividing by 256 is exact). For a power-of-two bin count the
    float32 product is already exact and is used as is.

    Examples
    --------
    >>> gray_one = np.full((1, 1, 3), 1, np.uint8)  # gray 0.99990004 in float32
    >>> int(_bin_keys(gray_one, 1, 256)[0, 0]), int(_bin_keys(gray_one, 1, 1000)[0, 0])
    (0, 3)
    """
    numpy = isinstance(img, np.ndarray)
    height, width = int(img.shape[0]), int(img.shape[1])
    cols = -(-width // ps)
    gray = grayscale(img)
    if bins & (bins - 1) == 0:  # power of two: one exact float32 multiply
        gray *= np.float32(bins / 256.0) if numpy else bins / 256.0
        scaled = gray
    elif numpy:
        scaled = gray.astype(np.float64)
        scaled *= bins / 256.0  # bins / 256 is exact, so is the product
    else:
        import torch

        scaled = gray.to(torch.float64) * (bins / 256.0)
    if numpy:
        key = scaled.astype(np.intp)
        np.minimum(key, bins - 1, out=key)
        key += ((np.arange(height) // ps) * (cols * bins))[:, None]
        key += ((np.arange(width) // ps) * bins)[None, :]
        return key
    import torch

    dev = img.device
    key = scaled.to(torch.int64).clamp_(max=bins - 1)
    key += ((torch.arange(height, device=dev) // ps) * (cols * bins))[:, None]
    key += ((torch.arange(width, device=dev) // ps) * bins)[None, :]
    return key


@functools.lru_cache(maxsize=16)
def _tile_weights(bins: int) -> tuple[tuple[np.floating, ...], np.float64 | None]:
    """Gray weights for the dense kernel, and the float64 factor ``bins / 256`` still to apply (or None).

    For a power-of-two bin count the factor is folded into the float32
    weights: scaling by a power of two is exact, so ``R*(w*s) + G*(w*s) + ...``
    rounds to exactly ``(R*w + G*w + ...) * s`` and the bin is the same.

    Examples
    --------
    >>> _tile_weights(512)[0][0] == 2 * np.float32(GRAY_WEIGHTS[0]), _tile_weights(512)[1]
    (np.True_, None)
    >>> float(_tile_weights(1000)[1])
    3.90625
    """
    if bins & (bins - 1) == 0:
        s = np.float32(bins / 256.0)
        return tuple(np.float32(w) * s for w in GRAY_WEIGHTS), None
    return tuple(np.float32(w) for w in GRAY_WEIGHTS), np.float64(bins / 256.0)


def _interleave(v: np.ndarray, levels: int, shift: int) -> np.ndarray:
    """Bit ``b`` of ``v`` (b < levels) moved to bit ``2b + shift``."""
    out = np.zeros_like(v)
    for b in range(levels):
        out |= ((v >> b) & 1) << (2 * b + shift)
    return out


@functools.lru_cache(maxsize=16)
def _nested_offsets(height: int, width: int, ps: int, levels: int, bins: int) -> np.ndarray:
    """``cell * bins`` of every pixel of a tile, cells numbered in nested 2x2 order (cached, read-only).

    The finest cells of one coarsest cell (``ps * 2**levels`` pixels) are
    numbered together, each 2x2 block of siblings consecutively (bit ``2b+1``
    of the number is bit ``b`` of the cell row, bit ``2b`` that of the column),
    so that every coarser histogram is the sum of 4 consecutive finer ones.
    int32 when the keys fit (a tile's histograms are far below 2**31 entries).

    Examples
    --------
    >>> (_nested_offsets(2, 4, 1, 1, 10) // 10).tolist()
    [[0, 1, 4, 5], [2, 3, 6, 7]]
    """
    coarsest = ps << levels
    cols = -(-width // coarsest)
    rows = -(-height // coarsest)
    i = np.arange(height, dtype=np.int64) // ps
    j = np.arange(width, dtype=np.int64) // ps
    row_part = (i >> levels) * (cols << 2 * levels) + _interleave(i, levels, 1)
    col_part = ((j >> levels) << 2 * levels) + _interleave(j, levels, 0)
    small = rows * cols * (bins << 2 * levels) < 2**31
    off = ((row_part * bins)[:, None] + (col_part * bins)[None, :]).astype(np.int32 if small else np.int64)
    off.flags.writeable = False
    return off


def _dense_tile_sums(img: np.ndarray, scales: list[int], bins: int) -> list[np.ndarray]:
    """Fixed-point entropy sums of every cell of a tile (NumPy), per scale, in nested order.

    The steps of :func:`_bin_keys`, :func:`_finest_histograms`, :func:`_sum2x2`
    and :func:`_entropy_from_histograms`, fused so that a tile's arrays stay in
    cache: one bincount over nested cell numbers (:func:`_nested_offsets`), and
    every coarser scale's histograms are sums of 4 consecutive finer ones.
    Scale ``m`` comes as an int64 array ``(R, Q, 4**(levels - m))`` over the
    tile's ``R x Q`` coarsest cells (see :func:`_nested_to_grid`).

    The counts are held in the narrowest type that fits them: uint8 for cells
    below 256 pixels (:func:`_narrow_counts`; their table lookups and sums are
    OpenCV's, :func:`_small_count_sums`), uint16 below 65536 (:func:`_sum4`),
    int64 beyond. Every step is exact integer arithmetic, so the sums are those
    of plain int64 histograms, bit for bit, with less memory to read and write
    per entry; with the contiguous channels of :func:`_channels`, a tile takes
    about 20% less time than with int64 histograms and interleaved channels.

    The bin needs no clamp here: the gray value is below 255 (the weights sum
    to less than 1), so ``gray * bins / 256`` is below ``bins - 1`` already.
    """
    levels = len(scales) - 1
    height, width = img.shape[0], img.shape[1]
    rows, cols = -(-height // scales[-1]), -(-width // scales[-1])
    weights, factor = _tile_weights(bins)
    red, green, blue = _channels(img)
    gray = red * weights[0]
    gray += green * weights[1]
    gray += blue * weights[2]
    if factor is not None:  # exact in float64 (see _bin_keys)
        gray = np.multiply(gray, factor)
    offsets = _nested_offsets(height, width, scales[0], levels, bins)
    key = gray.astype(offsets.dtype)
    key += offsets
    hist = np.bincount(key.ravel(), minlength=rows * cols * (bins << 2 * levels))
    counts = _narrow_counts(hist.reshape(-1, bins), scales[0] ** 2)
    out = []
    for m, size in enumerate(scales):
        n = size * size
        if m:
            counts = _sum4(counts, n)
        if counts.dtype == np.uint8:
            fixed = _small_count_sums(counts, n)
        else:
            fixed = _entropy_table(n).take(counts, mode="clip").sum(axis=-1)  # counts never exceed n
        out.append(fixed.reshape(rows, cols, -1))
    return out


def _channels(img: np.ndarray) -> tuple[np.ndarray, ...]:
    """The three channels of an HxWx3 uint8 image as contiguous HxW arrays (OpenCV's split).

    NumPy's ``uint8 * float32`` products are the same on them as on the
    interleaved channels, bit for bit, but run much faster on contiguous
    memory: the gray value takes 1.1 instead of 1.8 ns a pixel, the split
    included.

    Examples
    --------
    >>> img = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    >>> [c.tolist() for c in _channels(img[:, ::-1])][0]
    [[9, 6, 3, 0], [21, 18, 15, 12]]
    """
    import cv2

    return tuple(cv2.split(np.ascontiguousarray(img)))  # a tile of a wider image: OpenCV splits a copy 3x faster


def _narrow_counts(hist: np.ndarray, n: int) -> np.ndarray:
    """A ``(cells, bins)`` int64 histogram of cells of ``n`` pixels in uint8 when ``n < 256``, else as it is.

    Examples
    --------
    >>> _narrow_counts(np.array([[3, 0, 1]]), 4).dtype, _narrow_counts(np.array([[300, 0]]), 300).dtype
    (dtype('uint8'), dtype('int64'))
    """
    return hist.astype(np.uint8) if n < 256 else hist


def _sum4(counts: np.ndarray, n: int) -> np.ndarray:
    """Sums of every 4 consecutive rows of ``(cells, bins)`` counts, for cells of ``n`` pixels.

    Narrow counts (uint8, uint16) are added in uint16 while ``n < 65536`` (a
    sum is at most ``n``, so it never wraps), anything else in int64.

    Examples
    --------
    >>> c = np.array([[200, 0], [200, 1], [200, 0], [155, 2]], np.uint8)
    >>> _sum4(c, 1024).tolist(), _sum4(c, 1024).dtype
    ([[755, 3]], dtype('uint16'))
    """
    quads = counts.reshape(-1, 4, counts.shape[-1])
    dtype = np.uint16 if counts.dtype in (np.uint8, np.uint16) and n < 65536 else np.int64
    out = np.add(quads[:, 0], quads[:, 1], dtype=dtype)
    out += quads[:, 2]
    out += quads[:, 3]
    return out


@functools.lru_cache(maxsize=16)
def _small_count_table(n: int) -> np.ndarray:
    """:func:`_entropy_table` of ``n < 256`` as 256 float64 entries (exact: integers below 2**53), for ``cv2.LUT``."""
    table = np.zeros(256, dtype=np.float64)
    table[: n + 1] = _entropy_table(n)
    table.flags.writeable = False
    return table


def _small_count_sums(counts: np.ndarray, n: int) -> np.ndarray:
    """``sum(T[counts])`` of every row of ``(cells, bins)`` uint8 counts of cells of ``n < 256`` pixels (int64).

    OpenCV looks the terms up and sums them in float64: every term and every
    partial sum is an integer below ``n * log2(n) * 2**32 < 2**43``, so each
    float64 addition is exact, whatever its order, and the sums equal the
    int64 ones. The rows go in chunks of fewer than ``LUT_CHUNK`` entries, which
    OpenCV looks up in the calling thread, into a buffer that the thread keeps
    (:func:`_scratch`).

    Examples
    --------
    >>> counts = np.array([[2, 2, 0], [4, 0, 0]], np.uint8)
    >>> _small_count_sums(counts, 4).tolist() == [_entropy_table(4)[[2, 2, 0]].sum(), 0]
    True
    """
    import cv2

    table = _small_count_table(n)
    bins = counts.shape[-1]
    step = max(1, (LUT_CHUNK - 1) // bins)
    terms = _scratch("lut", min(step, counts.shape[0]) * bins, np.float64)
    sums = []
    for i in range(0, counts.shape[0], step):
        chunk = counts[i : i + step]
        looked_up = cv2.LUT(chunk, table, dst=terms[: chunk.size].reshape(chunk.shape))
        sums.append(cv2.reduce(looked_up, 1, cv2.REDUCE_SUM, dtype=cv2.CV_64F))
    return (sums[0] if len(sums) == 1 else np.concatenate(sums)).astype(np.int64).ravel()


_SCRATCH = threading.local()


def _scratch(name: str, size: int, dtype) -> np.ndarray:
    """A 1-D buffer of at least ``size`` items that the calling thread keeps between calls (contents undefined).

    Large temporaries that are allocated and freed tile after tile can make
    the C allocator give their memory back to the system and take it again,
    a page fault per 4 kB each time: the lookups of :func:`_small_count_sums`
    (~2 MB a tile) did so in a fresh process, taking 5-10x the kernel's time
    (3,000 page faults a call on a 504x504 photo). A buffer kept per thread
    (at most ``LUT_CHUNK`` float64 values, 2 MB) avoids it.

    Examples
    --------
    >>> a = _scratch("doc", 10, np.float64)
    >>> b = _scratch("doc", 5, np.float64)
    >>> a.size, b.size, np.shares_memory(a, b)
    (10, 5, True)
    """
    buf = getattr(_SCRATCH, name, None)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = np.empty(max(size, 1), dtype=dtype)
        setattr(_SCRATCH, name, buf)
    return buf[:size]


def _nested_to_grid(fixed: np.ndarray, levels: int) -> np.ndarray:
    """``(R, Q, 4**levels)`` values in nested order (:func:`_nested_offsets`) to the ``(R*2**l, Q*2**l)`` grid.

    Examples
    --------
    >>> _nested_to_grid(np.arange(8).reshape(1, 2, 4), 1).tolist()
    [[0, 1, 4, 5], [2, 3, 6, 7]]
    """
    rows, cols = fixed.shape[0], fixed.shape[1]
    order = [0, *range(2, 2 + 2 * levels, 2), 1, *range(3, 3 + 2 * levels, 2)]
    return fixed.reshape((rows, cols) + (2, 2) * levels).transpose(order).reshape(rows << levels, cols << levels)


def _bits(fixed, n: int):
    """float32 entropy (bits) of fixed-point sums over cells of ``n`` pixels (NumPy or torch)."""
    scale = 2.0**-FIXED_POINT_BITS / n
    if isinstance(fixed, np.ndarray):
        return (fixed.astype(np.float64) * scale).astype(np.float32)
    import torch

    return (fixed.to(torch.float64) * scale).to(torch.float32)


def _finest_histograms(img, ps: int, bins: int):
    """(rows, cols, bins) int64 histograms of the finest grid: one bincount."""
    rows, cols = -(-int(img.shape[0]) // ps), -(-int(img.shape[1]) // ps)
    key = _bin_keys(img, ps, bins)
    if isinstance(key, np.ndarray):
        hist = np.bincount(key.ravel(), minlength=rows * cols * bins)
    else:
        import torch

        hist = torch.bincount(key.reshape(-1), minlength=rows * cols * bins)
    return hist.reshape(rows, cols, bins)


def _sum2x2(hist):
    """Sum a (rows, cols, bins) histogram grid over 2x2 blocks (zero-padded).

    Works on NumPy arrays and torch tensors alike.
    """
    rows, cols = hist.shape[0], hist.shape[1]
    pairs = hist[0 : rows - 1 : 2] + hist[1::2]
    if rows % 2:  # the last row has no partner: it is summed with zeros
        pairs = concat([pairs, hist[rows - 1 :]], axis=0)
    quads = pairs[:, 0 : cols - 1 : 2] + pairs[:, 1::2]
    if cols % 2:
        quads = concat([quads, pairs[:, cols - 1 :]], axis=1)
    return quads


def _runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted array."""
    flags = np.empty(sorted_keys.size, dtype=bool)
    flags[:1] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=flags[1:])
    return np.flatnonzero(flags)


def _sparse_maps(img: np.ndarray, scales: list[int], bins: int) -> list[np.ndarray]:
    """Entropy maps of a tile from sorted ``cell * bins + bin`` keys (NumPy).

    Only the non-empty (cell, bin) pairs are ever held, so memory and time do
    not grow with ``bins``; the counts, the table lookups and the integer
    sums are the dense kernel's, so the maps are bit-identical to it.
    """
    ps = scales[0]
    rows, cols = -(-img.shape[0] // ps), -(-img.shape[1] // ps)
    keys = _bin_keys(img, ps, bins).ravel()
    keys.sort()
    starts = _runs(keys)
    counts = np.diff(np.append(starts, keys.size))
    keys = keys[starts]
    out = []
    for i, size in enumerate(scales):
        if i > 0:  # the next scale's cell of every (cell, bin) pair; merge equal keys, summing their counts
            cell, b = np.divmod(keys, bins)
            r, c = np.divmod(cell, cols)
            rows, cols = -(-rows // 2), -(-cols // 2)
            keys = ((r // 2) * cols + c // 2) * bins + b
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
            starts = _runs(keys)
            counts = np.add.reduceat(counts, starts)
            keys = keys[starts]
        n = size * size
        values = np.take(_entropy_table(n), counts)
        cell = keys // bins
        first = _runs(cell)
        fixed = np.zeros(rows * cols, dtype=np.int64)
        fixed[cell[first]] = np.add.reduceat(values, first)
        out.append((fixed.astype(np.float64) * (2.0**-FIXED_POINT_BITS / n)).astype(np.float32).reshape(rows, cols))
    return out


@functools.lru_cache(maxsize=32)
def _entropy_table(n: int) -> np.ndarray:
    """``T[c] = c * (log2(n) - log2(c))`` for c in 0..n, in int64 fixed point (cached, read-only).

    The entropy of a cell of ``n`` pixels is ``sum(T[counts]) / n / 2**32``;
    a cell whose pixels all fall in one bin gets exactly 0.

    Examples
    --------
    >>> _entropy_table(4)[[0, 2, 4]].tolist()  # 2 * (2 - 1) bits = 2 * 2**32
    [0, 8589934592, 0]
    """
    c = np.arange(n + 1, dtype=np.float64)
    t = c * (np.log2(float(n)) - np.log2(np.maximum(c, 1.0)))
    table = np.rint(np.ldexp(t, FIXED_POINT_BITS)).astype(np.int64)
    table.flags.writeable = False
    return table


def _entropy_from_histograms(hist, n: int):
    """float32 entropy (bits) of every cell of a (rows, cols, bins) histogram.

    Counts of overhanging cells are below ``n``; their values become PAD anyway.
    """
    table = _entropy_table(n)
    if isinstance(hist, np.ndarray):
        return _bits(np.take(table, hist).sum(axis=-1), n)
    import torch

    return _bits(torch.from_numpy(table.copy()).to(hist.device)[hist].sum(dim=-1), n)


def pad_mask(shape: tuple[int, int], ps: int, height: int, width: int) -> np.ndarray:
    """Cells of a ``ceil(H/ps) x ceil(W/ps)`` grid that overhang the image.

    The whole last row is PAD when the grid overhangs at the bottom, the
    whole last column when it overhangs on the right.

    Examples
    --------
    >>> pad_mask((2, 3), 56, 84, 168).astype(int).tolist()
    [[0, 0, 0], [1, 1, 1]]
    """
    rows, cols = shape
    mask = np.zeros((rows, cols), dtype=bool)
    if rows * ps > height:
        mask[-1, :] = True
    if cols * ps > width:
        mask[:, -1] = True
    return mask


def _bands(height: int, width: int, coarsest: int, threads: int, per_band: int = BAND_PIXELS) -> list[tuple[int, int]]:
    """Split rows into bands at multiples of the coarsest cell.

    At least ``threads`` bands (when the image is tall enough) and at most
    about ``per_band`` pixels per band (but never less than one row of
    coarsest cells).

    Examples
    --------
    >>> _bands(1008, 1008, 56, 2)
    [(0, 504), (504, 1008)]
    >>> _bands(100, 100, 56, 4)
    [(0, 56), (56, 100)]
    >>> len(_bands(4000, 6000, 56, 1))
    23
    """
    cells = -(-height // coarsest)
    wanted = max(threads, -(-height * width // per_band))
    n = max(1, min(wanted, cells))
    cuts = [round(cells * i / n) * coarsest for i in range(n + 1)]
    cuts[-1] = height
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _column_cuts(rows: int, width: int, coarsest: int, per_band: int) -> list[tuple[int, int]]:
    """Split a band of ``rows`` rows into column tiles of about ``per_band`` pixels.

    Cuts fall at multiples of the coarsest cell, so very wide images (or a
    band of tall coarsest cells) stay bounded too.

    Examples
    --------
    >>> _column_cuts(56, 1008, 56, 1 << 20)
    [(0, 1008)]
    >>> _column_cuts(8, 1000, 8, 4096)
    [(0, 496), (496, 1000)]
    """
    cells = -(-width // coarsest)
    n = max(1, min(-(-rows * width // per_band), cells))
    cuts = [round(cells * i / n) * coarsest for i in range(n + 1)]
    cuts[-1] = width
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


_POOL = None


def _pool(workers: int):
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aptviz-entropy")
    return _POOL


def _tiles(height: int, width: int, coarsest: int, threads: int, per_band: int) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, left, right)`` of every tile, row-major; cuts at multiples of the coarsest cell."""
    return [
        (a, b, c, d)
        for a, b in _bands(height, width, coarsest, threads, per_band)
        for c, d in _column_cuts(b - a, width, coarsest, per_band)
    ]


def _run_tiles(one_tile, img, tiles: list, threads: int) -> list:
    """``one_tile`` of every tile, in parallel threads when there are several (NumPy releases the GIL)."""
    if len(tiles) == 1:
        return [one_tile(img)]
    if threads == 1:
        return [one_tile(img[a:b, c:d]) for a, b, c, d in tiles]
    return list(_pool(threads).map(lambda t: one_tile(img[t[0] : t[1], t[2] : t[3]]), tiles))


def _assemble(tiles: list, per_tile: list, i: int, width: int):
    """Item ``i`` of every tile's result joined back into one array (tiles in row-major order)."""
    rows, row = [], []
    for tile, parts in zip(tiles, per_tile):
        row.append(parts[i])
        if tile[3] == width:
            rows.append(row[0] if len(row) == 1 else concat(row, axis=1))
            row = []
    return rows[0] if len(rows) == 1 else concat(rows, axis=0)


def compute_maps(
    image, patch_size: int = 14, num_scales: int = 3, bins: int = 512, device="cpu", backend: str | None = None
) -> dict:
    """Entropy maps on the native backend: NumPy arrays on the CPU, torch tensors otherwise.

    Same parameters and values as :func:`entropy_maps`; the pipeline uses
    this so that a CPU run never imports torch. ``backend="torch"`` forces
    the torch code path (what CUDA runs) on any device; both backends give
    bit-identical maps.

    Examples
    --------
    >>> maps = compute_maps(np.zeros((56, 84, 3), np.uint8))
    >>> type(maps[14]).__name__, maps[14].dtype
    ('ndarray', dtype('float32'))
    """
    if patch_size < 1 or num_scales < 1 or bins < 1:
        raise ValueError("patch_size, num_scales and bins must all be >= 1")
    numpy = (backend or ("numpy" if str(device) == "cpu" else "torch")) == "numpy"
    img = as_image_array(image) if numpy else as_image_tensor(image, device)
    height, width = int(img.shape[0]), int(img.shape[1])
    scales = scales_for(patch_size, num_scales)
    sparse = numpy and is_sparse(patch_size, bins)
    dense = numpy and not sparse  # fixed-point sums in nested order, made into maps once for the whole image

    def one_tile(tile) -> list:
        """Maps (sums when dense) of a tile whose sides, but at the image edge, are multiples of the coarsest cell."""
        if sparse:
            return _sparse_maps(tile, scales, bins)
        if dense:
            return _dense_tile_sums(tile, scales, bins)
        hist = _finest_histograms(tile, patch_size, bins)
        out = []
        for i, ps in enumerate(scales):
            if i > 0:
                hist = _sum2x2(hist)
            out.append(_entropy_from_histograms(hist, ps * ps))
        return out

    threads = get_num_threads() if numpy else 1
    per_band = band_pixels(patch_size, bins, sparse)
    if dense:
        per_band = min(per_band, CACHE_TILE_PIXELS)
    tiles = _tiles(height, width, scales[-1], threads, per_band)
    per_tile = _run_tiles(one_tile, img, tiles, threads)

    maps: dict = {}
    for i, ps in enumerate(scales):
        grid = (-(-height // ps), -(-width // ps))
        ent = _assemble(tiles, per_tile, i, width)
        if dense:
            ent = _bits(_nested_to_grid(ent, num_scales - 1 - i)[: grid[0], : grid[1]], ps * ps)
        else:
            ent = ent[: grid[0], : grid[1]]
        pad = pad_mask(grid, ps, height, width)
        if numpy:
            ent = np.ascontiguousarray(ent)
            ent[pad] = PAD
        else:
            import torch

            ent = ent.contiguous()
            ent[torch.from_numpy(pad).to(ent.device)] = PAD
        maps[ps] = ent
    return maps


def entropy_maps(
    image: np.ndarray | Image.Image | torch.Tensor,
    patch_size: int = 14,
    num_scales: int = 3,
    bins: int = 512,
    device: str | torch.device = "cpu",
) -> dict[int, torch.Tensor]:
    """Shannon entropy (bits) of every patch, at every scale, as torch tensors.

    **The image is used as given: it is not resized.** For the Qwen2-VL view
    (what the command line and :func:`aptviz.analyze` compute), pass
    ``aptviz.resize_image(aptviz.load_image(path))``. Needs ``aptviz[torch]``;
    :func:`compute_maps` is the torch-free variant (NumPy arrays).

    Parameters
    ----------
    image : ndarray, PIL.Image.Image or torch.Tensor
        HxWx3 uint8 RGB image, normally the smart-resized one.
    patch_size : int
        Finest patch size; scale ``i`` uses ``patch_size * 2**i``.
    num_scales : int
        Number of scales (>= 1).
    bins : int
        Histogram bins over the gray range [0, 256).
    device : str or torch.device
        Where to compute ("cpu" or "cuda"); results are identical.

    Returns
    -------
    dict[int, torch.Tensor]
        ``{ps: float32 tensor of shape (ceil(H/ps), ceil(W/ps))}`` on
        ``device``; cells that overhang the image hold :data:`PAD`.

    Examples
    --------
    >>> import numpy as np
    >>> maps = entropy_maps(np.zeros((56, 84, 3), np.uint8))
    >>> {ps: tuple(m.shape) for ps, m in maps.items()}
    {14: (4, 6), 28: (2, 3), 56: (1, 2)}
    >>> float(maps[14].max()), float(maps[56][0, 1])
    (0.0, 1000000.0)
    """
    torch = require_torch("aptviz.entropy_maps (it returns torch tensors; compute_maps returns NumPy arrays)")
    dev = torch.device(device)
    maps = compute_maps(image, patch_size, num_scales, bins, "cpu" if dev.type == "cpu" else dev)
    return {ps: torch.from_numpy(m) if isinstance(m, np.ndarray) else m for ps, m in maps.items()}


@functools.lru_cache(maxsize=32)
def _time_table(n: int, frames: int) -> np.ndarray:
    """Fixed-point terms of the entropy of a cell of ``frames`` x ``n`` pixels, per frame-normalised count.

    ``T[c] = (c / frames) * (log2(n) - log2(c / frames))`` in units of 2**-32
    bits, so that the cell's entropy is ``sum(T[counts]) / n / 2**32`` as for
    one frame. For a power-of-two ``frames``, ``c / frames`` is exact: a cell
    whose frames are all equal (counts ``frames * c``) sums exactly the
    one-frame table's terms ``T1[c]``, and its entropy is bit-identical to the
    single frame's.

    Examples
    --------
    >>> bool((_time_table(4, 2)[::2] == _entropy_table(4)).all()), _time_table(4, 1) is not None
    (True, True)
    """
    c = np.arange(frames * n + 1, dtype=np.float64)
    w = c / frames
    t = w * (np.log2(float(n)) - np.log2(np.where(c > 0, w, 1.0)))
    table = np.rint(np.ldexp(t, FIXED_POINT_BITS)).astype(np.int64)
    table.flags.writeable = False
    return table


def entropy_maps_over_time(frames, patch_size: int = 14, num_scales: int = 3, bins: int = 512) -> dict:
    """Entropy maps over a time axis (NumPy): a cell's histogram holds the gray values of every frame.

    A video tubelet's cell of ``ps`` px covers ``T * ps**2`` pixels (``T``
    frames); its entropy is that of their joint gray histogram. One frame
    gives :func:`compute_maps` exactly; ``T`` equal frames (``T`` a power of
    two) give it bit for bit too (see :func:`_time_table`).

    Parameters
    ----------
    frames : ndarray
        ``(T, H, W, 3)`` uint8, ``T >= 1`` (an ``(H, W, 3)`` image is one frame).
    patch_size, num_scales, bins : int
        As for :func:`compute_maps`.

    Returns
    -------
    dict[int, ndarray]
        ``{ps: float32 map}``, PAD where the grid overhangs, as for one image.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)
    >>> two = entropy_maps_over_time(np.stack([img, img]))
    >>> all(np.array_equal(two[ps], compute_maps(img)[ps]) for ps in (14, 28, 56))
    True
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] < 1:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {tuple(frames.shape)}")
    if frames.shape[0] == 1:
        return compute_maps(frames[0], patch_size, num_scales, bins)
    if patch_size < 1 or num_scales < 1 or bins < 1:
        raise ValueError("patch_size, num_scales and bins must all be >= 1")
    t = int(frames.shape[0])
    height, width = int(frames.shape[1]), int(frames.shape[2])
    hist = _finest_histograms(as_image_array(frames[0]), patch_size, bins)
    for frame in frames[1:]:  # T histograms (T = 2 for a tubelet), each one bincount over the pixels
        hist += _finest_histograms(as_image_array(frame), patch_size, bins)
    maps: dict = {}
    for i, ps in enumerate(scales_for(patch_size, num_scales)):
        if i > 0:
            hist = _sum2x2(hist)
        ent = np.ascontiguousarray(_bits(np.take(_time_table(ps * ps, t), hist).sum(axis=-1), ps * ps))
        ent[pad_mask(ent.shape, ps, height, width)] = PAD
        maps[ps] = ent
    return maps
