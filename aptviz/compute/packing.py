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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from aptviz.compute.presets import CLIP_MEAN, CLIP_STD
from aptviz.compute.tokens import llm_tokens
from aptviz.compute.xp import to_numpy

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "PackedPatches",
    "iter_token_arrays",
    "iter_video_token_arrays",
    "normalize_pixels",
    "pack_selection",
    "token_arrays",
    "token_keys",
    "token_order",
]



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
        LLM tokens after the merger (:func:`aptviz.compute.tokens.llm_tokens`); -1
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
    rgb = np.asarray(rgb)
    mean32, std32 = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
    out = np.empty((rgb.shape[-1], *rgb.shape[:2]), dtype=np.float32)
    for c in range(rgb.shape[-1]):  # one channel at a time: a float64 plane is the largest temporary
        out[c] = (rgb[..., c].astype(np.float64) * rescale_factor).astype(np.float32)
        out[c] -= mean32[c]
        out[c] /= std32[c]
    return out


def token_keys(coords: np.ndarray, grid_width: int, merge_size: int = 2) -> np.ndarray:
    """Each patch's place in Qwen2-VL's token order: the row index of its top-left ``P``-cell.

    Merge units in raster order; inside a unit, its ``P``-cells in raster
    order. For a ``P``-px patch the key is its row in transformers'
    ``pixel_values``.

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
    >>> token_keys(np.array([[0, 2], [1, 0], [0, 0], [0, 1], [1, 1]]), grid_width=4).tolist()
    [4, 2, 0, 1, 3]
    """
    rows, cols = coords[:, 0].astype(np.int64), coords[:, 1].astype(np.int64)
    unit = (rows // merge_size) * (grid_width // merge_size) + cols // merge_size
    return unit * merge_size * merge_size + (rows % merge_size) * merge_size + cols % merge_size


def token_order(coords: np.ndarray, grid_width: int, merge_size: int = 2) -> np.ndarray:
    """Indices that put patches in Qwen2-VL's token order (see :func:`token_keys`).

    Examples
    --------
    >>> coords = np.array([[0, 2], [1, 0], [0, 0], [0, 1], [1, 1]])  # a 28 px patch at (0, 2)
    >>> token_order(coords, grid_width=4).tolist()
    [2, 3, 1, 4, 0]
    """
    return np.argsort(token_keys(coords, grid_width, merge_size), kind="stable")


def _kept_blocks(pixels: np.ndarray, cells: np.ndarray, ps: int, patch_size: int) -> np.ndarray:
    """The ``ps`` patches at ``cells`` (n, 2) averaged to ``P x P``: (n, C, P, P) float32.

    The kept crops are gathered, stacked into one tall single-channel image
    and averaged over ``r x r`` blocks (``r = ps / P``) by one OpenCV area
    resize, which for a whole-number factor is exactly the block mean (blocks
    never straddle two crops: ``ps`` is a multiple of ``r``).
    """
    channels, height, width = pixels.shape
    rows, cols = height // ps, width // ps  # kept cells never overhang the image
    grid = pixels[:, : rows * ps, : cols * ps].reshape(channels, rows, ps, cols, ps)
    # advanced indices around a slice: the kept-patch axis comes first -> (n, C, ps, ps)
    crops = grid[:, cells[:, 0], :, cells[:, 1], :]
    if ps == patch_size:
        return crops
    import cv2

    n = len(cells)
    tall = np.ascontiguousarray(crops).reshape(n * channels * ps, ps)
    small = cv2.resize(tall, (patch_size, n * channels * patch_size), interpolation=cv2.INTER_AREA)
    return small.reshape(n, channels, patch_size, patch_size)


def pack_selection(
    pixels: np.ndarray,
    masks: Mapping[int, np.ndarray],
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    rows: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> PackedPatches:
    """Lay out one image's kept patches as Qwen2-VL vision-tower rows.

    Parameters
    ----------
    pixels : ndarray, float32, (C, H, W) or (C, T, H, W)
        The normalized resized image (:func:`normalize_pixels`, or the
        array transformers' processor builds); H and W multiples of
        ``patch_size * merge_size``; with a time axis, a video tubelet's
        ``T = temporal_patch_size`` frames (:func:`_kept_frames`).
    masks : mapping of int to bool grid
        ``Selection.masks``: ``{patch size: True where kept}`` (NumPy arrays
        or torch tensors), a partition of the image.
    patch_size, merge_size, temporal_patch_size : int
        Qwen2-VL's ``P``, merge size and temporal patch size.
    rows : ndarray, float32, (H/P * W/P, C * temporal_patch_size * P * P), optional
        This image's ``pixel_values`` when already computed: the ``P``-px
        patches are copied from it (the same values, without cutting them
        out again).
    out : ndarray, float32, (T, C * temporal_patch_size * P * P), optional
        Where to write the rows (``T`` = kept patches), e.g. a slice of a
        batch's array; a new array by default.

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
    channels, width = pixels.shape[0], pixels.shape[-1]  # (C, H, W), or (C, T, H, W) for a tubelet
    cells = {ps: np.argwhere(to_numpy(mask)) for ps, mask in sorted(masks.items())}
    counts = {ps: len(c) for ps, c in cells.items()}
    coords = np.concatenate([c.astype(np.int64) * (ps // patch_size) for ps, c in cells.items()]).reshape(-1, 2)
    sizes = np.concatenate([np.full(n, ps, dtype=np.int64) for ps, n in counts.items()])
    keys = token_keys(coords, width // patch_size, merge_size)
    order = np.argsort(keys, kind="stable")
    dest = np.empty_like(order)
    dest[order] = np.arange(len(order))  # where each patch's row goes
    shape = (len(order), channels, temporal_patch_size, patch_size, patch_size)
    if out is None:
        out = np.empty((len(order), int(np.prod(shape[1:]))), dtype=np.float32)
    if rows is not None and patch_size in cells:  # P-px rows straight from pixel_values, in one pass
        source = np.zeros(len(order), dtype=np.int64)
        source[dest[: counts[patch_size]]] = keys[: counts[patch_size]]
        np.take(rows, source, axis=0, out=out, mode="clip")  # (clip: unbuffered; every index is valid)
    blocks = out.reshape(shape)
    start = 0
    for ps, kept in cells.items():
        part = slice(start, start + len(kept))
        start += len(kept)
        if len(kept) and (ps != patch_size or rows is None):
            blocks[dest[part]] = _kept_frames(pixels, kept, ps, patch_size)
    try:
        llm = llm_tokens(counts, patch_size, merge_size)
    except ValueError:  # patches that straddle merge units: no LLM count
        llm = -1
    return PackedPatches(
        pixel_values=out,
        patch_sizes=sizes[order],
        patch_coords=coords[order],
        llm_tokens=llm,
    )


def _kept_frames(pixels: np.ndarray, cells: np.ndarray, ps: int, patch_size: int) -> np.ndarray:
    """The kept patches over time: (n, C, 1, P, P) for an image (the row repeats it over time, as
    Qwen2-VL does for a still image), (n, C, T, P, P) for a tubelet's ``(C, T, H, W)`` frames (each
    frame's own patch, as its video processor lays them out)."""
    if pixels.ndim == 3:
        return _kept_blocks(pixels, cells, ps, patch_size)[:, :, None]
    return np.stack([_kept_blocks(pixels[:, t], cells, ps, patch_size) for t in range(pixels.shape[1])], axis=2)


def iter_token_arrays(
    rgb: np.ndarray,
    selections: Sequence[tuple[str, Mapping[int, np.ndarray]]],
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(key, array)`` pairs of :func:`token_arrays`, one selection packed at a time (to stream to a file)."""
    pixels = normalize_pixels(rgb, mean=mean, std=std)
    height, width = rgb.shape[:2]
    yield "image_grid_thw", np.array([[1, height // patch_size, width // patch_size]], dtype=np.int64)
    for label, masks in selections:
        packed = pack_selection(pixels, masks, patch_size, merge_size, temporal_patch_size)
        yield f"apt_pixel_values_{label}", packed.pixel_values
        yield f"apt_patch_sizes_{label}", packed.patch_sizes
        yield f"apt_patch_coords_{label}", packed.patch_coords
        yield f"apt_vit_token_counts_{label}", np.array([packed.vit_tokens], dtype=np.int64)
        yield f"apt_llm_token_counts_{label}", np.array([packed.llm_tokens], dtype=np.int64)


def token_arrays(
    rgb: np.ndarray,
    selections: Sequence[tuple[str, Mapping[int, np.ndarray]]],
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
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
    mean, std : sequence of float
        The model's normalization (:attr:`aptviz.compute.presets.ModelPreset.image_mean`).

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
    return dict(iter_token_arrays(rgb, selections, patch_size, merge_size, temporal_patch_size, mean, std))


def iter_video_token_arrays(
    frames: np.ndarray,
    selections: Sequence[tuple[str, Sequence[Mapping[int, np.ndarray]]]],
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> Iterator[tuple[str, np.ndarray]]:
    """tokens.npz of a video (docs/video.md): ``video_grid_thw`` and, per selection, every tubelet's APT rows.

    Parameters
    ----------
    frames : ndarray, uint8, (T, H, W, 3)
        The resized frames, ``T`` a multiple of ``temporal_patch_size``.
    selections : sequence of (label, masks per tubelet)
        Each selection's label and one mask dict per tubelet (the static
        rule's masks give the rows it keeps).
    patch_size, merge_size, temporal_patch_size, mean, std
        As :func:`iter_token_arrays`.

    Yields
    ------
    (str, ndarray)
        ``video_grid_thw`` ``[[tubelets, H/P, W/P]]``; per selection
        ``apt_pixel_values_<label>`` (the tubelets' rows one after another),
        ``apt_patch_sizes_<label>``, ``apt_patch_coords_<label>`` and, one
        entry per tubelet, ``apt_vit_token_counts_<label>`` and
        ``apt_llm_token_counts_<label>``. When every kept patch is ``P`` px,
        the rows are transformers' ``pixel_values_videos``.

    Examples
    --------
    >>> frames = np.zeros((4, 28, 56, 3), np.uint8)
    >>> per = [{14: np.zeros((2, 4), bool), 28: np.ones((1, 2), bool)}] * 2
    >>> arrays = dict(iter_video_token_arrays(frames, [("v1", per)]))
    >>> arrays["video_grid_thw"].tolist(), arrays["apt_pixel_values_v1"].shape, arrays["apt_vit_token_counts_v1"]
    ([[2, 2, 4]], (4, 1176), array([2, 2]))
    """
    t = temporal_patch_size
    n, height, width = frames.shape[0] // t, frames.shape[1], frames.shape[2]
    yield "video_grid_thw", np.array([[n, height // patch_size, width // patch_size]], dtype=np.int64)

    def tubelet(i: int) -> np.ndarray:  # (C, T, H, W), normalized when needed: one tubelet in memory at a time
        return np.stack([normalize_pixels(f, mean=mean, std=std) for f in frames[i * t : (i + 1) * t]], axis=1)

    for label, per_tubelet in selections:
        packed = [pack_selection(tubelet(i), masks, patch_size, merge_size, t) for i, masks in enumerate(per_tubelet)]
        yield f"apt_pixel_values_{label}", np.concatenate([p.pixel_values for p in packed])
        yield f"apt_patch_sizes_{label}", np.concatenate([p.patch_sizes for p in packed])
        yield f"apt_patch_coords_{label}", np.concatenate([p.patch_coords for p in packed])
        yield f"apt_vit_token_counts_{label}", np.array([p.vit_tokens for p in packed], dtype=np.int64)
        yield f"apt_llm_token_counts_{label}", np.array([p.llm_tokens for p in packed], dtype=np.int64)
