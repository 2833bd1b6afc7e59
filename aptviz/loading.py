"""Stage 1: open an image file and convert it to RGB the way Qwen2-VL does.

docs/pipeline.md §1.1: EXIF orientation applied, first frame of multi-frame files, alpha
composited over opaque white, 16-bit and float images scaled into 0..255.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

__all__ = ["LoadedImage", "load_image", "open_image", "open_image_bytes", "to_rgb"]


@dataclass(frozen=True)
class LoadedImage:
    """An RGB image together with what was learnt while loading it.

    Attributes
    ----------
    image : PIL.Image.Image
        The RGB image (EXIF orientation applied, first frame).
    frames : int
        Number of frames in the file (1 for still images).
    source_mode : str
        Pillow mode of the decoded frame before conversion.
    source_format : str or None
        Pillow's name of the file format ("JPEG", "PNG", ...).
    orientation : int
        EXIF orientation tag of the file (1 = upright or absent).
    """

    image: Image.Image
    frames: int
    source_mode: str
    source_format: str | None = None
    orientation: int = 1

    @property
    def is_plain_jpeg(self) -> bool:
        """A single-frame, upright RGB JPEG: its bytes are already the original picture."""
        return self.source_format == "JPEG" and self.source_mode == "RGB" and self.orientation == 1 and self.frames == 1


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth or float array into uint8 0..255."""
    a = arr.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
        a = a * (255.0 / 65535.0)
    elif mode == "F":
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo >= 0.0 and hi <= 1.0:
            a = a * 255.0
        elif hi > lo:
            a = (a - lo) * (255.0 / (hi - lo))
        else:
            a = np.zeros_like(a)
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    else:  # 32-bit integers outside the 16-bit range: stretch min..max
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow image to 8-bit RGB as Qwen2-VL does.

    Images with an alpha band or a ``transparency`` entry are converted to
    RGBA and alpha-composited over opaque white; 16-bit integer and float
    images are scaled into 0..255 first; everything else uses
    ``Image.convert("RGB")``.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode Pillow can decode (1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr,
        I, I;16, F, ...).

    Returns
    -------
    PIL.Image.Image
        A new image in mode ``"RGB"``.

    Examples
    --------
    >>> from PIL import Image
    >>> to_rgb(Image.new("LA", (2, 2), (0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        image = Image.fromarray(_scale_to_uint8(np.asarray(image), mode), mode="L")
        mode = "L"
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    if mode == "RGB" and not has_alpha:
        return image.copy()
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(path: str | Path) -> LoadedImage:
    """Open, decode and convert one image file (docs/pipeline.md §1.1).

    Parameters
    ----------
    path : str or Path
        Image file to read.

    Returns
    -------
    LoadedImage
        The RGB image, the number of frames in the file and the source mode.

    Raises
    ------
    InputError
        With a one-line reason when the file is missing, empty, unreadable,
        not an image, truncated, too large (decompression bomb) or otherwise
        undecodable.

    Examples
    --------
    >>> loaded = open_image("sample_images/chelsea.png")
    >>> loaded.image.size, loaded.frames
    ((451, 300), 1)
    """
    p = Path(path)
    if not p.exists():
        raise InputError("file not found")
    if p.is_dir():
        raise InputError("is a folder, not an image file")
    try:
        if p.stat().st_size == 0:
            raise InputError("empty file (0 bytes)")
    except PermissionError as exc:
        raise InputError("permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from exc
    return _decode(p)


def open_image_bytes(data: bytes) -> LoadedImage:
    """Decode an image held in memory, with the same rules as :func:`open_image`.

    For images stored inside containers (Parquet columns, tar shards): EXIF
    orientation, first frame, RGB conversion and every refusal are exactly
    those of a file on disk.

    Parameters
    ----------
    data : bytes
        The encoded image (the bytes of a JPEG, PNG, ... file).

    Returns
    -------
    LoadedImage

    Raises
    ------
    InputError
        As :func:`open_image` (empty, not an image, truncated, too large, ...).

    Examples
    --------
    >>> from pathlib import Path
    >>> open_image_bytes(Path("sample_images/chelsea.png").read_bytes()).image.size
    (451, 300)
    """
    if not data:
        raise InputError("empty file (0 bytes)")
    return _decode(io.BytesIO(data))


def _decode(source) -> LoadedImage:
    """Decode a path or binary file object into a :class:`LoadedImage` (SPEC §1.1)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                frames = int(getattr(im, "n_frames", 1) or 1)
                if frames > 1:
                    im.seek(0)
                im.load()
                source_mode = im.mode
                source_format = im.format
                try:
                    orientation = int(im.getexif().get(0x0112, 1) or 1)
                except Exception:  # unreadable EXIF: exif_transpose decides below
                    orientation = 0
                oriented = ImageOps.exif_transpose(im)
                rgb = to_rgb(oriented)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        numbers = [int(n) for n in re.findall(r"\d+", str(exc))]
        detail = f"{numbers[0]:,} pixels, limit {numbers[-1]:,}" if len(numbers) >= 2 else str(exc)
        raise InputError(f"refused as a possible decompression bomb ({detail})") from exc
    except PermissionError as exc:
        raise InputError("permission denied") from exc
    except UnidentifiedImageError as exc:
        raise InputError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = "truncated image data"
        raise InputError(f"cannot decode image: {reason}") from exc
    except MemoryError as exc:
        raise InputError("not enough memory to decode the image") from exc
    except Exception as exc:  # any other decoder failure is still per-file
        raise InputError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    if rgb.width < 1 or rgb.height < 1:
        raise InputError("image has no pixels")
    return LoadedImage(rgb, frames, source_mode, source_format, orientation)


def load_image(path: str | Path) -> Image.Image:
    """Load an image file as RGB, exactly as docs/pipeline.md §1.1 describes.

    Parameters
    ----------
    path : str or Path
        Image file to read.

    Returns
    -------
    PIL.Image.Image
        RGB image with EXIF orientation applied (first frame of animations).

    Examples
    --------
    >>> img = load_image("sample_images/coffee.png")
    >>> img.mode, img.size
    ('RGB', (600, 400))
    """
    return open_image(path).image
