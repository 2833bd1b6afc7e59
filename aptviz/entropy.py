"""Stage 3: multi-scale entropy maps (SPEC §1.3).

One pass over the pixels builds the finest-scale histograms (a single
``bincount`` over ``cell * bins + bin``); every coarser scale's histograms are
2x2 sums of the next finer ones. The entropy of a cell of ``n`` pixels is
``log2(n) - sum(c * log2(c)) / n``, with ``c * log2(c)`` read from a lookup
table, computed in float64 and stored as float32.

Memory is linear in pixels: nothing of size cells x pixels-per-cell x bins is
ever built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["GRAY_WEIGHTS", "PAD", "entropy_maps", "grayscale", "pad_mask", "scales_for"]

PAD = 1e6
"""Value of a cell whose grid overhangs the image (never kept, never counted)."""

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def scales_for(patch_size: int, num_scales: int) -> list[int]:
    """Patch sizes of every scale, finest first.

    Examples
    --------
    >>> scales_for(14, 3)
    [14, 28, 56]
    """
    return [patch_size * 2**i for i in range(num_scales)]


def _as_array(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        arr = image.detach().cpu().numpy()
    else:
        arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError("image has no pixels")
    return arr


def _as_tensor(image, device: str | torch.device) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        t = image
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError(f"expected a uint8 image, got {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim != 3 or t.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError("image has no pixels")
    return t.to(device)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma in float32: ``0.2989*R + 0.5870*G + 0.1140*B`` (left to right).

    Parameters
    ----------
    image : torch.Tensor
        HxWx3 uint8 tensor.

    Returns
    -------
    torch.Tensor
        HxW float32 tensor.
    """
    r, g, b = GRAY_WEIGHTS
    gray = image[..., 0].to(torch.float32) * r
    gray += image[..., 1].to(torch.float32) * g
    gray += image[..., 2].to(torch.float32) * b
    return gray


FIXED_POINT_BITS = 32
"""Entropy sums are accumulated as integers in units of 2**-32 bits, so the
result is exact to ~1e-9 and identical whatever the summation order (CPU or
GPU)."""


def _entropy_table(n: int) -> np.ndarray:
    """``T[c] = c * (log2(n) - log2(c))`` for c in 0..n, in int64 fixed point.

    The entropy of a cell of ``n`` pixels is ``sum(T[counts]) / n / 2**32``;
    a cell whose pixels all fall in one bin gets exactly 0.
    """
    c = np.arange(n + 1, dtype=np.float64)
    t = c * (np.log2(float(n)) - np.log2(np.maximum(c, 1.0)))
    return np.rint(np.ldexp(t, FIXED_POINT_BITS)).astype(np.int64)


def _finest_histograms_numpy(img: np.ndarray, ps: int, bins: int) -> np.ndarray:
    """(rows, cols, bins) int64 histograms of the finest grid, one bincount."""
    height, width = img.shape[:2]
    rows, cols = -(-height // ps), -(-width // ps)
    r, g, b = (np.float32(w) for w in GRAY_WEIGHTS)
    gray = img[..., 0] * r
    gray += img[..., 1] * g
    gray += img[..., 2] * b
    # floor(gray * bins / 256); gray <= 254.975 so the index never reaches bins
    if bins & (bins - 1) == 0:  # power of two: one exact multiply
        gray *= np.float32(bins / 256.0)
    else:
        gray *= np.float32(bins)
        gray /= np.float32(256.0)
    key = gray.astype(np.intp)
    del gray
    key += ((np.arange(height) // ps) * (cols * bins))[:, None]
    key += ((np.arange(width) // ps) * bins)[None, :]
    hist = np.bincount(key.ravel(), minlength=rows * cols * bins)
    return hist.reshape(rows, cols, bins)


def _finest_histograms_torch(img: torch.Tensor, ps: int, bins: int) -> torch.Tensor:
    """Same as the NumPy version, with torch ops (for CUDA)."""
    height, width = int(img.shape[0]), int(img.shape[1])
    rows, cols = -(-height // ps), -(-width // ps)
    dev = img.device
    gray = grayscale(img)
    if bins & (bins - 1) == 0:
        gray *= bins / 256.0
    else:
        gray *= float(bins)
        gray /= 256.0
    key = gray.to(torch.int64)
    del gray
    key += ((torch.arange(height, device=dev) // ps) * (cols * bins))[:, None]
    key += ((torch.arange(width, device=dev) // ps) * bins)[None, :]
    hist = torch.bincount(key.view(-1), minlength=rows * cols * bins)
    return hist.view(rows, cols, bins)


def _sum2x2(hist):
    """Sum a (rows, cols, bins) histogram grid over 2x2 blocks (zero-padded).

    Works on NumPy arrays and torch tensors alike.
    """
    rows, cols = hist.shape[0], hist.shape[1]
    pairs = hist[0 : rows - 1 : 2] + hist[1::2]
    if rows % 2:  # the last row has no partner: it is summed with zeros
        pairs = _concat(pairs, hist[rows - 1 :], axis=0)
    quads = pairs[:, 0 : cols - 1 : 2] + pairs[:, 1::2]
    if cols % 2:
        quads = _concat(quads, pairs[:, cols - 1 :], axis=1)
    return quads


def _concat(a, b, axis: int):
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b], axis=axis)
    return torch.cat([a, b], dim=axis)


def pad_mask(shape: tuple[int, int], ps: int, height: int, width: int, device=None) -> torch.Tensor:
    """Cells of a ``ceil(H/ps) x ceil(W/ps)`` grid that overhang the image.

    The whole last row is PAD when the grid overhangs at the bottom, the
    whole last column when it overhangs on the right.
    """
    rows, cols = shape
    mask = torch.zeros((rows, cols), dtype=torch.bool, device=device)
    if rows * ps > height:
        mask[-1, :] = True
    if cols * ps > width:
        mask[:, -1] = True
    return mask


def entropy_maps(
    image: "np.ndarray | Image.Image | torch.Tensor",
    patch_size: int = 14,
    num_scales: int = 3,
    bins: int = 512,
    device: str | torch.device = "cpu",
) -> dict[int, torch.Tensor]:
    """Shannon entropy (bits) of every patch, at every scale.

    Parameters
    ----------
    image : ndarray, PIL.Image.Image or torch.Tensor
        HxWx3 uint8 RGB image (usually the smart-resized one).
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
    dev = torch.device(device)
    return _entropy_maps(image, patch_size, num_scales, bins, dev, "numpy" if dev.type == "cpu" else "torch")


def _entropy_maps(image, patch_size: int, num_scales: int, bins: int, dev: torch.device, backend: str):
    """:func:`entropy_maps` with an explicit backend: NumPy (CPU) or torch (any device).

    Both give bit-identical maps; the tests run the torch backend on the CPU
    to cover the code path CUDA uses.
    """
    if patch_size < 1 or num_scales < 1 or bins < 1:
        raise ValueError("patch_size, num_scales and bins must all be >= 1")
    img = _as_array(image) if backend == "numpy" else _as_tensor(image, dev)
    height, width = int(img.shape[0]), int(img.shape[1])
    scales = scales_for(patch_size, num_scales)

    def one_band(band) -> list[torch.Tensor]:
        """Maps of a horizontal band whose height is a multiple of the coarsest cell."""
        if isinstance(band, np.ndarray):
            hist = _finest_histograms_numpy(band, patch_size, bins)
        else:
            hist = _finest_histograms_torch(band, patch_size, bins)
        out = []
        for i, ps in enumerate(scales):
            if i > 0:
                hist = _sum2x2(hist)
            out.append(_entropy_from_histograms(hist, ps * ps, dev))
        return out

    threads = torch.get_num_threads() if backend == "numpy" else 1
    bands = _bands(height, width, scales[-1], threads)
    if len(bands) == 1:
        per_band = [one_band(img)]
    elif threads == 1:
        per_band = [one_band(img[a:b]) for a, b in bands]
    else:  # NumPy releases the GIL: bands run in parallel threads
        per_band = list(_pool(threads).map(lambda b: one_band(img[b[0] : b[1]]), bands))

    maps: dict[int, torch.Tensor] = {}
    for i, ps in enumerate(scales):
        grid = (-(-height // ps), -(-width // ps))
        ent = torch.cat([band[i] for band in per_band], dim=0) if len(per_band) > 1 else per_band[0][i]
        ent = ent[: grid[0], : grid[1]].contiguous()
        ent[pad_mask(grid, ps, height, width, dev)] = PAD
        maps[ps] = ent
    return maps


BAND_PIXELS = 1 << 20
"""Rows are processed in bands of about this many pixels (at least one band
per thread), so temporary memory stays bounded (~40 MB a band) whatever the
image size."""


def _bands(height: int, width: int, coarsest: int, threads: int) -> list[tuple[int, int]]:
    """Split rows into bands at multiples of the coarsest cell.

    At least ``threads`` bands (when the image is tall enough) and at most
    about :data:`BAND_PIXELS` pixels per band.

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
    wanted = max(threads, -(-height * width // BAND_PIXELS))
    n = max(1, min(wanted, cells))
    cuts = [round(cells * i / n) * coarsest for i in range(n + 1)]
    cuts[-1] = height
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


_POOL = None


def _pool(workers: int):
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aptviz-entropy")
    return _POOL


def _entropy_from_histograms(hist, n: int, dev: torch.device) -> torch.Tensor:
    """float32 entropy (bits) of every cell of a (rows, cols, bins) histogram."""
    table = _entropy_table(n)
    if isinstance(hist, np.ndarray):
        # counts of overhanging cells are < n; their values become PAD anyway
        fixed = np.take(table, hist).sum(axis=-1)
        ent = torch.from_numpy(fixed).to(torch.float64)
    else:
        fixed = torch.from_numpy(table).to(dev)[hist].sum(dim=-1)
        ent = fixed.to(torch.float64)
    return (ent * 2.0**-FIXED_POINT_BITS / n).to(torch.float32)
