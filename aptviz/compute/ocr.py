"""Text fidelity: what an OCR model loses in the model view and the uniform baselines (``--ocr``).

Tesseract (the system's ``tesseract`` program, extra ``aptviz[ocr]``) reads
the resized image and each view; the score of a view is its character
accuracy ``1 - CER`` against the text read on the resized image, clipped to
``[0, 1]`` (None when the resized image has no text):

* :func:`read_text` -- Tesseract on one picture (PNG through a pipe, no temporary file);
* :func:`normalize_text` -- whitespace folded, so layout alone costs nothing;
* :func:`edit_distance` / :func:`character_accuracy` -- Levenshtein over characters, row by row in NumPy;
* :func:`ocr_scores` -- the three fields of every selection, each distinct picture read once.

Tesseract is called as a program rather than through pytesseract: that is all
pytesseract does (through temporary files), so no Python package is needed.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

import numpy as np

from aptviz.errors import InputError, MissingExtraError

__all__ = [
    "OcrScores",
    "character_accuracy",
    "check_tesseract",
    "edit_distance",
    "normalize_text",
    "ocr_scores",
    "read_text",
    "require_tesseract",
]

TESSERACT = "tesseract"
OCR_TIMEOUT = 120.0  # seconds for one picture
PIXELS_PER_CHARACTER = 40  # no legible character is smaller: more text than area / 40 is not a reading
INSTALL_HINT = "install it from the system packages (e.g. apt-get install tesseract-ocr)"


def require_tesseract() -> str:
    """The path of the ``tesseract`` program, or :class:`MissingExtraError` saying how to install it."""
    found = shutil.which(TESSERACT)
    if found is None:
        raise MissingExtraError(f"--ocr needs Tesseract, which is not on PATH: {INSTALL_HINT}")
    return found


def check_tesseract(timeout: float = 30.0) -> str:
    """:func:`require_tesseract`, and that the program runs and lists English (``eng``); once per run.

    Without the check a broken or hung Tesseract failed every image alike, each after up to
    :data:`OCR_TIMEOUT` seconds.

    Raises
    ------
    MissingExtraError
        Not on PATH, ``--list-langs`` fails or hangs, or no ``eng`` among the languages.
    """
    program = require_tesseract()
    try:
        done = subprocess.run([program, "--list-langs"], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise MissingExtraError(f"--ocr: {program} --list-langs took longer than {timeout:g} s") from None
    except OSError as exc:
        raise MissingExtraError(f"--ocr: cannot run {program}: {exc}") from None
    listed = done.stdout.decode("utf-8", "replace").split()
    if done.returncode != 0 or "eng" not in listed:
        said = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:200]
        raise MissingExtraError(
            f"--ocr needs Tesseract's English data, which {program} does not list (exit {done.returncode}"
            + (f": {said}" if said else "") + "): install tesseract-ocr-eng (or tesseract-ocr)"
        )
    return program


def normalize_text(text: str) -> str:
    """Text with every run of whitespace folded to one space, trimmed.

    Examples
    --------
    >>> normalize_text("  Hello\\n\\n  world \\x0c")
    'Hello world'
    """
    return " ".join(text.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings (insert, delete, substitute: cost 1 each).

    One NumPy row per character of the shorter string; the insertions along a row are a
    running minimum (``D[j] = j + min_{k<=j}(T[k] - k)``), so nothing loops over ``b``.

    Examples
    --------
    >>> edit_distance("kitten", "sitting"), edit_distance("", "abc"), edit_distance("abc", "abc")
    (3, 3, 0)
    """
    if not a or not b:
        return max(len(a), len(b))
    if len(a) > len(b):  # symmetric: one row per character of the shorter string
        a, b = b, a
    bs = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    cols = np.arange(len(bs) + 1, dtype=np.int64)
    row = cols.copy()
    for i, ch in enumerate(np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32), start=1):
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (bs != ch))  # deletion, substitution
        row = cols + np.minimum.accumulate(best - cols)  # insertion: a running minimum along the row
    return int(row[-1])


def character_accuracy(reference: str, text: str) -> float | None:
    """``1 - CER`` of ``text`` against ``reference``, clipped to [0, 1]; None when the reference has no text.

    Both are compared after :func:`normalize_text`.

    Examples
    --------
    >>> character_accuracy("hello world", "hello w0rld")
    0.9090909090909091
    >>> character_accuracy("ab", "xyzw"), character_accuracy(" ", "ab")
    (0.0, None)
    """
    ref, hyp = normalize_text(reference), normalize_text(text)
    if not ref:
        return None
    return min(1.0, max(0.0, 1.0 - edit_distance(ref, hyp) / len(ref)))


def _png(picture: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def read_text(picture: np.ndarray, tesseract: str | None = None, timeout: float = OCR_TIMEOUT) -> str:
    """The text Tesseract reads in an ``(H, W, 3)`` uint8 picture (English, automatic page layout).

    Raises
    ------
    MissingExtraError
        When Tesseract is not installed.
    InputError
        When Tesseract fails or takes longer than ``timeout`` seconds.
    """
    program = tesseract or require_tesseract()
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}  # one thread each: the batch runs one worker per core
    try:
        done = subprocess.run(
            [program, "stdin", "stdout", "-l", "eng", "--psm", "3"],
            input=_png(picture), capture_output=True, timeout=timeout, env=env, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise InputError(f"Tesseract took longer than {timeout:g} s") from None
    except OSError as exc:
        raise InputError(f"cannot run Tesseract: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise InputError(f"Tesseract failed (exit {done.returncode}): {last}")
    text = done.stdout.decode("utf-8", "replace")
    most = max(100, picture.shape[0] * picture.shape[1] // PIXELS_PER_CHARACTER)
    if len(text) > most:  # the edit distance is quadratic: a runaway output would stall the batch for hours
        raise InputError(
            f"Tesseract printed {len(text)} characters for a {picture.shape[1]}x{picture.shape[0]} picture "
            f"(at most {most} fit in it): not a reading; check the tesseract on PATH"
        )
    return text


@dataclass(frozen=True)
class OcrScores:
    """Character accuracy (``1 - CER``, 0-1) of one selection's views; None when the resized image has no text."""

    ocr_apt: float | None = None
    ocr_uniform: float | None = None
    ocr_uniform_llm: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ocr_scores(resized: np.ndarray, views: list[tuple], tesseract: str | None = None) -> list[OcrScores]:
    """:class:`OcrScores` of every selection of one image.

    Parameters
    ----------
    resized : ndarray
        The resized image: Tesseract's text on it is the reference.
    views : list of (apt, uniform, uniform_llm)
        Each selection's three pictures at the resized size.
    tesseract : str, optional
        The program (found on PATH when not given).

    Returns
    -------
    list of OcrScores
        All None for an image without text (Tesseract reads nothing in it);
        then no view is read. A picture shown by several selections (same
        uniform size, a lossless view) is read once.
    """
    program = tesseract or require_tesseract()
    reference = read_text(resized, program)
    if not normalize_text(reference):
        return [OcrScores() for _ in views]
    texts: dict[bytes, str] = {}  # by the picture's digest

    def score(picture) -> float:
        picture = np.ascontiguousarray(picture, dtype=np.uint8)
        if np.array_equal(picture, resized):
            return character_accuracy(reference, reference)
        key = hashlib.blake2b(picture).digest()
        if key not in texts:
            texts[key] = read_text(picture, program)
        return character_accuracy(reference, texts[key])

    return [OcrScores(*(score(p) for p in triple)) for triple in views]
