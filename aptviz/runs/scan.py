"""The one folder scanner: which files of a folder are inputs (the main command, calibrate, ``aptviz stats``).

:func:`scan_folder` lists a folder's files whose extension is asked for,
sorted, never looking inside the output folder (re-running ``aptviz . -r``
must not process its own pictures, nor ``aptviz stats . -r -o rows`` its own
parts). Special files (FIFOs, devices, sockets) with a matching name are
listed too: reading them is refused later with one line, "not a regular
file", instead of skipping them without a word.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aptviz.compute.video import VIDEO_EXTENSIONS

__all__ = ["IMAGE_EXTENSIONS", "INPUT_EXTENSIONS", "VIDEO_EXTENSIONS", "Found", "scan_inputs", "scan_folder"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
INPUT_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
"""What the main command picks up in a folder: images and videos (.mp4, .mov, .webm, .mkv, .avi)."""


@dataclass(frozen=True)
class Found:
    """One input file (``folder``: the folder given it was found in, None for a file given), or an input's error."""

    path: Path
    folder: Path | None = None
    error: str | None = None


def scan_inputs(
    inputs: Iterable[str | Path], recursive: bool, suffixes: Iterable[str], exclude: str | Path | None = None, *,
    what: str = "images",
) -> Iterator[Found]:  # fmt: skip
    """Files and folders as the user gave them, expanded: what every command does with its inputs.

    A folder gives its files (:func:`scan_folder`), or one error ``no {what}
    found in folder``; a file given is always tried, whatever its name; a
    missing one is the error ``file not found``.

    Examples
    --------
    >>> [f.error for f in scan_inputs(["/no/such/file.png"], False, IMAGE_EXTENSIONS)]
    ['file not found']
    """
    wanted = frozenset(suffixes)
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            files = scan_folder(p, recursive, wanted, exclude)
            if not files:
                yield Found(p, error=f"no {what} found in folder")
            yield from (Found(f, p) for f in files)
        elif p.exists() or p.is_symlink():
            yield Found(p)
        else:
            yield Found(p, error="file not found")


def scan_folder(
    folder: str | Path, recursive: bool, suffixes: Iterable[str], exclude: str | Path | None = None
) -> list[Path]:
    """Files of ``folder`` (and its sub-folders when ``recursive``) whose lower-cased suffix is in ``suffixes``.

    Parameters
    ----------
    folder : str or Path
        The folder to scan; paths come back below it as given.
    recursive : bool
        Scan sub-folders too (links to folders are not followed).
    suffixes : iterable of str
        Extensions with their dot, lower case (``{".png", ".tar"}``).
    exclude : str or Path, optional
        A folder never looked into, nor any link that resolves into it (the
        output folder). It matters below ``folder`` only: a folder given that
        lies inside it is scanned.

    Returns
    -------
    list of Path
        Sorted by their POSIX path text; folders never, special files too.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for name in ("b.PNG", "a.jpg", "notes.txt", "out/c.png"):
    ...     (d / name).parent.mkdir(exist_ok=True); _ = (d / name).write_bytes(b"x")
    >>> [p.relative_to(d).as_posix() for p in scan_folder(d, True, IMAGE_EXTENSIONS, exclude=d / "out")]
    ['a.jpg', 'b.PNG']
    """
    folder, wanted = Path(folder), frozenset(suffixes)
    skip = Path(exclude).resolve() if exclude is not None else None
    if skip is not None and _inside(folder, skip):  # asked for explicitly: an input folder inside the output
        skip = None
    found: list[Path] = []
    for top, dirs, names in os.walk(folder) if recursive else [_one_level(folder)]:
        here = Path(top)
        if skip is not None:
            dirs[:] = [d for d in dirs if not _inside(here / d, skip)]
        for name in names:
            path = here / name
            if os.path.splitext(name)[1].lower() in wanted and not _links_into(path, skip):
                found.append(path)
    return sorted(found, key=lambda f: f.as_posix())


def _one_level(folder: Path) -> tuple[str, list[str], list[str]]:
    """``os.walk``'s first triple, without walking further (non-folder entries as names)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return os.fspath(folder), [], []
    names = [e.name for e in entries if not _is_dir(e)]
    return os.fspath(folder), [], names


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _links_into(path: Path, skip: Path | None) -> bool:
    """Whether ``path`` is a link to a file in the excluded folder (other files there are pruned with it)."""
    return skip is not None and os.path.islink(path) and _inside(path, skip)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):  # a link loop: not the output folder
        return False
