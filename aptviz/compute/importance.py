"""Stage 3, any measure: per-cell importance maps (docs/pipeline.md §1.3 and §7).

Three measures score how much a cell loses when it is merged into a larger
patch, on the same resized image and the same grids:

* ``entropy``      -- Shannon entropy of the gray histogram, in bits
  (:mod:`aptviz.compute.entropy`, docs/pipeline.md §1.3);
* ``laplacian``    -- ``|∇²|`` of gray/255 with the 8-neighbour kernel
  ``[[1,1,1],[1,-8,1],[1,1,1]]`` and reflect-101 borders, aggregated per cell;
* ``upsample-mse`` -- squared error (mean over RGB channels, values /255)
  between the image and its bilinear down-then-up reconstruction at the
  scale's factor ``patch_size / ps``, aggregated per cell. The finest map is
  all zeros: nothing is lost at ``patch_size`` px.

The per-cell aggregate of the last two is ``mean``, ``max`` or ``std``
(``n - 1`` in the denominator). Cells whose grid overhangs the image hold
:data:`~aptviz.compute.entropy.PAD`, as for entropy.

The CPU backend is NumPy + OpenCV (``filter2D``/``resize``) and never
imports torch; ``device="cuda"`` (or ``backend="torch"``) runs the same
formulas in torch, as the APT research code does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aptviz.compute.entropy import PAD, compute_maps, entropy_maps_over_time, grayscale, scales_for
from aptviz.compute.params import (
    Aggregate,
    Measure,
    check_aggregate,
    parse_aggregate,
    parse_measure,
)
from aptviz.compute.xp import pool2x2
from aptviz.errors import ParameterError

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "LAPLACIAN_KERNEL",
    "Aggregate",
    "Measure",
    "compute_importance",
    "importance_maps",
    "importance_over_time",
    "informative_scale",
    "laplacian_response",
    "measure_unit",
    "reconstruction_error",
]


LAPLACIAN_KERNEL = np.array([[1, 1, 1], [1, -8, 1], [1, 1, 1]], dtype=np.float32)
"""The 8-neighbour Laplacian of the APT research code."""


def measure_unit(measure: str | Measure, aggregate: str | Aggregate = "mean") -> str:
    """Unit of a measure's values, for colorbars and tables.

    Examples
    --------
    >>> measure_unit("entropy"), measure_unit("laplacian"), measure_unit("upsample-mse")
    ('bits', 'mean |∇²|', 'MSE')
    >>> measure_unit("laplacian", "std"), measure_unit("upsample-mse", "max")
    ('std |∇²|', 'max squared error')
    """
    measure, aggregate = parse_measure(measure), parse_aggregate(aggregate)
    if measure is Measure.entropy:
        return "bits"
    if measure is Measure.laplacian:
        return f"{aggregate.value} |∇²|"
    return "MSE" if aggregate is Aggregate.mean else f"{aggregate.value} squared error"


def informative_scale(measure: str | Measure, scales) -> int:
    """The finest scale whose map carries information, for pictures that show one scale.

    That is the finest scale, except for upsample-mse, whose finest map is
    all zeros (nothing is lost at the finest size): then the next one.

    Examples
    --------
    >>> informative_scale("entropy", [14, 28, 56]), informative_scale("upsample-mse", [14, 28, 56])
    (14, 28)
    >>> informative_scale("upsample-mse", [14])
    14
    """
    scales = sorted(scales)
    if parse_measure(measure) is Measure.upsample_mse and len(scales) > 1:
        return scales[1]
    return scales[0]


def _check(measure, aggregate, patch_size: int, num_scales: int) -> tuple[Measure, Aggregate | None]:
    measure = parse_measure(measure)
    aggregate = check_aggregate(measure, aggregate)
    if patch_size < 1 or num_scales < 1:
        raise ParameterError("patch_size and num_scales must both be >= 1")
    return measure, aggregate


# ----------------------------------------------------------------------------- per-pixel responses


def laplacian_response(image):
    """``|∇²|`` of gray/255 at every pixel (float64, same size as the image).

    Gray is the float32 luma of docs/pipeline.md §1.3 divided by 255 in float32; borders
    reflect without repeating the edge pixel (OpenCV BORDER_REFLECT_101,
    NumPy/torch ``'reflect'``). The nine float32 terms (weights 1 and -8)
    sum exactly in float64, so the response is exact: a flat area is 0, and
    every backend gives the same values.

    Parameters
    ----------
    image : ndarray or torch.Tensor
        HxWx3 uint8 RGB.

    Returns
    -------
    ndarray or torch.Tensor
        HxW float64, same kind as the input.

    Examples
    --------
    >>> img = np.zeros((5, 5, 3), np.uint8); img[2, 2] = 255
    >>> laplacian_response(img)[1:4].round(3).tolist()
    [[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 7.999, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0, 0.0]]
    """
    gray = grayscale(image)
    if isinstance(gray, np.ndarray):
        import cv2

        gray /= np.float32(255.0)
        kernel = LAPLACIAN_KERNEL.astype(np.float64)
        out = cv2.filter2D(gray.astype(np.float64), -1, kernel, borderType=cv2.BORDER_REFLECT_101)
        return np.abs(out, out=out)
    import torch
    import torch.nn.functional as F

    gray = (gray / 255.0).to(torch.float64)
    rows, cols = (_reflect101_index(n, gray.device) for n in gray.shape)
    padded = gray[rows][:, cols][None, None]
    kernel = torch.from_numpy(LAPLACIAN_KERNEL).to(gray.device, torch.float64)[None, None]
    return F.conv2d(padded, kernel)[0, 0].abs()


def _reflect101_index(n: int, device):
    """Indices ``1, 0, 1, ..., n-1, n-2`` (``'reflect'`` padding by one; a single pixel mirrors itself)."""
    import torch

    idx = torch.arange(-1, n + 1, device=device).abs()
    return torch.where(idx > n - 1, 2 * (n - 1) - idx, idx).clamp(0, n - 1)


def reconstruction_error(image, factor: int):
    """Per-pixel squared error of a bilinear down-by-``factor``-then-up reconstruction.

    RGB/255 in float32, resized as torch ``interpolate(scale_factor=1/factor,
    mode="bilinear", align_corners=False)`` and back up by ``factor`` (then to
    the exact size, when ``factor`` does not divide it), error averaged over
    the channels. OpenCV's INTER_LINEAR computes the same bilinear weights
    (half-pixel centres, no antialias) once the image is cropped to a multiple
    of ``factor``, which leaves torch's sample positions unchanged.

    Parameters
    ----------
    image : ndarray or torch.Tensor
        HxWx3 uint8 RGB.
    factor : int
        Power-of-two reduction (``ps / patch_size``); 1 gives all zeros.

    Returns
    -------
    ndarray or torch.Tensor or None
        HxW float32, same kind as the input; None when the image is smaller
        than ``factor`` (every cell of that scale overhangs: all PAD).

    Examples
    --------
    >>> img = np.zeros((4, 4, 3), np.uint8); img[:, 2:] = 255
    >>> reconstruction_error(img, 2).round(4).tolist()[0]
    [0.0, 0.0625, 0.0625, 0.0]
    """
    return _reconstruction_error(_unit_rgb(image), factor)


def _unit_rgb(image):
    """RGB/255 in float32: HxWx3 (NumPy) or 1x3xHxW (torch, as ``interpolate`` takes it)."""
    if isinstance(image, np.ndarray):
        rgb = image.astype(np.float32)
        rgb /= np.float32(255.0)
        return rgb
    import torch

    return image.to(torch.float32).permute(2, 0, 1)[None] / 255.0


def _reconstruction_error(rgb, factor: int):
    numpy = isinstance(rgb, np.ndarray)
    height, width = (rgb.shape[0], rgb.shape[1]) if numpy else (rgb.shape[2], rgb.shape[3])
    small = (int(height) // factor, int(width) // factor)
    if min(small) == 0:
        return None
    if numpy:
        import cv2

        if factor == 1:
            return np.zeros((height, width), np.float32)
        # torch samples the first factor * small pixels only: crop, so that OpenCV's scale is exactly 1/factor
        crop = rgb[: small[0] * factor, : small[1] * factor]
        down = cv2.resize(crop, (small[1], small[0]), interpolation=cv2.INTER_LINEAR)
        up = cv2.resize(down, (small[1] * factor, small[0] * factor), interpolation=cv2.INTER_LINEAR)
        if up.shape[:2] != (height, width):
            up = cv2.resize(up, (width, height), interpolation=cv2.INTER_LINEAR)
        up -= rgb
        up *= up
        return cv2.transform(up, np.full((1, 3), 1 / 3, np.float32))
    import torch
    import torch.nn.functional as F

    if factor == 1:
        return torch.zeros((height, width), dtype=torch.float32, device=rgb.device)
    down = F.interpolate(rgb, scale_factor=1.0 / factor, mode="bilinear", align_corners=False)
    up = F.interpolate(down, scale_factor=float(factor), mode="bilinear", align_corners=False)
    if tuple(up.shape[-2:]) != (height, width):
        up = F.interpolate(up, size=(height, width), mode="bilinear", align_corners=False)
    return ((rgb - up) ** 2).mean(dim=1)[0]


# ----------------------------------------------------------------------------- per-cell aggregation


def _cells_numpy(values: np.ndarray, ps: int, aggregate: Aggregate, levels: int) -> list[np.ndarray]:
    """Aggregates of the cells inside the image at ``ps, 2 ps, ...`` (``levels`` scales), float64.

    One pass over the pixels for the finest level; each coarser level
    combines the 2x2 children: max of maxima, sum of sums, and for std the
    children's sums and centred sums of squares (Chan et al.'s pairwise
    update), which is as stable as a direct two-pass std.
    """
    rows, cols = values.shape[0] // ps, values.shape[1] // ps
    blocks = values[: rows * ps, : cols * ps].reshape(rows, ps, cols, ps)
    if aggregate is Aggregate.max:
        out = [blocks.max(axis=(1, 3), initial=-np.inf).astype(np.float64)]
        for _ in range(levels - 1):
            out.append(pool2x2(out[-1], np.maximum))
        return out
    n = ps * ps
    total = blocks.sum(axis=(1, 3), dtype=np.float64)
    if aggregate is Aggregate.mean:
        out = [total / n]
        for _ in range(levels - 1):
            total, n = pool2x2(total, np.add), 4 * n
            out.append(total / n)
        return out
    squares = np.square(blocks, dtype=np.float64).sum(axis=(1, 3))
    m2 = np.maximum(squares - total * total / n, 0.0)  # centred sum of squares per finest cell
    out = [np.sqrt(m2 / (n - 1))]
    for _ in range(levels - 1):
        rows, cols = total.shape[0] // 2, total.shape[1] // 2
        mean = total[: 2 * rows, : 2 * cols] / n
        total = pool2x2(total, np.add)
        parent_mean = pool2x2(mean, np.add) / 4
        deviation = (mean - np.repeat(np.repeat(parent_mean, 2, 0), 2, 1)) ** 2
        m2 = pool2x2(m2, np.add) + n * pool2x2(deviation, np.add)
        n *= 4
        out.append(np.sqrt(m2 / (n - 1)))
    return out


def _cells_torch(values, ps: int, aggregate: Aggregate):
    """Aggregates of the cells inside the image at ``ps`` (torch, float64), as the research code reduces."""
    import torch

    rows, cols = values.shape[0] // ps, values.shape[1] // ps
    blocks = values[: rows * ps, : cols * ps].reshape(rows, ps, cols, ps).to(torch.float64)
    if aggregate is Aggregate.max:
        return blocks.amax(dim=(1, 3)) if rows and cols else blocks.sum(dim=(1, 3))
    if aggregate is Aggregate.mean:
        return blocks.mean(dim=(1, 3))
    return blocks.std(dim=(1, 3), correction=1)


def _with_pad(inner, grid: tuple[int, int]):
    """A float32 grid of PAD with the cells inside the image (the top-left block) filled in.

    The cells left out are exactly the PAD cells of docs/pipeline.md §1.3: the last row and/or
    column when the grid overhangs the image.
    """
    rows, cols = int(inner.shape[0]), int(inner.shape[1])
    if isinstance(inner, np.ndarray):
        out = np.full(grid, PAD, dtype=np.float32)
        out[:rows, :cols] = inner
        return out
    import torch

    out = torch.full(grid, PAD, dtype=torch.float32, device=inner.device)
    out[:rows, :cols] = inner.to(torch.float32)
    return out


def compute_importance(
    image,
    measure: str | Measure = "entropy",
    aggregate: str | Aggregate = "mean",
    patch_size: int = 14,
    num_scales: int = 3,
    bins: int = 512,
    device="cpu",
    backend: str | None = None,
) -> dict:
    """Importance maps on the native backend: NumPy arrays on the CPU, torch tensors otherwise.

    Same parameters and values as :func:`importance_maps`; the pipeline uses
    this so that a CPU run never imports torch. ``backend="torch"`` forces
    the torch code path (what CUDA runs) on any device.

    Examples
    --------
    >>> img = np.zeros((56, 84, 3), np.uint8); img[:, 42:] = 200
    >>> maps = compute_importance(img, "laplacian")
    >>> type(maps[14]).__name__, maps[14].dtype, maps[14].shape
    ('ndarray', dtype('float32'), (4, 6))
    >>> [round(float(v), 4) for v in maps[14][0]], [round(float(v), 4) for v in maps[56][0]]
    ([0.0, 0.0, 0.1681, 0.1681, 0.0, 0.0], [0.084, 1000000.0])
    """
    measure, aggregate = _check(measure, aggregate, patch_size, num_scales)
    if isinstance(image, np.ndarray) and image.ndim == 4:  # a time axis: (T, H, W, 3) frames, one tubelet
        return importance_over_time(image, measure, aggregate, patch_size, num_scales, bins)
    if measure is Measure.entropy:
        return compute_maps(image, patch_size, num_scales, bins, device, backend=backend)
    from aptviz.compute.entropy import as_image_array, as_image_tensor

    numpy = (backend or ("numpy" if str(device) == "cpu" else "torch")) == "numpy"
    img = as_image_array(image) if numpy else as_image_tensor(image, device)
    height, width = int(img.shape[0]), int(img.shape[1])
    scales = scales_for(patch_size, num_scales)
    grids = {ps: (-(-height // ps), -(-width // ps)) for ps in scales}
    if measure is Measure.laplacian:
        response = laplacian_response(img)
        if numpy:
            inner = _cells_numpy(response, patch_size, aggregate, num_scales)
        else:
            inner = [_cells_torch(response, ps, aggregate) for ps in scales]
        return {ps: _with_pad(cells, grids[ps]) for ps, cells in zip(scales, inner)}
    maps: dict = {}
    rgb = _unit_rgb(img)
    for ps in scales:
        if ps == patch_size:  # nothing is lost at the finest size: zeros, no pass over the pixels
            inner = rgb[: height // ps, : width // ps, 0] if numpy else rgb[0, 0, : height // ps, : width // ps]
            maps[ps] = _with_pad(inner * 0, grids[ps])
            continue
        error = _reconstruction_error(rgb, ps // patch_size)
        if error is None:  # the image is smaller than the factor: every cell overhangs
            maps[ps] = _with_pad(rgb[:0, :0, 0] if numpy else rgb[0, 0, :0, :0], grids[ps])
        elif numpy:
            maps[ps] = _with_pad(_cells_numpy(error, ps, aggregate, 1)[0], grids[ps])
        else:
            maps[ps] = _with_pad(_cells_torch(error, ps, aggregate), grids[ps])
    return maps


def importance_maps(
    image: np.ndarray | Image.Image | torch.Tensor,
    measure: str | Measure = "entropy",
    aggregate: str | Aggregate = "mean",
    patch_size: int = 14,
    num_scales: int = 3,
    bins: int = 512,
    device: str | torch.device = "cpu",
) -> dict[int, torch.Tensor]:
    """Importance of every patch, at every scale, by any measure.

    Parameters
    ----------
    image : ndarray, PIL.Image.Image or torch.Tensor
        HxWx3 uint8 RGB image (usually the smart-resized one).
    measure : {"entropy", "laplacian", "upsample-mse"}
        What is measured (see the module docstring); ``"entropy"`` gives
        exactly :func:`aptviz.entropy_maps`.
    aggregate : {"mean", "max", "std"}
        Per-cell reduction of the per-pixel values of ``laplacian`` and
        ``upsample-mse`` (std with ``n - 1``); entropy takes only ``"mean"``.
    patch_size : int
        Finest patch size; scale ``i`` uses ``patch_size * 2**i``.
    num_scales : int
        Number of scales (>= 1).
    bins : int
        Histogram bins (entropy only).
    device : str or torch.device
        Where to compute ("cpu" or "cuda").

    Returns
    -------
    dict[int, torch.Tensor]
        ``{ps: float32 tensor of shape (ceil(H/ps), ceil(W/ps))}`` on
        ``device``; cells that overhang the image hold :data:`PAD`.
        Units: see :func:`measure_unit`.

    Examples
    --------
    >>> img = np.zeros((56, 56, 3), np.uint8); img[::2, ::2] = 255
    >>> maps = importance_maps(img, "upsample-mse", aggregate="max")
    >>> float(maps[14].max()), round(float(maps[28].max()), 4)
    (0.0, 0.5625)
    """
    import torch

    dev = torch.device(device)
    maps = compute_importance(
        image, measure, aggregate, patch_size, num_scales, bins, "cpu" if dev.type == "cpu" else dev
    )
    return {ps: torch.from_numpy(m) if isinstance(m, np.ndarray) else m for ps, m in maps.items()}


def importance_over_time(
    frames: np.ndarray,
    measure: str | Measure = "entropy",
    aggregate: str | Aggregate | None = None,
    patch_size: int = 14,
    num_scales: int = 3,
    bins: int = 512,
) -> dict:
    """Importance maps of frames analysed together (a video tubelet), NumPy: a cell covers every frame's pixels.

    Entropy is that of the joint histogram of the ``T * ps**2`` gray values
    (:func:`aptviz.compute.entropy.entropy_maps_over_time`). The other
    measures aggregate the per-pixel values of all frames: the mean of the
    per-frame means, the max of the maxima, and the std (``n - 1``) from the
    per-frame means and stds (Chan et al.'s pairwise update, frames of equal
    size). One frame gives :func:`compute_importance` of it.

    Parameters
    ----------
    frames : ndarray
        ``(T, H, W, 3)`` uint8.
    measure, aggregate, patch_size, num_scales, bins
        As for :func:`compute_importance`.

    Returns
    -------
    dict[int, ndarray]
        ``{ps: float32 map}`` with PAD where the grid overhangs.

    Examples
    --------
    >>> img = np.zeros((56, 84, 3), np.uint8); img[:, 42:] = 200
    >>> one = compute_importance(img, "laplacian", "max")
    >>> two = importance_over_time(np.stack([img, img * 0]), "laplacian", "max")
    >>> all(np.array_equal(one[ps], two[ps]) for ps in one)
    True
    """
    measure, aggregate = _check(measure, aggregate, patch_size, num_scales)
    if measure is Measure.entropy:
        return entropy_maps_over_time(frames, patch_size, num_scales, bins)
    per = [compute_importance(f, measure, aggregate, patch_size, num_scales, bins) for f in frames]  # T maps
    out = {}
    for ps in per[0]:
        stack = np.stack([p[ps] for p in per]).astype(np.float64)
        pad = stack[0] == PAD
        if aggregate is Aggregate.max:
            value = stack.max(axis=0)
        elif aggregate is Aggregate.mean:
            value = stack.mean(axis=0)
        else:
            n, t = ps * ps, stack.shape[0]
            means = [_frame_means(f, measure, ps, patch_size) for f in frames]
            m2 = (stack**2 * (n - 1)).sum(axis=0) + n * np.var(np.stack(means), axis=0) * t
            value = np.sqrt(m2 / (t * n - 1))
        out[ps] = np.where(pad, PAD, value).astype(np.float32)
    return out


def _frame_means(frame: np.ndarray, measure: Measure, ps: int, patch_size: int) -> np.ndarray:
    """Per-cell mean of one frame's per-pixel values at ``ps`` (float64, PAD cells as 0), for the std over time."""
    maps = compute_importance(frame, measure, "mean", patch_size, scales_for(patch_size, 8).index(ps) + 1)
    return np.where(maps[ps] == PAD, 0.0, maps[ps].astype(np.float64))
