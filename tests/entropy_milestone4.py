"""The milestone-4 NumPy entropy kernel of aptviz (issue 24, before item 8's speed-up), frozen for comparison.

Tests check that the current ``aptviz.compute.entropy.compute_maps`` gives bit-identical
maps; ``benchmarks/bench_entropy.py`` times it as the "milestone 4" kernel in the same run.
Copied from aptviz/compute/entropy.py as it was, torch parts removed; do not edit.
"""

from __future__ import annotations

import functools

import numpy as np

PAD = 1e6
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
FIXED_POINT_BITS = 32
BAND_PIXELS = 1 << 20
BAND_HIST_ENTRIES = 1 << 22
CACHE_TILE_PIXELS = 1 << 16
SPARSE_RATIO = 16


def grayscale(image: np.ndarray) -> np.ndarray:
    """Luma in float32: ``0.2989*R + 0.5870*G + 0.1140*B`` (left to right)."""
    r, g, b = (np.float32(w) for w in GRAY_WEIGHTS)
    gray = image[..., 0] * r
    gray += image[..., 1] * g
    gray += image[..., 2] * b
    return gray


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


def scales_for(patch_size: int, num_scales: int) -> list[int]:
    """Patch sizes of every scale, finest first.

    Examples
    --------
    >>> scales_for(14, 3)
    [14, 28, 56]
    """
    return [patch_size * 2**i for i in range(num_scales)]


def _bin_keys(img: np.ndarray, ps: int, bins: int) -> np.ndarray:
    """``cell * bins + bin`` for every pixel, where ``bin = min(floor(gray * bins / 256), bins - 1)`` (NumPy)."""
    height, width = int(img.shape[0]), int(img.shape[1])
    cols = -(-width // ps)
    gray = grayscale(img)
    if bins & (bins - 1) == 0:  # power of two: one exact float32 multiply
        gray *= np.float32(bins / 256.0)
        scaled = gray
    else:
        scaled = gray.astype(np.float64)
        scaled *= bins / 256.0  # bins / 256 is exact, so is the product
    key = scaled.astype(np.intp)
    np.minimum(key, bins - 1, out=key)
    key += ((np.arange(height) // ps) * (cols * bins))[:, None]
    key += ((np.arange(width) // ps) * bins)[None, :]
    return key


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

    The bin needs no clamp here: the gray value is below 255 (the weights sum
    to less than 1), so ``gray * bins / 256`` is below ``bins - 1`` already.
    """
    levels = len(scales) - 1
    height, width = img.shape[0], img.shape[1]
    rows, cols = -(-height // scales[-1]), -(-width // scales[-1])
    weights, factor = _tile_weights(bins)
    gray = img[..., 0] * weights[0]
    gray += img[..., 1] * weights[1]
    gray += img[..., 2] * weights[2]
    if factor is not None:  # exact in float64 (see _bin_keys)
        gray = np.multiply(gray, factor)
    offsets = _nested_offsets(height, width, scales[0], levels, bins)
    key = gray.astype(offsets.dtype)
    key += offsets
    hist = np.bincount(key.ravel(), minlength=rows * cols * (bins << 2 * levels))
    out = []
    for m, size in enumerate(scales):
        if m:
            hist = hist.reshape(-1, 4, bins).sum(axis=1)
        fixed = np.take(_entropy_table(size * size), hist, mode="clip")  # counts never exceed n
        out.append(fixed.reshape(rows, cols, -1, bins).sum(axis=-1))
    return out


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


def _tiles(height: int, width: int, coarsest: int, threads: int, per_band: int) -> list[tuple[int, int, int, int]]:
    """``(top, bottom, left, right)`` of every tile, row-major; cuts at multiples of the coarsest cell."""
    return [
        (a, b, c, d)
        for a, b in _bands(height, width, coarsest, threads, per_band)
        for c, d in _column_cuts(b - a, width, coarsest, per_band)
    ]


_POOL = None


def _pool(workers: int):
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="entropy-milestone4")
    return _POOL


def _bits(fixed: np.ndarray, n: int) -> np.ndarray:
    return (fixed.astype(np.float64) * (2.0**-FIXED_POINT_BITS / n)).astype(np.float32)


def compute_maps(
    image: np.ndarray, patch_size: int = 14, num_scales: int = 3, bins: int = 512, threads: int = 1
) -> dict:
    """The milestone-4 ``compute_maps`` on the CPU (NumPy arrays), ``threads`` tiles at a time."""
    img = np.asarray(image)
    height, width = int(img.shape[0]), int(img.shape[1])
    scales = scales_for(patch_size, num_scales)
    sparse = is_sparse(patch_size, bins)

    def one_tile(tile) -> list:
        return _sparse_maps(tile, scales, bins) if sparse else _dense_tile_sums(tile, scales, bins)

    per_band = band_pixels(patch_size, bins, sparse)
    if not sparse:
        per_band = min(per_band, CACHE_TILE_PIXELS)
    tiles = _tiles(height, width, scales[-1], threads, per_band)
    if len(tiles) == 1:
        per_tile = [one_tile(img)]
    elif threads == 1:
        per_tile = [one_tile(img[a:b, c:d]) for a, b, c, d in tiles]
    else:
        per_tile = list(_pool(threads).map(lambda t: one_tile(img[t[0] : t[1], t[2] : t[3]]), tiles))

    def assemble(i: int):
        rows, row = [], []
        for tile, parts in zip(tiles, per_tile):
            row.append(parts[i])
            if tile[3] == width:
                rows.append(row[0] if len(row) == 1 else np.concatenate(row, axis=1))
                row = []
        return rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0)

    maps: dict = {}
    for i, ps in enumerate(scales):
        grid = (-(-height // ps), -(-width // ps))
        ent = assemble(i)
        if sparse:
            ent = ent[: grid[0], : grid[1]]
        else:
            ent = _bits(_nested_to_grid(ent, num_scales - 1 - i)[: grid[0], : grid[1]], ps * ps)
        ent = np.ascontiguousarray(ent)
        ent[pad_mask(grid, ps, height, width)] = PAD
        maps[ps] = ent
    return maps
