"""Peak memory of a run, estimated from the options alone before any work (docs/pipeline.md, trust).

A worker holds one image at a time. Its peak is the sum of

* a fixed part: the interpreter with NumPy, Pillow and OpenCV;
* the decode of the largest file it may accept (the decompression-bomb limit,
  :func:`aptviz.compute.loading.decode_limit`): Pillow's RGB image, its converted and
  re-encoded copies -- about :data:`DECODE_BYTES_PER_PIXEL` bytes a pixel;
* the resized image and everything drawn at its size (heatmaps, overlays,
  JPEG/PNG buffers) -- about :data:`RESIZED_BYTES_PER_PIXEL` bytes a pixel of
  the largest size ``smart_resize`` can give for these options;
* the entropy histograms of the tiles computed at once (cells x bins
  integers, bounded per tile by :func:`aptviz.compute.entropy.band_pixels`), and the
  per-cell arrays of the maps and selections.

The coefficients were measured (``benchmarks/bench_memory.py`` prints estimate
against measured peak) and rounded up. :func:`plan` checks the total for all
workers against ``--max-memory``: when the workers chosen by default do not
fit, fewer are used; when the decode of Pillow's largest file does not fit,
the decode limit is lowered (such files then fail alone, with a clear line);
when even one worker with a decode of the largest resized size does not fit,
the options are a usage error naming the estimate.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from aptviz.compute.measures import DEFAULT_MEASURE, MEASURES
from aptviz.compute.params import Params
from aptviz.errors import ParameterError

__all__ = [
    "DECODE_BYTES_PER_PIXEL",
    "RESIZED_BYTES_PER_PIXEL",
    "MemoryPlan",
    "calibrate_bytes",
    "default_max_memory",
    "format_bytes",
    "parse_size",
    "plan",
    "resized_bound",
    "worker_bytes",
]

BASE_BYTES = 100 << 20
"""A process with NumPy, Pillow and OpenCV imported, plus allocator slack."""

DECODE_BYTES_PER_PIXEL = 14
"""Decoding a file: Pillow's 4-byte RGB(A) image, its EXIF-rotated and RGB
copies, and the array and buffer of the re-encoded original_image.jpg."""

RESIZED_BYTES_PER_PIXEL = 12
"""The resized image (Pillow and NumPy), gray and bin keys of a tile, one
heatmap or overlay at a time with its encoded bytes."""

MEASURE_BYTES_PER_PIXEL = {spec.name: spec.bytes_per_pixel for spec in MEASURES}
"""Extra bytes per resized pixel of each importance measure (``MeasureSpec.bytes_per_pixel``:
float32 gray or RGB, the filtered or resampled copies, the squared error; entropy's tiles are counted apart)."""

EXPORT_TOKENS_BYTES_PER_PIXEL = 80
"""``--export-tokens``: the normalized float32 image and one selection's
rows (at most one row of ``3 * 2 * 14 * 14`` values per 196 pixels: 24 bytes
a pixel) with their gathered crops, and NumPy's write buffer (up to one more
copy of the rows, 16 MiB at most); tokens.npz is written one array at a
time (measured: 56-71 bytes a resized pixel)."""

CELL_BYTES = 96
"""Per finest cell: the maps of every scale, their copies while assembling,
and the float64 scores, sort keys and masks of a selection."""

MIN_DECODE_PIXELS = 12_000_000
"""A run must at least be able to decode a 12-megapixel photo (or its largest
resized size, if larger); below that the options are refused."""


def parse_size(text: str | int) -> int:
    """Bytes from ``4G``, ``512M``, ``1.5GB``, ``800k`` or a plain number of bytes.

    Examples
    --------
    >>> parse_size("4G"), parse_size("512M"), parse_size("1.5GB"), parse_size(1024)
    (4294967296, 536870912, 1610612736, 1024)
    >>> parse_size("lots")
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: --max-memory: expected a size such as 4G or 512M, got 'lots'
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
        if not match:
            raise ParameterError(f"--max-memory: expected a size such as 4G or 512M, got {text!r}")
        value = float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2).lower() or "_")
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(f"--max-memory must be positive, got {text!r}")
    return int(value)


def format_bytes(n: float) -> str:
    """``1.5 GB``-style text (binary units).

    Examples
    --------
    >>> format_bytes(1610612736), format_bytes(200 << 20)
    ('1.50 GB', '200 MB')
    """
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GB"
    return f"{n / (1 << 20):.0f} MB"


def default_max_memory() -> int:
    """Half of the machine's physical memory (the ``--max-memory`` default)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 8 << 30
    return max(1, total // 2)


def resized_bound(params: Params) -> int:
    """The most pixels ``smart_resize`` can give for these options (any input size, aspect < 200).

    Examples
    --------
    >>> resized_bound(Params())
    1003520
    """
    f = params.factor
    # fitted into max_pixels: at most max_pixels, or one side clamped to the factor
    down = max(params.max_pixels, int(f * math.sqrt(200 * params.max_pixels)) + f * f)
    # scaled up to min_pixels: each side rounded up by less than one factor
    up = params.min_pixels + int(f * math.sqrt(params.min_pixels) * (math.sqrt(200) + 1)) + f * f
    return max(down, up)


def _tile_bytes(params: Params, resized: int) -> int:
    """Histograms and pixel arrays of one entropy tile (see aptviz.compute.entropy)."""
    from aptviz.compute.entropy import band_pixels, is_sparse

    ps = params.patch_size
    coarsest = ps * 2 ** (params.num_scales - 1)
    padded = resized + 2 * coarsest * math.isqrt(resized) + coarsest**2
    if is_sparse(ps, params.bins):  # sorted keys, their runs, counts and the next scale's keys: ~64 bytes a pixel
        return int(min(padded, band_pixels(ps, params.bins, True) + coarsest**2) * 64)
    tile_px = min(padded, band_pixels(ps, params.bins) + coarsest**2)
    tile_px = max(tile_px, min(resized, coarsest * coarsest))  # a tile is at least one coarsest cell
    cells = tile_px / (ps * ps) + 2 * math.isqrt(max(tile_px, 1)) / ps + 1
    # int64 counts, their table lookups, the 2x2 sums of the next scales; gray, float64 product and keys per pixel
    return int(cells * params.bins * 8 * 2.2 + tile_px * 20)


def _measure_bytes(params: Params) -> int:
    measure = getattr(params, "importance", DEFAULT_MEASURE)
    return MEASURE_BYTES_PER_PIXEL.get(str(getattr(measure, "value", measure)), 0)


def worker_bytes(
    params: Params, decode_pixels: int, threads: int = 1, save_maps: bool = False, export_tokens: bool = False
) -> dict[str, int]:
    """The parts of one worker's peak memory, in bytes.

    Examples
    --------
    >>> parts = worker_bytes(Params(), 12_000_000)
    >>> sorted(parts), parts["decode"]
    (['base', 'cells', 'decode', 'entropy', 'resized'], 168000000)
    """
    resized = resized_bound(params)
    cells = resized / (params.patch_size**2) * 1.1 + 4 * math.isqrt(resized) / params.patch_size
    cell_bytes = CELL_BYTES + (24 if save_maps else 0)
    export = EXPORT_TOKENS_BYTES_PER_PIXEL if export_tokens else 0
    return {
        "base": BASE_BYTES,
        "decode": int(DECODE_BYTES_PER_PIXEL * decode_pixels),
        "resized": int((RESIZED_BYTES_PER_PIXEL + _measure_bytes(params) + export) * resized),
        "entropy": max(1, threads) * _tile_bytes(params, resized),
        "cells": int(cell_bytes * cells),
    }


@dataclass(frozen=True)
class MemoryPlan:
    """What a run may use: workers, the decode limit, and the estimate they give."""

    workers: int
    decode_pixels: int
    per_worker: int
    total: int
    limit: int
    parts: dict

    def describe(self) -> str:
        """One line: the estimate and its largest parts.

        Examples
        --------
        >>> plan(Params(), workers=1, max_memory=8 << 30, threads=1).describe().startswith("estimated peak")
        True
        """
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in sorted(self.parts.items(), key=lambda kv: -kv[1])[:3])
        who = f"{self.workers} worker(s)" if self.workers > 1 else "1 process"
        return f"estimated peak {format_bytes(self.total)} for {who} ({parts} per worker)"


def _total(per_worker: int, workers: int) -> int:
    """The main process waits on its workers with little besides the interpreter."""
    return per_worker if workers <= 1 else BASE_BYTES + workers * per_worker


def plan(
    params: Params,
    workers: int | None = None,
    max_memory: int | None = None,
    jobs: int | None = None,
    threads: int | None = None,
    save_maps: bool = False,
    workers_given: bool = False,
    export_tokens: bool = False,
) -> MemoryPlan:
    """Workers and decode limit that keep the estimated peak within ``max_memory``.

    Parameters
    ----------
    params : Params
        Pipeline parameters.
    workers : int, optional
        Worker processes wanted (default: CPU cores).
    max_memory : int, optional
        Bytes allowed (default: :func:`default_max_memory`).
    jobs : int, optional
        Images to compute (no more workers than images).
    threads : int, optional
        Entropy threads of a process that runs alone (default: CPU cores).
    save_maps, export_tokens : bool
        Whether maps.npz, tokens.npz are written.
    workers_given : bool
        The user chose the number of workers: refuse rather than use fewer.

    Returns
    -------
    MemoryPlan
        Raises ParameterError naming the estimate when even the smallest plan exceeds ``max_memory``.

    Examples
    --------
    >>> p = plan(Params(), workers=2, max_memory=16 << 30, jobs=10)
    >>> p.workers, p.decode_pixels
    (2, 178956970)
    >>> huge = Params(min_pixels=400_000_000, max_pixels=400_000_000)
    >>> plan(huge, workers=1, max_memory=4 << 30)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    aptviz.errors.ParameterError: these options need more memory than --max-memory 4.00 GB allows: ...
    """
    from aptviz.compute.entropy import get_num_threads
    from aptviz.compute.loading import decode_limit
    from aptviz.runs.pool import default_workers

    limit = default_max_memory() if max_memory is None else int(max_memory)
    wanted = default_workers() if workers is None else max(1, int(workers))
    if jobs is not None:
        wanted = max(1, min(wanted, jobs))
    full_decode = decode_limit(params.max_pixels)
    least_decode = min(full_decode, max(MIN_DECODE_PIXELS, resized_bound(params)))

    def parts_for(n: int, decode: int) -> dict[str, int]:
        alone_threads = get_num_threads() if threads is None else threads
        return worker_bytes(params, decode, alone_threads if n <= 1 else 1, save_maps, export_tokens)

    candidates = [wanted] if workers_given else list(range(wanted, 0, -1))
    for n in candidates:
        fixed = parts_for(n, 0)
        per_fixed = sum(fixed.values())
        room = (limit - (_total(per_fixed, n) if n > 1 else per_fixed)) // max(n, 1)
        decode = min(full_decode, room // DECODE_BYTES_PER_PIXEL) if room > 0 else 0
        if decode >= least_decode:
            parts = parts_for(n, decode)
            per_worker = sum(parts.values())
            return MemoryPlan(n, int(decode), per_worker, _total(per_worker, n), limit, parts)
    n = candidates[-1]
    parts = parts_for(n, least_decode)
    smallest = MemoryPlan(n, least_decode, sum(parts.values()), _total(sum(parts.values()), n), limit, parts)
    raise ParameterError(
        f"these options need more memory than --max-memory {format_bytes(limit)} allows: {smallest.describe()}"
        + ("" if n == 1 else "; use fewer --workers")
    )


CALIBRATE_IMAGE_BYTES = 8 << 10
"""``aptviz calibrate``, per image held by the main process: its path, the
dict and array headers of its maps, its step function's headers and its
retention (measured: about 3 KB)."""

CALIBRATE_CELL_BYTES = 96
"""``aptviz calibrate``, per finest cell of an image held until the end: its
maps at every scale (float32, 4/3 of the finest cells: 6 bytes), and the
switch-on and switch-off points of every cell (float64, 2 x 4/3 of the
finest cells) held four times at the peak -- per image, concatenated over the
images, joined for the sorted unique steps and their sort (85 bytes). The
curve itself is evaluated one step at a time (aptviz.compute.calibration),
so nothing grows with images x steps."""


def calibrate_bytes(params: Params, images: int, workers: int = 1, decode_pixels: int | None = None) -> dict[str, int]:
    """The parts of the peak memory of ``aptviz calibrate`` over ``images`` images, in bytes.

    The workers compute maps as a plain run does (:func:`worker_bytes`, with
    Pillow's largest decode); the main process holds every image's maps and
    step function, linear in the images.

    Parameters
    ----------
    params : Params
        Pipeline parameters.
    images : int
        Images to calibrate on.
    workers : int
        Worker processes (1: the main process computes the maps itself).
    decode_pixels : int, optional
        The largest decode (default: the largest file Pillow accepts).

    Returns
    -------
    dict
        ``base`` (the main process), ``workers`` (the map computation) and
        ``images`` (what is held per image); their sum is the estimate.

    Examples
    --------
    >>> parts = calibrate_bytes(Params(max_pixels=224 * 224), 10_000)
    >>> sorted(parts), format_bytes(parts["images"])
    (['base', 'images', 'workers'], '616 MB')
    """
    from aptviz.compute.loading import decode_limit

    resized = resized_bound(params)
    cells = resized / (params.patch_size**2) * 1.1 + 4 * math.isqrt(resized) / params.patch_size
    decode = decode_limit(params.max_pixels) if decode_pixels is None else decode_pixels
    per_worker = sum(worker_bytes(params, decode, threads=1).values())
    return {
        "base": BASE_BYTES,
        "workers": per_worker * max(1, workers) if workers > 1 else per_worker - BASE_BYTES,
        "images": int(images * (CALIBRATE_IMAGE_BYTES + CALIBRATE_CELL_BYTES * cells)),
    }
