"""Stage 1: open an image file and convert it to RGB the way Qwen2-VL does.

docs/pipeline.md §1.1: EXIF orientation applied, first frame of multi-frame files, alpha
composited over opaque white, 16-bit and float images scaled into 0..255.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from aptviz.errors import InputError

__all__ = [
    "FileIdentity",
    "LoadedImage",
    "check_regular",
    "decode_limit",
    "file_identity",
    "load_image",
    "open_image",
    "open_image_bytes",
    "to_rgb",
]


@dataclass(frozen=True)
class FileIdentity:
    """Which file an output was made from: resolved path, size in bytes, modification time (ns).

    Recorded in stats.json; an output folder is complete only for the same
    identity (a different file under the same output name, or the same path
    changed since, is redone).
    """

    resolved_path: str
    size_bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | Path, st: os.stat_result | None = None) -> FileIdentity:
        """The identity of ``path`` now (``st``: its stat, if already taken).

        Examples
        --------
        >>> FileIdentity.of("sample_images/chelsea.png").size_bytes > 0
        True
        """
        from aptviz._text import text_path

        st = os.stat(path) if st is None else st
        return cls(text_path(os.path.realpath(path)), int(st.st_size), int(st.st_mtime_ns))


def file_identity(path: str | Path) -> FileIdentity | None:
    """:meth:`FileIdentity.of`, or None when the file cannot be read."""
    try:
        return FileIdentity.of(path)
    except (OSError, ValueError):
        return None


def decode_limit(max_pixels: int = 0) -> int:
    """The decompression-bomb limit for a run: Pillow's, or ``max_pixels`` when that asks for more.

    Pillow refuses files with more than ``2 * Image.MAX_IMAGE_PIXELS``
    pixels (about 179 megapixels); a ``--max-pixels`` above that raises the
    limit to it. The memory estimate (:mod:`aptviz.runs.memory`) counts the decode
    of a file of this size.

    Examples
    --------
    >>> decode_limit(), decode_limit(400_000_000)
    (178956970, 400000000)
    """
    pillow = Image.MAX_IMAGE_PIXELS
    return max(2 * pillow if pillow else 0, int(max_pixels))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def check_regular(p: str | Path) -> os.stat_result:
    """``stat`` of ``p`` when it is a regular file; else :class:`InputError` saying what it is.

    Every input is checked so before it is opened: a FIFO is never opened (an
    open without a writer would block forever), nor a device or a folder.

    Examples
    --------
    >>> check_regular("/dev/null")
    Traceback (most recent call last):
    ...
    aptviz.errors.InputError: not a regular file (a character device)
    """
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("file not found") from None
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"not a regular file ({_kind(st.st_mode)})")
    return st


def _open_regular(p: Path):
    """Open ``p`` for reading if it is a regular file with content; else :class:`InputError`.

    Checked with :func:`check_regular` before opening (a FIFO is never opened,
    so never blocks) and again on the open descriptor. A "regular" file that
    reports 0 bytes but has content (``/proc``, ``/sys``) is not an image file either.
    """
    check_regular(p)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        raise InputError("permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from None
    fh = os.fdopen(fd, "rb")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the two checks
            raise InputError(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size == 0:
            if fh.read(1):
                raise InputError("not a regular file (reports 0 bytes but has content, e.g. in /proc)")
            raise InputError("empty file (0 bytes)")
    except BaseException:
        fh.close()
        raise
    return fh, FileIdentity.of(p, st)


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
    identity : FileIdentity or None
        The file as it was opened (from the open descriptor).
    """

    image: Image.Image
    frames: int
    source_mode: str
    source_format: str | None = None
    orientation: int = 1
    identity: FileIdentity | None = None

    @property
    def is_plain_jpeg(self) -> bool:
        """A single-frame, upright RGB JPEG: its bytes are already the original picture."""
        return self.source_format == "JPEG" and self.source_mode == "RGB" and self.orientation == 1 and self.frames == 1


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth or float array into uint8 0..255.

    The arithmetic is done in place on one float64 copy (about 11 bytes a
    pixel at the peak instead of 26 for chained temporaries); the values are
    the same.
    """
    a = arr.astype(np.float64)
    if mode.startswith("I;16") or (mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535):
        a *= 255.0 / 65535.0
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
        if hi > lo:
            a -= lo
            a *= 255.0 / (hi - lo)
        else:
            a[...] = 0.0
    np.rint(a, out=a)
    np.clip(a, 0, 255, out=a)
    return a.astype(np.uint8)


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


def _is_plain_rgb(image: Image.Image) -> bool:
    """Whether :func:`to_rgb` would only copy the image (8-bit RGB, no transparency)."""
    return image.mode == "RGB" and "transparency" not in image.info


def open_image(path: str | Path, max_image_pixels: int | None = None) -> LoadedImage:
    """Open, decode and convert one image file (docs/pipeline.md §1.1).

    Parameters
    ----------
    path : str or Path
        Image file to read.
    max_image_pixels : int, optional
        Files with more pixels are refused before decoding (decompression
        bomb); default :func:`decode_limit` ``()``.

    Returns
    -------
    LoadedImage
        The RGB image, the number of frames in the file and the source mode.

    Raises
    ------
    InputError
        With a one-line reason when the file is missing, empty, unreadable,
        not a regular file (folder, FIFO, device, ``/proc`` file), not an
        image, truncated, too large (decompression bomb) or otherwise
        undecodable.

    Examples
    --------
    >>> loaded = open_image("sample_images/chelsea.png")
    >>> loaded.image.size, loaded.frames
    ((451, 300), 1)
    """
    fh, identity = _open_regular(Path(path))
    with fh:
        return _decode(fh, max_image_pixels, identity)


def open_image_bytes(data: bytes, max_image_pixels: int | None = None) -> LoadedImage:
    """Decode an image held in memory, with the same rules as :func:`open_image`.

    For images stored inside containers (Parquet columns, tar shards): EXIF
    orientation, first frame, RGB conversion and every refusal are exactly
    those of a file on disk.

    Parameters
    ----------
    data : bytes
        The encoded image (the bytes of a JPEG, PNG, ... file).
    max_image_pixels : int, optional
        As for :func:`open_image`.

    Returns
    -------
    LoadedImage
        With ``identity`` None (the container knows where the bytes came from).

    Raises
    ------
    InputError
        As :func:`open_image` (empty, not an image, truncated, too large, ...).

    Examples
    --------
    >>> open_image_bytes(Path("sample_images/chelsea.png").read_bytes()).image.size
    (451, 300)
    """
    if not data:
        raise InputError("empty file (0 bytes)")
    return _decode(io.BytesIO(data), max_image_pixels, None)


def _decode(fh, max_image_pixels: int | None, identity: FileIdentity | None) -> LoadedImage:
    """Decode an open binary file into a :class:`LoadedImage` (docs/pipeline.md §1.1)."""
    max_image_pixels = decode_limit() if max_image_pixels is None else int(max_image_pixels)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        if pillow_limit is not None and max_image_pixels > 2 * pillow_limit:
            Image.MAX_IMAGE_PIXELS = -(-max_image_pixels // 2)  # Pillow refuses above twice this
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh) as im:
                if im.width * im.height > max_image_pixels:
                    raise InputError(
                        f"refused as a possible decompression bomb ({im.width * im.height:,} pixels, "
                        f"limit {max_image_pixels:,}; a larger --max-pixels raises it)"
                    )
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
                oriented = ImageOps.exif_transpose(im)  # always a new image, not tied to the file
                rgb = oriented if _is_plain_rgb(oriented) else to_rgb(oriented)
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
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    if rgb.width < 1 or rgb.height < 1:
        raise InputError("image has no pixels")
    return LoadedImage(rgb, frames, source_mode, source_format, orientation, identity)


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
