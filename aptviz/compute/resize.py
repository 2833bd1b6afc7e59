"""Stage 2: Qwen2-VL's ``smart_resize`` and the bicubic resize (docs/pipeline.md §1.2)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aptviz.errors import InputError

if TYPE_CHECKING:  # Pillow is imported on first resize: ``aptviz --help`` imports this module for the defaults
    from PIL import Image

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MIN_PIXELS", "resize_image", "smart_resize"]

DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Target size of Qwen2-VL's image processor, identical to transformers.

    Both sides become multiples of ``factor``, the pixel count is brought
    into ``[min_pixels, max_pixels]`` and the aspect ratio is kept as well as
    possible.

    Parameters
    ----------
    height, width : int
        Size of the input image in pixels.
    factor : int
        ``patch_size * merge_size`` (28 for Qwen2-VL).
    min_pixels, max_pixels : int
        Pixel-count bounds.

    Returns
    -------
    (int, int)
        ``(h_bar, w_bar)``.

    Raises
    ------
    ValueError
        When ``max(h, w) / min(h, w) > 200``.

    Examples
    --------
    >>> smart_resize(300, 451)
    (308, 448)
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(
            f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_image(
    image: Image.Image,
    factor: int = 28,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Resize an RGB image to its ``smart_resize`` size with Pillow BICUBIC.

    Parameters
    ----------
    image : PIL.Image.Image
        RGB image.
    factor, min_pixels, max_pixels : int
        As for :func:`smart_resize`.

    Returns
    -------
    PIL.Image.Image
        The resized image (a copy even when the size does not change).

    Raises
    ------
    InputError
        When the aspect ratio is 200 or more, or when the size would exceed
        ``max_pixels`` (one ``factor`` cell is larger, or min-pixels rounds up past it).

    Examples
    --------
    >>> from PIL import Image
    >>> resize_image(Image.new("RGB", (451, 300))).size
    (448, 308)
    """
    try:
        h, w = smart_resize(image.height, image.width, factor, min_pixels, max_pixels)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if h * w > max_pixels:  # min-pixels rounded up past max-pixels: never more pixels than the memory plan allows
        raise InputError(
            f"resizes to {w}x{h} = {w * h} pixels, more than max-pixels ({max_pixels}): smart_resize rounds "
            f"min-pixels ({min_pixels}) up to multiples of {factor}"
        )
    if (w, h) == image.size:
        return image.copy()
    from PIL import Image

    return image.resize((w, h), Image.Resampling.BICUBIC)
