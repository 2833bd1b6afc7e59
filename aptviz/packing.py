"""APT's kept patches as Qwen2-VL vision-tower rows (NumPy only).

Qwen2-VL's image processor normalizes the resized image and cuts it into
``P x P`` patches (P = 14), one row of ``C * temporal_patch_size * P * P``
values each, ordered merge unit by merge unit (a unit is ``merge_size x
merge_size`` patches, 28 px) and, inside a unit, patch by patch in raster
order. :func:`pack_selection` lays out an APT selection the same way:

* a kept patch of size ``s`` is its normalized ``s x s`` crop averaged over
  each ``(s/P) x (s/P)`` block down to ``P x P``;
* patches are ordered by their top-left ``P``-cell, unit-major as above;
  a patch of a unit's size or larger is emitted at its top-left unit;
* each row repeats the patch over time like Qwen2-VL does for a still image.

When every kept patch is ``P`` px the rows are exactly Qwen2-VL's own
``pixel_values``. Nothing here imports torch or transformers: the command
line's ``--export-tokens`` uses it as it is, and
:mod:`aptviz.qwen2vl` calls it on transformers' own normalized pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._xp import to_numpy
from .tokens import llm_tokens

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "PackedPatches",
    "normalize_pixels",
    "pack_selection",
    "token_arrays",
    "token_order",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""Per-channel mean of Qwen2-VL's image processor (OpenAI CLIP)."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""Per-channel standard deviation of Qwen2-VL's image processor (OpenAI CLIP)."""


@dataclass(frozen=True)
class PackedPatches:
    """One image's APT tokens in Qwen2-VL's row layout.

    Attributes
    ----------
    pixel_values : ndarray, float32, (T, C * temporal_patch_size * P * P)
        One row per kept patch (channel, time, y, x), in token order.
    patch_sizes : ndarray, int64, (T,)
        Size of each patch in px.
    patch_coords : ndarray, int64, (T, 2)
        (row, col) of each patch's top-left corner in ``P``-px grid units.
    llm_tokens : int
        LLM tokens after the merger (:func:`aptviz.tokens.llm_tokens`); -1
        when the patches do not fill whole merge units (a merge size the
        patch scales do not nest in, such as 3).
    """

    pixel_values: np.ndarray
    patch_sizes: np.ndarray
    patch_coords: np.ndarray
    llm_tokens: int

    @property
    def vit_tokens(self) -> int:
        """Number of rows: one ViT token per kept patch."""
        return int(self.patch_sizes.shape[0])


def normalize_pixels(
    rgb: np.ndarray,
    rescale_factor: float = 1 / 255,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> np.ndarray:
    """Qwen2-VL's rescale and normalization of a uint8 image, bit for bit.

    Parameters
    ----------
    rgb : ndarray, uint8, (H, W, C)
        The resized image.
    rescale_factor : float
        Multiplier applied in float64 before the cast to float32.
    mean, std : sequence of float
        Per-channel normalization, applied in float32.

    Returns
    -------
    ndarray, float32, (C, H, W)
        ``(rgb * rescale_factor - mean) / std``, channels first.

    Examples
    --------
    >>> [round(float(v), 4) for v in normalize_pixels(np.full((1, 1, 3), 255, np.uint8)).ravel()]
    [1.9303, 2.0749, 2.1459]
    """
    chw = np.moveaxis(np.asarray(rgb), -1, 0)
    scaled = (chw.astype(np.float64) * rescale_factor).astype(np.float32)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None, None]
    return (scaled - mean32) / std32


def token_order(coords: np.ndarray, grid_width: int, merge_size: int = 2) -> np.ndarray:
    """Indices that put patches in Qwen2-VL's token order.

    Merge units in raster order; inside a unit, its ``P``-cells in raster
    order. Each patch sits at its top-left ``P``-cell.

    Parameters
    ----------
    coords : ndarray, int, (T, 2)
        (row, col) of each patch's top-left cell in ``P``-px units.
    grid_width : int
        Width of the finest grid (W / P), a multiple of ``merge_size``.
    merge_size : int
        Cells per merge-unit side.

    Returns
    -------
    ndarray, int64, (T,)

    Examples
    --------
    >>> coords = np.array([[0, 2], [1, 0], [0, 0], [0, 1], [1, 1]])  # a 28 px patch at (0, 2)
    >>> token_order(coords, grid_width=4).tolist()
    [2, 3, 1, 4, 0]
    """
    rows, cols = coords[:, 0].astype(np.int64), coords[:, 1].astype(np.int64)
    unit = (rows // merge_size) * (grid_width // merge_size) + cols // merge_size
    key = unit * merge_size * merge_size + (rows % merge_size) * merge_size + cols % merge_size
    return np.argsort(key, kind="stable")


def _kept_blocks(pixels: np.ndarray, mask: np.ndarray, ps: int, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The kept ``ps`` patches averaged to ``P x P``: (n, C, P, P) float32, and their cells (n, 2).

    Each channel is averaged over ``r x r`` blocks (``r = ps / P``) in one
    OpenCV area resize, which for a whole-number factor is the block mean;
    the kept cells are then gathered from it.
    """
    cells = np.argwhere(mask)
    channels, height, width = pixels.shape
    if not len(cells):
        return np.zeros((0, channels, patch_size, patch_size), np.float32), cells
    rows, cols = height // ps, width // ps  # kept cells never overhang the image
    region = pixels[:, : rows * ps, : cols * ps]
    if ps > patch_size:
        import cv2

        size = (cols * patch_size, rows * patch_size)
        region = np.stack([cv2.resize(plane, size, interpolation=cv2.INTER_AREA) for plane in region])
    grid = region.reshape(channels, rows, patch_size, cols, patch_size)
    # advanced indices around a slice: the kept-patch axis comes first -> (n, C, P, P)
    return grid[:, cells[:, 0], :, cells[:, 1], :], cells


def pack_selection(
    pixels: np.ndarray,
    masks: Mapping[int, np.ndarray],
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> PackedPatches:
    """Lay out one image's kept patches as Qwen2-VL vision-tower rows.

    Parameters
    ----------
    pixels : ndarray, float32, (C, H, W)
        The normalized resized image (:func:`normalize_pixels`, or the
        array transformers' processor builds); H and W multiples of
        ``patch_size * merge_size``.
    masks : mapping of int to bool grid
        ``Selection.masks``: ``{patch size: True where kept}`` (NumPy arrays
        or torch tensors), a partition of the image.
    patch_size, merge_size, temporal_patch_size : int
        Qwen2-VL's ``P``, merge size and temporal patch size.

    Returns
    -------
    PackedPatches
        Rows, sizes, coordinates and the LLM token count.

    Examples
    --------
    >>> pixels = np.arange(3 * 28 * 56, dtype=np.float32).reshape(3, 28, 56)
    >>> masks = {14: np.array([[1, 1, 0, 0], [1, 1, 0, 0]], bool), 28: np.array([[0, 1]], bool)}
    >>> packed = pack_selection(pixels, masks)
    >>> packed.patch_sizes.tolist(), packed.patch_coords.tolist(), packed.llm_tokens
    ([14, 14, 14, 14, 28], [[0, 0], [0, 1], [1, 0], [1, 1], [0, 2]], 2)
    >>> packed.pixel_values.shape
    (5, 1176)
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    channels, height, width = pixels.shape
    blocks, sizes, coords = [], [], []
    counts: dict[int, int] = {}
    for ps, mask in sorted(masks.items()):
        kept, cells = _kept_blocks(pixels, to_numpy(mask).astype(bool), ps, patch_size)
        counts[ps] = len(cells)
        blocks.append(kept)
        sizes.append(np.full(len(cells), ps, dtype=np.int64))
        coords.append(cells.astype(np.int64) * (ps // patch_size))
    try:
        llm = llm_tokens(counts, patch_size, merge_size)
    except ValueError:  # patches that straddle merge units: no LLM count
        llm = -1
    all_coords = np.concatenate(coords).reshape(-1, 2)
    order = token_order(all_coords, width // patch_size, merge_size)
    patches = np.concatenate(blocks)[order]  # (T, C, P, P)
    rows = np.broadcast_to(patches[:, :, None], (len(order), channels, temporal_patch_size, patch_size, patch_size))
    return PackedPatches(
        pixel_values=rows.reshape(len(order), -1),
        patch_sizes=np.concatenate(sizes)[order],
        patch_coords=all_coords[order],
        llm_tokens=llm,
    )


def token_arrays(
    rgb: np.ndarray,
    selections: Sequence[tuple[str, Mapping[int, np.ndarray]]],
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> dict[str, np.ndarray]:
    """The arrays of ``tokens.npz``: APT's fields for each selection of one image.

    Parameters
    ----------
    rgb : ndarray, uint8, (H, W, 3)
        The resized image.
    selections : sequence of (label, masks)
        Each selection's label (``RunSpec.label``) and masks.
    patch_size, merge_size, temporal_patch_size : int
        Qwen2-VL's parameters.

    Returns
    -------
    dict of str to ndarray
        ``image_grid_thw`` (1, 3) and, per selection, ``apt_pixel_values_<label>``,
        ``apt_patch_sizes_<label>``, ``apt_patch_coords_<label>``,
        ``apt_vit_token_counts_<label>`` and ``apt_llm_token_counts_<label>``
        (shape (1,)), as :class:`aptviz.qwen2vl.APTQwen2VLImageProcessor`
        returns them for this image alone.

    Examples
    --------
    >>> rgb = np.zeros((28, 56, 3), np.uint8)
    >>> masks = {14: np.zeros((2, 4), bool), 28: np.ones((1, 2), bool)}
    >>> arrays = token_arrays(rgb, [("v1", masks)])
    >>> arrays["image_grid_thw"].tolist(), arrays["apt_pixel_values_v1"].shape, arrays["apt_llm_token_counts_v1"]
    ([[1, 2, 4]], (2, 1176), array([2]))
    """
    pixels = normalize_pixels(rgb)
    height, width = rgb.shape[:2]
    arrays = {"image_grid_thw": np.array([[1, height // patch_size, width // patch_size]], dtype=np.int64)}
    for label, masks in selections:
        packed = pack_selection(pixels, masks, patch_size, merge_size, temporal_patch_size)
        arrays[f"apt_pixel_values_{label}"] = packed.pixel_values
        arrays[f"apt_patch_sizes_{label}"] = packed.patch_sizes
        arrays[f"apt_patch_coords_{label}"] = packed.patch_coords
        arrays[f"apt_vit_token_counts_{label}"] = np.array([packed.vit_tokens], dtype=np.int64)
        arrays[f"apt_llm_token_counts_{label}"] = np.array([packed.llm_tokens], dtype=np.int64)
    return arrays
